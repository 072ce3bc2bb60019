//! Signing in to the web UI: with an operator token (or through OpenID, see `oidc.rs`), a
//! random session id in an HttpOnly, SameSite=Strict cookie, the session itself kept by
//! the service (in the store, so it works on every node and outlives a restart), and a
//! CSRF token per session that every state-changing request must carry (form field
//! `_csrf` or header `X-CSRF-Token`), compared in constant time.

use std::net::SocketAddr;

use askama::Template;
use axum::Form;
use axum::body::Body;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use lintel_core::credential::digests_equal;
use lintel_core::{Action, Role};
use serde::Deserialize;

use super::{Ui, UiError, UiResult, html, is_htmx};
use lintel_service::decide::Source;
use lintel_service::secrets;
pub use lintel_service::sessions::Who;

pub const COOKIE: &str = "lintel_ui";
/// Largest form the CSRF check reads.
const MAX_FORM_BYTES: usize = 64 * 1024;
/// The one form that uploads a file: a people CSV to import.
pub(super) const UPLOAD_PATH: &str = "/ui/import";
pub(super) const MAX_UPLOAD_BYTES: usize = 16 * 1024 * 1024;

/// What a signed-in request knows about its session (in the request's extensions).
#[derive(Clone)]
pub struct Signed {
    pub csrf: String,
    pub who: Who,
    /// Their role now (a token's or an operator's may change while signed in).
    pub role: Role,
    /// The one site their role is limited to; `None` for every site.
    pub site: Option<String>,
}

impl Signed {
    /// Who the audit trail names for what they change, limited to their site if they are.
    pub fn actor(&self) -> lintel_service::Actor {
        self.who.actor().limited_to(self.site.clone())
    }

    /// Refuses what the role does not allow, with a 403 page.
    pub fn may(&self, action: Action) -> Result<(), UiError> {
        match self.role.may(action) {
            true => Ok(()),
            false => Err(UiError::new(
                StatusCode::FORBIDDEN,
                format!("Your role ({}) may not {}.", self.role, action.phrase()),
            )),
        }
    }
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

/// Lets only signed-in requests through; checks the CSRF token of every request that
/// is not a GET; puts [`Signed`] into the request for the handlers.
pub async fn guard(State(ui): State<Ui>, request: Request, next: Next) -> Response {
    let session = match cookie(request.headers(), COOKIE) {
        Some(id) => ui.app.services().sessions.open(id).await,
        None => Ok(None),
    };
    let signed = match session {
        Ok(Some(session)) => {
            Signed { csrf: session.csrf, who: session.who, role: session.role.role, site: session.role.site }
        }
        Ok(None) => return to_login(&request),
        Err(e) => return UiError::from(e).into_response(),
    };
    let action = needed(request.method(), request.uri().path(), request.uri().query().unwrap_or_default());
    if let Err(refused) = signed.may(action) {
        // A wall screen that opens the UI's front page is shown its display.
        if request.uri().path() == "/ui/" && signed.role.may(Action::ShowDisplay) {
            return Redirect::to("/ui/display").into_response();
        }
        return refused.into_response();
    }
    let request = match &signed.site {
        Some(site) => match keep_to_site(request, site) {
            Ok(request) => request,
            Err(refused) => return refused.into_response(),
        },
        None => request,
    };
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

/// What a request to the UI does, so that the guard lets through only the roles that may:
/// one table for every page and form.
fn needed(method: &Method, path: &str, query: &str) -> Action {
    let reading = method == Method::GET || method == Method::HEAD;
    match path {
        "/ui/display" | "/ui/logout" => Action::ShowDisplay,
        "/ui/live" if query.split('&').any(|pair| pair == "view=display") => Action::ShowDisplay,
        _ if path.starts_with("/ui/doors/") && path.ends_with("/open") => Action::OpenDoors,
        _ if path.starts_with("/ui/alarms/") && path.ends_with("/ack") => Action::OpenDoors,
        _ if reading => Action::Read,
        _ if path == "/ui/people" || path.starts_with("/ui/people/") || path == UPLOAD_PATH => Action::ManagePeople,
        _ if path.starts_with("/ui/groups/") && (path.ends_with("/add") || path.ends_with("/remove")) => {
            Action::ManagePeople
        }
        _ if path == "/ui/guests" || path.starts_with("/ui/guests/") => Action::ManagePeople,
        _ if path.starts_with("/ui/zones/") && path.ends_with("/forgive") => Action::ManagePeople,
        _ => Action::Configure,
    }
}

/// The pages and forms that keep to a site, which an operator limited to one may use (the
/// rest reach every site: webhooks, the CSV import).
fn keeps_to_a_site(path: &str) -> bool {
    const PAGES: [&str; 17] = [
        "/ui/",
        "/ui/lockdown",
        "/ui/emergency/reset",
        "/ui/people",
        "/ui/display",
        "/ui/logout",
        "/ui/live",
        "/ui/people.csv",
        "/ui/events.csv",
        "/ui/audit",
        "/ui/audit.csv",
        "/ui/attendance",
        "/ui/attendance.csv",
        "/ui/guests",
        "/ui/groups",
        "/ui/grants",
        "/ui/doors",
    ];
    const UNDER: [&str; 6] = ["/ui/people/", "/ui/groups/", "/ui/grants/", "/ui/doors/", "/ui/guests/", "/ui/alarms/"];
    PAGES.contains(&path) || UNDER.iter().any(|under| path.starts_with(under))
}

/// The pages that show one site when asked (`site=`): for an operator limited to a site,
/// always theirs.
const SITE_PAGES: [&str; 10] = [
    "/ui/",
    "/ui/lockdown",
    "/ui/display",
    "/ui/live",
    "/ui/doors",
    "/ui/events.csv",
    "/ui/audit",
    "/ui/audit.csv",
    "/ui/attendance",
    "/ui/attendance.csv",
];

/// Keeps an operator limited to `site` to it: refuses the pages that reach every site, and
/// makes the pages that show a site show theirs. (A door's page refuses another site's
/// door itself; their changes are kept to it by the service, which every form calls.)
fn keep_to_site(mut request: Request, site: &str) -> Result<Request, UiError> {
    let elsewhere = || UiError::new(StatusCode::FORBIDDEN, format!("Your role is limited to the site {site:?}."));
    let path = request.uri().path().to_owned();
    if !keeps_to_a_site(&path) {
        return Err(UiError::new(
            StatusCode::FORBIDDEN,
            format!("Your role is limited to the site {site:?}, and this page reaches every site."),
        ));
    }
    if SITE_PAGES.contains(&path.as_str()) {
        let query = request.uri().query().unwrap_or_default();
        let mut pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
        if pairs.iter().any(|(k, v)| k == "site" && !v.is_empty() && v != site) {
            return Err(elsewhere());
        }
        pairs.retain(|(k, _)| k != "site");
        pairs.push(("site".to_owned(), site.to_owned()));
        let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        let uri = format!("{path}?{query}").parse().map_err(|_| elsewhere())?;
        *request.uri_mut() = uri;
    }
    Ok(request)
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
    let limit = if parts.uri.path() == UPLOAD_PATH { MAX_UPLOAD_BYTES } else { MAX_FORM_BYTES };
    let bytes = axum::body::to_bytes(body, limit)
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
        Some("not_operator") => Some(
            "You signed in, but you are not an operator of this lintel. An administrator can mark you as one."
                .to_owned(),
        ),
        _ => None,
    };
    html(&LoginPage { next: safe_next(q.next.as_deref()), error, oidc: ui.app.services().oidc.is_some() })
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
    let now = lintel_service::decide::now_micros();
    let next = safe_next(form.next.as_deref());
    let oidc = ui.app.services().oidc.is_some();
    if let Some(lock) = ui.login_failures.locked(&source, now).await {
        let error = format!("Too many wrong tokens from here. Try again in {} s.", lock.wait.as_secs().max(1));
        return html(&LoginPage { next, error: Some(error), oidc });
    }
    let token = form.token.trim();
    let operator = (!token.is_empty() && token.len() <= 256).then(|| ui.app.services().tokens.operator(token));
    let Some((name, _)) = operator.flatten() else {
        tracing::warn!(client = %source, "a sign-in to the web UI with a wrong token");
        ui.login_failures.failure(&source, now).await;
        return html(&LoginPage { next, error: Some("That is not a valid operator token.".into()), oidc });
    };
    tracing::info!(token = %name, "signed in to the web UI");
    let id = ui.app.services().sessions.create(Who::token(name, token)).await?;
    let mut response = Redirect::to(&next).into_response();
    response.headers_mut().insert(header::SET_COOKIE, session_cookie(&ui, &id));
    Ok(response)
}

pub async fn logout(State(ui): State<Ui>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie(&headers, COOKIE)
        && let Err(e) = ui.app.services().sessions.end(id).await
    {
        tracing::warn!(error = %e, "a session was not ended");
    }
    let mut response = Redirect::to("/ui/login").into_response();
    response.headers_mut().insert(header::SET_COOKIE, cleared_cookie());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn every_page_and_form_names_what_it_does() {
        let (get, post) = (&Method::GET, &Method::POST);
        for (method, path, query, action) in [
            (get, "/ui/display", "", Action::ShowDisplay),
            (get, "/ui/live", "view=display", Action::ShowDisplay),
            (get, "/ui/live", "view=feed", Action::Read),
            (post, "/ui/logout", "", Action::ShowDisplay),
            (get, "/ui/", "", Action::Read),
            (get, "/ui/people/ann", "", Action::Read),
            (post, "/ui/people/ann/credentials", "", Action::ManagePeople),
            (post, "/ui/people/ann/credentials/c-1/revoke", "", Action::ManagePeople),
            (get, "/ui/doors/front/open", "", Action::OpenDoors),
            (post, "/ui/doors/front/open", "", Action::OpenDoors),
            (post, "/ui/alarms/alarm-1/ack", "", Action::OpenDoors),
            (get, "/ui/zones", "", Action::Read),
            (post, "/ui/zones/gym/forgive", "", Action::ManagePeople),
            (post, "/ui/zones", "", Action::Configure),
            (post, "/ui/webhooks", "", Action::Configure),
            (post, "/ui/guests", "", Action::ManagePeople),
            (post, "/ui/people", "", Action::ManagePeople),
            (post, "/ui/import", "", Action::ManagePeople),
            (post, "/ui/people/ann/suspend", "", Action::ManagePeople),
            (post, "/ui/groups/staff/add", "", Action::ManagePeople),
            (post, "/ui/groups/staff/delete", "", Action::Configure),
            (post, "/ui/grants/g-1/edit", "", Action::Configure),
            (post, "/ui/doors", "", Action::Configure),
            (post, "/ui/doors/front/edit", "", Action::Configure),
            (post, "/ui/guests/gp_1/revoke", "", Action::ManagePeople),
            (post, "/ui/webhooks/wh_1/remove", "", Action::Configure),
            (post, "/ui/anything-new", "", Action::Configure),
        ] {
            assert_eq!(needed(method, path, query), action, "{method} {path}?{query}");
        }
    }

    #[test]
    fn a_site_limited_operator_is_kept_to_the_pages_that_keep_to_a_site() {
        for path in ["/ui/", "/ui/doors", "/ui/doors/front/open", "/ui/people/ann", "/ui/groups/g/add", "/ui/audit"] {
            assert!(keeps_to_a_site(path), "{path}");
        }
        for path in ["/ui/webhooks", "/ui/webhooks/wh_1/remove", "/ui/import", "/ui/anything-new", "/ui/peoplex"] {
            assert!(!keeps_to_a_site(path), "{path}");
        }
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
