//! The lock cloud's webhook.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use lintel_connectors::lockcloud::LockEvent;
use lintel_proto::Problem;
use lintel_service::ServiceError;
use lintel_service::integrations::lockcloud::Reported;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::problem::{ApiError, ApiQuery, RawBody, parse_json};

#[derive(Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

/// The cloud reports a lock opened: recorded once (by the cloud's event id) as an entry
/// at the door that lock is, by the person it names, so that it counts like any entry
/// (attendance, check-ins).
#[utoipa::path(post, path = "/hooks/lockcloud", tag = "integrations", operation_id = "lockcloud_webhook", params(("token" = Option<String>, Query, description = "the webhook token")),
    responses((status = 200, description = "recorded (or recorded before)"), (status = 400, description = "malformed request", body = Problem, content_type = "application/problem+json"), (status = 401, description = "no or wrong credentials", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "larger than max_body_bytes", body = Problem, content_type = "application/problem+json"), (status = 422, description = "fails validation", body = Problem, content_type = "application/problem+json")))]
pub async fn webhook(
    State(s): State<AppState>,
    ApiQuery(query): ApiQuery<TokenQuery>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let cloud =
        s.services().lockcloud.as_ref().ok_or_else(|| ServiceError::not_configured("lockcloud", "the lock cloud"))?;
    let given = query.token.as_deref().or(headers.get("x-webhook-token").and_then(|v| v.to_str().ok()));
    if !cloud.admits(given) {
        return Err(ApiError::unauthorized("wrong or missing webhook token"));
    }
    let event: LockEvent = parse_json(&body)?;
    let answer = match cloud.report(&event).await? {
        Reported::Recorded(id) => json!({"recorded": id}),
        Reported::Before => json!({"recorded": "before"}),
        Reported::Ignored(event) => json!({"ignored": event}),
    };
    Ok((StatusCode::OK, Json(answer)))
}
