//! Anti-passback zones: set up by admins, people forgiven by the front desk.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use lintel_proto::{Problem, Zone, ZoneForgive, ZoneForgiven, ZoneSpec};
use lintel_service::zones;

use crate::AppState;
use crate::auth::{Admin, Reader, SiteDesk};
use crate::problem::{ApiError, ApiJson, ApiPath};

type ApiResult<T> = Result<T, ApiError>;

/// The anti-passback zones, with who is inside each.
#[utoipa::path(get, path = "/api/v1/zones", tag = "doors", security(("admin" = [])),
    responses((status = 200, description = "the zones", body = Vec<Zone>)))]
pub async fn list_zones(State(s): State<AppState>, _: Reader) -> ApiResult<Json<Vec<Zone>>> {
    Ok(Json(s.store().zones().await?))
}

/// One zone, with who is inside.
#[utoipa::path(get, path = "/api/v1/zones/{id}", tag = "doors", params(("id" = String, Path, description = "the zone's id")), security(("admin" = [])),
    responses((status = 200, description = "the zone", body = Zone), (status = 404, description = "no such zone", body = Problem, content_type = "application/problem+json")))]
pub async fn get_zone(State(s): State<AppState>, _: Reader, ApiPath(id): ApiPath<String>) -> ApiResult<Json<Zone>> {
    Ok(Json(s.store().zone(&id).await?))
}

/// Make or replace an anti-passback zone: its entry and exit doors (each door in one zone
/// at most), `hard` or `soft`, and after how long a person inside counts as outside
/// again. All or nothing; who is inside is kept when a zone is replaced.
#[utoipa::path(put, path = "/api/v1/zones/{id}", tag = "doors", params(("id" = String, Path, description = "the zone's id")), request_body = ZoneSpec, security(("admin" = [])),
    responses((status = 200, description = "replaced", body = Zone), (status = 201, description = "made", body = Zone), (status = 409, description = "a door is in another zone", body = Problem, content_type = "application/problem+json"), (status = 422, description = "fails validation (an unknown door, a door both ways)", body = Problem, content_type = "application/problem+json")))]
pub async fn put_zone(
    State(s): State<AppState>,
    Admin(by): Admin,
    ApiPath(id): ApiPath<String>,
    ApiJson(spec): ApiJson<ZoneSpec>,
) -> ApiResult<(StatusCode, Json<Zone>)> {
    let (zone, made) = zones::put(s.directory(), &by.actor(), id, spec).await?;
    Ok((if made { StatusCode::CREATED } else { StatusCode::OK }, Json(zone)))
}

/// Remove a zone: its doors keep no one out any more.
#[utoipa::path(delete, path = "/api/v1/zones/{id}", tag = "doors", params(("id" = String, Path, description = "the zone's id")), security(("admin" = [])),
    responses((status = 204, description = "done"), (status = 404, description = "no such zone", body = Problem, content_type = "application/problem+json")))]
pub async fn delete_zone(
    State(s): State<AppState>,
    Admin(by): Admin,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    zones::delete(s.directory(), &by.actor(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Forgive a person (or, without `person_id`, everyone) inside a zone: they count as
/// outside and may enter again. Recorded with who did it.
#[utoipa::path(post, path = "/api/v1/zones/{id}/forgive", tag = "doors", params(("id" = String, Path, description = "the zone's id")), request_body = ZoneForgive, security(("admin" = [])),
    responses((status = 200, description = "how many were forgiven", body = ZoneForgiven), (status = 403, description = "an operator limited to a site", body = Problem, content_type = "application/problem+json"), (status = 404, description = "no such zone or person", body = Problem, content_type = "application/problem+json"), (status = 422, description = "fails validation", body = Problem, content_type = "application/problem+json")))]
pub async fn forgive(
    State(s): State<AppState>,
    SiteDesk(by): SiteDesk,
    ApiPath(id): ApiPath<String>,
    ApiJson(who): ApiJson<ZoneForgive>,
) -> ApiResult<Json<ZoneForgiven>> {
    let forgiven = zones::forgive(s.directory(), &by.actor(), id, who.person_id).await?;
    Ok(Json(ZoneForgiven { forgiven }))
}
