//! Keys, clocks and hand-made tokens for the tests.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeZone, Utc};
use ed25519_dalek::{Signer, SigningKey};

use crate::cert::Authority;

/// A fixed "now" so tests do not depend on the clock.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap()
}

/// A deterministic key per seed byte.
pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub fn authority(seed: u8) -> Authority {
    Authority::from_secret_bytes(&[seed; 32]).unwrap()
}

pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A compact JWS signed with Ed25519 over exactly these header and claims, whatever `alg`
/// the header names: lets tests build tokens no library would.
pub fn sign_compact(header: &serde_json::Value, claims: &serde_json::Value, key: &SigningKey) -> String {
    let message = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
    let signature = key.sign(message.as_bytes());
    format!("{message}.{}", b64url(&signature.to_bytes()))
}

/// PKCS#8 v1 DER of an Ed25519 key (RFC 8410), the form jsonwebtoken's EncodingKey takes.
pub fn ed25519_pkcs8(key: &SigningKey) -> Vec<u8> {
    let mut der = vec![0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
    der.extend_from_slice(key.as_bytes());
    der
}
