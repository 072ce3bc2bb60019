//! How a presented credential becomes a fixed-size lookup key. Cards are keyed by their
//! UID bytes (no hashing on the hot path); secrets and backup codes by SHA-256, PINs by
//! HMAC-SHA256 under the server's key (a PIN has too little entropy for a plain hash).

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

/// A 32-byte digest of a secret, a backup code or a PIN.
pub type Digest = [u8; 32];

/// The index key of a credential: one tag byte for the kind, then 15 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CredentialKey([u8; 16]);

const TAG_CARD: u8 = 1;
const TAG_PIN: u8 = 2;
const TAG_SECRET: u8 = 3;
const TAG_BACKUP: u8 = 4;
/// Longest UID kept verbatim in a key (tag and length take two of the 16 bytes).
const MAX_INLINE_UID: usize = 14;
/// Longer UIDs (rare: some Wiegand or custom formats) are keyed by a hash.
const LONG_UID: u8 = 0xFF;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("a card UID is 1 to 32 bytes written as hex digits (e.g. 04A1B2C3)")]
    BadUid,
    #[error("a PIN is 4 to 12 digits")]
    BadPin,
}

/// Normalizes a card UID: hex digits, case-insensitive, optional `:`/`-`/space separators.
pub fn normalize_uid(uid: &str) -> Result<String, KeyError> {
    let hex: String = uid.chars().filter(|c| !matches!(c, ':' | '-' | ' ')).collect::<String>().to_ascii_uppercase();
    let ok =
        !hex.is_empty() && hex.len().is_multiple_of(2) && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    if ok { Ok(hex) } else { Err(KeyError::BadUid) }
}

pub fn validate_pin(pin: &str) -> Result<(), KeyError> {
    if (4..=12).contains(&pin.len()) && pin.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(KeyError::BadPin)
    }
}

pub fn sha256(bytes: &[u8]) -> Digest {
    Sha256::digest(bytes).into()
}

/// The digest a backup code is kept by: its letters and digits only, upper case, so that
/// dashes, spaces and case typed differently still match. A controller digests a keypad
/// entry the same way to find it in its offline list.
pub fn backup_code_digest(code: &str) -> Digest {
    let normalized: String =
        code.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_uppercase();
    sha256(normalized.as_bytes())
}

pub fn pin_digest(pin_key: &[u8], pin: &str) -> Digest {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(pin_key).expect("HMAC takes keys of any length");
    mac.update(pin.as_bytes());
    mac.finalize().into_bytes().into()
}

/// Digests are compared in constant time, so a timing probe learns nothing about them.
pub fn digests_equal(a: &Digest, b: &Digest) -> bool {
    a.ct_eq(b).into()
}

impl CredentialKey {
    /// The key of a card from its UID (any accepted spelling).
    pub fn card(uid: &str) -> Result<Self, KeyError> {
        let hex = normalize_uid(uid)?;
        let bytes = hex::decode(&hex).map_err(|_| KeyError::BadUid)?;
        Ok(Self::card_bytes(&bytes))
    }

    pub fn card_bytes(uid: &[u8]) -> Self {
        let mut key = [0u8; 16];
        key[0] = TAG_CARD;
        if uid.len() <= MAX_INLINE_UID {
            key[1] = uid.len() as u8;
            key[2..2 + uid.len()].copy_from_slice(uid);
        } else {
            key[1] = LONG_UID;
            key[2..].copy_from_slice(&sha256(uid)[..14]);
        }
        Self(key)
    }

    pub fn pin(digest: &Digest) -> Self {
        Self::tagged(TAG_PIN, digest)
    }

    pub fn secret(digest: &Digest) -> Self {
        Self::tagged(TAG_SECRET, digest)
    }

    pub fn backup_code(digest: &Digest) -> Self {
        Self::tagged(TAG_BACKUP, digest)
    }

    fn tagged(tag: u8, digest: &Digest) -> Self {
        let mut key = [0u8; 16];
        key[0] = tag;
        key[1..].copy_from_slice(&digest[..15]);
        Self(key)
    }

    pub fn bytes(&self) -> [u8; 16] {
        self.0
    }

    pub fn is_card(&self) -> bool {
        self.0[0] == TAG_CARD
    }

    /// A card's UID bytes, when the key keeps them verbatim (UIDs of up to 14 bytes;
    /// longer ones are only a hash here).
    pub fn card_uid(&self) -> Option<&[u8]> {
        let len = usize::from(self.0[1]);
        (self.is_card() && len <= MAX_INLINE_UID).then(|| &self.0[2..2 + len])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_spellings_share_a_key() {
        let a = CredentialKey::card("04a1b2c3").unwrap();
        assert_eq!(a, CredentialKey::card("04:A1:B2:C3").unwrap());
        assert_eq!(a, CredentialKey::card("04-a1-b2-c3").unwrap());
        assert_ne!(a, CredentialKey::card("04A1B2C4").unwrap());
        // A shorter UID that is a prefix of another is a different card.
        assert_ne!(CredentialKey::card("04A1B2").unwrap(), CredentialKey::card("04A1B200").unwrap());
    }

    #[test]
    fn bad_uids_are_refused() {
        for uid in ["", "0", "XYZ1", "04A1B2C", &"AB".repeat(33)] {
            assert_eq!(CredentialKey::card(uid), Err(KeyError::BadUid), "{uid:?}");
        }
    }

    #[test]
    fn short_uids_can_be_read_back_from_their_key() {
        assert_eq!(CredentialKey::card("04:a1:b2:c3").unwrap().card_uid(), Some(&[0x04, 0xA1, 0xB2, 0xC3][..]));
        assert_eq!(CredentialKey::card(&"AB".repeat(15)).unwrap().card_uid(), None);
        assert_eq!(CredentialKey::pin(&[7; 32]).card_uid(), None);
    }

    #[test]
    fn long_uids_are_hashed_but_distinct() {
        let a = CredentialKey::card(&"AB".repeat(20)).unwrap();
        let b = CredentialKey::card(&"AB".repeat(21)).unwrap();
        assert_ne!(a, b);
        assert!(a.is_card());
    }

    #[test]
    fn pins_depend_on_the_server_key() {
        assert_ne!(pin_digest(b"k1", "1234"), pin_digest(b"k2", "1234"));
        assert_eq!(pin_digest(b"k1", "1234"), pin_digest(b"k1", "1234"));
        assert!(validate_pin("1234").is_ok());
        assert!(validate_pin("12a4").is_err());
        assert!(validate_pin("123").is_err());
    }

    #[test]
    fn kinds_never_collide() {
        let d = sha256(b"x");
        assert_ne!(CredentialKey::secret(&d), CredentialKey::backup_code(&d));
        assert_ne!(CredentialKey::secret(&d), CredentialKey::pin(&d));
    }
}
