//! Work with other systems: the inbox of webhook deliveries and the outbox of calls.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a piece of work stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkState {
    /// Waiting for its (next) attempt.
    Pending,
    Done,
    /// Given up: a refusal that will not change, or too many attempts. Kept, with why.
    Failed,
}

impl WorkState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Done, Self::Failed].into_iter().find(|w| w.as_str() == s)
    }
}

/// A call lintel makes (or made) to another system.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OutboxEntry {
    pub id: i64,
    /// The system, e.g. `cobot`.
    pub target: String,
    /// What it does, e.g. `check_in`.
    pub kind: String,
    /// Unique: the same work is never queued twice.
    pub idempotency_key: String,
    pub state: WorkState,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
    pub done_at: Option<DateTime<Utc>>,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

/// A webhook delivery lintel received.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InboxEntry {
    pub id: i64,
    pub source: String,
    pub event: String,
    pub state: WorkState,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub received_at: DateTime<Utc>,
    pub done_at: Option<DateTime<Utc>>,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

/// What to write on a makerspace member's card.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CardToWrite {
    /// The member's CRM id.
    pub member: String,
    /// The card's UID (the id, with a leading 0 when its digit count is odd).
    pub uid: String,
    /// The CRM's current revocation code (its external-id field); `null` when it has none.
    pub revocation_code: Option<String>,
    /// The member's person in lintel.
    pub person_id: String,
    /// Whether they hold the configured membership (a card of a member who does not is
    /// refused with `person_suspended`).
    pub in_good_standing: bool,
}

/// What a reconciliation with the coworking platform did.
#[derive(Debug, Default, Clone, Serialize, Deserialize, ToSchema)]
pub struct SyncReport {
    pub memberships: usize,
    pub created: usize,
    /// Members whose membership is not (or no longer) current: access suspended.
    pub inactive: usize,
    /// Members lintel knew who are gone from the platform.
    pub gone: usize,
    pub with_passes: usize,
    /// Upcoming bookings of rooms with doors.
    pub bookings: usize,
}

/// `POST /api/v1/slack/reconcile`: the people linked to Slack compared with the workspace.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Reconciled {
    /// Workspace members listed by `users.list`.
    pub members: usize,
    /// People linked to a Slack user who is deleted or gone.
    pub departed: usize,
    /// Credentials revoked now.
    pub revoked: usize,
}

/// `POST /hooks/doorbell`: a ring, recorded and posted.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Rang {
    /// Whether the message reached the channel.
    pub posted: bool,
    /// Whether the camera's snapshot is in it.
    pub snapshot: bool,
    /// The `doorbell.rang` event.
    pub event_id: String,
}
