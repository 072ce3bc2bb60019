//! The operator's web UI under `/ui/`: server-rendered HTML (askama templates compiled
//! into the binary), enhanced with htmx and a small script of our own, all served from the
//! binary (no CDN, no build step). It talks to the store and the decision index directly,
//! like the API handlers.
//!
//! Sign-in is with an admin token or, when `[oidc]` is configured, the OpenID issuer (for
//! people the directory marks as operators). Sessions are kept in memory (one node: a
//! restart signs everyone out); the cookie holds only a random 256-bit id. Every request
//! that changes something carries the session's CSRF token. Pages are sent with a
//! Content-Security-Policy that allows nothing but lintel itself: no inline scripts, no
//! inline styles.

mod audit;
mod edits;
mod groups;
mod guests;
mod live;
mod lockdown;
mod oidc;
mod pages;
mod session;
mod transfer;
mod webhooks;
mod words;
mod zones;

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use lintel_store::StoreError;

use crate::AppState;
use lintel_service::decide::FailureLimiter;

/// The UI's own state beside the server's.
#[derive(Clone)]
pub(crate) struct Ui {
    app: AppState,
    /// Wrong admin tokens at the login form and failed OpenID sign-ins, per client address.
    login_failures: Arc<FailureLimiter>,
    /// Whether cookies get `Secure` (lintel is reached over https).
    secure: bool,
}

/// The UI's routes, to merge into the server's router.
pub(crate) fn router(app: &AppState) -> Router<AppState> {
    let ui = Ui {
        app: app.clone(),
        login_failures: Arc::new(FailureLimiter::for_store(app.inner.services.config.limiter, app.store())),
        secure: app.inner.services.config.public_url.as_deref().is_some_and(|u| u.starts_with("https://")),
    };
    let signed_in = Router::new()
        .route("/ui/", get(pages::dashboard))
        .route("/ui/people", get(pages::people).post(edits::create_person))
        .route("/ui/people.csv", get(transfer::people_csv))
        .route("/ui/events.csv", get(transfer::events_csv))
        .route(
            session::UPLOAD_PATH,
            post(transfer::import).layer(axum::extract::DefaultBodyLimit::max(session::MAX_UPLOAD_BYTES)),
        )
        .route("/ui/people/search", get(pages::people_search))
        .route("/ui/people/{id}", get(pages::person))
        .route("/ui/people/{id}/why", get(pages::why))
        .route("/ui/people/{id}/{action}", post(edits::person_action))
        .route("/ui/groups", get(groups::groups).post(edits::create_group))
        .route("/ui/groups/{id}", get(groups::group))
        .route("/ui/groups/{id}/{action}", post(edits::group_action))
        .route("/ui/grants", post(edits::add_grant))
        .route("/ui/grants/{id}/{action}", post(edits::grant_action))
        .route("/ui/people/{id}/photo", get(pages::photo))
        .route("/ui/people/{id}/credentials", post(pages::issue_credential))
        .route("/ui/people/{id}/credentials/enrol", post(pages::start_enrol))
        .route("/ui/people/{id}/credentials/enrol/{enrolment}", get(pages::enrol_state))
        .route("/ui/people/{id}/credentials/{credential}/revoke", post(pages::revoke_credential))
        .route("/ui/people/{id}/credentials/{credential}/regenerate", post(pages::regenerate_credential))
        .route("/ui/doors", get(pages::doors).post(edits::create_door))
        .route("/ui/doors/{id}", get(pages::door))
        .route("/ui/doors/{id}/{action}", post(edits::door_action))
        .route("/ui/doors/{id}/open", get(pages::confirm_open).post(pages::open_door))
        .route("/ui/lockdown", get(lockdown::page).post(lockdown::act))
        .route("/ui/alarms/{id}/ack", post(edits::ack_alarm))
        .route("/ui/zones", get(zones::page).post(zones::save))
        .route("/ui/zones/{id}/forgive", post(zones::forgive))
        .route("/ui/zones/{id}/remove", post(zones::remove))
        .route("/ui/emergency/reset", post(edits::reset_emergency))
        .route("/ui/audit", get(audit::page))
        .route("/ui/audit.csv", get(audit::csv))
        .route("/ui/attendance", get(pages::attendance))
        .route("/ui/attendance.csv", get(pages::attendance_csv))
        .route("/ui/guests", get(guests::page).post(guests::issue))
        .route("/ui/guests/{id}/revoke", post(guests::revoke))
        .route("/ui/webhooks", get(webhooks::page).post(webhooks::add))
        .route("/ui/webhooks/{id}/{action}", post(webhooks::act))
        .route("/ui/display", get(pages::display))
        .route("/ui/live", get(live::stream))
        .route("/ui/logout", post(session::logout))
        .route("/ui/{*rest}", get(pages::not_found))
        .route_layer(middleware::from_fn_with_state(ui.clone(), session::guard));
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/login", get(session::login_page).post(session::login))
        .route("/ui/login/oidc", get(oidc::login))
        .route("/ui/assets/{name}", get(asset))
        .merge(signed_in)
        .layer(middleware::from_fn(security_headers))
        .with_state(ui)
}

/// Nothing but lintel itself may run, style, frame or receive forms from a UI page.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // Pages show secrets once and personal data: never kept by a cache.
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

const ASSETS: &[(&str, &str, &[u8])] = &[
    ("app.css", "text/css; charset=utf-8", include_bytes!("../../assets/app.css")),
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("../../assets/app.js")),
    ("htmx.min.js", "text/javascript; charset=utf-8", include_bytes!("../../assets/htmx.min.js")),
    ("favicon.svg", "image/svg+xml", include_bytes!("../../assets/favicon.svg")),
];

/// The UI's static files, compiled into the binary.
async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => {
            ([(header::CONTENT_TYPE, *content_type), (header::CACHE_CONTROL, "public, max-age=300")], *body)
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

/// An error shown as a page (or, to htmx, as a notice in place).
#[derive(Debug)]
pub(crate) struct UiError {
    status: StatusCode,
    message: String,
}

impl UiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    fn message(&self) -> &str {
        &self.message
    }
}

impl From<StoreError> for UiError {
    fn from(e: StoreError) -> Self {
        crate::problem::ApiError::from(e).into()
    }
}

impl From<lintel_service::ServiceError> for UiError {
    fn from(e: lintel_service::ServiceError) -> Self {
        crate::problem::ApiError::from(e).into()
    }
}

impl From<crate::problem::ApiError> for UiError {
    fn from(e: crate::problem::ApiError) -> Self {
        Self::new(e.status, e.detail)
    }
}

impl From<askama::Error> for UiError {
    fn from(e: askama::Error) -> Self {
        tracing::error!(error = %e, "a UI template failed to render");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered")
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    title: &'a str,
    message: &'a str,
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let page = ErrorPage { status: self.status.as_u16(), title, message: &self.message };
        match page.render() {
            Ok(html) => (self.status, Html(html)).into_response(),
            Err(_) => (self.status, self.message).into_response(),
        }
    }
}

type UiResult<T = Response> = Result<T, UiError>;

/// Renders a template as a 200 page.
fn html(t: &impl Template) -> UiResult {
    Ok(Html(t.render()?).into_response())
}

/// Whether htmx sent the request (it then wants a fragment, not a page).
fn is_htmx(headers: &HeaderMap) -> bool {
    headers.get("hx-request").is_some_and(|v| v == "true")
}
