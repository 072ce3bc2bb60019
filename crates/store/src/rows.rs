//! Reading rows into API records and index entries.

use chrono::{DateTime, Utc};
use lintel_core::{CredentialKey, IndexCredential, IndexDoor, IndexPerson, Pk, revocation_hash};
use lintel_proto::{Credential, CredentialKind, CredentialStatus, Door, DoorHold, DoorState, FailMode, PersonStatus};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, StoreError};

pub(crate) fn time(micros: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros).ok_or_else(|| StoreError::Corrupt(format!("time {micros} out of range")))
}

pub(crate) fn opt_time(micros: Option<i64>) -> Result<Option<DateTime<Utc>>> {
    micros.map(time).transpose()
}

pub(crate) fn json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("stored JSON: {e}")))
}

pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("serializing plain data cannot fail")
}

pub(crate) fn person_status(s: &str) -> Result<PersonStatus> {
    match s {
        "active" => Ok(PersonStatus::Active),
        "suspended" => Ok(PersonStatus::Suspended),
        other => Err(StoreError::Corrupt(format!("person status {other:?}"))),
    }
}

/// Credential ids are derived from their row key: `c-17`.
pub fn credential_id(pk: Pk) -> String {
    format!("c-{pk}")
}

pub fn parse_credential_id(id: &str) -> Option<Pk> {
    id.strip_prefix("c-")?.parse().ok().filter(|pk| *pk > 0)
}

/// Grant ids likewise: `g-17`.
pub fn grant_id(pk: Pk) -> String {
    format!("g-{pk}")
}

pub fn parse_grant_id(id: &str) -> Option<Pk> {
    id.strip_prefix("g-")?.parse().ok().filter(|pk| *pk > 0)
}

pub(crate) const PERSON_COLUMNS: &str =
    "pk, id, name, email, phone, email_verified, phone_verified, status, skills, attributes, created_at, updated_at";

/// Whether the attributes (JSON) mark their person exempt from lockdown; most people's
/// attributes do not name it, and are not parsed.
fn lockdown_exempt(attributes: &str) -> Result<bool> {
    if !attributes.contains(LOCKDOWN_EXEMPT_ATTRIBUTE) {
        return Ok(false);
    }
    let attributes: serde_json::Map<String, serde_json::Value> = json(attributes)?;
    Ok(attributes.get(LOCKDOWN_EXEMPT_ATTRIBUTE) == Some(&serde_json::Value::Bool(true)))
}

pub(crate) fn index_person(row: &AnyRow) -> Result<(Pk, IndexPerson)> {
    let skills: Vec<String> = json(&row.try_get::<String, _>("skills")?)?;
    Ok((
        row.try_get("pk")?,
        IndexPerson {
            id: row.try_get::<String, _>("id")?.into(),
            suspended: person_status(&row.try_get::<String, _>("status")?)? == PersonStatus::Suspended,
            lockdown_exempt: lockdown_exempt(&row.try_get::<String, _>("attributes")?)?,
            skills: skills.into_iter().map(Into::into).collect(),
        },
    ))
}

pub(crate) const CREDENTIAL_COLUMNS: &str = "c.pk, c.person_pk, p.id AS person_id, c.kind, c.card_uid, c.revocation_code, c.digest, c.status, c.status_reason, c.created_at, c.revoked_at";
pub(crate) const CREDENTIAL_FROM: &str = "credentials c LEFT JOIN people p ON p.pk = c.person_pk";

fn kind(row: &AnyRow) -> Result<CredentialKind> {
    let s: String = row.try_get("kind")?;
    CredentialKind::parse(&s).ok_or_else(|| StoreError::Corrupt(format!("credential kind {s:?}")))
}

fn status(row: &AnyRow) -> Result<CredentialStatus> {
    let s: String = row.try_get("status")?;
    CredentialStatus::parse(&s).ok_or_else(|| StoreError::Corrupt(format!("credential status {s:?}")))
}

pub(crate) fn credential(row: &AnyRow) -> Result<Credential> {
    Ok(Credential {
        id: credential_id(row.try_get("pk")?),
        person_id: row.try_get("person_id")?,
        kind: kind(row)?,
        uid: row.try_get("card_uid")?,
        revocation_code: row.try_get("revocation_code")?,
        status: status(row)?,
        status_reason: row.try_get("status_reason")?,
        created_at: time(row.try_get("created_at")?)?,
        revoked_at: opt_time(row.try_get("revoked_at")?)?,
        secret: None,
    })
}

/// The columns a credential's index entry is made of, however they were read.
pub(crate) struct CredentialParts {
    pub pk: Pk,
    pub person_pk: Option<Pk>,
    pub kind: String,
    pub card_uid: Option<String>,
    pub revocation_code: Option<String>,
    pub digest: Option<String>,
    pub status: String,
}

pub(crate) fn index_credential(row: &AnyRow) -> Result<(CredentialKey, IndexCredential)> {
    index_credential_from(CredentialParts {
        pk: row.try_get("pk")?,
        person_pk: row.try_get("person_pk")?,
        kind: row.try_get("kind")?,
        card_uid: row.try_get("card_uid")?,
        revocation_code: row.try_get("revocation_code")?,
        digest: row.try_get("digest")?,
        status: row.try_get("status")?,
    })
}

pub(crate) fn index_credential_from(c: CredentialParts) -> Result<(CredentialKey, IndexCredential)> {
    let kind =
        CredentialKind::parse(&c.kind).ok_or_else(|| StoreError::Corrupt(format!("credential kind {:?}", c.kind)))?;
    let status = CredentialStatus::parse(&c.status)
        .ok_or_else(|| StoreError::Corrupt(format!("credential status {:?}", c.status)))?;
    let corrupt = || StoreError::Corrupt("credential without its lookup value".into());
    let digest = match kind {
        CredentialKind::Card => None,
        _ => {
            let bytes = hex::decode(c.digest.ok_or_else(corrupt)?).map_err(|_| corrupt())?;
            Some(Box::new(<[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| corrupt())?))
        }
    };
    let key = match (kind, &digest) {
        (CredentialKind::Card, _) => CredentialKey::card(&c.card_uid.ok_or_else(corrupt)?).map_err(|_| corrupt())?,
        (CredentialKind::Pin, Some(d)) => CredentialKey::pin(d),
        (CredentialKind::Secret, Some(d)) => CredentialKey::secret(d),
        (CredentialKind::BackupCode, Some(d)) => CredentialKey::backup_code(d),
        _ => return Err(corrupt()),
    };
    let credential = IndexCredential {
        pk: c.pk,
        person: c.person_pk,
        kind,
        status,
        revocation: revocation_hash(c.revocation_code.as_deref()),
        digest,
    };
    Ok((key, credential))
}

pub(crate) const DOOR_COLUMNS: &str = "pk, id, name, driver, fail_mode, required_skill, open_seconds, attendance, site, online, last_seen, last_opened, last_error, lockdown_by, unlock_schedule, egress, hold_state, hold_until, hold_by, mode, held_open_seconds, position, alarms, created_at, updated_at";

/// The person attribute that lets its holder through a lockdown (security staff).
pub const LOCKDOWN_EXEMPT_ATTRIBUTE: &str = "lockdown_exempt";

pub(crate) fn door(row: &AnyRow) -> Result<Door> {
    let fail_mode: String = row.try_get("fail_mode")?;
    Ok(Door {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        driver: json(&row.try_get::<String, _>("driver")?)?,
        fail_mode: if fail_mode == "safe" { FailMode::Safe } else { FailMode::Secure },
        required_skill: row.try_get("required_skill")?,
        open_seconds: u32::try_from(row.try_get::<i64, _>("open_seconds")?).unwrap_or(u32::MAX),
        attendance: row.try_get::<i64, _>("attendance")? != 0,
        site: row.try_get("site")?,
        unlock_schedule: row.try_get::<Option<String>, _>("unlock_schedule")?.as_deref().map(json).transpose()?,
        egress: row.try_get::<i64, _>("egress")? != 0,
        held_open_seconds: u32::try_from(row.try_get::<i64, _>("held_open_seconds")?).unwrap_or(u32::MAX),
        state: DoorState {
            online: row.try_get::<Option<i64>, _>("online")?.map(|v| v != 0),
            last_seen: opt_time(row.try_get("last_seen")?)?,
            last_opened: opt_time(row.try_get("last_opened")?)?,
            last_error: row.try_get("last_error")?,
            mode: row.try_get("mode")?,
            lockdown_by: row.try_get("lockdown_by")?,
            hold: crate::door_modes::hold(row)?
                .map(|(state, until)| -> Result<_> { Ok(DoorHold { state, until, by: row.try_get("hold_by")? }) })
                .transpose()?,
            position: row.try_get("position")?,
            alarms: row
                .try_get::<String, _>("alarms")?
                .split(',')
                .filter(|kind| !kind.is_empty())
                .map(str::to_owned)
                .collect(),
        },
        created_at: time(row.try_get("created_at")?)?,
        updated_at: time(row.try_get("updated_at")?)?,
    })
}

pub(crate) fn index_door(row: &AnyRow) -> Result<IndexDoor> {
    Ok(IndexDoor {
        lockdown: row.try_get::<Option<String>, _>("lockdown_by")?.is_some(),
        pk: row.try_get("pk")?,
        id: row.try_get::<String, _>("id")?.into(),
        required_skill: row.try_get::<Option<String>, _>("required_skill")?.map(Into::into),
    })
}
