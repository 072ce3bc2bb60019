//! Sessions of the web UI: sign-in with an admin token, a random session id in an
//! HttpOnly, SameSite=Strict cookie, server-side state in memory with an idle and an
//! absolute expiry, and a CSRF token per session that every state-changing request must
//! carry (form field `_csrf` or header `X-CSRF-Token`), compared in constant time.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use askama::Template;
use axum::Form;
use axum::body::Body;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use lintel_core::Digest;
use lintel_core::credential::digests_equal;
use serde::Deserialize;

use super::{Ui, UiError, UiResult, html, is_htmx};
use lintel_service::decide::Source;
use lintel_service::secrets;

pub const COOKIE: &str = "lintel_ui";
/// A session unused for this long ends.
const IDLE: Duration = Duration::from_secs(12 * 3600);
/// And every session ends after this long, used or not.
const LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// More sessions than this at once: the oldest go first.
const MAX_SESSIONS: usize = 10_000;
/// Largest form the CSRF check reads.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// Who a session belongs to.
#[derive(Clone)]
pub enum Who {
    /// Signed in with an admin token. The token is kept (in memory only) so that the
    /// session ends as soon as the token is revoked.
    Token { name: String, token: String },
    /// Signed in through the OpenID issuer as a person the directory marks as operator.
    Operator { person_id: String, name: String },
}

impl Who {
    /// How the session is named in the event log and on the page.
    pub fn label(&self) -> String {
        match self {
            Who::Token { name, .. } => format!("admin token {name:?}"),
            Who::Operator { person_id, .. } => format!("operator {person_id}"),
        }
    }

    pub fn display(&self) -> String {
        match self {
            Who::Token { name, .. } => format!("admin token “{name}”"),
            Who::Operator { name, .. } => name.clone(),
        }
    }
}

struct Session {
    csrf: String,
    who: Who,
    created: Instant,
    seen: Instant,
}

/// What a signed-in request knows about its session (in the request's extensions).
#[derive(Clone)]
pub struct Signed {
    pub csrf: String,
    pub who: Who,
}

/// Sessions by the SHA-256 of their id (so the map is never searched with the secret).
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<Digest, Session>>,
}

impl Sessions {
    /// A new session; its id goes into the cookie.
    pub fn create(&self, who: Who) -> String {
        let id = secrets::generate("");
        let now = Instant::now();
        let mut map = self.map.lock().expect("sessions lock");
        map.retain(|_, s| alive(s, now));
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.seen).map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        map.insert(secrets::digest(&id), Session { csrf: secrets::generate(""), who, created: now, seen: now });
        id
    }

    /// The live session with this id, marked as used now.
    fn touch(&self, id: &str) -> Option<Signed> {
        let key = secrets::digest(id);
        let now = Instant::now();
        let mut map = self.map.lock().expect("sessions lock");
        let session = map.get_mut(&key)?;
        if !alive(session, now) {
            map.remove(&key);
            return None;
        }
        session.seen = now;
        Some(Signed { csrf: session.csrf.clone(), who: session.who.clone() })
    }

    pub fn end(&self, id: &str) {
        self.map.lock().expect("sessions lock").remove(&secrets::digest(id));
    }
}

fn alive(s: &Session, now: Instant) -> bool {
    now.duration_since(s.seen) < IDLE && now.duration_since(s.created) < LIFETIME
}

/// The value of a cookie in the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

pub fn session_cookie(ui: &Ui, id: &str) -> HeaderValue {
    let secure = if ui.secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict{secure}"))
        .expect("a session id is a valid header value")
}

fn cleared_cookie() -> HeaderValue {
    HeaderValue::from_static("lintel_ui=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// A place to go back to after signing in: only a path of the UI.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/ui/")
                && !n.starts_with("/ui/login")
                && !n.contains("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control) =>
        {
            n.to_owned()
        }
        _ => "/ui/".to_owned(),
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    digests_equal(&secrets::digest(a), &secrets::digest(b))
}

/// Whether an operator's session may go on: they are still an active operator.
async fn still_operator(ui: &Ui, person_id: &str) -> bool {
    ui.app.store().person(person_id).await.is_ok_and(|p| lintel_service::integrations::oidc::is_operator(&p))
}

/// Lets only signed-in requests through; checks the CSRF token of every request that
/// is not a GET; puts [`Signed`] into the request for the handlers.
pub async fn guard(State(ui): State<Ui>, request: Request, next: Next) -> Response {
    let id = cookie(request.headers(), COOKIE).map(str::to_owned);
    let mut signed = id.as_deref().and_then(|id| ui.sessions.touch(id));
    // A session lasts only as long as what it was opened with.
    let still_valid = match signed.as_ref().map(|s| &s.who) {
        Some(Who::Token { token, .. }) => ui.app.services().tokens.check(token).is_some(),
        Some(Who::Operator { person_id, .. }) => still_operator(&ui, person_id).await,
        None => false,
    };
    if !still_valid {
        if let (Some(id), Some(_)) = (&id, &signed) {
            ui.sessions.end(id);
        }
        signed = None;
    }
    let Some(signed) = signed else { return to_login(&request) };
    let request = if request.method() == Method::GET || request.method() == Method::HEAD {
        request
    } else {
        match check_csrf(request, &signed.csrf).await {
            Ok(request) => request,
            Err(response) => return response,
        }
    };
    let mut request = request;
    request.extensions_mut().insert(signed);
    next.run(request).await
}

async fn check_csrf(request: Request, expected: &str) -> Result<Request, Response> {
    let refused = || {
        UiError::new(
            StatusCode::FORBIDDEN,
            "This form has expired or did not come from lintel. Reload the page and try again.",
        )
        .into_response()
    };
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| UiError::new(StatusCode::PAYLOAD_TOO_LARGE, "the form is too large").into_response())?;
    let from_header = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let presented = from_header.or_else(|| {
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
            .ok()?
            .into_iter()
            .find(|(k, _)| k == "_csrf")
            .map(|(_, v)| v)
    });
    match presented {
        Some(token) if constant_time_eq(&token, expected) => Ok(Request::from_parts(parts, Body::from(bytes))),
        _ => Err(refused()),
    }
}

fn to_login(request: &Request) -> Response {
    if is_htmx(request.headers()) {
        // htmx follows this with a full page load.
        return ([("hx-redirect", "/ui/login")], "").into_response();
    }
    let wants_stream =
        request.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("event-stream"));
    if request.method() != Method::GET || wants_stream {
        return UiError::new(StatusCode::UNAUTHORIZED, "Your session has ended. Sign in again.").into_response();
    }
    let path = request.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/ui/");
    let next: String = url_encode(path);
    Redirect::to(&format!("/ui/login?next={next}")).into_response()
}

fn url_encode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)]).map(|e| e.trim_start_matches('=').to_owned()).unwrap_or_default()
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    next: String,
    error: Option<String>,
    oidc: bool,
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
    error: Option<String>,
}

pub async fn login_page(State(ui): State<Ui>, Query(q): Query<NextQuery>) -> UiResult {
    let error = match q.error.as_deref() {
        Some("oidc") => Some("Signing in with OpenID did not work. Try again, or use an admin token.".to_owned()),
        Some("not_operator") => Some(
            "You signed in, but you are not an operator of this lintel. An administrator can mark you as one."
                .to_owned(),
        ),
        _ => None,
    };
    html(&LoginPage { next: safe_next(q.next.as_deref()), error, oidc: ui.oidc.configured() })
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

pub async fn login(
    State(ui): State<Ui>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    Form(form): Form<LoginForm>,
) -> UiResult {
    let source = match peer {
        Some(axum::Extension(ConnectInfo(addr))) => Source::Client(format!("ui-login:{}", addr.ip())),
        None => Source::Client("ui-login".to_owned()),
    };
    let now = Instant::now();
    let next = safe_next(form.next.as_deref());
    let oidc = ui.oidc.configured();
    if let Some(lock) = ui.login_failures.locked(&source, now) {
        let error = format!("Too many wrong tokens from here. Try again in {} s.", lock.wait.as_secs().max(1));
        return html(&LoginPage { next, error: Some(error), oidc });
    }
    let token = form.token.trim();
    let Some(name) = (!token.is_empty() && token.len() <= 256).then(|| ui.app.services().tokens.check(token)).flatten()
    else {
        ui.login_failures.failure(&source, now);
        return html(&LoginPage { next, error: Some("That is not a valid admin token.".into()), oidc });
    };
    tracing::info!(token = %name, "signed in to the web UI");
    let id = ui.sessions.create(Who::Token { name, token: token.to_owned() });
    let mut response = Redirect::to(&next).into_response();
    response.headers_mut().insert(header::SET_COOKIE, session_cookie(&ui, &id));
    Ok(response)
}

pub async fn logout(State(ui): State<Ui>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie(&headers, COOKIE) {
        ui.sessions.end(id);
    }
    let mut response = Redirect::to("/ui/login").into_response();
    response.headers_mut().insert(header::SET_COOKIE, cleared_cookie());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_found_by_their_id_only() {
        let sessions = Sessions::default();
        let id = sessions.create(Who::Operator { person_id: "ann".into(), name: "Ann".into() });
        let signed = sessions.touch(&id).expect("the session is alive");
        assert_eq!(signed.who.label(), "operator ann");
        assert!(sessions.touch("not-the-id").is_none());
        sessions.end(&id);
        assert!(sessions.touch(&id).is_none());
    }

    #[test]
    fn idle_and_old_sessions_expire() {
        let now = Instant::now();
        let fresh = Session {
            csrf: "x".into(),
            who: Who::Operator { person_id: "a".into(), name: "A".into() },
            created: now,
            seen: now,
        };
        assert!(alive(&fresh, now));
        assert!(!alive(&fresh, now + IDLE));
        let busy = Session { seen: now + LIFETIME - Duration::from_secs(1), ..fresh };
        assert!(!alive(&busy, now + LIFETIME));
    }

    #[test]
    fn next_stays_inside_the_ui() {
        assert_eq!(safe_next(Some("/ui/people/ann?x=1")), "/ui/people/ann?x=1");
        for bad in
            ["https://evil.example/", "//evil.example/ui/", "/ui//evil", "/api/v1/people", "/ui/login", "/ui/\\x"]
        {
            assert_eq!(safe_next(Some(bad)), "/ui/", "{bad}");
        }
        assert_eq!(safe_next(None), "/ui/");
    }

    #[test]
    fn cookies_are_read_by_name() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; lintel_ui=abc; b=2"));
        assert_eq!(cookie(&headers, COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "c"), None);
        assert!(constant_time_eq("abc", "abc") && !constant_time_eq("abc", "abd"));
    }
}
