//! Lockdown: a site or chosen doors refuse every credential but the exempt's, in one call.

use axum::Json;
use axum::extract::State;
use lintel_proto::{Door, LockdownChange, LockdownRequest, Problem};
use lintel_service::edits::redacted;
use lintel_store::LockdownScope;

use crate::AppState;
use crate::auth::{Operator, SiteAdmin, SiteReader};
use crate::problem::{ApiError, ApiJson};

/// Starts (`on`) or lifts the lockdown the request names.
async fn set(
    s: &AppState,
    by: &Operator,
    request: LockdownRequest,
    on: bool,
) -> Result<Json<LockdownChange>, ApiError> {
    let scope = match (request.site, request.doors) {
        (Some(site), None) => LockdownScope::Site(site),
        (None, Some(doors)) => LockdownScope::Doors(doors),
        _ => return Err(ApiError::invalid("name a site or doors, not both")),
    };
    let changed = lintel_service::lockdown::set(s.directory(), &by.actor(), scope, on).await?;
    Ok(Json(LockdownChange { changed }))
}

/// Put a site (every door it has now) or chosen doors in lockdown: every credential is
/// refused (reason `lockdown`) but those of people with `attributes.lockdown_exempt`,
/// over unlock schedules and holds; controllers get it in their signed offline lists.
#[utoipa::path(post, path = "/api/v1/lockdown", tag = "doors", request_body = LockdownRequest, security(("admin" = [])),
    responses((status = 200, description = "the doors put in lockdown", body = LockdownChange), (status = 404, description = "no such site or door", body = Problem, content_type = "application/problem+json"), (status = 422, description = "fails validation", body = Problem, content_type = "application/problem+json")))]
pub async fn start(
    State(s): State<AppState>,
    SiteAdmin(by): SiteAdmin,
    ApiJson(request): ApiJson<LockdownRequest>,
) -> Result<Json<LockdownChange>, ApiError> {
    set(&s, &by, request, true).await
}

/// Lift a lockdown of a site or of chosen doors: each door is back in the mode it should
/// be in now.
#[utoipa::path(post, path = "/api/v1/lockdown/lift", tag = "doors", request_body = LockdownRequest, security(("admin" = [])),
    responses((status = 200, description = "the doors taken out of lockdown", body = LockdownChange), (status = 404, description = "no such site or door", body = Problem, content_type = "application/problem+json"), (status = 422, description = "fails validation", body = Problem, content_type = "application/problem+json")))]
pub async fn lift(
    State(s): State<AppState>,
    SiteAdmin(by): SiteAdmin,
    ApiJson(request): ApiJson<LockdownRequest>,
) -> Result<Json<LockdownChange>, ApiError> {
    set(&s, &by, request, false).await
}

/// The doors in lockdown now (of the operator's site, for one limited to a site).
#[utoipa::path(get, path = "/api/v1/lockdown", tag = "doors", security(("admin" = [])),
    responses((status = 200, description = "the doors in lockdown", body = Vec<Door>)))]
pub async fn list(State(s): State<AppState>, SiteReader(by): SiteReader) -> Result<Json<Vec<Door>>, ApiError> {
    let site = by.site_to_read(None)?;
    let doors = s.store().doors(site.as_deref()).await?;
    Ok(Json(doors.into_iter().filter(|d| d.state.lockdown_by.is_some()).map(redacted).collect()))
}
