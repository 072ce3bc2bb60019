//! The OpenID Connect issuer people sign in with. A user's ID token (for signed
//! operations) makes their person on first use and keeps their name and verified contacts
//! up to date; the web UI's sign-in only finds an operator and never makes anyone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lintel_core::Role;
use lintel_proto::{Person, PersonStatus};
use lintel_signed::{IdClaims, JwkSet, OidcError, verify_id_token};
use lintel_store::PersonFilter;

use crate::directory::Directory;
use crate::error::{Result, ServiceError};
use crate::people::{self, ExternalPerson, Identity};

/// The `[oidc]` settings.
#[derive(Clone, Debug)]
pub struct OidcConfig {
    pub issuer: String,
    pub jwks_url: String,
    pub audience: String,
}

/// The external-id system under which OpenID subjects are kept.
pub const OIDC_SYSTEM: &str = "oidc";

/// The person attribute that lets someone into the web UI through OpenID, with a role:
/// a role's name (`"front_desk"`), or `true` for `admin`. Only an owner sets it.
pub const OPERATOR_ATTRIBUTE: &str = "ui_operator";

/// How long a fetched JWKS is used before it is fetched again.
const JWKS_FRESH: Duration = Duration::from_secs(600);
/// An unknown `kid` makes lintel fetch the JWKS again (the issuer rotated its keys), but
/// not more often than this, so that made-up kids cannot make lintel hammer the issuer.
const JWKS_REFETCH_AFTER: Duration = Duration::from_secs(30);

pub struct Oidc {
    config: OidcConfig,
    http: reqwest::Client,
    jwks: tokio::sync::Mutex<Option<(JwkSet, Instant)>>,
    directory: Arc<Directory>,
}

/// The role of an active person the directory marks as an operator of the web UI.
pub fn operator_role(person: &Person) -> Option<Role> {
    if person.status != PersonStatus::Active {
        return None;
    }
    match person.attributes.get(OPERATOR_ATTRIBUTE)? {
        serde_json::Value::Bool(true) => Some(Role::Admin),
        serde_json::Value::String(name) => Role::parse(name),
        _ => None,
    }
}

pub fn is_operator(person: &Person) -> bool {
    operator_role(person).is_some()
}

impl Oidc {
    pub fn new(config: OidcConfig, directory: Arc<Directory>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("a client with these settings always builds");
        Self { config, http, jwks: tokio::sync::Mutex::new(None), directory }
    }

    async fn fetch(&self) -> Result<JwkSet> {
        let unavailable = |what: String| {
            tracing::warn!(error = %what, "the OpenID issuer's JWKS could not be fetched");
            ServiceError::unavailable("the identity provider's keys could not be fetched")
        };
        let response = self.http.get(&self.config.jwks_url).send().await.map_err(|e| unavailable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(unavailable(format!("HTTP {}", response.status())));
        }
        response.json::<JwkSet>().await.map_err(|e| unavailable(e.to_string()))
    }

    /// The JWKS: cached, fetched again when stale, or when `kid_unknown` and the cached
    /// copy is old enough.
    async fn keys(&self, kid_unknown: bool) -> Result<(JwkSet, bool)> {
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

    /// The claims of an ID token the issuer signed for lintel (signature, issuer,
    /// audience, times).
    pub async fn verify(&self, token: &str) -> Result<IdClaims> {
        let now = chrono::Utc::now();
        let check = |set: &JwkSet| verify_id_token(token, set, &self.config.issuer, &self.config.audience, now);
        let (set, fresh) = self.keys(false).await?;
        let result = match check(&set) {
            Err(OidcError::UnknownKid) if !fresh => check(&self.keys(true).await?.0),
            other => other,
        };
        result.map_err(|e| ServiceError::unauthorized(format!("the ID token is not accepted: {e}")))
    }

    /// Signs a user in with an ID token: the person of its subject, made on first sign-in,
    /// with their name and contacts brought up to date with the token. A suspended person
    /// is refused.
    pub async fn sign_in(&self, token: &str) -> Result<String> {
        let claims = self.verify(token).await?;
        let mut person = ExternalPerson::new(OIDC_SYSTEM, claims.sub.clone(), Identity::External);
        person.name = claims.name.clone().or_else(|| claims.email.clone());
        person.email = claims.email.clone();
        person.phone = Some(claims.phone_number.clone().filter(|p| p.len() <= 32));
        person.email_verified = Some(claims.email_verified);
        person.phone_verified = Some(claims.phone_number_verified);
        let person_id = people::upsert(&self.directory, person).await?.id;
        let pk = self
            .directory
            .store
            .person_pk(&person_id)
            .await?
            .ok_or_else(|| ServiceError::unauthorized("no such user"))?;
        if self.directory.index().person(pk).is_some_and(|p| p.suspended) {
            return Err(ServiceError::forbidden("suspended", "this user is suspended"));
        }
        Ok(person_id)
    }

    /// The operator an ID token names: found by its subject or, when the issuer says the
    /// address is verified, by its email (one operator with it, not two).
    pub async fn operator(&self, claims: &IdClaims) -> Result<Option<Person>> {
        let store = &self.directory.store;
        let by_sub = PersonFilter {
            external_id: Some((OIDC_SYSTEM.into(), claims.sub.clone())),
            limit: 1,
            ..Default::default()
        };
        if let Some(person) = store.people(&by_sub).await?.0.pop() {
            return Ok(is_operator(&person).then_some(person));
        }
        let Some(email) = claims.email.as_ref().filter(|_| claims.email_verified) else { return Ok(None) };
        let by_email = PersonFilter { email: Some(email.clone()), limit: 10, ..Default::default() };
        let (people, _) = store.people(&by_email).await?;
        let mut operators = people.into_iter().filter(is_operator);
        let Some(first) = operators.next() else { return Ok(None) };
        // Two operators with one address: which one is meant is not clear; nobody gets in.
        Ok(operators.next().is_none().then_some(first))
    }
}
