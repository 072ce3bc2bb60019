//! The offline allow-list of an MQTT door controller, signed by lintel's authority key as
//! a compact JWS (RFC 7515, `alg` EdDSA, RFC 8037). The controller holds lintel's public
//! key from its provisioning and installs a list only if the signature verifies with it
//! and the list names that very controller: whoever can publish on the broker still
//! cannot hand a controller a list of their own making, nor another controller's list.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer, VerifyingKey};
use lintel_proto::controller::AllowList;

use crate::Authority;

/// The header of every list; a list with any other header is refused.
const HEADER: &str = r#"{"alg":"EdDSA","typ":"lintel-allow-list"}"#;
/// Larger lists are refused before they are decoded (about 60,000 cards).
pub const MAX_LIST_LEN: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ListError {
    #[error("not a compact JWS")]
    Malformed,
    #[error("the list is larger than {MAX_LIST_LEN} bytes")]
    TooLarge,
    #[error("the header is not lintel's (alg EdDSA, typ lintel-allow-list)")]
    WrongHeader,
    #[error("the signature does not verify with lintel's key")]
    BadSignature,
    #[error("the signed payload is not an allow-list: {0}")]
    BadPayload(String),
    #[error("the list is for controller {0:?}")]
    OtherController(String),
}

impl Authority {
    /// The list as a compact JWS signed with the authority key.
    pub fn sign_allow_list(&self, list: &AllowList) -> String {
        let payload = serde_json::to_vec(list).expect("a list always serializes");
        let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(HEADER), URL_SAFE_NO_PAD.encode(payload));
        let signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }
}

/// Checks a list as a controller must before installing it.
pub fn verify_allow_list(key: &VerifyingKey, jws: &[u8], controller: &str) -> Result<AllowList, ListError> {
    if jws.len() > MAX_LIST_LEN {
        return Err(ListError::TooLarge);
    }
    let text = std::str::from_utf8(jws).map_err(|_| ListError::Malformed)?;
    let mut parts = text.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ListError::Malformed);
    };
    // The header is lintel's, byte for byte: nothing in it is left to interpretation.
    let header = URL_SAFE_NO_PAD.decode(header).map_err(|_| ListError::Malformed)?;
    if header != HEADER.as_bytes() {
        return Err(ListError::WrongHeader);
    }
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| ListError::Malformed)?;
    let signature = Signature::from_slice(&signature).map_err(|_| ListError::BadSignature)?;
    let (signed, _) = text.rsplit_once('.').ok_or(ListError::Malformed)?;
    key.verify_strict(signed.as_bytes(), &signature).map_err(|_| ListError::BadSignature)?;
    let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| ListError::Malformed)?;
    let list: AllowList = serde_json::from_slice(&payload).map_err(|e| ListError::BadPayload(e.to_string()))?;
    if list.controller != controller {
        return Err(ListError::OtherController(list.controller));
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ed25519_dalek::SigningKey;

    use super::*;

    fn list(controller: &str) -> AllowList {
        AllowList {
            controller: controller.into(),
            version: 3,
            issued_at: 1_780_000_000,
            salt: "00".repeat(16),
            doors: BTreeMap::new(),
            windows: vec![vec![[1, 2]]],
            cards: Vec::new(),
            codes: Vec::new(),
        }
    }

    fn authority(seed: u8) -> Authority {
        Authority::new(SigningKey::from_bytes(&[seed; 32])).unwrap()
    }

    #[test]
    fn a_signed_list_verifies_for_its_controller_only() {
        let lintel = authority(1);
        let jws = lintel.sign_allow_list(&list("ctl-1"));
        assert_eq!(verify_allow_list(&lintel.verifying_key(), jws.as_bytes(), "ctl-1").unwrap(), list("ctl-1"));
        assert_eq!(
            verify_allow_list(&lintel.verifying_key(), jws.as_bytes(), "ctl-2"),
            Err(ListError::OtherController("ctl-1".into()))
        );
    }

    #[test]
    fn forged_and_tampered_lists_are_refused() {
        let lintel = authority(1);
        let key = lintel.verifying_key();
        let forged = authority(2).sign_allow_list(&list("ctl-1"));
        assert_eq!(verify_allow_list(&key, forged.as_bytes(), "ctl-1"), Err(ListError::BadSignature));

        let jws = lintel.sign_allow_list(&list("ctl-1"));
        let (input, signature) = jws.rsplit_once('.').unwrap();
        let (header, _) = input.split_once('.').unwrap();
        let mut more = list("ctl-1");
        more.windows.push(vec![[0, i64::MAX]]);
        let swapped = format!("{header}.{}.{signature}", URL_SAFE_NO_PAD.encode(serde_json::to_vec(&more).unwrap()));
        assert_eq!(verify_allow_list(&key, swapped.as_bytes(), "ctl-1"), Err(ListError::BadSignature));

        let none = format!("{}.{}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#), input.split_once('.').unwrap().1);
        assert_eq!(verify_allow_list(&key, none.as_bytes(), "ctl-1"), Err(ListError::WrongHeader));
        for bad in ["", "a.b", "a.b.c.d", "!!.!!.!!"] {
            assert_eq!(verify_allow_list(&key, bad.as_bytes(), "ctl-1"), Err(ListError::Malformed), "{bad}");
        }
        assert_eq!(verify_allow_list(&key, &vec![b'a'; MAX_LIST_LEN + 1], "ctl-1"), Err(ListError::TooLarge));
    }
}
