//! The Slack app's endpoints: slash commands, the Events API, interactivity (the
//! doorbell's button) and reconciliation on demand. Every request from Slack is admitted
//! by its signature over the body exactly as received, before anything is parsed.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use lintel_proto::{Problem, Reconciled};
use lintel_service::integrations::slack::{Interaction, Slack, SlashCommand};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::problem::{ApiError, RawBody, parse_json};

fn slack_of(s: &AppState) -> Result<&Arc<Slack>, ApiError> {
    s.services().slack.as_ref().ok_or_else(|| ApiError::not_found("Slack is not configured ([slack] in the config)"))
}

/// The Slack app, once the request is proven to be Slack's.
async fn admitted<'a>(s: &'a AppState, headers: &HeaderMap, body: &[u8]) -> Result<&'a Arc<Slack>, ApiError> {
    let slack = slack_of(s)?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    slack.admit(header("x-slack-request-timestamp"), header("x-slack-signature"), body).await?;
    Ok(slack)
}

/// Slash commands: `/door-secret` and `/regenerate-door-secret`.
#[utoipa::path(post, path = "/hooks/slack/commands", tag = "slack",
    responses((status = 200, description = "an ephemeral message for the caller"), (status = 401, description = "bad signature"),
        (status = 413, description = "larger than max_body_bytes", body = Problem, content_type = "application/problem+json")))]
pub async fn commands(
    State(s): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Json<Value>, ApiError> {
    let slack = admitted(&s, &headers, &body).await?;
    let command: SlashCommand =
        serde_urlencoded::from_bytes(&body).map_err(|e| ApiError::bad_request(format!("not a slash command: {e}")))?;
    let text = slack.command(command).await?;
    Ok(Json(json!({"response_type": "ephemeral", "text": text})))
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Envelope {
    UrlVerification {
        challenge: String,
    },
    EventCallback {
        event: Value,
    },
    #[serde(other)]
    Other,
}

/// The Events API: `url_verification`, and `user_change` with a deleted user, which
/// revokes every credential of that person at once.
#[utoipa::path(post, path = "/hooks/slack/events", tag = "slack",
    responses((status = 200, description = "acknowledged (or the challenge)"), (status = 401, description = "bad signature"),
        (status = 413, description = "larger than max_body_bytes", body = Problem, content_type = "application/problem+json")))]
pub async fn events(
    State(s): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let slack = admitted(&s, &headers, &body).await?;
    match parse_json::<Envelope>(&body)? {
        Envelope::UrlVerification { challenge } => Ok((StatusCode::OK, Json(json!({"challenge": challenge})))),
        Envelope::EventCallback { event } => {
            slack.event(&event).await?;
            Ok((StatusCode::OK, Json(json!({"ok": true}))))
        }
        Envelope::Other => Ok((StatusCode::OK, Json(json!({"ok": true})))),
    }
}

/// Reconcile with Slack's `users.list` now (it also runs on a schedule).
#[utoipa::path(post, path = "/api/v1/slack/reconcile", tag = "slack", security(("admin" = [])),
    responses((status = 200, description = "the reconciled", body = Reconciled), (status = 404, description = "Slack is not configured"), (status = 503, description = "Slack unreachable")))]
pub async fn reconcile_now(State(s): State<AppState>, _: crate::auth::Admin) -> Result<Json<Reconciled>, ApiError> {
    Ok(Json(slack_of(&s)?.reconcile().await?))
}

#[derive(Debug, Deserialize)]
struct InteractionForm {
    payload: String,
}

/// Interactivity: the doorbell's **Open door** button. Acknowledged at once (Slack waits
/// only 3 seconds); the door is opened for the member who clicked afterwards.
#[utoipa::path(post, path = "/hooks/slack/interactions", tag = "slack",
    responses((status = 200, description = "acknowledged"), (status = 400, description = "not an interaction payload"),
        (status = 401, description = "bad signature"), (status = 413, description = "larger than max_body_bytes", body = Problem, content_type = "application/problem+json")))]
pub async fn interactions(
    State(s): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<StatusCode, ApiError> {
    let slack = admitted(&s, &headers, &body).await?;
    let form: InteractionForm =
        serde_urlencoded::from_bytes(&body).map_err(|e| ApiError::bad_request(format!("no payload field: {e}")))?;
    let interaction: Interaction = parse_json(form.payload.as_bytes())?;
    slack.interaction(interaction)?;
    Ok(StatusCode::OK)
}
