use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PersonStatus {
    #[default]
    Active,
    Suspended,
}

impl PersonStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Person {
    pub id: String,
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub email_verified: bool,
    pub phone_verified: bool,
    pub external_ids: BTreeMap<String, String>,
    pub status: PersonStatus,
    pub skills: Vec<String>,
    #[schema(value_type = Object)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
    /// The ids of the groups the person belongs to.
    pub groups: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPerson {
    pub id: Option<String>,
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    #[serde(default)]
    pub email_verified: bool,
    #[serde(default)]
    pub phone_verified: bool,
    #[serde(default)]
    pub external_ids: BTreeMap<String, String>,
    #[serde(default)]
    pub status: PersonStatus,
    #[serde(default)]
    pub skills: Vec<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// A merge patch of a person: absent fields stay as they are; `null` clears an optional one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PersonPatch {
    pub name: Option<String>,
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub email: Option<Option<String>>,
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub phone: Option<Option<String>>,
    pub email_verified: Option<bool>,
    pub phone_verified: Option<bool>,
    pub external_ids: Option<BTreeMap<String, String>>,
    pub status: Option<PersonStatus>,
    pub skills: Option<Vec<String>>,
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Tells "absent" (outer `None`) from "explicitly null" (`Some(None)`) in a merge patch.
pub(crate) mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer, T: Serialize>(v: &Option<Option<T>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(inner) => inner.serialize(s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    Card,
    Pin,
    Secret,
    BackupCode,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Card => "card",
            Self::Pin => "pin",
            Self::Secret => "secret",
            Self::BackupCode => "backup_code",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "card" => Self::Card,
            "pin" => Self::Pin,
            "secret" => Self::Secret,
            "backup_code" => Self::BackupCode,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CredentialStatus {
    Active,
    Revoked,
    /// A single-use backup code that has been used.
    Used,
}

impl CredentialStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Revoked => "revoked",
            Self::Used => "used",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => Self::Active,
            "revoked" => Self::Revoked,
            "used" => Self::Used,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Credential {
    pub id: String,
    /// `null` once the person was deleted (the credential stays, revoked, for the record).
    pub person_id: Option<String>,
    pub kind: CredentialKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation_code: Option<String>,
    pub status: CredentialStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
    /// The generated secret or backup code: present once, in the answer that created it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum NewCredential {
    Card {
        uid: String,
        #[serde(default)]
        revocation_code: Option<String>,
    },
    Pin {
        pin: String,
    },
    // Empty struct variants (not unit variants), so that unknown fields are refused.
    Secret {},
    BackupCode {},
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// Stays locked when lintel cannot decide (the default).
    #[default]
    Secure,
    /// Opens when lintel cannot decide (fire exits, by local regulation).
    Safe,
}

impl FailMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Secure => "secure",
            Self::Safe => "safe",
        }
    }
}

/// How lintel drives a door.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DriverConfig {
    /// Records decisions only; nothing is switched.
    None {},
    /// A Shelly relay: Gen2+ RPC `Switch.Set` or Gen1 `relay/N`.
    Shelly {
        url: String,
        #[serde(default = "default_shelly_generation")]
        generation: u8,
        #[serde(default)]
        channel: u8,
        #[serde(default)]
        username: Option<String>,
        #[serde(default)]
        password: Option<String>,
    },
    /// A configurable HTTP call, e.g. to a lock-cloud API with a token header.
    Http {
        url: String,
        #[serde(default = "default_http_method")]
        method: String,
        #[serde(default)]
        headers: BTreeMap<String, String>,
        #[serde(default)]
        #[schema(value_type = Option<Object>)]
        body: Option<serde_json::Value>,
        /// What counts as an opening; without it, any 2xx.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        success: Option<SuccessRule>,
    },
    /// A Shelly relay reached through Shelly Cloud (Cloud Control API): the account's
    /// server and authorization key (the app's user settings), the device id, the channel.
    ShellyCloud {
        /// The account's server, e.g. `https://shelly-49-eu.shelly.cloud`.
        server: String,
        auth_key: String,
        device_id: String,
        #[serde(default)]
        channel: u8,
    },
    /// A door on an MQTT controller (`docs/mqtt.md`): lintel sends `open` commands, and
    /// the controller decides from its signed allow-list while it cannot reach lintel.
    Mqtt {
        controller: String,
        /// Seconds after it was issued that the controller's list lapses for this door
        /// (then a fail-secure door refuses everyone, a fail-safe one admits everyone).
        #[serde(default = "default_offline_max_age")]
        offline_max_age: u32,
    },
    /// An OSDP reader's output (a relay wired to the strike), switched on for the opening;
    /// the reader is one of the `[[osdp.readers]]` in the configuration, by name.
    Osdp {
        reader: String,
        #[serde(default)]
        output: u8,
    },
}

/// When a device's answer means the door opened: its status is one of `status` (when
/// given) and the JSON at `field` (a JSON Pointer such as `/result/ok`) equals `value`
/// (when given).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuccessRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Vec<u16>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub value: Option<serde_json::Value>,
}

fn default_offline_max_age() -> u32 {
    86_400
}

fn default_shelly_generation() -> u8 {
    2
}

fn default_http_method() -> String {
    "POST".into()
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self::None {}
    }
}

/// A URL with its password and its query (where API keys often sit) replaced by
/// [`REDACTED`]: `http://user:********@host/path?********`. The one redaction of URLs
/// for answers, logs and errors (drivers' URLs, database URLs).
pub fn redact_url(url: &str) -> String {
    let (url, query) = match url.split_once('?') {
        Some((base, _)) => (base, Some(REDACTED)),
        None => (url, None),
    };
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let base = match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:{REDACTED}{}", &rest[at..]),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    };
    match query {
        Some(q) => format!("{base}?{q}"),
        None => base,
    }
}

/// `scheme://host:port` of a URL, without credentials: where secrets would be sent.
fn origin(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    format!("{}://{}", scheme.to_ascii_lowercase(), host.to_ascii_lowercase())
}

/// Puts the stored password back into a URL that came back redacted.
fn restore_url(url: &str, stored: &str) -> String {
    if redact_url(stored) == url { stored.to_owned() } else { url.to_owned() }
}

impl DriverConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::None {} => "none",
            Self::Shelly { .. } => "shelly",
            Self::Http { .. } => "http",
            Self::ShellyCloud { .. } => "shelly_cloud",
            Self::Mqtt { .. } => "mqtt",
            Self::Osdp { .. } => "osdp",
        }
    }

    /// The configuration as shown through the API: passwords (also in URLs) and header
    /// values are secrets of other systems, so they are never echoed back.
    pub fn redacted(&self) -> Self {
        let mut shown = self.clone();
        match &mut shown {
            Self::Shelly { url, password, .. } => {
                *url = redact_url(url);
                if password.is_some() {
                    *password = Some(REDACTED.into());
                }
            }
            Self::Http { url, headers, body, .. } => {
                *url = redact_url(url);
                headers.values_mut().for_each(|v| *v = REDACTED.into());
                if body.is_some() {
                    *body = Some(serde_json::Value::String(REDACTED.into()));
                }
            }
            Self::ShellyCloud { auth_key, .. } => *auth_key = REDACTED.into(),
            // A controller's id, a reader's name and an output number: nothing secret.
            Self::None {} | Self::Mqtt { .. } | Self::Osdp { .. } => {}
        }
        shown
    }

    /// A configuration written back as it was read keeps the stored secrets: every
    /// [`REDACTED`] placeholder takes the stored value again, but only while the device
    /// stays where it was (the same scheme, host and port), so that a changed URL can
    /// never carry the stored secrets somewhere else.
    pub fn with_secrets_from(mut self, stored: &DriverConfig) -> Self {
        let same_place = match (&self, stored) {
            (Self::Shelly { url, .. }, Self::Shelly { url: old, .. })
            | (Self::Http { url, .. }, Self::Http { url: old, .. })
            | (Self::ShellyCloud { server: url, .. }, Self::ShellyCloud { server: old, .. }) => {
                origin(url) == origin(old)
            }
            _ => false,
        };
        if !same_place {
            return self;
        }
        match (&mut self, stored) {
            (Self::Shelly { url, password, .. }, Self::Shelly { url: old_url, password: old_password, .. }) => {
                *url = restore_url(url, old_url);
                if password.as_deref() == Some(REDACTED) {
                    password.clone_from(old_password);
                }
            }
            (
                Self::Http { url, headers, body, .. },
                Self::Http { url: old_url, headers: old_headers, body: old_body, .. },
            ) => {
                *url = restore_url(url, old_url);
                if body.as_ref().and_then(|b| b.as_str()) == Some(REDACTED) {
                    body.clone_from(old_body);
                }
                for (name, value) in headers.iter_mut() {
                    if value == REDACTED
                        && let Some(old) = old_headers.get(name)
                    {
                        value.clone_from(old);
                    }
                }
            }
            (Self::ShellyCloud { auth_key, .. }, Self::ShellyCloud { auth_key: old, .. }) if auth_key == REDACTED => {
                auth_key.clone_from(old);
            }
            _ => {}
        }
        self
    }
}

pub const REDACTED: &str = "********";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Door {
    pub id: String,
    pub name: String,
    pub driver: DriverConfig,
    pub fail_mode: FailMode,
    pub required_skill: Option<String>,
    pub open_seconds: u32,
    /// Whether allowed entries here count as attendance.
    pub attendance: bool,
    /// The site the door is in.
    pub site: String,
    /// When the door is held unlocked (free passage) by itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unlock_schedule: Option<UnlockSchedule>,
    /// The door is on an exit route: an emergency release of its site releases it, even
    /// in lockdown.
    pub egress: bool,
    /// How long the door may stand open after an entry before the `held_open` alarm (a
    /// warning comes 10 s before).
    pub held_open_seconds: u32,
    pub state: DoorState,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct DoorState {
    /// `null` while lintel has not heard from the device.
    pub online: Option<bool>,
    pub last_seen: Option<DateTime<Utc>>,
    pub last_opened: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// What the door is doing now: `secure` (credentials decide), `unlocked`, `lockdown`
    /// (only people exempt from lockdown may open it) or `egress_open`.
    pub mode: String,
    /// Who put the door in lockdown, while it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lockdown_by: Option<String>,
    /// An operator's hold over the schedule, while it lasts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold: Option<DoorHold>,
    /// What its position switch said last: `open` or `closed` (`null`: no switch reported).
    pub position: Option<String>,
    /// The kinds of its open alarms (`forced_open`, `held_open`, `tamper`,
    /// `device_offline`): raised and not yet cleared and acknowledged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alarms: Vec<String>,
}

/// An alarm at a door. It stays open until its condition clears (`cleared_at`) and an
/// operator acknowledges it (`acked_at`, with who and a note).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Alarm {
    pub id: String,
    pub door: String,
    /// `forced_open`, `held_open`, `tamper`, `device_offline` or `anti_passback` (a
    /// soft zone let someone in twice without an exit).
    pub kind: String,
    pub raised_at: DateTime<Utc>,
    pub cleared_at: Option<DateTime<Utc>>,
    pub acked_at: Option<DateTime<Utc>>,
    pub acked_by: Option<String>,
    pub note: Option<String>,
}

/// `POST /api/v1/alarms/{id}/ack`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlarmAck {
    /// What the operator found or did.
    #[serde(default)]
    pub note: Option<String>,
}

/// A door's input: its position switch, its exit button, its tamper switch, or a fire
/// panel's contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    /// The door position switch: `open` or `closed`.
    Door,
    /// A request to exit (a button, a motion sensor inside): `active`.
    Exit,
    /// A reader's or enclosure's tamper switch: `active` or `inactive`.
    Tamper,
    /// A fire panel's contact: `active` raises an emergency release of the door's site.
    Fire,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InputState {
    Open,
    Closed,
    Active,
    Inactive,
}

/// An input a device reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DoorInput {
    pub input: InputKind,
    pub state: InputState,
}

impl DoorState {
    /// Whether the door is held unlocked now (its lock released until told otherwise).
    pub fn hold_open(&self) -> bool {
        matches!(self.mode.as_str(), "unlocked" | "egress_open")
    }
}

/// A door's unlock schedule: the weekly rules (as a grant's) during which it is held
/// unlocked, except on its site's holidays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnlockSchedule {
    /// An IANA time zone name, e.g. `Europe/Berlin`.
    pub tz: String,
    pub rules: Vec<ScheduleRule>,
    /// First to arrive: the schedule starts only with the day's first allowed entry at
    /// this door from this local time on (`HH:MM`), of a member of `first_to_arrive_group`
    /// when one is named (e.g. staff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_to_arrive_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_to_arrive_group: Option<String>,
    /// Last to leave: from this local time on (`HH:MM`), an exit request at this door (its
    /// exit button, pressed by the last person leaving) ends the day's unlocked hours; it
    /// stays secure until the next day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_to_leave_from: Option<String>,
}

/// What an operator's hold keeps a door in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HoldState {
    /// Held unlocked (free passage).
    Unlocked,
    /// Kept secure through its unlock schedule.
    Secure,
}

impl HoldState {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldState::Unlocked => "unlocked",
            HoldState::Secure => "secure",
        }
    }
}

/// An operator's hold of a door, which ends by itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DoorHold {
    pub state: HoldState,
    pub until: DateTime<Utc>,
    pub by: String,
}

/// `POST /api/v1/doors/{id}/hold`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewHold {
    pub state: HoldState,
    /// When the hold ends by itself (within a week).
    pub until: DateTime<Utc>,
}

/// A day or days on which a site's unlock schedules do not apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Holiday {
    pub id: String,
    pub site: String,
    pub name: String,
    /// The first day (local date), included.
    pub from: chrono::NaiveDate,
    /// The last day (local date), included.
    pub to: chrono::NaiveDate,
    /// The iCalendar event it was imported from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// `POST /api/v1/sites/{id}/holidays`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewHoliday {
    pub name: String,
    pub from: chrono::NaiveDate,
    /// Default: the same day as `from`.
    #[serde(default)]
    pub to: Option<chrono::NaiveDate>,
}

/// `POST /api/v1/sites/{id}/emergency`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmergencyRequest {
    /// What raised it, for the record (e.g. `fire panel zone 3`).
    #[serde(default)]
    pub why: Option<String>,
}

/// An anti-passback zone: a person who came in through one of its entry doors must leave
/// through one of its exit doors before entering again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Zone {
    pub id: String,
    pub name: String,
    /// `hard` refuses a second entry (reason `anti_passback`); `soft` lets them in and
    /// raises an `anti_passback` alarm.
    pub strictness: String,
    /// A person counts as outside again this long after their last passage.
    pub reset_minutes: u32,
    /// The doors whose readers lead in.
    pub entry: Vec<String>,
    /// The doors whose readers lead out.
    pub exit: Vec<String>,
    /// The people inside now (entered, not left, not reset or forgiven).
    pub inside: Vec<ZonePresence>,
}

/// A person inside a zone, since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ZonePresence {
    pub person_id: String,
    pub since: DateTime<Utc>,
}

/// `PUT /api/v1/zones/{id}`: a zone, made or replaced whole.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ZoneSpec {
    pub name: String,
    /// `hard` (default) or `soft`.
    #[serde(default)]
    pub strictness: Option<String>,
    /// 1 to 10080 (a week); default 720 (12 hours).
    #[serde(default)]
    pub reset_minutes: Option<u32>,
    #[serde(default)]
    pub entry: Vec<String>,
    #[serde(default)]
    pub exit: Vec<String>,
}

/// `POST /api/v1/zones/{id}/forgive`: one person, or (without `person_id`) everyone inside.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ZoneForgive {
    #[serde(default)]
    pub person_id: Option<String>,
}

/// What a forgive did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ZoneForgiven {
    /// How many people it let count as outside.
    pub forgiven: u32,
}

/// What an `.ics` import did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HolidayImport {
    pub added: u32,
    /// Events already there (same UID and days).
    pub unchanged: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDoor {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub driver: DriverConfig,
    #[serde(default)]
    pub fail_mode: FailMode,
    #[serde(default)]
    pub required_skill: Option<String>,
    #[serde(default)]
    pub open_seconds: Option<u32>,
    #[serde(default)]
    pub attendance: Option<bool>,
    /// The site it is in (default `main`, the site every lintel starts with).
    #[serde(default)]
    pub site: Option<String>,
    #[serde(default)]
    pub unlock_schedule: Option<UnlockSchedule>,
    #[serde(default)]
    pub egress: Option<bool>,
    /// Default 30.
    #[serde(default)]
    pub held_open_seconds: Option<u32>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DoorPatch {
    pub name: Option<String>,
    pub driver: Option<DriverConfig>,
    pub fail_mode: Option<FailMode>,
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub required_skill: Option<Option<String>>,
    pub open_seconds: Option<u32>,
    pub attendance: Option<bool>,
    /// Moves the door to another site.
    pub site: Option<String>,
    /// `null` removes it.
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<UnlockSchedule>)]
    pub unlock_schedule: Option<Option<UnlockSchedule>>,
    pub egress: Option<bool>,
    pub held_open_seconds: Option<u32>,
}

/// A location (a building, one space of a chain): every door is in one site; events,
/// attendance and webhook endpoints can be limited to one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Site {
    pub id: String,
    pub name: String,
    /// An IANA time zone name, e.g. `Europe/Berlin`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// How many doors it has.
    pub doors: u64,
    /// Who raised an emergency release here, while it lasts: its exit-route doors are
    /// held open until an operator resets it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emergency_by: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSite {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub time_zone: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SitePatch {
    pub name: Option<String>,
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub time_zone: Option<Option<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub doors: Vec<String>,
    pub members: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub doors: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

/// One weekly rule: on each listed weekday from `from` to `to` (local wall time,
/// `HH:MM`, `to` may be `24:00`). A `to` earlier than `from` runs past midnight into the
/// next day, so `fri 22:00-02:00` is Friday night until Saturday 02:00.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRule {
    pub weekdays: Vec<Weekday>,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// An IANA time zone name, e.g. `Europe/Berlin`.
    pub tz: String,
    pub rules: Vec<ScheduleRule>,
}

/// How long one pass of a grant lets its holder in: the entry that uses it checks them
/// in, and entries until the check-in ends use nothing more.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PassLasts {
    /// One entry per pass.
    #[default]
    Entry,
    /// Until the end of the grant's schedule span the entry falls in (a day pass from
    /// 04:00 to 03:59 lasts until 03:59 the next morning).
    Span,
    /// This many minutes from the entry that used it.
    Minutes(u32),
}

impl PassLasts {
    /// The longest a pass may last by minutes: a week.
    pub const MAX_MINUTES: u32 = 7 * 24 * 60;

    /// The form the store keeps: `entry`, `span` or `minutes:N`.
    pub fn stored(self) -> String {
        match self {
            Self::Entry => "entry".into(),
            Self::Span => "span".into(),
            Self::Minutes(m) => format!("minutes:{m}"),
        }
    }

    pub fn from_stored(s: &str) -> Option<Self> {
        match s {
            "entry" => Some(Self::Entry),
            "span" => Some(Self::Span),
            _ => s.strip_prefix("minutes:")?.parse().ok().map(Self::Minutes),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Grant {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub person_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub doors: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub door_group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passes: Option<u32>,
    pub passes_used: u32,
    pub pass_lasts: PassLasts,
    /// The holder is checked in until then: entries before it use no pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checked_in_until: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A right of a person or of a group's members to doors. Without `doors` and
/// `door_group`, a group's grant covers that group's own doors.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGrant {
    pub person_id: Option<String>,
    pub group_id: Option<String>,
    pub doors: Option<Vec<String>>,
    pub door_group: Option<String>,
    pub schedule: Option<Schedule>,
    pub valid_from: Option<DateTime<Utc>>,
    pub valid_until: Option<DateTime<Utc>>,
    pub passes: Option<u32>,
    /// How long one pass lets its holder in (default: one entry); only with `passes`.
    pub pass_lasts: Option<PassLasts>,
    pub source: Option<String>,
}

/// A merge patch of a grant: its doors, hours, validity and passes change in place (its
/// id, holder and passes used stay); `null` clears `schedule`, `valid_from`,
/// `valid_until` or `passes`. Giving `doors` drops a `door_group` and the other way round.
/// A grant that changed between the read and the write (another edit) is a 409.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantPatch {
    pub doors: Option<Vec<String>>,
    pub door_group: Option<String>,
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<Schedule>)]
    pub schedule: Option<Option<Schedule>>,
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub valid_from: Option<Option<DateTime<Utc>>>,
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub valid_until: Option<Option<DateTime<Utc>>>,
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<u32>)]
    pub passes: Option<Option<u32>>,
    pub pass_lasts: Option<PassLasts>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenCreated {
    pub name: String,
    /// Shown once; lintel keeps only its SHA-256.
    pub token: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_are_redacted_and_restored() {
        let stored = DriverConfig::Http {
            url: "http://admin:hunter2@10.0.0.5/unlock?x=1".into(),
            method: "POST".into(),
            headers: [("X-Api-Key".to_owned(), "k1".to_owned())].into(),
            body: None,
            success: None,
        };
        let shown = stored.redacted();
        let DriverConfig::Http { url, headers, .. } = &shown else { unreachable!() };
        assert_eq!(url, "http://admin:********@10.0.0.5/unlock?********");
        assert_eq!(headers["X-Api-Key"], REDACTED);
        assert_eq!(shown.clone().with_secrets_from(&stored), stored);
        // Moved to another host, the placeholders stay placeholders.
        let DriverConfig::Http { headers: moved, .. } = DriverConfig::Http {
            url: "http://evil.example/unlock".into(),
            method: "POST".into(),
            headers: [("X-Api-Key".to_owned(), REDACTED.to_owned())].into(),
            body: None,
            success: None,
        }
        .with_secrets_from(&stored) else {
            unreachable!()
        };
        assert_eq!(moved["X-Api-Key"], REDACTED);
        let plain = DriverConfig::Shelly {
            url: "http://10.0.0.9".into(),
            generation: 2,
            channel: 0,
            username: None,
            password: None,
        };
        assert_eq!(plain.redacted(), plain);
    }

    #[test]
    fn fieldless_kinds_refuse_fields() {
        assert!(serde_json::from_str::<NewCredential>(r#"{"kind":"secret","secret":"mine"}"#).is_err());
        assert!(serde_json::from_str::<NewCredential>(r#"{"kind":"secret"}"#).is_ok());
        assert!(serde_json::from_str::<DriverConfig>(r#"{"kind":"none","url":"http://x"}"#).is_err());
        assert_eq!(serde_json::to_string(&DriverConfig::default()).unwrap(), r#"{"kind":"none"}"#);
    }
}

/// Enrolling a card by tapping it: the next unknown card tapped at `door` before
/// `expires_at` becomes the person's card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Enrolment {
    pub id: String,
    pub person_id: String,
    pub door: String,
    /// `waiting` for a tap, `enrolled` (the card is the person's), or `expired`.
    pub state: String,
    pub expires_at: DateTime<Utc>,
    /// The tapped card's UID, once enrolled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
}

/// A guest pass: a visitor's personal link to chosen doors for a while, with no app and no
/// account. The visitor is a person of its own (`person_id`) with a personal secret and a
/// grant to the doors from `valid_from` to `valid_until`; revoking the pass, or its end,
/// removes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GuestPass {
    pub id: String,
    pub person_id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub doors: Vec<String>,
    pub valid_from: DateTime<Utc>,
    pub valid_until: DateTime<Utc>,
    /// `upcoming`, `active`, `ended` or `revoked`.
    pub state: String,
    pub created_at: DateTime<Utc>,
    /// Who issued it (`token:<name>`, `operator:<person>`, ...).
    pub created_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
    /// The visitor's link (`{public_url}/visit#doors=...&secret=...`): in the answer that
    /// issues the pass only, and only when `public_url` is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// The personal secret the link carries: in the answer that issues the pass only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Whether the link was queued to the visitor's email (needs `[smtp]`), in the answer
    /// that issues the pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emailed: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGuestPass {
    /// The visitor's name, as the doors' log will show it.
    pub name: String,
    /// Where the link is mailed (with `send`, and `[smtp]` configured).
    pub email: Option<String>,
    /// 1 to 50 doors.
    pub doors: Vec<String>,
    /// Default: now.
    pub valid_from: Option<DateTime<Utc>>,
    /// At most a year after `valid_from`.
    pub valid_until: DateTime<Utc>,
    /// Mail the link to `email` (default: when an email is given and `[smtp]` is
    /// configured; `true` without either is refused).
    pub send: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEnrolment {
    /// The door whose reader the card will be tapped at.
    pub door: String,
}

/// The doors a lockdown (or its lifting) concerns: a whole site, or chosen doors.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LockdownRequest {
    /// Every door of this site.
    pub site: Option<String>,
    /// These doors (1 to 1000).
    pub doors: Option<Vec<String>>,
}

/// What a lockdown call changed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LockdownChange {
    /// The doors whose state changed (a door already so is not listed).
    pub changed: Vec<String>,
}
