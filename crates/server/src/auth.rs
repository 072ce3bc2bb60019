//! Who is calling, from `Authorization: Bearer <token>`. Operators: the token is checked
//! against the SHA-256 digests of the tokens in the store (cached, refreshed when they
//! change) and the token from the environment (an owner's), always in constant time; each
//! route takes the extractor of what it does ([`Reader`], [`Desk`], [`SiteDoorOpener`],
//! [`Admin`]; [`Operator::may`] for what only the body says), which lets through the
//! roles that may. A role limited to one site passes only the `Site…` extractors, taken
//! by the routes that keep it to its site (the service refuses writes beyond it; the route
//! filters what it reads). A token scoped to decisions (a
//! station's) passes only [`Asker`]. Users (not operators): their personal secret, or an
//! OpenID Connect ID token from the configured issuer.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use lintel_core::{Action, CredentialKey, Role, RoleAt};
use lintel_service::Actor;
use lintel_service::decide::Source;
use lintel_service::integrations::oidc::{OPERATOR_ATTRIBUTE, is_operator};
use lintel_service::secrets;
use lintel_store::{Store, StoreError, TokenScope};

use crate::AppState;
use crate::problem::ApiError;

pub fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// An operator's token and its role; the name is kept for the record.
#[derive(Debug, Clone)]
pub struct Operator {
    pub name: String,
    pub role: Role,
    /// The one site the role is limited to; `None` for every site.
    pub site: Option<String>,
}

impl Operator {
    /// How the record names who did something.
    pub fn label(&self) -> String {
        format!("token {:?}", self.name)
    }

    /// Who the audit trail names for what this token changes.
    pub fn actor(&self) -> Actor {
        Actor::token(&self.name).limited_to(self.site.clone())
    }

    /// The site a read must keep to: the operator's own when limited to one (asking
    /// for another is refused), else what the request asked for.
    pub fn site_to_read(&self, asked: Option<String>) -> Result<Option<String>, ApiError> {
        match (&self.site, asked) {
            (None, asked) => Ok(asked),
            (Some(own), Some(asked)) if *own != asked => Err(elsewhere(&self.name, own)),
            (Some(own), _) => Ok(Some(own.clone())),
        }
    }

    /// Refuses a thing at another site than the operator's own.
    pub fn may_see_site(&self, site: &str) -> Result<(), ApiError> {
        match &self.site {
            Some(own) if own != site => Err(elsewhere(&self.name, own)),
            _ => Ok(()),
        }
    }

    /// The refusal of something that does not concern the operator's site.
    pub fn not_at_their_site(&self) -> ApiError {
        elsewhere(&self.name, self.site.as_deref().unwrap_or_default())
    }

    /// Refuses what the role does not allow (for a rule a route's extractor cannot see).
    pub fn may(&self, action: Action) -> Result<(), ApiError> {
        match self.role.may(action) {
            true => Ok(()),
            false => Err(forbidden(&self.name, self.role, action)),
        }
    }
}

/// Making someone an operator of the web UI, changing their role, and changing or
/// removing a person who is an operator manage access: an owner's business (the API's
/// and the web UI's edits alike). Exempting someone from lockdown configures the doors:
/// an admin's.
pub(crate) async fn access_changes_are_allowed(
    store: &Store,
    by: &Operator,
    person: Option<&str>,
    attributes: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Result<(), ApiError> {
    if attributes.is_some_and(|a| a.contains_key(lintel_store::LOCKDOWN_EXEMPT_ATTRIBUTE)) {
        by.may(Action::Configure)?;
        // The exemption holds at every site: not for a role limited to one.
        if let Some(own) = &by.site {
            return Err(elsewhere(&by.name, own));
        }
    }
    if by.role.may(Action::ManageAccess) {
        return Ok(());
    }
    if attributes.is_some_and(|a| a.contains_key(OPERATOR_ATTRIBUTE)) {
        return by.may(Action::ManageAccess);
    }
    if let Some(id) = person {
        match store.person(id).await {
            Ok(p) if is_operator(&p) => return by.may(Action::ManageAccess),
            Ok(_) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Whether a route keeps a role limited to one site to that site.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sites {
    /// The route keeps to the operator's site: a limited role may call it.
    Kept,
    /// The route reaches every site: only a role of every site may call it.
    All,
}

/// The operator presenting the request, if their role allows `action`: 401 without a
/// valid operator token, 403 when the role does not allow it, or is limited to a site
/// and the route reaches every site.
fn operator(parts: &Parts, state: &AppState, action: Action, sites: Sites) -> Result<Operator, ApiError> {
    let token = bearer(parts)
        .ok_or_else(|| ApiError::unauthorized("send an operator token as Authorization: Bearer <token>"))?;
    operator_with(state, token, action, sites)
}

/// The operator a token names, for devices that cannot send a header (a relay's input
/// calls a URL): see [`operator`]. Only for a route that keeps to a limited role's site.
pub fn operator_of_token(state: &AppState, token: &str, action: Action) -> Result<Operator, ApiError> {
    operator_with(state, token, action, Sites::Kept)
}

fn operator_with(state: &AppState, token: &str, action: Action, sites: Sites) -> Result<Operator, ApiError> {
    let (name, RoleAt { role, site }) =
        state.services().tokens.operator(token).ok_or_else(|| ApiError::unauthorized("the token is not valid"))?;
    if !role.may(action) {
        return Err(forbidden(&name, role, action));
    }
    match (&site, sites) {
        (Some(own), Sites::All) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("the token {name:?} is limited to the site {own:?}, and this reaches every site"),
        )),
        _ => Ok(Operator { name, role, site }),
    }
}

fn elsewhere(name: &str, own: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", format!("the token {name:?} is limited to the site {own:?}"))
}

fn forbidden(name: &str, role: Role, action: Action) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("the token {name:?} has the role {role}, which may not {}", action.phrase()),
    )
}

/// Extractors, one per action a route does: each lets through an operator whose role
/// allows it (see [`Role::may`]); those whose routes record who did it carry the operator.
macro_rules! operator_may {
    ($(#[$doc:meta])* $name:ident => $action:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl FromRequestParts<AppState> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
                operator(parts, state, $action, Sites::All).map(|_| $name)
            }
        }
    };
    ($(#[$doc:meta])* $name:ident(Operator) => $action:expr, $sites:expr) => {
        $(#[$doc])*
        pub struct $name(pub Operator);

        impl FromRequestParts<AppState> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
                operator(parts, state, $action, $sites).map($name)
            }
        }
    };
}

operator_may!(
    /// Reads the directory, events, attendance and settings: `viewer` and above.
    Reader => Action::Read
);
operator_may!(
    /// Changes people, credentials and memberships: `front_desk` and above.
    Desk => Action::ManagePeople
);
operator_may!(
    /// Changes doors, groups, grants, sites, webhooks and integrations: `admin` and above.
    Admin(Operator) => Action::Configure, Sites::All
);
operator_may!(
    /// [`Reader`] on a route that keeps to a limited operator's site.
    SiteReader(Operator) => Action::Read, Sites::Kept
);
operator_may!(
    /// [`Desk`] on a route that keeps to a limited operator's site.
    SiteDesk(Operator) => Action::ManagePeople, Sites::Kept
);
operator_may!(
    /// Opens doors: `front_desk` and above (one limited to a site, its doors).
    SiteDoorOpener(Operator) => Action::OpenDoors, Sites::Kept
);
operator_may!(
    /// [`Admin`] on a route that keeps to a limited operator's site.
    SiteAdmin(Operator) => Action::Configure, Sites::Kept
);
operator_may!(
    /// Reports door inputs: a `building` token, `admin` and above (one limited to a site,
    /// its doors).
    InputReporter(Operator) => Action::ReportInputs, Sites::Kept
);
operator_may!(
    /// Raises an emergency release: a `building` token (a fire panel's gateway), `admin`
    /// and above (one limited to a site, at its site).
    EmergencyRaiser(Operator) => Action::RaiseEmergency, Sites::Kept
);

/// Who may ask decisions: an admin token, or a token scoped to decisions (a station's),
/// which may be limited to one door.
pub struct Asker {
    pub name: String,
    /// The only door this token may ask about; `None` for any.
    pub door: Option<String>,
    /// The only site whose doors it may ask about (an operator limited to one).
    pub site: Option<String>,
}

impl Asker {
    /// Refuses a question about another door than the token's own, or one at another
    /// site than the operator's.
    pub async fn may_ask_at(&self, store: &Store, door: &str) -> Result<(), ApiError> {
        if let Some(own) = self.door.as_ref().filter(|own| *own != door) {
            return Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "forbidden",
                format!("the token {:?} may only ask about the door {own:?}", self.name),
            ));
        }
        Ok(lintel_service::site_limits::doors_within(store, self.site.as_deref(), [door]).await?)
    }
}

impl FromRequestParts<AppState> for Asker {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token =
            bearer(parts).ok_or_else(|| ApiError::unauthorized("send a token as Authorization: Bearer <token>"))?;
        match state.services().tokens.check_scoped(token) {
            Some((name, TokenScope::Operator(RoleAt { role, site }))) if role.may(Action::ManagePeople) => {
                Ok(Self { name, door: None, site })
            }
            Some((name, TokenScope::Operator(at))) => Err(forbidden(&name, at.role, Action::ManagePeople)),
            Some((name, TokenScope::Decisions { door })) => Ok(Self { name, door, site: None }),
            Some((_, TokenScope::Scim)) | None => Err(ApiError::unauthorized("the token is not valid")),
        }
    }
}

/// A signed-in user: their person id.
#[derive(Debug, Clone)]
pub struct User {
    pub person_id: String,
}

/// Who is calling a route open to users and admins alike (an operator token whose role
/// may configure; any other operator token is refused).
pub enum Caller {
    Admin,
    User(User),
}

fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3 && token.starts_with("eyJ")
}

impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or_else(|| {
            ApiError::unauthorized("sign in with Authorization: Bearer <personal secret or OpenID ID token>")
        })?;
        if looks_like_jwt(token) {
            let oidc = state.services().oidc.as_ref().ok_or_else(|| {
                ApiError::unauthorized("OpenID Connect is not configured here; use your personal secret")
            })?;
            return Ok(User { person_id: oidc.sign_in(token).await? });
        }
        let source = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| Source::Client(format!("ip:{}", c.0.ip())))
            .unwrap_or_else(|| Source::Client("ip:unknown".into()));
        let digest = secrets::digest(token);
        let pk = state.services().decider.authenticate(&CredentialKey::secret(&digest), &digest, &source).await?;
        let index = state.directory().index();
        let person = index.person(pk).ok_or_else(|| ApiError::unauthorized("this secret is not valid"))?;
        Ok(User { person_id: person.id.to_string() })
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some((name, at)) = bearer(parts).and_then(|t| state.services().tokens.operator(t)) {
            return match (at.role.may(Action::Configure), &at.site) {
                (true, None) => Ok(Caller::Admin),
                (true, Some(own)) => Err(elsewhere(&name, own)),
                (false, _) => Err(forbidden(&name, at.role, Action::Configure)),
            };
        }
        User::from_request_parts(parts, state).await.map(Caller::User)
    }
}
