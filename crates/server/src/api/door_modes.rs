//! Door modes: an operator's hold of a door, and the holidays on which a site's unlock
//! schedules do not apply.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use lintel_proto::{Door, EmergencyRequest, Holiday, HolidayImport, NewHold, NewHoliday, Problem, Site};
use lintel_service::door_modes;
use lintel_service::edits::redacted;

use crate::AppState;
use crate::auth::{Admin, EmergencyRaiser, SiteAdmin, SiteReader};
use crate::problem::{ApiError, ApiJson, ApiPath};

type ApiResult<T> = Result<T, ApiError>;

/// Hold a door unlocked (free passage), or keep it secure through its unlock schedule,
/// until a time (within 7 days); recorded, and it ends by itself. Lockdown and an
/// emergency release still take precedence.
#[utoipa::path(post, path = "/api/v1/doors/{id}/hold", tag = "doors", params(("id" = String, Path, description = "the door's id")), request_body = NewHold, security(("admin" = [])),
    responses((status = 200, description = "the door, with its hold", body = Door), (status = 403, description = "the door is in lockdown, or at another site", body = Problem, content_type = "application/problem+json"), (status = 404, description = "no such door", body = Problem, content_type = "application/problem+json"), (status = 422, description = "fails validation", body = Problem, content_type = "application/problem+json")))]
pub async fn hold(
    State(s): State<AppState>,
    SiteAdmin(by): SiteAdmin,
    ApiPath(id): ApiPath<String>,
    ApiJson(hold): ApiJson<NewHold>,
) -> ApiResult<Json<Door>> {
    Ok(Json(redacted(door_modes::set_hold(s.directory(), &by.actor(), id, Some(hold)).await?)))
}

/// End a door's hold early: it goes back to its schedule.
#[utoipa::path(delete, path = "/api/v1/doors/{id}/hold", tag = "doors", params(("id" = String, Path, description = "the door's id")), security(("admin" = [])),
    responses((status = 200, description = "the door", body = Door), (status = 403, description = "the door is at another site", body = Problem, content_type = "application/problem+json"), (status = 404, description = "no such door", body = Problem, content_type = "application/problem+json")))]
pub async fn end_hold(
    State(s): State<AppState>,
    SiteAdmin(by): SiteAdmin,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Door>> {
    Ok(Json(redacted(door_modes::set_hold(s.directory(), &by.actor(), id, None).await?)))
}

/// Raise an emergency release of a site (a fire panel through a building system's
/// `building` token, or an operator): every exit-route door (`egress: true`) is held open,
/// over lockdown, until an operator resets it. Recorded; raising it again changes nothing.
#[utoipa::path(post, path = "/api/v1/sites/{id}/emergency", tag = "doors", params(("id" = String, Path, description = "the site's id")), request_body = EmergencyRequest, security(("admin" = [])),
    responses((status = 200, description = "the site, with who raised it", body = Site), (status = 404, description = "no such site", body = Problem, content_type = "application/problem+json"), (status = 422, description = "fails validation", body = Problem, content_type = "application/problem+json")))]
pub async fn raise_emergency(
    State(s): State<AppState>,
    EmergencyRaiser(by): EmergencyRaiser,
    ApiPath(id): ApiPath<String>,
    ApiJson(request): ApiJson<EmergencyRequest>,
) -> ApiResult<Json<Site>> {
    door_modes::emergency(s.directory(), &by.actor(), id.clone(), true, request.why).await?;
    Ok(Json(s.store().site(&id).await?))
}

/// Reset a site's emergency release: its exit-route doors go back to the mode they should
/// be in now.
#[utoipa::path(delete, path = "/api/v1/sites/{id}/emergency", tag = "doors", params(("id" = String, Path, description = "the site's id")), security(("admin" = [])),
    responses((status = 200, description = "the site", body = Site), (status = 404, description = "no such site", body = Problem, content_type = "application/problem+json")))]
pub async fn reset_emergency(
    State(s): State<AppState>,
    SiteAdmin(by): SiteAdmin,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Site>> {
    door_modes::emergency(s.directory(), &by.actor(), id.clone(), false, None).await?;
    Ok(Json(s.store().site(&id).await?))
}

/// A site's holidays: days on which its doors' unlock schedules do not apply.
#[utoipa::path(get, path = "/api/v1/sites/{id}/holidays", tag = "doors", params(("id" = String, Path, description = "the site's id")), security(("admin" = [])),
    responses((status = 200, description = "the holidays, by first day", body = Vec<Holiday>), (status = 404, description = "no such site", body = Problem, content_type = "application/problem+json")))]
pub async fn list_holidays(
    State(s): State<AppState>,
    SiteReader(by): SiteReader,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Vec<Holiday>>> {
    Ok(Json(door_modes::holidays(s.directory(), &by.actor(), &id).await?))
}

/// Add a holiday (a day, or days from `from` to `to`); one that overlaps another of the
/// site's is refused.
#[utoipa::path(post, path = "/api/v1/sites/{id}/holidays", tag = "doors", params(("id" = String, Path, description = "the site's id")), request_body = NewHoliday, security(("admin" = [])),
    responses((status = 201, description = "the holiday", body = Holiday), (status = 404, description = "no such site", body = Problem, content_type = "application/problem+json"), (status = 409, description = "it overlaps another holiday", body = Problem, content_type = "application/problem+json"), (status = 422, description = "fails validation", body = Problem, content_type = "application/problem+json")))]
pub async fn add_holiday(
    State(s): State<AppState>,
    Admin(by): Admin,
    ApiPath(id): ApiPath<String>,
    ApiJson(new): ApiJson<NewHoliday>,
) -> ApiResult<(StatusCode, Json<Holiday>)> {
    Ok((StatusCode::CREATED, Json(door_modes::add_holiday(s.directory(), &by.actor(), id, new).await?)))
}

/// Load holidays from an iCalendar file (`Content-Type: text/calendar`), such as a
/// region's public holidays: each event's days, all or none. Loading the same calendar
/// again adds only what is new.
#[utoipa::path(post, path = "/api/v1/sites/{id}/holidays/import", tag = "doors", params(("id" = String, Path, description = "the site's id")), request_body(content = String, content_type = "text/calendar"), security(("admin" = [])),
    responses((status = 200, description = "what was added", body = HolidayImport), (status = 404, description = "no such site", body = Problem, content_type = "application/problem+json"), (status = 409, description = "an event overlaps a holiday of the site", body = Problem, content_type = "application/problem+json"), (status = 415, description = "not text/calendar", body = Problem, content_type = "application/problem+json"), (status = 422, description = "not an iCalendar file", body = Problem, content_type = "application/problem+json")))]
pub async fn import_holidays(
    State(s): State<AppState>,
    Admin(by): Admin,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<HolidayImport>> {
    let calendar = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("text/calendar")));
    if !calendar {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "send the calendar as text/calendar",
        ));
    }
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::invalid("not an iCalendar file: not UTF-8"))?;
    Ok(Json(door_modes::import_holidays(s.directory(), &by.actor(), id, text).await?))
}

/// Remove a holiday.
#[utoipa::path(delete, path = "/api/v1/sites/{id}/holidays/{holiday}", tag = "doors", params(("id" = String, Path, description = "the site's id"), ("holiday" = String, Path, description = "the holiday's id")), security(("admin" = [])),
    responses((status = 204, description = "done"), (status = 404, description = "no such holiday", body = Problem, content_type = "application/problem+json")))]
pub async fn delete_holiday(
    State(s): State<AppState>,
    Admin(by): Admin,
    ApiPath((site, holiday)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    door_modes::delete_holiday(s.directory(), &by.actor(), site, holiday).await?;
    Ok(StatusCode::NO_CONTENT)
}
