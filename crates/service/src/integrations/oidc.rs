//! The OpenID Connect issuer people sign in with. A user's ID token (for signed
//! operations) makes their person on first use and keeps their name and verified contacts
//! up to date; the web UI's sign-in only finds an operator and never makes anyone.
//!
//! The web UI signs in with the authorization-code flow and PKCE (S256), through the
//! `openidconnect` crate: discovery, the authorization request and the token request are
//! its; the ID token the token endpoint returns is verified by [`Oidc::verify`], the one
//! verifier of ID tokens here (the API's bearer tokens use it too), and its nonce must be
//! the one sent. What the callback needs (state, nonce, PKCE verifier) is in the store,
//! not in a node's memory: the issuer may send the browser back to another node.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lintel_core::credential::digests_equal;
use lintel_core::{Role, RoleAt};
use lintel_proto::{Person, PersonStatus};
use lintel_signed::{IdClaims, JwkSet, OidcError, verify_id_token};
use lintel_store::{OidcSignIn, PersonFilter};
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreClientAuthMethod, CoreProviderMetadata};
use openidconnect::{
    AuthType, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet,
    IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};

use crate::directory::Directory;
use crate::error::{Result, ServiceError};
use crate::people::{self, ExternalPerson, Identity};

/// The `[oidc]` settings.
#[derive(Clone, Debug)]
pub struct OidcConfig {
    pub issuer: String,
    pub jwks_url: String,
    pub audience: String,
    /// The web UI's client secret at the issuer; without it lintel is a public client
    /// (PKCE alone).
    pub client_secret: Option<String>,
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
/// How long the discovery document is used before it is fetched again.
const DISCOVERY_FRESH: Duration = Duration::from_secs(3600);
/// How long a sign-in at the issuer may take.
pub const SIGN_IN_FOR: Duration = Duration::from_secs(600);
/// Sign-ins under way at most (anyone may start one): beyond, new ones wait.
const MAX_SIGN_INS: i64 = 10_000;
/// How many of them one client (address) may have: one client cannot fill the table.
const MAX_SIGN_INS_PER_CLIENT: i64 = 50;

pub struct Oidc {
    config: OidcConfig,
    http: reqwest::Client,
    /// For the code flow: follows no redirects (the crate's advice against SSRF).
    flow_http: FlowHttp,
    jwks: tokio::sync::Mutex<Option<(JwkSet, Instant)>>,
    provider: tokio::sync::Mutex<Option<(CoreProviderMetadata, Instant)>>,
    directory: Arc<Directory>,
}

/// Why a sign-in to the web UI did not work.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// Unknown, used already or expired.
    #[error("the sign-in's state is unknown, used or expired")]
    UnknownState,
    #[error("too many sign-ins are under way")]
    TooMany,
    /// The issuer could not be reached or answered nonsense.
    #[error("the identity provider could not be reached: {0}")]
    Unreachable(String),
    /// The token endpoint refused the code (or its client).
    #[error("the identity provider refused the code: {0}")]
    Refused(String),
    /// The ID token did not verify, or is not this sign-in's.
    #[error("the ID token is not accepted: {0}")]
    BadToken(String),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// Where to send the browser to sign in, and the `state` to bind to it.
pub struct Authorization {
    pub url: String,
    pub state: String,
}

/// A sign-in the issuer vouched for.
pub struct SignedIn {
    pub claims: IdClaims,
    /// The UI page to go to.
    pub next: String,
}

/// A client made from the discovery document: authorization endpoint known, token
/// endpoint maybe.
type FlowClient =
    CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>;

/// `openidconnect`'s HTTP requests, sent with lintel's reqwest. A type of our own (not a
/// closure): its boxed future is `Send` for every lifetime, as axum's handlers need.
struct FlowHttp(reqwest::Client);

impl<'c> openidconnect::AsyncHttpClient<'c> for FlowHttp {
    type Error = reqwest::Error;
    type Future = Pin<Box<dyn Future<Output = Result<openidconnect::HttpResponse, reqwest::Error>> + Send + 'c>>;

    fn call(&'c self, request: openidconnect::HttpRequest) -> Self::Future {
        Box::pin(async move {
            let response = self.0.execute(request.try_into()?).await?;
            let (status, headers) = (response.status(), response.headers().clone());
            let mut answer = openidconnect::HttpResponse::new(response.bytes().await?.to_vec());
            *answer.status_mut() = status;
            *answer.headers_mut() = headers;
            Ok(answer)
        })
    }
}

/// An error with its causes (the crate's say only "Request failed" themselves).
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

fn state_digest(state: &str) -> String {
    hex::encode(crate::secrets::digest(state))
}

fn micros_ago(d: Duration) -> i64 {
    crate::decide::now_micros() - i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// The role of an active person the directory marks as an operator of the web UI:
/// `true` (an admin), a role's name, or `role@site` for a role limited to one site (an
/// owner holds everywhere, so `owner@…` lets nobody in).
pub fn operator_role(person: &Person) -> Option<RoleAt> {
    if person.status != PersonStatus::Active {
        return None;
    }
    match person.attributes.get(OPERATOR_ATTRIBUTE)? {
        serde_json::Value::Bool(true) => Some(Role::Admin.into()),
        serde_json::Value::String(name) => match name.split_once('@') {
            None => Role::parse(name).map(RoleAt::everywhere),
            Some((role, site)) => match Role::parse(role)? {
                Role::Owner => None,
                role => crate::validate::id("site", site).ok().map(|()| RoleAt { role, site: Some(site.to_owned()) }),
            },
        },
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
        let flow_http = FlowHttp(
            reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("a client with these settings always builds"),
        );
        Self {
            config,
            http,
            flow_http,
            jwks: tokio::sync::Mutex::new(None),
            provider: tokio::sync::Mutex::new(None),
            directory,
        }
    }

    /// The issuer's discovery document (cached for an hour).
    async fn provider(&self) -> Result<CoreProviderMetadata, SignInError> {
        let mut cached = self.provider.lock().await;
        if let Some((metadata, at)) = cached.as_ref()
            && at.elapsed() < DISCOVERY_FRESH
        {
            return Ok(metadata.clone());
        }
        let issuer = IssuerUrl::new(self.config.issuer.clone()).map_err(|e| SignInError::Unreachable(e.to_string()))?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.flow_http)
            .await
            .map_err(|e| SignInError::Unreachable(format!("discovery: {}", with_sources(&e))))?;
        *cached = Some((metadata.clone(), Instant::now()));
        Ok(metadata)
    }

    /// The client at the issuer, sending the browser back to `redirect_uri`.
    async fn client(&self, redirect_uri: &str) -> Result<FlowClient, SignInError> {
        let metadata = self.provider().await?;
        // client_secret_basic is the default (OpenID Connect Core 9); an issuer that
        // names only client_secret_post gets the secret in the form.
        let post_only = metadata.token_endpoint_auth_methods_supported().is_some_and(|methods| {
            methods.contains(&CoreClientAuthMethod::ClientSecretPost)
                && !methods.contains(&CoreClientAuthMethod::ClientSecretBasic)
        });
        let redirect =
            RedirectUrl::new(redirect_uri.to_owned()).map_err(|e| SignInError::Unreachable(e.to_string()))?;
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.config.audience.clone()),
            self.config.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(redirect);
        Ok(if post_only { client.set_auth_type(AuthType::RequestBody) } else { client })
    }

    /// Starts a web UI sign-in: the issuer's authorization URL (code flow, PKCE S256) and
    /// the state, kept with its nonce and verifier for [`SIGN_IN_FOR`].
    pub async fn begin(&self, redirect_uri: &str, next: &str, from: &str) -> Result<Authorization, SignInError> {
        let client = self.client(redirect_uri).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge)
            .url();
        let sign_in = OidcSignIn {
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
            redirect_uri: redirect_uri.to_owned(),
            next: next.to_owned(),
            created_at: crate::decide::now_micros(),
        };
        let store = &self.directory.store;
        let kept = store
            .create_oidc_sign_in(
                &state_digest(state.secret()),
                &sign_in,
                from,
                micros_ago(SIGN_IN_FOR),
                (MAX_SIGN_INS, MAX_SIGN_INS_PER_CLIENT),
            )
            .await
            .map_err(ServiceError::from)?;
        if !kept {
            return Err(SignInError::TooMany);
        }
        Ok(Authorization { url: url.to_string(), state: state.secret().clone() })
    }

    /// Forgets a sign-in the issuer ended without a code (the user said no).
    pub async fn abandon(&self, state: &str) -> Result<(), SignInError> {
        let store = &self.directory.store;
        store.take_oidc_sign_in(&state_digest(state), 0).await.map_err(ServiceError::from)?;
        Ok(())
    }

    /// Finishes a web UI sign-in: takes its state (once), redeems the code with the PKCE
    /// verifier (and the client secret, if any) and verifies the ID token, nonce included.
    pub async fn finish(&self, state: &str, code: &str) -> Result<SignedIn, SignInError> {
        let store = &self.directory.store;
        let sign_in = store
            .take_oidc_sign_in(&state_digest(state), micros_ago(SIGN_IN_FOR))
            .await
            .map_err(ServiceError::from)?
            .ok_or(SignInError::UnknownState)?;
        let client = self.client(&sign_in.redirect_uri).await?;
        let request = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| SignInError::Unreachable(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(sign_in.pkce_verifier));
        let response = request.request_async(&self.flow_http).await.map_err(|e| match e {
            openidconnect::RequestTokenError::ServerResponse(refusal) => SignInError::Refused(refusal.to_string()),
            openidconnect::RequestTokenError::Request(e) => SignInError::Unreachable(format!("token endpoint: {e}")),
            // Not the parser's details: they may quote the answer, which holds tokens.
            other => SignInError::Unreachable(format!("token endpoint: {other}")),
        })?;
        let token = response.id_token().ok_or_else(|| SignInError::BadToken("no id_token in the answer".into()))?;
        let claims = self.verify(&token.to_string()).await.map_err(|e| match e {
            ServiceError::Unauthorized(why) => SignInError::BadToken(why),
            // The issuer's keys could not be fetched.
            other => SignInError::Unreachable(other.to_string()),
        })?;
        let same = |a: &str, b: &str| digests_equal(&crate::secrets::digest(a), &crate::secrets::digest(b));
        if !claims.nonce.as_deref().is_some_and(|n| same(n, &sign_in.nonce)) {
            return Err(SignInError::BadToken("the nonce is not this sign-in's".into()));
        }
        Ok(SignedIn { claims, next: sign_in.next })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operators_role_may_be_limited_to_a_site() {
        let person = |value: serde_json::Value| {
            let mut p: Person = serde_json::from_value(serde_json::json!({
                "id": "olga", "name": "Olga", "email": null, "phone": null, "email_verified": false,
                "phone_verified": false, "external_ids": {}, "status": "active", "skills": [],
                "attributes": {OPERATOR_ATTRIBUTE: value}, "groups": [],
                "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"
            }))
            .expect("a person");
            p.status = PersonStatus::Active;
            p
        };
        let north = |role| Some(RoleAt { role, site: Some("north".to_owned()) });
        assert_eq!(operator_role(&person(true.into())), Some(Role::Admin.into()));
        assert_eq!(operator_role(&person("viewer".into())), Some(Role::Viewer.into()));
        assert_eq!(operator_role(&person("front_desk@north".into())), north(Role::FrontDesk));
        assert_eq!(operator_role(&person("owner@north".into())), None, "an owner holds everywhere");
        assert_eq!(operator_role(&person("admin@".into())), None);
        assert_eq!(operator_role(&person("root@north".into())), None);
        let mut suspended = person("admin@north".into());
        suspended.status = PersonStatus::Suspended;
        assert_eq!(operator_role(&suspended), None);
    }
}
