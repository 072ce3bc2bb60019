use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Why a decision went the way it did. The names are the API contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Granted,
    UnknownCredential,
    /// A card whose number the makerspace CRM does not know (looked up, not found).
    UnknownMember,
    UnknownDoor,
    PersonSuspended,
    CredentialRevoked,
    RevokedCard,
    NoGrant,
    OutsideSchedule,
    NotYetValid,
    Expired,
    NoPassesLeft,
    MissingSkill,
    RateLimited,
    /// An MQTT controller decided offline on an allow-list older than the door's
    /// `offline_max_age` (a fail-secure door then refuses everyone).
    ListExpired,
    /// The makerspace CRM is down and what lintel knows of the member is older than
    /// `[crm] max_stale`: their cached good standing no longer opens doors.
    CrmUnavailable,
    /// The door is in lockdown: only people exempt from it may open it.
    Lockdown,
    /// The person entered the door's anti-passback zone and has not left it since (a
    /// `hard` zone refuses them until they exit, its reset time passes or an operator
    /// forgives them).
    AntiPassback,
}

impl Reason {
    pub const ALL: [Reason; 18] = [
        Self::Granted,
        Self::UnknownCredential,
        Self::UnknownMember,
        Self::UnknownDoor,
        Self::PersonSuspended,
        Self::CredentialRevoked,
        Self::RevokedCard,
        Self::NoGrant,
        Self::OutsideSchedule,
        Self::NotYetValid,
        Self::Expired,
        Self::NoPassesLeft,
        Self::MissingSkill,
        Self::RateLimited,
        Self::ListExpired,
        Self::CrmUnavailable,
        Self::Lockdown,
        Self::AntiPassback,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Granted => "granted",
            Self::UnknownCredential => "unknown_credential",
            Self::UnknownMember => "unknown_member",
            Self::UnknownDoor => "unknown_door",
            Self::PersonSuspended => "person_suspended",
            Self::CredentialRevoked => "credential_revoked",
            Self::RevokedCard => "revoked_card",
            Self::NoGrant => "no_grant",
            Self::OutsideSchedule => "outside_schedule",
            Self::NotYetValid => "not_yet_valid",
            Self::Expired => "expired",
            Self::NoPassesLeft => "no_passes_left",
            Self::MissingSkill => "missing_skill",
            Self::RateLimited => "rate_limited",
            Self::ListExpired => "list_expired",
            Self::CrmUnavailable => "crm_unavailable",
            Self::Lockdown => "lockdown",
            Self::AntiPassback => "anti_passback",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// The credential a reader, station or app presents.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PresentedCredential {
    Card {
        uid: String,
        #[serde(default)]
        revocation_code: Option<String>,
    },
    /// Digits typed at a keypad: 4 to 12 are a PIN; a backup code's 20 digits (without
    /// its dashes) are that backup code, since a keypad has no other way to send one.
    Pin {
        pin: String,
    },
    Secret {
        secret: String,
    },
    BackupCode {
        code: String,
    },
    /// What a makerspace station reads from its card: the person's id and the card's
    /// revocation code, which must be the person's current one.
    Member {
        person_id: String,
        revocation_code: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    pub door: String,
    pub credential: PresentedCredential,
    /// The moment to decide for; now when absent.
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
    /// Answer without recording an event or consuming a pass.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DecisionResponse {
    pub allowed: bool,
    pub reason: Reason,
    pub detail: String,
    pub person_id: Option<String>,
    pub grant_id: Option<String>,
    /// The event that records this decision; `null` for a dry run.
    pub event_id: Option<String>,
    /// With `rate_limited`: seconds until this source may try again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// The person's display name, for a station to show; only in answers to `member` asks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The answer to an open request: the decision and, when allowed, what the door did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OpenResponse {
    pub allowed: bool,
    pub reason: Reason,
    pub detail: String,
    pub person_id: Option<String>,
    pub door: String,
    pub event_id: Option<String>,
    /// Whether the driver was asked to open the door.
    pub opened: bool,
    /// Whether the device confirmed the opening.
    pub confirmed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver_error: Option<String>,
}

/// Optional body of `POST /api/v1/doors/{id}/open`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminOpenRequest {
    /// Seconds to keep the door open; the door's `open_seconds` when absent.
    pub seconds: Option<u32>,
    /// Why the door is opened (kept in the event).
    pub note: Option<String>,
}
