//! Outbound webhooks: endpoints of other systems that lintel pushes its events to, signed
//! per Standard Webhooks.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::WorkState;

/// An endpoint as lintel shows it: never its secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WebhookEndpoint {
    pub id: String,
    pub url: String,
    /// Event kinds it receives: `decision`, `door.opened`, `door.*`, `*`.
    pub kinds: Vec<String>,
    /// Only the events at this site's doors (events at no door are not sent); every
    /// event when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub enabled: bool,
    /// Why lintel disabled it (410 Gone, or failing for its whole retry window).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// Plain `http` to a loopback or private address was allowed for it.
    pub allow_http: bool,
    /// Until when the secret before the last rotation still signs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhookEndpoint {
    /// `https://...`; `http://` only to a loopback or private address, with `allow_http`.
    pub url: String,
    pub kinds: Vec<String>,
    /// Only the events at this site's doors.
    pub site: Option<String>,
    pub description: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
    #[serde(default)]
    pub allow_http: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpointPatch {
    pub url: Option<String>,
    pub kinds: Option<Vec<String>>,
    /// A site to limit it to, or `null` for every event.
    #[serde(default, with = "crate::directory::double_option")]
    #[schema(value_type = Option<String>)]
    pub site: Option<Option<String>>,
    pub description: Option<String>,
    /// Enabling an endpoint lintel disabled clears its reason; what was not delivered
    /// meanwhile can be sent with a re-send.
    pub enabled: Option<bool>,
}

/// An endpoint just made, or its secret just rotated: the secret is shown this once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookSecret {
    pub endpoint: WebhookEndpoint,
    /// `whsec_` and the base64 of the signing key.
    pub secret: String,
}

/// One event's delivery to one endpoint, with every attempt.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookDelivery {
    pub id: i64,
    /// The `webhook-id` header: the same on every attempt and replay.
    pub message_id: String,
    /// The event's `type`.
    #[serde(rename = "type")]
    pub kind: String,
    pub event_id: String,
    pub state: WorkState,
    pub next_attempt_at: DateTime<Utc>,
    pub attempts: Vec<WebhookAttempt>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookAttempt {
    pub at: DateTime<Utc>,
    /// The HTTP status, when there was an answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub duration_ms: u64,
    /// The start of the answer, or why there was none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excerpt: Option<String>,
}

/// Events of a time range sent again to an endpoint (after its outage).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookResend {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookResent {
    /// Deliveries queued.
    pub queued: u64,
}
