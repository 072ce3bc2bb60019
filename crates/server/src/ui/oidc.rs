//! Signing in to the UI through the `[oidc]` issuer: OpenID Connect's authorization-code
//! flow with PKCE (S256), `client_id` = the configured audience, the endpoints from the
//! issuer's discovery document ([`lintel_service::integrations::oidc::Oidc::begin`] and
//! `finish`). One route, `GET /ui/login/oidc`: without `state` it starts a sign-in, with
//! it it is the issuer's answer (the redirect URI to register).
//!
//! `state`, `nonce` and the PKCE verifier are kept in the store (any node may receive the
//! answer), for ten minutes, and taken once; `state` is also bound to the browser by a
//! cookie, so nobody can finish a sign-in in someone else's browser.
//!
//! Only operators get in: a person in the directory, active, with the attribute
//! `ui_operator` (which only an owner can set), found by the token's subject
//! (`external_ids.oidc`) or, when the issuer says the address is verified, by the token's
//! email ([`lintel_service::integrations::oidc::Oidc::operator`]). Signing in here never
//! creates a person. Failed answers count against the client's address like wrong tokens
//! at the sign-in form.

use std::net::SocketAddr;

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect};
use lintel_core::credential::digests_equal;
use lintel_service::decide::Source;
use lintel_service::integrations::oidc::{SIGN_IN_FOR, SignInError};
use lintel_service::secrets;
use serde::Deserialize;

use super::session::{self, Who};
use super::{Ui, UiError, UiResult, html};

const STATE_COOKIE: &str = "lintel_oidc";

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

/// The cookie that binds a sign-in's state to the browser. The issuer's answer is a
/// top-level GET navigation from its site: SameSite=Lax cookies come along on it.
fn state_cookie(ui: &Ui, state: &str, max_age: u64) -> HeaderValue {
    let secure = if ui.secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{STATE_COOKIE}={state}; Path=/ui/login/oidc; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .expect("a state is url-safe")
}

/// The query of `GET /ui/login/oidc`: `next` to start, the issuer's answer otherwise.
#[derive(Deserialize)]
pub struct OidcQuery {
    next: Option<String>,
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
}

/// `GET /ui/login/oidc`: off to the issuer, or back from it.
pub async fn login(
    State(ui): State<Ui>,
    headers: HeaderMap,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    query: Result<Query<OidcQuery>, QueryRejection>,
) -> UiResult {
    if ui.app.services().oidc.is_none() {
        return Err(UiError::not_found("OpenID Connect is not configured here"));
    }
    // A mangled answer (a parameter twice, say) gets the UI's page, not axum's text.
    let Ok(Query(q)) = query else { return Err(UiError::new(StatusCode::BAD_REQUEST, START_AGAIN)) };
    let source = match peer {
        Some(axum::Extension(ConnectInfo(addr))) => Source::Client(format!("ui-login:{}", addr.ip())),
        None => Source::Client("ui-login".to_owned()),
    };
    let now = lintel_service::decide::now_micros();
    if let Some(lock) = ui.login_failures.locked(&source, now).await {
        return Err(UiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("Too many failed sign-ins from here. Try again in {} s.", lock.wait.as_secs().max(1)),
        ));
    }
    if q.state.is_none() && q.code.is_none() && q.error.is_none() {
        return start(ui, &headers, q.next.as_deref(), &source.to_string()).await;
    }
    match callback(&ui, &headers, q).await {
        Ok(response) => Ok(response),
        Err(failure) => {
            tracing::warn!(client = %source, why = %failure.why, "an OpenID sign-in to the web UI failed");
            if failure.counts {
                ui.login_failures.failure(&source, now).await;
            }
            let mut page = failure.page.into_response();
            page.headers_mut().append(header::SET_COOKIE, state_cookie(&ui, "", 0));
            Ok(page)
        }
    }
}

async fn start(ui: Ui, headers: &HeaderMap, next: Option<&str>, client: &str) -> UiResult {
    let oidc = ui.app.services().oidc.as_ref().expect("checked by the caller");
    let authorization =
        oidc.begin(&redirect_uri(&ui, headers), &session::safe_next(next), client).await.map_err(|e| {
            tracing::warn!(error = %e, "an OpenID sign-in to the web UI could not start");
            match e {
                SignInError::TooMany => too_many(),
                SignInError::Service(e) => e.into(),
                _ => UiError::new(
                    StatusCode::BAD_GATEWAY,
                    "The identity provider could not be reached. Try again later.",
                ),
            }
        })?;
    let mut response = Redirect::to(&authorization.url).into_response();
    response.headers_mut().insert(header::SET_COOKIE, state_cookie(&ui, &authorization.state, SIGN_IN_FOR.as_secs()));
    Ok(response)
}

fn too_many() -> UiError {
    UiError::new(StatusCode::TOO_MANY_REQUESTS, "Too many sign-ins are under way. Try again later.")
}

/// A failed answer: the page shown, what the log says, whether it counts against the
/// client (a failure of lintel's or of the issuer's does not).
struct Failure {
    page: UiError,
    why: String,
    counts: bool,
}

impl Failure {
    fn client(status: StatusCode, message: &str, why: impl Into<String>) -> Self {
        Self { page: UiError::new(status, message), why: why.into(), counts: true }
    }
}

const START_AGAIN: &str =
    "This sign-in has expired, was used already or was not started in this browser. Sign in again.";

#[derive(Template)]
#[template(path = "continue.html")]
struct Continue {
    next: String,
}

/// The issuer's answer: `code` and `state`, or `error` and `state`.
async fn callback(ui: &Ui, headers: &HeaderMap, q: OidcQuery) -> Result<axum::response::Response, Failure> {
    let oidc = ui.app.services().oidc.as_ref().expect("checked by the caller");
    let Some(state) = q.state.as_deref() else {
        return Err(Failure::client(StatusCode::BAD_REQUEST, START_AGAIN, "no state"));
    };
    let bound = session::cookie(headers, STATE_COOKIE)
        .is_some_and(|c| digests_equal(&secrets::digest(c), &secrets::digest(state)));
    if !bound {
        return Err(Failure::client(StatusCode::BAD_REQUEST, START_AGAIN, "the state is not this browser's"));
    }
    if let Some(error) = &q.error {
        // The state is spent either way.
        if let Err(e) = oidc.abandon(state).await {
            tracing::warn!(error = %e, "an abandoned OpenID sign-in was not forgotten");
        }
        let error: String = error.chars().take(100).filter(|c| c.is_ascii_graphic()).collect();
        let failure = Failure::client(
            StatusCode::FORBIDDEN,
            "The identity provider did not sign you in. Try again, or use an operator token.",
            format!("the issuer answered {error}"),
        );
        return Err(Failure { counts: false, ..failure });
    }
    let Some(code) = q.code.as_deref() else {
        return Err(Failure::client(StatusCode::BAD_REQUEST, START_AGAIN, "no code"));
    };
    let signed_in = oidc.finish(state, code).await.map_err(|e| {
        let why = e.to_string();
        match e {
            SignInError::UnknownState => Failure::client(StatusCode::BAD_REQUEST, START_AGAIN, why),
            SignInError::Refused(_) | SignInError::BadToken(_) => Failure::client(
                StatusCode::BAD_REQUEST,
                "The identity provider's answer was not accepted. Sign in again.",
                why,
            ),
            SignInError::TooMany => Failure { page: too_many(), why, counts: false },
            SignInError::Unreachable(_) => Failure {
                page: UiError::new(
                    StatusCode::BAD_GATEWAY,
                    "The identity provider could not be reached. Try again later.",
                ),
                why,
                counts: false,
            },
            SignInError::Service(e) => Failure { page: e.into(), why, counts: false },
        }
    })?;
    let claims = signed_in.claims;
    let person = match oidc.operator(&claims).await {
        Ok(Some(person)) => person,
        Ok(None) => {
            tracing::warn!(sub = %claims.sub, "an OpenID user who is not an operator tried to sign in to the web UI");
            let mut response = Redirect::to("/ui/login?error=not_operator").into_response();
            response.headers_mut().append(header::SET_COOKIE, state_cookie(ui, "", 0));
            return Ok(response);
        }
        Err(e) => {
            return Err(Failure {
                why: format!("the directory could not be asked: {e}"),
                page: e.into(),
                counts: false,
            });
        }
    };
    tracing::info!(person = %person.id, "signed in to the web UI through OpenID");
    let who = Who::Operator { person_id: person.id, name: person.name };
    let id = ui.app.services().sessions.create(who).await.map_err(|e| Failure {
        why: format!("no session: {e}"),
        page: e.into(),
        counts: false,
    })?;
    // A page of our own moves on to the UI: the redirect chain began at the issuer's
    // site, and a SameSite=Strict cookie would not come along on it.
    let mut response = html(&Continue { next: signed_in.next }).map_err(|page| Failure {
        page,
        why: "the page could not be rendered".into(),
        counts: false,
    })?;
    let headers = response.headers_mut();
    headers.append(header::SET_COOKIE, session::session_cookie(ui, &id));
    headers.append(header::SET_COOKIE, state_cookie(ui, "", 0));
    Ok(response)
}
