//! What lintel and MQTT door controllers say to each other (`docs/mqtt.md`), and the
//! signed offline allow-list. Shared by the server and the reference controller
//! (`lintel controller-sim`), so both sides parse exactly the same shapes.
//!
//! Every payload comes from a device on the network, so parsing is strict: a size limit,
//! unknown fields refused, ids of bounded length and plain characters.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{PresentedCredential, Reason};

/// The largest payload lintel reads from a controller (an upload of offline decisions
/// is the largest; controllers send them in batches below this).
pub const MAX_PAYLOAD: usize = 256 * 1024;
/// Offline decisions per upload message.
pub const MAX_UPLOAD_BATCH: usize = 500;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    #[error("payload of {0} bytes is larger than the limit")]
    TooLarge(usize),
    #[error("payload is not the expected JSON: {0}")]
    Json(String),
    #[error("{0}")]
    Invalid(String),
}

/// A controller id, a message id or a door id as it may appear in a topic or payload:
/// 1 to 64 of `A-Z a-z 0-9 . _ -` (no MQTT wildcards or separators).
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, PayloadError> {
    if bytes.len() > MAX_PAYLOAD {
        return Err(PayloadError::TooLarge(bytes.len()));
    }
    serde_json::from_slice(bytes).map_err(|e| PayloadError::Json(e.to_string()))
}

fn check_id(what: &str, id: &str) -> Result<(), PayloadError> {
    if valid_id(id) { Ok(()) } else { Err(PayloadError::Invalid(format!("{what} {id:?} is not a valid id"))) }
}

/// `<prefix>/c/<controller>/status`, retained; the broker publishes the Last Will
/// (`{"online": false}`) when the controller drops.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Status {
    pub online: bool,
    /// The allow-list version the controller holds (0: none).
    #[serde(default)]
    pub list_version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<String>,
}

impl Status {
    pub fn parse(bytes: &[u8]) -> Result<Self, PayloadError> {
        let s: Self = parse(bytes)?;
        if s.firmware.as_ref().is_some_and(|f| f.len() > 128) {
            return Err(PayloadError::Invalid("firmware is longer than 128 bytes".into()));
        }
        Ok(s)
    }
}

/// `<prefix>/c/<controller>/tap`: a credential presented at one of the controller's doors.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tap {
    /// Unique per controller; a repeated id (a QoS 1 redelivery) gets the same answer.
    pub id: String,
    pub door: String,
    pub credential: PresentedCredential,
    /// Until when the controller waits for the answer before it decides offline. lintel
    /// does not decide a tap that arrives later (delivered after lintel or the broker was
    /// down): the controller has decided it and uploads that decision instead.
    pub deadline: DateTime<Utc>,
}

impl Tap {
    pub fn parse(bytes: &[u8]) -> Result<Self, PayloadError> {
        let t: Self = parse(bytes)?;
        check_id("tap id", &t.id)?;
        check_id("door", &t.door)?;
        Ok(t)
    }
}

/// `<prefix>/c/<controller>/input`: one of its doors' inputs changed (see
/// [`crate::DoorInput`]): `{"door": "front", "input": "door", "state": "open"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputMessage {
    pub door: String,
    pub input: crate::InputKind,
    pub state: crate::InputState,
}

impl InputMessage {
    pub fn parse(bytes: &[u8]) -> Result<Self, PayloadError> {
        let m: Self = parse(bytes)?;
        check_id("door", &m.door)?;
        Ok(m)
    }
}

/// What a controller is told to do at a door.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Release the lock for this many seconds.
    Open { seconds: u32 },
    /// Hold the lock released until told `on: false` (a door's unlock schedule, an
    /// operator's hold, an emergency release); an `open` meanwhile leaves it held.
    Hold { on: bool },
    /// Light the reader's LED (`green`, `red`, `amber`) for this many seconds.
    Led { color: LedColor, seconds: u32 },
    /// Sound the buzzer: `short` (accepted) or `long` (refused).
    Buzzer { pattern: BuzzerPattern },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedColor {
    Green,
    Red,
    Amber,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuzzerPattern {
    Short,
    Long,
}

/// What a controller does with a decision, online or offline: open for the door's
/// `open_seconds` with a green LED and a short beep, or a red LED and a long beep.
pub fn actions_for(allowed: bool, open_seconds: u32) -> Vec<Action> {
    if allowed {
        vec![
            Action::Open { seconds: open_seconds },
            Action::Led { color: LedColor::Green, seconds: open_seconds },
            Action::Buzzer { pattern: BuzzerPattern::Short },
        ]
    } else {
        vec![Action::Led { color: LedColor::Red, seconds: 2 }, Action::Buzzer { pattern: BuzzerPattern::Long }]
    }
}

/// `<prefix>/c/<controller>/decision`: lintel's answer to a tap, with what to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionMessage {
    /// The tap's id.
    pub id: String,
    pub door: String,
    pub allowed: bool,
    pub reason: Reason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person_id: Option<String>,
    pub actions: Vec<Action>,
}

impl DecisionMessage {
    pub fn parse(bytes: &[u8]) -> Result<Self, PayloadError> {
        parse(bytes)
    }
}

/// `<prefix>/c/<controller>/command`: an action lintel asks for outside of a tap (an
/// operator opening the door); the controller answers on `ack` with the same id. (Serde
/// cannot refuse unknown fields next to a flattened one: the action's own fields are checked.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub id: String,
    pub door: String,
    #[serde(flatten)]
    pub action: Action,
}

impl Command {
    pub fn parse(bytes: &[u8]) -> Result<Self, PayloadError> {
        let c: Self = parse(bytes)?;
        check_id("command id", &c.id)?;
        check_id("door", &c.door)?;
        Ok(c)
    }
}

/// `<prefix>/c/<controller>/ack`: the controller carried out (or could not carry out) a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    pub id: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Ack {
    pub fn parse(bytes: &[u8]) -> Result<Self, PayloadError> {
        let a: Self = parse(bytes)?;
        check_id("command id", &a.id)?;
        Ok(a)
    }
}

/// `<prefix>/c/<controller>/list/ack`: the controller verified and installed a list
/// version, or refused it (`refused` says why: a bad signature, another controller's list,
/// an older version) and then `version` is the version it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListAck {
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

impl ListAck {
    pub fn parse(bytes: &[u8]) -> Result<Self, PayloadError> {
        let a: Self = parse(bytes)?;
        if a.refused.as_ref().is_some_and(|r| r.len() > 200) {
            return Err(PayloadError::Invalid("refused is longer than 200 bytes".into()));
        }
        Ok(a)
    }
}

/// A decision a controller made on its own while it could not reach lintel.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfflineDecision {
    /// Unique per controller, forever: lintel records each id once.
    pub id: String,
    pub door: String,
    pub at: DateTime<Utc>,
    /// What was presented; absent for an entry at the keypad, which a controller never
    /// uploads (it may be someone's PIN or backup code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<PresentedCredential>,
    pub allowed: bool,
    pub reason: Reason,
    /// The list version it was decided on (0: none).
    pub list_version: u64,
    /// A fail-safe door let someone in because its list had lapsed.
    #[serde(default)]
    pub fail_safe: bool,
    /// The keypad entry was this listed backup code (its `credential` in the list): let in
    /// (lintel then marks it used everywhere), or refused as used before at this controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_code: Option<String>,
    /// The controller let this person into the door's zone a second time without seeing
    /// them leave (it knows only its own readers; lintel judges again on upload).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anti_passback: bool,
}

/// `<prefix>/c/<controller>/upload`: offline decisions, sent when the controller is back
/// online and re-sent until lintel answers on `upload/ack`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upload {
    pub decisions: Vec<OfflineDecision>,
}

impl Upload {
    pub fn parse(bytes: &[u8]) -> Result<Self, PayloadError> {
        let u: Self = parse(bytes)?;
        if u.decisions.len() > MAX_UPLOAD_BATCH {
            return Err(PayloadError::Invalid(format!("more than {MAX_UPLOAD_BATCH} decisions in one upload")));
        }
        for d in &u.decisions {
            check_id("decision id", &d.id)?;
            check_id("door", &d.door)?;
            if let Some(code) = &d.backup_code {
                check_id("backup code", code)?;
            }
        }
        Ok(u)
    }
}

/// `<prefix>/c/<controller>/upload/ack`: these ids are recorded; the controller may forget them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadAck {
    pub ids: Vec<String>,
}

impl UploadAck {
    pub fn parse(bytes: &[u8]) -> Result<Self, PayloadError> {
        parse(bytes)
    }
}

/// The payload of the signed allow-list (`<prefix>/c/<controller>/list`, retained): the
/// JWS payload, signed with lintel's Ed25519 key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowList {
    /// The controller this list is for: a controller refuses another's list.
    pub controller: String,
    /// Increases with every list lintel issues for this controller.
    pub version: u64,
    /// Unix seconds.
    pub issued_at: i64,
    /// Hex; card hashes are `SHA-256(salt || UID bytes)`.
    pub salt: String,
    pub doors: BTreeMap<String, OfflineDoor>,
    /// Sets of `[from, until)` windows in Unix seconds, referred to by index.
    pub windows: Vec<Vec<[i64; 2]>>,
    pub cards: Vec<OfflineCard>,
    /// Unused backup codes, for the keypad (left out when there are none, so a list
    /// without them is what it was before codes were listed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codes: Vec<OfflineCode>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfflineDoor {
    /// After this (Unix seconds) the list no longer holds for this door.
    pub lapses_at: i64,
    /// `secure`: nobody gets in on a lapsed list; `safe`: everybody does.
    pub fail_mode: crate::FailMode,
    pub open_seconds: u32,
    /// The door's anti-passback zone, when it is in one (left out otherwise). Offline, a
    /// controller lets a second entry through and marks it (`anti_passback` in the upload);
    /// lintel reconciles the upload with what other readers saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<ListZone>,
}

/// A door's place in an anti-passback zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListZone {
    pub id: String,
    /// The door's reader leads out of the zone (else in).
    pub exit: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfflineCard {
    /// Hex `SHA-256(salt || UID bytes)`.
    pub hash: String,
    /// Hex `SHA-256(salt || revocation code)` when the card carries one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation: Option<String>,
    /// Door id -> index into `windows`: when this card opens that door.
    pub doors: BTreeMap<String, usize>,
}

/// An unused backup code that opens some of the controller's doors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfflineCode {
    /// Hex `SHA-256(salt || "backup-code:" || SHA-256(code))`, the code as its digits
    /// (letters upper case) without dashes or spaces.
    pub hash: String,
    /// The code's credential id, which an upload names when the code was used.
    pub credential: String,
    /// Door id -> index into `windows`, as for cards.
    pub doors: BTreeMap<String, usize>,
}

/// A controller as `GET /api/v1/controllers` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Controller {
    pub id: String,
    /// The doors whose driver names this controller.
    pub doors: Vec<String>,
    /// From its retained status and Last Will; `null` before lintel heard from it.
    pub online: Option<bool>,
    pub last_seen: Option<DateTime<Utc>>,
    /// The allow-list version lintel wants the controller to hold.
    pub list_version: u64,
    /// The version the controller acknowledged.
    pub acknowledged_version: u64,
    /// `list_version != acknowledged_version`: lintel keeps re-sending.
    pub drift: bool,
    /// Why the controller refused the last list, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    pub list_issued_at: Option<DateTime<Utc>>,
    /// Cards in the current list.
    pub cards: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_with_odd_ids_or_fields_are_refused() {
        let ok = br#"{"id": "t-1", "door": "front", "credential": {"kind": "card", "uid": "04A1B2C3"}, "deadline": "2026-12-01T10:00:02Z"}"#;
        assert_eq!(Tap::parse(ok).unwrap().door, "front");
        for bad in [
            &br#"{"id": "t/1", "door": "front", "credential": {"kind": "card", "uid": "04"}}"#[..],
            br#"{"id": "t-1", "door": "fr#nt", "credential": {"kind": "card", "uid": "04"}}"#,
            br#"{"id": "", "door": "front", "credential": {"kind": "card", "uid": "04"}}"#,
            br#"{"id": "t-1", "door": "front", "credential": {"kind": "card", "uid": "04"}, "x": 1}"#,
            br#"{"id": "t-1", "door": "front"}"#,
            b"\xff\xfe",
        ] {
            assert!(Tap::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(matches!(Tap::parse(&vec![b' '; MAX_PAYLOAD + 1]), Err(PayloadError::TooLarge(_))));
    }

    #[test]
    fn commands_round_trip_with_their_action_inline() {
        let c = Command { id: "c-1".into(), door: "front".into(), action: Action::Open { seconds: 5 } };
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(text, r#"{"id":"c-1","door":"front","action":"open","seconds":5}"#);
        assert_eq!(Command::parse(text.as_bytes()).unwrap(), c);
    }

    #[test]
    fn uploads_are_bounded() {
        let one = r#"{"id": "o-1", "door": "front", "at": "2026-12-01T10:00:00Z", "credential": {"kind": "card", "uid": "04"}, "allowed": true, "reason": "granted", "list_version": 3}"#;
        let many = format!(r#"{{"decisions": [{}]}}"#, vec![one; MAX_UPLOAD_BATCH + 1].join(","));
        assert!(Upload::parse(many.as_bytes()).is_err());
        let few = format!(r#"{{"decisions": [{one}]}}"#);
        assert_eq!(Upload::parse(few.as_bytes()).unwrap().decisions[0].list_version, 3);
    }
}
