//! Decisions, and opening doors (decide first, then drive).

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use lintel_proto::{
    AdminOpenRequest, DecisionRequest, DecisionResponse, OpenResponse, PresentedCredential, Problem, Reason,
};
use lintel_store::NewEvent;

use crate::AppState;
use crate::auth::{Admin, Asker};
use crate::decide::Ask;
use crate::limiter::Source;
use crate::problem::{ApiError, ApiJson, ApiPath, OptionalJson};

/// May this credential open this door now? Recorded as an event unless `dry_run`. Asked
/// with an admin token or a token scoped to decisions (a station's, maybe for its door only).
#[utoipa::path(post, path = "/api/v1/decisions", tag = "decisions", request_body = DecisionRequest, security(("admin" = [])),
    responses((status = 200, body = DecisionResponse), (status = 403, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
pub async fn decide(
    State(s): State<AppState>,
    asker: Asker,
    ApiJson(q): ApiJson<DecisionRequest>,
) -> Result<Json<DecisionResponse>, ApiError> {
    crate::validate::id("door", &q.door)?;
    asker.may_ask_at(&q.door)?;
    let ask = Ask {
        door: &q.door,
        credential: &q.credential,
        at: q.at,
        dry_run: q.dry_run,
        source: Source::Keypad(format!("door:{}", q.door)),
    };
    Ok(Json(s.inner.decider.decide(ask).await?))
}

pub(crate) struct Driven {
    pub opened: bool,
    pub confirmed: bool,
    pub error: Option<String>,
}

/// Drives an allowed door and records what the device did.
pub(crate) async fn drive(
    s: &AppState,
    door_id: &str,
    seconds: Option<u32>,
    person_id: Option<&str>,
) -> Result<Driven, ApiError> {
    drive_with(s, door_id, seconds, person_id, true).await
}

/// [`drive`], but a failure is only returned, not recorded: for retrying a door that is
/// known to be offline every second, which would otherwise fill the event log.
pub(crate) async fn drive_quietly(s: &AppState, door_id: &str, person_id: Option<&str>) -> Result<Driven, ApiError> {
    drive_with(s, door_id, None, person_id, false).await
}

async fn drive_with(
    s: &AppState,
    door_id: &str,
    seconds: Option<u32>,
    person_id: Option<&str>,
    record_failure: bool,
) -> Result<Driven, ApiError> {
    let store = &s.inner.directory.store;
    let door = store.door(door_id).await?;
    let driver = lintel_doors::driver_for(&door.driver, &door.id, &s.inner.devices);
    let seconds = seconds.unwrap_or(door.open_seconds);
    let outcome = driver.open(seconds).await;
    let mut event = NewEvent::new("door.opened").door(door_id).with("driver", driver.kind()).with("seconds", seconds);
    event.person_id = person_id.map(str::to_owned);
    let driven = match outcome {
        Ok(o) => {
            event = event.with("confirmed", o.confirmed);
            Driven { opened: driver.kind() != "none", confirmed: o.confirmed, error: None }
        }
        Err(e) => {
            metrics::counter!("lintel_driver_failures_total", "driver" => driver.kind()).increment(1);
            tracing::warn!(door = door_id, driver = driver.kind(), error = %e, "door driver failed");
            event.kind = "door.driver_failed".into();
            event = event.with("error", e.to_string());
            Driven { opened: false, confirmed: false, error: Some(e.to_string()) }
        }
    };
    if driven.error.is_some() && !record_failure {
        return Ok(driven);
    }
    let events = store.append_events(&[event]).await?;
    s.inner.directory.publish(&events);
    if driver.kind() != "none" {
        // Only an answer from the device counts as seeing it.
        let now = chrono::Utc::now().timestamp_micros();
        store.set_door_state(door_id, driven.error.is_none(), now, driven.error.as_deref()).await?;
    }
    Ok(driven)
}

fn open_answer(door: &str, decision: DecisionResponse, driven: Option<Driven>) -> Response {
    open_answer_as(door, decision, driven, true)
}

/// `tell_unknown_door`: an admin learns that a door does not exist; an anonymous caller
/// of `/open` gets the same 403 as for a wrong secret, so door ids cannot be probed.
fn open_answer_as(door: &str, decision: DecisionResponse, driven: Option<Driven>, tell_unknown_door: bool) -> Response {
    let driven = driven.unwrap_or(Driven { opened: false, confirmed: false, error: None });
    let decision_retry = decision.retry_after;
    let reason = match decision.reason {
        Reason::UnknownDoor if !tell_unknown_door => Reason::UnknownCredential,
        reason => reason,
    };
    let body = OpenResponse {
        allowed: decision.allowed,
        reason,
        detail: decision.detail,
        person_id: decision.person_id,
        door: door.to_owned(),
        event_id: decision.event_id,
        opened: driven.opened,
        confirmed: driven.confirmed,
        driver_error: driven.error,
    };
    let (status, slug, detail) = match (&body.driver_error, body.allowed, body.reason) {
        (Some(e), _, _) => {
            (StatusCode::BAD_GATEWAY, "driver-failed", format!("allowed, but the door did not open: {e}"))
        }
        (None, true, _) => return Json(body).into_response(),
        (None, false, Reason::UnknownDoor) if tell_unknown_door => {
            (StatusCode::NOT_FOUND, "unknown-door", body.detail.clone())
        }
        (None, false, Reason::UnknownDoor | Reason::UnknownCredential) => {
            (StatusCode::FORBIDDEN, "denied", "this secret does not open this door".to_owned())
        }
        (None, false, Reason::RateLimited) => (StatusCode::TOO_MANY_REQUESTS, "rate-limited", body.detail.clone()),
        (None, false, _) => (StatusCode::FORBIDDEN, "denied", body.detail.clone()),
    };
    let retry_after = (status == StatusCode::TOO_MANY_REQUESTS).then_some(decision_retry).flatten();
    let mut problem = ApiError::new(status, slug, detail);
    if let serde_json::Value::Object(fields) = serde_json::to_value(&body).unwrap_or_default() {
        problem.extensions.extend(fields.into_iter().filter(|(k, _)| k != "detail"));
    }
    let mut response = problem.into_response();
    if let Some(seconds) = retry_after {
        response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
    }
    response
}

/// Open a door as an administrator; recorded with the token's name.
#[utoipa::path(post, path = "/api/v1/doors/{id}/open", tag = "decisions", request_body(content = Option<AdminOpenRequest>), security(("admin" = [])),
    responses((status = 200, body = OpenResponse), (status = 404, body = Problem), (status = 502, body = Problem)))]
pub async fn admin_open(
    State(s): State<AppState>,
    Admin(by): Admin,
    ApiPath(door): ApiPath<String>,
    OptionalJson(request): OptionalJson<AdminOpenRequest>,
) -> Result<Response, ApiError> {
    if let Some(note) = &request.note {
        crate::validate::text("note", note, 500)?;
    }
    if request.seconds.is_some_and(|v| !(1..=3600).contains(&v)) {
        return Err(ApiError::invalid("seconds is 1 to 3600"));
    }
    if s.inner.directory.index().door(&door).is_none() {
        return Err(ApiError::not_found(format!("door {door:?} not found")));
    }
    let mut event = NewEvent::new("decision").door(&door).with("by", format!("admin token {by:?}"));
    event.allowed = Some(true);
    event.reason = Some(Reason::Granted);
    if let Some(note) = &request.note {
        event = event.with("note", note);
    }
    let recorded = s.inner.directory.store.append_events(&[event]).await?;
    s.inner.directory.publish(&recorded);
    let decision = DecisionResponse {
        allowed: true,
        reason: Reason::Granted,
        detail: format!("opened by admin token {by:?}"),
        person_id: None,
        grant_id: None,
        event_id: recorded.first().map(|e| e.id.clone()),
        retry_after: None,
        name: None,
    };
    let driven = drive(&s, &door, request.seconds, None).await?;
    Ok(open_answer(&door, decision, Some(driven)))
}

/// Open a door with a personal secret as the bearer token: anything that can send an
/// HTTP request can open the door its owner may open.
#[utoipa::path(post, path = "/open/{door}", tag = "decisions", security(("personal_secret" = [])),
    responses((status = 200, body = OpenResponse), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 429, body = Problem), (status = 502, body = Problem)))]
pub async fn open_with_secret(
    State(s): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiPath(door): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let secret = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_owned())
        .filter(|t| !t.is_empty() && t.len() <= 256)
        .ok_or_else(|| ApiError::unauthorized("send your personal secret as Authorization: Bearer <secret>"))?;
    if crate::validate::id("door", &door).is_err() {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "denied", "this secret does not open this door"));
    }
    // A backup code (`XXXXX-XXXXX-XXXXX-XXXXX`) works here too, for the day phones can't.
    let credential = if crate::secrets::looks_like_backup_code(&secret) {
        PresentedCredential::BackupCode { code: secret }
    } else {
        PresentedCredential::Secret { secret }
    };
    let ask = Ask {
        door: &door,
        credential: &credential,
        at: None,
        dry_run: false,
        source: Source::Client(format!("ip:{}", peer.ip())),
    };
    let decision = s.inner.decider.decide(ask).await?;
    if !decision.allowed {
        return Ok(open_answer_as(&door, decision, None, false));
    }
    let driven = drive(&s, &door, None, decision.person_id.as_deref()).await?;
    Ok(open_answer(&door, decision, Some(driven)))
}
