//! The membership platform's webhooks, its admin routes, and the inbox and outbox views.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use lintel_proto::{InboxEntry, OutboxEntry, Page, Problem, SyncReport, WorkState};
use lintel_service::ServiceError;
use lintel_service::integrations::cobot::Cobot;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::{Admin, Reader};
use crate::problem::{ApiError, ApiPath, ApiQuery, RawBody, parse_json};

fn cobot(s: &AppState) -> Result<&Cobot, ServiceError> {
    s.services().cobot.as_deref().ok_or_else(|| ServiceError::not_configured("cobot", "the membership platform"))
}

/// A webhook delivery from the platform: `{"url": "<the changed resource>"}`, or the whole
/// object of a deleted one. Checked as the processor reads it (only URLs
/// `<base_url>/api/<memberships|bookings|check_ins>/<id>` and usable ids; anything else is
/// a 422), stored before it is acknowledged (202), processed afterwards by fetching the
/// resource with lintel's own token. With `[limits] max_pending_deliveries` waiting, a 503
/// with `Retry-After` (the platform retries). Never a 410, which would end the subscription.
#[utoipa::path(post, path = "/hooks/cobot/{event}", tag = "integrations", operation_id = "cobot_webhook", params(("event" = String, Path, description = "the platform's event name")),
    responses((status = 202, description = "stored; it will be processed"), (status = 400, description = "malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "larger than max_body_bytes", body = Problem, content_type = "application/problem+json"), (status = 422, description = "fails validation", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "the platform is not configured, or too many deliveries wait", body = Problem, content_type = "application/problem+json")))]
pub async fn webhook(
    State(s): State<AppState>,
    ApiPath(event): ApiPath<String>,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    // Unconfigured: 503, so that the platform retries once the operator has set it up.
    let cobot =
        cobot(&s).map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not-configured", e.to_string()))?;
    // Only the events lintel subscribes to: anything else would only fill the inbox.
    if !lintel_connectors::cobot::EVENTS.contains(&event.as_str()) {
        return Err(ApiError::invalid("lintel does not follow this event"));
    }
    let bound = s.services().config.max_pending_deliveries;
    match cobot.receive(&event, &parse_json(&body)?, bound).await? {
        Some(id) => Ok((StatusCode::ACCEPTED, Json(json!({"received": id})))),
        None => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "inbox-full",
            format!("{bound} deliveries wait to be processed; try again later"),
        )
        .retry_after(INBOX_FULL_RETRY_SECONDS)),
    }
}

/// When a full inbox asks the platform to retry: the workers take 20 deliveries a second.
const INBOX_FULL_RETRY_SECONDS: u64 = 60;

/// Reconcile with the platform now: every membership, plan and pass (it also runs on a
/// schedule).
#[utoipa::path(post, path = "/api/v1/cobot/sync", tag = "integrations", security(("admin" = [])),
    responses((status = 200, description = "the sync report", body = SyncReport), (status = 404, description = "no such resource", body = Problem, content_type = "application/problem+json"), (status = 502, description = "the other system could not be reached", body = Problem, content_type = "application/problem+json")))]
pub async fn sync_now(State(s): State<AppState>, _: Admin) -> Result<Json<SyncReport>, ApiError> {
    Ok(Json(cobot(&s)?.sync(&|_, _| {}).await?))
}

/// Create the webhook subscriptions lintel needs at the platform.
#[utoipa::path(post, path = "/api/v1/cobot/subscriptions", tag = "integrations", security(("admin" = [])),
    responses((status = 200, description = "`{callbacks: [...]}`"), (status = 404, description = "no such resource", body = Problem, content_type = "application/problem+json"), (status = 502, description = "the other system could not be reached", body = Problem, content_type = "application/problem+json")))]
pub async fn subscribe(State(s): State<AppState>, _: Admin) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"callbacks": cobot(&s)?.subscribe().await?})))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WorkQuery {
    /// `pending`, `done` or `failed`.
    state: Option<String>,
    limit: Option<i64>,
}

fn work_filter(q: &WorkQuery) -> Result<(Option<WorkState>, i64), ApiError> {
    let state = match &q.state {
        Some(s) => Some(WorkState::parse(s).ok_or_else(|| ApiError::invalid("state is pending, done or failed"))?),
        None => None,
    };
    Ok((state, q.limit.unwrap_or(100).clamp(1, 1000)))
}

/// Calls to other systems: what is pending (and why it waits) or failed (and why).
#[utoipa::path(get, path = "/api/v1/outbox", tag = "integrations", params(WorkQuery), security(("admin" = [])),
    responses((status = 200, description = "`{items: [OutboxEntry]}`, newest first")))]
pub async fn outbox(
    State(s): State<AppState>,
    _: Reader,
    ApiQuery(q): ApiQuery<WorkQuery>,
) -> Result<Json<Page<OutboxEntry>>, ApiError> {
    let (state, limit) = work_filter(&q)?;
    let mut items = s.store().outbox(state, limit).await?;
    // An invitation not yet sent carries the visitor's secret: the operator sees where it
    // goes, not what it says.
    for entry in items.iter_mut().filter(|e| e.kind == "invitation") {
        if let Some(text) = entry.payload.get_mut("text") {
            *text = Value::from("(withheld: it carries a personal secret)");
        }
    }
    Ok(Json(Page { items, next: None }))
}

/// Put failed calls back in the queue (after fixing their cause).
#[utoipa::path(post, path = "/api/v1/outbox/retry", tag = "integrations", security(("admin" = [])),
    responses((status = 200, description = "`{requeued: n}`")))]
pub async fn retry_outbox(State(s): State<AppState>, _: Admin) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({"requeued": s.store().retry_failed_outbox().await?})))
}

/// Webhook deliveries received, and what became of them.
#[utoipa::path(get, path = "/api/v1/inbox", tag = "integrations", params(WorkQuery), security(("admin" = [])),
    responses((status = 200, description = "`{items: [InboxEntry]}`, newest first")))]
pub async fn inbox(
    State(s): State<AppState>,
    _: Reader,
    ApiQuery(q): ApiQuery<WorkQuery>,
) -> Result<Json<Page<InboxEntry>>, ApiError> {
    let (state, limit) = work_filter(&q)?;
    Ok(Json(Page { items: s.store().inbox(state, limit).await?, next: None }))
}
