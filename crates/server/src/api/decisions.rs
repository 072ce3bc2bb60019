//! Decisions, and opening doors (decide first, then drive).

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use lintel_proto::{
    AdminOpenRequest, DecisionRequest, DecisionResponse, OpenResponse, PresentedCredential, Problem, Reason,
};
use lintel_service::{Driven, Opened, Opener};

use crate::AppState;
use crate::auth::{Asker, SiteDoorOpener};
use crate::problem::{ApiError, ApiJson, ApiPath, OptionalJson};
use lintel_service::Ask;
use lintel_service::decide::Source;

/// May this credential open this door now? Recorded as an event unless `dry_run`. Asked
/// with an admin token or a token scoped to decisions (a station's, maybe for its door only).
#[utoipa::path(post, path = "/api/v1/decisions", tag = "decisions", request_body = DecisionRequest, security(("admin" = [])),
    responses((status = 200, description = "the decision response", body = DecisionResponse), (status = 403, description = "not allowed", body = Problem, content_type = "application/problem+json"), (status = 422, description = "fails validation", body = Problem, content_type = "application/problem+json"), (status = 503, description = "not available now", body = Problem, content_type = "application/problem+json")))]
pub async fn decide(
    State(s): State<AppState>,
    asker: Asker,
    ApiJson(q): ApiJson<DecisionRequest>,
) -> Result<Json<DecisionResponse>, ApiError> {
    lintel_service::validate::id("door", &q.door)?;
    asker.may_ask_at(s.store(), &q.door).await?;
    let ask = Ask {
        door: &q.door,
        credential: &q.credential,
        at: q.at,
        dry_run: q.dry_run,
        source: Source::Keypad(format!("door:{}", q.door)),
    };
    Ok(Json(s.services().decider.decide(ask).await?))
}

fn open_answer(door: &str, opened: Opened) -> Response {
    open_answer_as(door, opened, true)
}

/// `tell_unknown_door`: an admin learns that a door does not exist; an anonymous caller
/// of `/open` gets the same 403 as for a wrong secret, so door ids cannot be probed.
fn open_answer_as(door: &str, Opened { decision, driven }: Opened, tell_unknown_door: bool) -> Response {
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
#[utoipa::path(post, path = "/api/v1/doors/{id}/open", tag = "decisions", params(("id" = String, Path, description = "the door's id")), request_body(content = Option<AdminOpenRequest>), security(("admin" = [])),
    responses((status = 200, description = "the open response", body = OpenResponse), (status = 404, description = "no such resource", body = Problem, content_type = "application/problem+json"), (status = 502, description = "the other system could not be reached", body = Problem, content_type = "application/problem+json")))]
pub async fn admin_open(
    State(s): State<AppState>,
    SiteDoorOpener(by): SiteDoorOpener,
    ApiPath(door): ApiPath<String>,
    OptionalJson(request): OptionalJson<AdminOpenRequest>,
) -> Result<Response, ApiError> {
    if let Some(note) = &request.note {
        lintel_service::validate::text("note", note, 500)?;
    }
    if request.seconds.is_some_and(|v| !(1..=3600).contains(&v)) {
        return Err(ApiError::invalid("seconds is 1 to 3600"));
    }
    let opener = Opener::Operator { by: by.label(), site: by.site.as_deref(), note: request.note.as_deref() };
    let opened = s.services().doors.open(&door, opener, request.seconds);
    Ok(open_answer(&door, opened.await?))
}

/// Open a door with a personal secret as the bearer token: anything that can send an
/// HTTP request can open the door its owner may open.
#[utoipa::path(post, path = "/open/{door}", tag = "decisions", params(("door" = String, Path, description = "the door's id")), security(("personal_secret" = [])),
    responses((status = 200, description = "the open response", body = OpenResponse), (status = 401, description = "no or wrong credentials", body = Problem, content_type = "application/problem+json"), (status = 403, description = "not allowed", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "too many failures; try again later", body = Problem, content_type = "application/problem+json"), (status = 502, description = "the other system could not be reached", body = Problem, content_type = "application/problem+json")))]
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
    if lintel_service::validate::id("door", &door).is_err() {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "denied", "this secret does not open this door"));
    }
    // A backup code (`XXXXX-XXXXX-XXXXX-XXXXX`) works here too, for the day phones can't.
    let credential = if lintel_service::secrets::looks_like_backup_code(&secret) {
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
    Ok(open_answer_as(&door, s.services().doors.open(&door, Opener::Credential(ask), None).await?, false))
}
