//! Users (not admins) sign in with their personal secret or with an OpenID Connect ID
//! token from the configured issuer. An ID token creates the person on first use and
//! keeps their name and verified contacts up to date.

use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use lintel_core::CredentialKey;
use lintel_proto::{NewPerson, PersonPatch, PersonStatus};
use lintel_signed::{IdClaims, JwkSet, OidcError, verify_id_token};
use lintel_store::PersonFilter;

use crate::AppState;
use crate::auth::bearer;
use crate::problem::ApiError;
use lintel_service::decide::Source;
use lintel_service::secrets;

/// The `[oidc]` settings.
#[derive(Clone, Debug)]
pub struct OidcConfig {
    pub issuer: String,
    pub jwks_url: String,
    pub audience: String,
}

/// The external-id system under which OpenID subjects are kept.
pub const OIDC_SYSTEM: &str = "oidc";

/// How long a fetched JWKS is used before it is fetched again.
const JWKS_FRESH: Duration = Duration::from_secs(600);
/// An unknown `kid` makes lintel fetch the JWKS again (the issuer rotated its keys), but
/// not more often than this, so that made-up kids cannot make lintel hammer the issuer.
const JWKS_REFETCH_AFTER: Duration = Duration::from_secs(30);

pub struct Oidc {
    config: OidcConfig,
    http: reqwest::Client,
    jwks: tokio::sync::Mutex<Option<(JwkSet, Instant)>>,
}

impl Oidc {
    pub fn new(config: OidcConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("a client with these settings always builds");
        Self { config, http, jwks: tokio::sync::Mutex::new(None) }
    }

    async fn fetch(&self) -> Result<JwkSet, ApiError> {
        let unavailable = |what: String| {
            tracing::warn!(error = %what, "the OpenID issuer's JWKS could not be fetched");
            ApiError::unavailable("the identity provider's keys could not be fetched")
        };
        let response = self.http.get(&self.config.jwks_url).send().await.map_err(|e| unavailable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(unavailable(format!("HTTP {}", response.status())));
        }
        response.json::<JwkSet>().await.map_err(|e| unavailable(e.to_string()))
    }

    /// The JWKS: cached, fetched again when stale, or when `kid_unknown` and the cached
    /// copy is old enough.
    async fn keys(&self, kid_unknown: bool) -> Result<(JwkSet, bool), ApiError> {
        let mut cached = self.jwks.lock().await;
        if let Some((set, at)) = cached.as_ref() {
            let refetch = at.elapsed() > JWKS_FRESH || (kid_unknown && at.elapsed() > JWKS_REFETCH_AFTER);
            if !refetch {
                return Ok((set.clone(), false));
            }
        }
        let set = self.fetch().await?;
        *cached = Some((set.clone(), Instant::now()));
        Ok((set, true))
    }

    pub async fn verify(&self, token: &str) -> Result<IdClaims, ApiError> {
        let now = chrono::Utc::now();
        let check = |set: &JwkSet| verify_id_token(token, set, &self.config.issuer, &self.config.audience, now);
        let (set, fresh) = self.keys(false).await?;
        let result = match check(&set) {
            Err(OidcError::UnknownKid) if !fresh => check(&self.keys(true).await?.0),
            other => other,
        };
        result.map_err(|e| ApiError::unauthorized(format!("the ID token is not accepted: {e}")))
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
            let oidc = state.inner.oidc.as_ref().ok_or_else(|| {
                ApiError::unauthorized("OpenID Connect is not configured here; use your personal secret")
            })?;
            let claims = oidc.verify(token).await?;
            return person_from_claims(state, &claims).await;
        }
        let source = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| Source::Client(format!("ip:{}", c.0.ip())))
            .unwrap_or_else(|| Source::Client("ip:unknown".into()));
        let digest = secrets::digest(token);
        let pk = state.services().decider.authenticate(&CredentialKey::secret(&digest), &digest, &source)?;
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

/// Finds the person of an OpenID subject, creating them on first sign-in, and brings
/// their name and contacts up to date with the token.
async fn person_from_claims(state: &AppState, claims: &IdClaims) -> Result<User, ApiError> {
    let store = &state.store();
    let filter =
        PersonFilter { external_id: Some((OIDC_SYSTEM.into(), claims.sub.clone())), limit: 1, ..Default::default() };
    let email = claims.email.clone().filter(|e| lintel_service::validate::email(e).is_ok());
    let phone = claims.phone_number.clone().filter(|p| p.len() <= 32);
    let name: String = claims
        .name
        .clone()
        .or_else(|| email.clone())
        .unwrap_or_else(|| claims.sub.clone())
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    let person_id = match store.people(&filter).await?.0.pop() {
        Some(person) => {
            let patch = PersonPatch {
                name: (person.name != name).then(|| name.clone()),
                email: (person.email != email).then(|| email.clone()),
                phone: (person.phone != phone).then(|| phone.clone()),
                email_verified: (person.email_verified != claims.email_verified).then_some(claims.email_verified),
                phone_verified: (person.phone_verified != claims.phone_number_verified)
                    .then_some(claims.phone_number_verified),
                ..Default::default()
            };
            let changed = patch.name.is_some()
                || patch.email.is_some()
                || patch.phone.is_some()
                || patch.email_verified.is_some()
                || patch.phone_verified.is_some();
            if changed {
                let id = person.id.clone();
                state.directory().write(move |store| async move { store.patch_person(&id, &patch).await }).await?;
            }
            person.id
        }
        None => {
            let id = secrets::person_id();
            let new = NewPerson {
                id: Some(id.clone()),
                name,
                email,
                phone,
                email_verified: claims.email_verified,
                phone_verified: claims.phone_number_verified,
                external_ids: [(OIDC_SYSTEM.to_owned(), claims.sub.clone())].into(),
                status: PersonStatus::Active,
                ..Default::default()
            };
            let person_id = id.clone();
            state.directory().write(move |store| async move { store.create_person(&new, &person_id).await }).await?;
            id
        }
    };
    let pk = store.person_pk(&person_id).await?.ok_or_else(|| ApiError::unauthorized("no such user"))?;
    if state.directory().index().person(pk).is_some_and(|p| p.suspended) {
        return Err(ApiError::new(axum::http::StatusCode::FORBIDDEN, "suspended", "this user is suspended"));
    }
    Ok(User { person_id })
}
