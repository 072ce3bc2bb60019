//! The doorbell: a camera's webhook posts the visitor's picture to the Slack channel with
//! an **Open door** button (the click is handled in [`super::slack::interactions`]).
//! The picture is kept by lintel and served to Slack at an unguessable URL for a day.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lintel_connectors::doorbell::{SnapshotFetcher, Webhook};
use lintel_proto::Problem;
use lintel_store::NewEvent;
use serde::{Deserialize, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::problem::{ApiError, ApiPath, ApiQuery, RawBody, parse_json};
use lintel_service::secrets;

/// How long a snapshot stays reachable.
const KEEP_SNAPSHOTS_MICROS: i64 = 24 * 3600 * 1_000_000;

/// The `[doorbell]` settings, with the channel from `[slack] doorbell_channel`.
#[derive(Clone)]
pub struct DoorbellConfig {
    pub token: String,
    /// The door the button opens.
    pub door: String,
    pub channel: String,
    /// Hosts snapshots may be fetched from (empty: any). The URL comes from the webhook,
    /// so this keeps lintel from fetching anywhere a leaked token points it at.
    pub snapshot_hosts: Vec<String>,
}

pub struct Doorbell {
    token_digest: lintel_core::Digest,
    config: DoorbellConfig,
    fetcher: SnapshotFetcher,
}

impl Doorbell {
    pub fn new(config: DoorbellConfig) -> Self {
        Self { token_digest: secrets::digest(&config.token), config, fetcher: SnapshotFetcher::default() }
    }

    /// Digests compared in constant time: the comparison says nothing about the token.
    fn admits(&self, given: Option<&str>) -> bool {
        given.is_some_and(|g| bool::from(secrets::digest(g).ct_eq(&self.token_digest)))
    }
}

fn not_configured() -> ApiError {
    ApiError::not_found("the doorbell is not configured ([doorbell] in the config)")
}

#[derive(Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Rang {
    /// Whether the message reached the channel.
    pub posted: bool,
    /// Whether the camera's snapshot is in it.
    pub snapshot: bool,
    /// The `doorbell.rang` event.
    pub event_id: String,
}

/// A doorbell camera rings (Netatmo-style webhook). Authenticated with `[doorbell] token`
/// in `?token=` or the `X-Doorbell-Token` header.
#[utoipa::path(post, path = "/hooks/doorbell", tag = "slack", params(("token" = Option<String>, Query, description = "the doorbell token")),
    responses((status = 200, body = Rang), (status = 202, description = "not a ring; ignored"), (status = 401, description = "wrong token"),
        (status = 413, body = Problem, description = "larger than max_body_bytes"), (status = 502, description = "recorded, but Slack could not be reached")))]
pub async fn ring(
    State(s): State<AppState>,
    ApiQuery(query): ApiQuery<TokenQuery>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let doorbell = s.inner.doorbell.as_ref().ok_or_else(not_configured)?;
    let header_token = headers.get("x-doorbell-token").and_then(|v| v.to_str().ok());
    if !doorbell.admits(query.token.as_deref().or(header_token)) {
        return Err(ApiError::unauthorized("wrong or missing doorbell token"));
    }
    let slack = super::slack::slack_of(&s)?;
    let webhook: Webhook = parse_json(&body)?;
    if !webhook.is_ring() {
        return Ok((StatusCode::ACCEPTED, Json(json!({"ignored": "not a ring"}))).into_response());
    }
    let config = &doorbell.config;
    let allowed_host = |url: &str| {
        config.snapshot_hosts.is_empty()
            || reqwest::Url::parse(url).is_ok_and(|u| {
                u.host_str().is_some_and(|h| config.snapshot_hosts.iter().any(|a| a.eq_ignore_ascii_case(h)))
            })
    };
    let snapshot = match webhook.snapshot_url.as_deref() {
        Some(url) if !allowed_host(url) => {
            tracing::warn!("doorbell snapshot URL is not on [doorbell] snapshot_hosts; posting without it");
            None
        }
        Some(url) => match doorbell.fetcher.fetch(url).await {
            Ok(snapshot) => Some(snapshot),
            Err(e) => {
                tracing::warn!(error = %e, "doorbell snapshot not fetched; posting without it");
                None
            }
        },
        None => None,
    };
    let image_url = match (&snapshot, &s.inner.services.config.public_url) {
        (Some(snapshot), Some(public)) => {
            let id = secrets::generate("snap_");
            s.store().save_snapshot(&id, &snapshot.content_type, &snapshot.bytes, KEEP_SNAPSHOTS_MICROS).await?;
            Some(format!("{}/hooks/doorbell/snapshots/{id}", public.trim_end_matches('/')))
        }
        (Some(_), None) => {
            tracing::warn!("set public_url so that Slack can show the doorbell's picture");
            None
        }
        _ => None,
    };
    let mut event = NewEvent::new("doorbell.rang").door(&config.door).with("snapshot", image_url.is_some());
    if let Some(device) = &webhook.device_id {
        event = event.with("device_id", device.chars().take(100).collect::<String>());
    }
    let recorded = s.store().append_events(&[event]).await?;
    s.directory().publish(&recorded);
    let event_id = recorded.first().map(|e| e.id.clone()).unwrap_or_default();

    let door_name = s.store().door(&config.door).await.map(|d| d.name).unwrap_or(config.door.clone());
    let at = chrono::Utc::now().with_timezone(&s.inner.services.config.timezone).format("%H:%M");
    let text = format!(":bell: Someone is at the {door_name} ({at})");
    let blocks = super::slack::doorbell_blocks(&text, image_url.as_deref(), &config.door);
    let posted = slack.client.post_message(&config.channel, &text, &blocks).await;
    if let Err(e) = &posted {
        tracing::warn!(error = %e, "doorbell message not posted");
        let mut problem =
            ApiError::new(StatusCode::BAD_GATEWAY, "slack-unreachable", format!("the ring was recorded, but {e}"));
        problem.extensions.insert("event_id".into(), event_id.into());
        return Err(problem);
    }
    Ok(Json(Rang { posted: true, snapshot: image_url.is_some(), event_id }).into_response())
}

/// A doorbell snapshot, for Slack to show. The id is the capability (256 random bits);
/// snapshots are gone after a day.
#[utoipa::path(get, path = "/hooks/doorbell/snapshots/{id}", tag = "slack",
    responses((status = 200, description = "the image"), (status = 404, description = "unknown or expired")))]
pub async fn snapshot(State(s): State<AppState>, ApiPath(id): ApiPath<String>) -> Result<Response, ApiError> {
    if s.inner.doorbell.is_none() {
        return Err(not_configured());
    }
    let gone = || ApiError::not_found("no such snapshot (they are kept for a day)");
    if !id.starts_with("snap_") || id.len() > 64 {
        return Err(gone());
    }
    let (content_type, image) = s.store().snapshot(&id, KEEP_SNAPSHOTS_MICROS).await?.ok_or_else(gone)?;
    Ok(([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "private, max-age=86400".into())], image)
        .into_response())
}
