//! Who is calling, from `Authorization: Bearer <token>`. Admins: the token is checked
//! against the SHA-256 digests of the tokens in the store (cached, refreshed when the
//! directory changes) and the token from the environment, always in constant time; a token
//! scoped to decisions (a station's) passes only [`Asker`], never [`Admin`]. Users (not
//! admins): their personal secret, or an OpenID Connect ID token from the configured
//! issuer.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use lintel_core::CredentialKey;
use lintel_service::decide::Source;
use lintel_service::secrets;
use lintel_store::TokenScope;

use crate::AppState;
use crate::problem::ApiError;

pub fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// An authenticated admin; the token's name is kept for the record.
pub struct Admin(pub String);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)
            .ok_or_else(|| ApiError::unauthorized("send an admin token as Authorization: Bearer <token>"))?;
        state.services().tokens.check(token).map(Admin).ok_or_else(|| ApiError::unauthorized("the token is not valid"))
    }
}

/// Who may ask decisions: an admin token, or a token scoped to decisions (a station's),
/// which may be limited to one door.
pub struct Asker {
    pub name: String,
    /// The only door this token may ask about; `None` for any.
    pub door: Option<String>,
}

impl Asker {
    /// Refuses a question about another door than the token's own.
    pub fn may_ask_at(&self, door: &str) -> Result<(), ApiError> {
        match &self.door {
            Some(own) if own != door => Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "forbidden",
                format!("the token {:?} may only ask about the door {own:?}", self.name),
            )),
            _ => Ok(()),
        }
    }
}

impl FromRequestParts<AppState> for Asker {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token =
            bearer(parts).ok_or_else(|| ApiError::unauthorized("send a token as Authorization: Bearer <token>"))?;
        match state.services().tokens.check_scoped(token) {
            Some((name, TokenScope::Admin)) => Ok(Self { name, door: None }),
            Some((name, TokenScope::Decisions { door })) => Ok(Self { name, door }),
            Some((_, TokenScope::Scim)) | None => Err(ApiError::unauthorized("the token is not valid")),
        }
    }
}

/// A signed-in user: their person id.
#[derive(Debug, Clone)]
pub struct User {
    pub person_id: String,
}

/// Who is calling a route open to users and admins alike.
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
        if bearer(parts).is_some_and(|t| state.services().tokens.check(t).is_some()) {
            return Ok(Caller::Admin);
        }
        User::from_request_parts(parts, state).await.map(Caller::User)
    }
}
