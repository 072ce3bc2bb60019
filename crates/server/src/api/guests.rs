//! Guest passes: a visitor's link to chosen doors for a while.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use lintel_proto::{GuestPass, NewGuestPass, Problem};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use lintel_service::site_limits::SiteDoors;

use crate::auth::{SiteDesk, SiteReader};
use crate::problem::{ApiError, ApiJson, ApiPath, ApiQuery};

type ApiResult<T> = Result<T, ApiError>;

/// Issue a guest pass: the answer has the visitor's link (with `public_url` configured)
/// and secret, once; with an email and `[smtp]`, the link is mailed to them too.
#[utoipa::path(post, path = "/api/v1/guests", tag = "directory", request_body = NewGuestPass, security(("admin" = [])),
    responses((status = 201, description = "the pass, with its link and secret", body = GuestPass), (status = 422, description = "fails validation", body = Problem, content_type = "application/problem+json")))]
pub async fn issue_guest_pass(
    State(s): State<AppState>,
    SiteDesk(by): SiteDesk,
    ApiJson(pass): ApiJson<NewGuestPass>,
) -> ApiResult<(StatusCode, Json<GuestPass>)> {
    Ok((StatusCode::CREATED, Json(s.services().guests.issue(&by.actor(), pass).await?)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct GuestsQuery {
    /// Only passes neither over nor revoked.
    open: Option<bool>,
    /// 1 to 500, default 100.
    limit: Option<i64>,
}

/// Guest passes, newest first.
#[utoipa::path(get, path = "/api/v1/guests", tag = "directory", params(GuestsQuery), security(("admin" = [])),
    responses((status = 200, description = "the passes", body = Vec<GuestPass>)))]
pub async fn list_guest_passes(
    State(s): State<AppState>,
    SiteReader(by): SiteReader,
    ApiQuery(q): ApiQuery<GuestsQuery>,
) -> ApiResult<Json<Vec<GuestPass>>> {
    let passes = s.services().guests.list(q.open.unwrap_or(false), q.limit.unwrap_or(100)).await?;
    let Some(site) = &by.site else { return Ok(Json(passes)) };
    let at = SiteDoors::of(s.store(), site).await?;
    Ok(Json(passes.into_iter().filter(|p| at.any(&p.doors)).collect()))
}

/// Read a guest pass.
#[utoipa::path(get, path = "/api/v1/guests/{id}", tag = "directory", params(("id" = String, Path, description = "the pass's id")), security(("admin" = [])),
    responses((status = 200, description = "the pass", body = GuestPass), (status = 404, description = "no such resource", body = Problem, content_type = "application/problem+json")))]
pub async fn get_guest_pass(
    State(s): State<AppState>,
    SiteReader(by): SiteReader,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<GuestPass>> {
    let pass = s.services().guests.get(&id).await?;
    if let Some(site) = &by.site
        && !SiteDoors::of(s.store(), site).await?.any(&pass.doors)
    {
        return Err(by.not_at_their_site());
    }
    Ok(Json(pass))
}

/// Revoke a guest pass: its link stops working at once; the pass stays on record.
#[utoipa::path(delete, path = "/api/v1/guests/{id}", tag = "directory", params(("id" = String, Path, description = "the pass's id")), security(("admin" = [])),
    responses((status = 200, description = "the pass, revoked", body = GuestPass), (status = 404, description = "no such resource", body = Problem, content_type = "application/problem+json")))]
pub async fn revoke_guest_pass(
    State(s): State<AppState>,
    SiteDesk(by): SiteDesk,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<GuestPass>> {
    Ok(Json(s.services().guests.revoke(&by.actor(), id).await?))
}
