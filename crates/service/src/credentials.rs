//! Building credentials: the one place that turns what an operator, a sync or a chat
//! command asks for into what the store keeps (a card's normalized UID, a PIN's keyed
//! digest, a generated secret's digest), with the secret itself to show once.

use lintel_core::credential::{normalize_uid, pin_digest, validate_pin};
use lintel_proto::{CredentialKind, NewCredential};
use lintel_store::NewCredentialRecord;

use crate::error::{Result, ServiceError};
use crate::{secrets, validate};

/// A credential to store, and what to show its holder once (a generated secret or backup
/// code; nothing for a card or a PIN, which the holder already knows).
#[derive(Debug, Clone)]
pub struct Built {
    pub record: NewCredentialRecord,
    pub shown_once: Option<String>,
}

impl Built {
    fn stored(kind: CredentialKind, digest: String, shown_once: Option<String>) -> Self {
        Self {
            record: NewCredentialRecord { kind, card_uid: None, revocation_code: None, digest: Some(digest) },
            shown_once,
        }
    }
}

/// Builds credentials; PINs are digested with lintel's PIN key.
#[derive(Clone)]
pub struct CredentialBuilder {
    pin_key: [u8; 32],
}

impl CredentialBuilder {
    pub fn new(pin_key: [u8; 32]) -> Self {
        Self { pin_key }
    }

    /// What the API's `POST /people/{id}/credentials` asks for.
    pub fn build(&self, request: &NewCredential) -> Result<Built> {
        match request {
            NewCredential::Card { uid, revocation_code } => card(uid, revocation_code.clone()),
            NewCredential::Pin { pin } => self.pin(pin),
            NewCredential::Secret {} => Ok(secret()),
            NewCredential::BackupCode {} => Ok(backup_code()),
        }
    }

    pub fn pin(&self, pin: &str) -> Result<Built> {
        validate_pin(pin).map_err(|e| ServiceError::invalid(e.to_string()))?;
        Ok(Built::stored(CredentialKind::Pin, hex::encode(pin_digest(&self.pin_key, pin)), None))
    }
}

/// A card by its UID (any usual spelling of hex), with the revocation code it carries.
pub fn card(uid: &str, revocation_code: Option<String>) -> Result<Built> {
    let uid = normalize_uid(uid).map_err(|e| ServiceError::invalid(e.to_string()))?;
    if let Some(code) = &revocation_code {
        validate::text("revocation_code", code, 64)?;
    }
    let record = NewCredentialRecord { kind: CredentialKind::Card, card_uid: Some(uid), revocation_code, digest: None };
    Ok(Built { record, shown_once: None })
}

/// A new personal secret (`lsk_...`); only its digest is kept.
pub fn secret() -> Built {
    let secret = secrets::generate("lsk_");
    Built::stored(CredentialKind::Secret, hex::encode(secrets::digest(&secret)), Some(secret))
}

/// A new single-use backup code (`XXXXX-XXXXX-XXXXX-XXXXX`); only its digest is kept.
pub fn backup_code() -> Built {
    let code = secrets::generate_backup_code();
    Built::stored(CredentialKind::BackupCode, hex::encode(secrets::backup_code_digest(&code)), Some(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_kept_and_what_is_shown() {
        let b = CredentialBuilder::new([7; 32]);
        let card = b.build(&NewCredential::Card { uid: "04:a1:b2:c3".into(), revocation_code: Some("7".into()) });
        let card = card.unwrap();
        assert_eq!(card.record.card_uid.as_deref(), Some("04A1B2C3"));
        assert_eq!(card.shown_once, None);
        assert!(b.build(&NewCredential::Card { uid: "xyz".into(), revocation_code: None }).is_err());
        let pin = b.pin("4711").unwrap();
        assert_eq!(pin.record.digest, Some(hex::encode(pin_digest(&[7; 32], "4711"))), "keyed, not plain");
        assert!(b.pin("12").is_err(), "too short");
        let s = secret();
        let shown = s.shown_once.expect("a secret is shown once");
        assert_eq!(s.record.digest, Some(hex::encode(secrets::digest(&shown))));
        let code = backup_code();
        assert_eq!(code.record.digest, Some(hex::encode(secrets::backup_code_digest(&code.shown_once.unwrap()))));
    }
}
