//! Signing in to the UI through the `[oidc]` issuer: OpenID Connect's implicit flow with
//! `response_type=id_token` and `response_mode=form_post`, `client_id` = the configured
//! audience, the authorization endpoint from the issuer's discovery document.
//!
//! `state` is single use, expires after ten minutes and is bound to the browser by a
//! cookie; the ID token is verified against the issuer's JWKS (signature, issuer,
//! audience, times) and must carry the `nonce` lintel sent.
//!
//! Only operators get in: a person in the directory, active, with the attribute
//! `"ui_operator": true` (which only an administrator can set), found by the token's
//! subject (`external_ids.oidc`) or, when the issuer says the address is verified, by the
//! token's email ([`lintel_service::integrations::oidc::Oidc::operator`]). Signing in
//! here never creates a person.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use lintel_core::Digest;
use lintel_core::credential::digests_equal;
use lintel_service::integrations::oidc::OidcConfig;
use lintel_service::secrets;
use serde::Deserialize;

use super::session::{self, Who};
use super::{Ui, UiError, UiResult, html};

const STATE_COOKIE: &str = "lintel_oidc";
/// How long a sign-in at the issuer may take.
const PENDING_FOR: Duration = Duration::from_secs(600);
/// How long the discovered authorization endpoint is used before it is fetched again.
const DISCOVERY_FRESH: Duration = Duration::from_secs(3600);
const MAX_PENDING: usize = 10_000;

struct Pending {
    nonce: String,
    next: String,
    created: Instant,
}

pub struct OidcLogin {
    config: Option<OidcConfig>,
    http: reqwest::Client,
    endpoint: tokio::sync::Mutex<Option<(String, Instant)>>,
    /// Sign-ins under way, by the SHA-256 of their `state`.
    pending: Mutex<HashMap<Digest, Pending>>,
}

#[derive(Deserialize)]
struct Discovery {
    authorization_endpoint: String,
}

impl OidcLogin {
    pub fn new(config: Option<OidcConfig>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client with these settings always builds");
        Self { config, http, endpoint: tokio::sync::Mutex::new(None), pending: Mutex::new(HashMap::new()) }
    }

    pub fn configured(&self) -> bool {
        self.config.is_some()
    }

    async fn authorization_endpoint(&self, config: &OidcConfig) -> Result<String, String> {
        let mut cached = self.endpoint.lock().await;
        if let Some((url, at)) = cached.as_ref()
            && at.elapsed() < DISCOVERY_FRESH
        {
            return Ok(url.clone());
        }
        let url = format!("{}/.well-known/openid-configuration", config.issuer.trim_end_matches('/'));
        let response = self.http.get(&url).send().await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        let doc: Discovery = response.json().await.map_err(|e| e.to_string())?;
        let endpoint = doc.authorization_endpoint;
        if !(endpoint.starts_with("https://") || endpoint.starts_with("http://")) {
            return Err("the authorization endpoint is not an http(s) URL".into());
        }
        *cached = Some((endpoint.clone(), Instant::now()));
        Ok(endpoint)
    }

    fn remember(&self, state: &str, pending: Pending) {
        let mut map = self.pending.lock().expect("pending lock");
        map.retain(|_, p| p.created.elapsed() < PENDING_FOR);
        if map.len() < MAX_PENDING {
            map.insert(secrets::digest(state), pending);
        }
    }

    fn take(&self, state: &str) -> Option<Pending> {
        let pending = self.pending.lock().expect("pending lock").remove(&secrets::digest(state))?;
        (pending.created.elapsed() < PENDING_FOR).then_some(pending)
    }
}

/// Where the issuer sends the browser back to.
fn redirect_uri(ui: &Ui, headers: &HeaderMap) -> String {
    let base = match &ui.app.inner.services.config.public_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
            format!("http://{host}")
        }
    };
    format!("{base}/ui/login/oidc")
}

#[derive(Deserialize)]
pub struct StartQuery {
    next: Option<String>,
}

/// `GET /ui/login/oidc`: off to the issuer.
pub async fn start(State(ui): State<Ui>, headers: HeaderMap, Query(q): Query<StartQuery>) -> UiResult {
    let Some(config) = &ui.oidc.config else {
        return Err(UiError::not_found("OpenID Connect is not configured here"));
    };
    let endpoint = ui.oidc.authorization_endpoint(config).await.map_err(|e| {
        tracing::warn!(error = %e, "the OpenID issuer's discovery document could not be read");
        UiError::new(StatusCode::BAD_GATEWAY, "The identity provider could not be reached. Try again later.")
    })?;
    let state = secrets::generate("");
    let nonce = secrets::generate("");
    ui.oidc.remember(
        &state,
        Pending { nonce: nonce.clone(), next: session::safe_next(q.next.as_deref()), created: Instant::now() },
    );
    let query = serde_urlencoded::to_string([
        ("response_type", "id_token"),
        ("response_mode", "form_post"),
        ("client_id", config.audience.as_str()),
        ("redirect_uri", redirect_uri(&ui, &headers).as_str()),
        ("scope", "openid email profile"),
        ("state", state.as_str()),
        ("nonce", nonce.as_str()),
    ])
    .expect("strings always encode");
    let separator = if endpoint.contains('?') { '&' } else { '?' };
    let mut response = Redirect::to(&format!("{endpoint}{separator}{query}")).into_response();
    // The issuer posts back from its own site: only a SameSite=None cookie comes along.
    let cookie = format!(
        "{STATE_COOKIE}={state}; Path=/ui/login/oidc; HttpOnly; Secure; SameSite=None; Max-Age={}",
        PENDING_FOR.as_secs()
    );
    response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("state is url-safe"));
    Ok(response)
}

#[derive(Deserialize)]
pub struct Callback {
    id_token: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "continue.html")]
struct Continue {
    next: String,
}

fn failed(why: &str) -> UiResult {
    tracing::warn!(why, "an OpenID sign-in to the web UI failed");
    Ok(Redirect::to("/ui/login?error=oidc").into_response())
}

/// `POST /ui/login/oidc`: the issuer's answer.
pub async fn callback(State(ui): State<Ui>, headers: HeaderMap, Form(form): Form<Callback>) -> UiResult {
    let Some(oidc) = ui.app.services().oidc.as_ref() else {
        return Err(UiError::not_found("OpenID Connect is not configured here"));
    };
    let Some(state) = form.state.as_deref() else { return failed("no state") };
    let bound = session::cookie(&headers, STATE_COOKIE)
        .is_some_and(|c| digests_equal(&secrets::digest(c), &secrets::digest(state)));
    if !bound {
        return failed("the state is not this browser's");
    }
    let Some(pending) = ui.oidc.take(state) else { return failed("unknown or expired state") };
    if let Some(error) = &form.error {
        tracing::info!(error = %error.chars().take(100).collect::<String>(), "the OpenID issuer refused the sign-in");
        return failed("the issuer answered with an error");
    }
    let Some(token) = form.id_token.as_deref() else { return failed("no id_token") };
    let claims = match oidc.verify(token).await {
        Ok(claims) => claims,
        Err(e) => {
            tracing::info!(error = %e, "an ID token for the web UI was refused");
            return failed("the ID token did not verify");
        }
    };
    // The token verified, so its payload is the issuer's: its nonce must be ours.
    let nonce_ok =
        token_nonce(token).is_some_and(|n| digests_equal(&secrets::digest(&n), &secrets::digest(&pending.nonce)));
    if !nonce_ok {
        return failed("the nonce does not match");
    }
    let person = match oidc.operator(&claims).await {
        Ok(Some(person)) => person,
        Ok(None) => {
            tracing::warn!(sub = %claims.sub, "an OpenID user who is not an operator tried to sign in to the web UI");
            return Ok(Redirect::to("/ui/login?error=not_operator").into_response());
        }
        Err(e) => {
            tracing::warn!(error = %e, "the directory could not be asked about an OpenID sign-in");
            return failed("the directory could not be asked");
        }
    };
    tracing::info!(person = %person.id, "signed in to the web UI through OpenID");
    let id = ui.app.services().sessions.create(Who::Operator { person_id: person.id, name: person.name }).await?;
    // A page of our own moves on to the UI: the redirect chain began at the issuer's
    // site, and a SameSite=Strict cookie would not come along on it.
    let mut response = html(&Continue { next: pending.next })?;
    let headers = response.headers_mut();
    headers.append(header::SET_COOKIE, session::session_cookie(&ui, &id));
    headers.append(
        header::SET_COOKIE,
        HeaderValue::from_static("lintel_oidc=; Path=/ui/login/oidc; HttpOnly; Secure; SameSite=None; Max-Age=0"),
    );
    Ok(response)
}

fn token_nonce(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get("nonce")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nonce_is_read_from_the_payload() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"1","nonce":"n-123"}"#);
        assert_eq!(token_nonce(&format!("eyJh.{payload}.sig")).as_deref(), Some("n-123"));
        assert_eq!(token_nonce("eyJh.bm9wZQ.sig"), None);
    }

    #[test]
    fn pending_sign_ins_are_single_use() {
        let login = OidcLogin::new(None);
        login.remember("s1", Pending { nonce: "n".into(), next: "/ui/".into(), created: Instant::now() });
        assert!(login.take("s2").is_none());
        assert_eq!(login.take("s1").map(|p| p.nonce).as_deref(), Some("n"));
        assert!(login.take("s1").is_none());
    }
}
