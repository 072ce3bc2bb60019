//! Signed operations: users' keys, operations, the user directory and shareable locks.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /api/v1/keys`: register an Ed25519 public key and get a certificate chain for it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterKey {
    /// Standard base64 of the 32-byte Ed25519 public key.
    pub public_key: String,
    /// How long the certificate is valid: 1 to 90 days (default 30).
    #[serde(default)]
    pub valid_days: Option<u32>,
}

/// A user's registered key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserKey {
    /// Hex SHA-256 of the public key.
    pub id: String,
    pub user_id: String,
    pub public_key: String,
    /// When the latest certificate for it expires.
    pub not_after: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A registered key with its certificate chain, for the `x5c` header of operations.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RegisteredKey {
    #[serde(flatten)]
    pub key: UserKey,
    /// Base64 DER certificates: the user's, then lintel's authority.
    pub certificate_chain: Vec<String>,
}

/// `POST /api/v1/operations` as JSON (the compact JWS may also be the raw body).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OperationRequest {
    pub jws: String,
}

/// An operation that was applied (200) or queued for an offline door (202).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OperationOutcome {
    /// `unlock`, `add_user` or `remove_user`.
    pub operation: String,
    pub lock: String,
    /// The signer.
    pub user_id: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub applied: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub queued: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// For an unlock: whether the door's driver was driven, and confirmed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opened: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed: Option<bool>,
    /// For a queued unlock: when it will be dropped if the door has not come back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// A key found in the user directory.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PublicKeyRef {
    pub id: String,
    pub public_key: String,
}

/// `GET /api/v1/users/lookup`: a user's id and unrevoked public keys.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserLookup {
    pub user_id: String,
    pub public_keys: Vec<PublicKeyRef>,
}

/// A lock the caller administers, so may share.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ShareableLock {
    pub id: String,
    pub name: String,
}
