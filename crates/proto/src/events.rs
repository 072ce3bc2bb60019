use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Reason;

/// One entry of the append-only event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// Increasing: also the cursor (`after=`) and the SSE `id`.
    pub id: String,
    pub at: DateTime<Utc>,
    /// e.g. `decision`, `door.opened`, `door.driver_failed`, `person.created`, `credential.revoked`.
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub person_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub door: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    /// Who made this change: `token:<name>`, `operator:<person id>`, `cli`,
    /// `integration:<name>`, `scim:<token>`; absent on what no one did (decisions,
    /// devices).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AttendanceDay {
    pub date: NaiveDate,
    /// Set when split with `by=group`; people in no group count under `null`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub present: u64,
    pub people: Vec<AttendanceEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AttendanceEntry {
    pub person_id: String,
    pub first_entry: DateTime<Utc>,
    pub last_entry: DateTime<Utc>,
    pub entries: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Attendance {
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// The time zone that draws the line between days.
    pub tz: String,
    pub days: Vec<AttendanceDay>,
}
