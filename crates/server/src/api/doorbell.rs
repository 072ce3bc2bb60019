//! The doorbell's endpoints: the camera's webhook, and the snapshots Slack shows.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lintel_connectors::doorbell::Webhook;
use lintel_proto::{Problem, Rang};
use lintel_service::integrations::doorbell::Doorbell;
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::problem::{ApiError, ApiPath, ApiQuery, RawBody, parse_json};

fn doorbell_of(s: &AppState) -> Result<&Arc<Doorbell>, ApiError> {
    s.services()
        .doorbell
        .as_ref()
        .ok_or_else(|| ApiError::not_found("the doorbell is not configured ([doorbell] in the config)"))
}

#[derive(Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

/// A doorbell camera rings (Netatmo-style webhook). Authenticated with `[doorbell] token`
/// in `?token=` or the `X-Doorbell-Token` header.
#[utoipa::path(post, path = "/hooks/doorbell", tag = "slack", params(("token" = Option<String>, Query, description = "the doorbell token")),
    responses((status = 200, description = "the rang", body = Rang), (status = 202, description = "not a ring; ignored"), (status = 401, description = "wrong token"),
        (status = 413, description = "larger than max_body_bytes", body = Problem, content_type = "application/problem+json"), (status = 502, description = "recorded, but Slack could not be reached")))]
pub async fn ring(
    State(s): State<AppState>,
    ApiQuery(query): ApiQuery<TokenQuery>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let doorbell = doorbell_of(&s)?;
    let header_token = headers.get("x-doorbell-token").and_then(|v| v.to_str().ok());
    if !doorbell.admits(query.token.as_deref().or(header_token)) {
        return Err(ApiError::unauthorized("wrong or missing doorbell token"));
    }
    let webhook: Webhook = parse_json(&body)?;
    if !webhook.is_ring() {
        return Ok((StatusCode::ACCEPTED, Json(json!({"ignored": "not a ring"}))).into_response());
    }
    let ring = doorbell.ring(&webhook).await?;
    if let Some(e) = ring.not_posted {
        let mut problem =
            ApiError::new(StatusCode::BAD_GATEWAY, "slack-unreachable", format!("the ring was recorded, but {e}"));
        problem.extensions.insert("event_id".into(), ring.event_id.into());
        return Err(problem);
    }
    Ok(Json(Rang { posted: true, snapshot: ring.snapshot, event_id: ring.event_id }).into_response())
}

/// A doorbell snapshot, for Slack to show. The id is the capability (256 random bits);
/// snapshots are gone after a day.
#[utoipa::path(get, path = "/hooks/doorbell/snapshots/{id}", tag = "slack", params(("id" = String, Path, description = "the snapshot's id")),
    responses((status = 200, description = "the image"), (status = 404, description = "unknown or expired")))]
pub async fn snapshot(State(s): State<AppState>, ApiPath(id): ApiPath<String>) -> Result<Response, ApiError> {
    let (content_type, image) = doorbell_of(&s)?
        .snapshot(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such snapshot (they are kept for a day)"))?;
    Ok(([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "private, max-age=86400".into())], image)
        .into_response())
}
