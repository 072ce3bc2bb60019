//! The page a visitor's invitation links to. The link's fragment carries the doors and the
//! visitor's personal secret: browsers never send a fragment, so the secret stays out of
//! every log, and the page's script sends it only as the bearer of `POST /open/{door}`.

use axum::http::header;
use axum::response::IntoResponse;

const PAGE: &str = include_str!("visit/visit.html");
const SCRIPT: &str = include_str!("visit/visit.js");
/// Only this origin's script and the page's own styles; no framing, no referrer.
const POLICY: &str =
    "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'";

/// A visitor's page with an Open button per door of their booking.
#[utoipa::path(get, path = "/visit", tag = "integrations", responses((status = 200, description = "an HTML page")))]
pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
}

#[utoipa::path(get, path = "/visit.js", tag = "integrations", responses((status = 200, description = "the page's script")))]
pub async fn script() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], SCRIPT)
}
