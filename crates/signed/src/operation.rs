//! Verifying a signed operation: a compact JWS, `alg: EdDSA`, signed by the user's key,
//! with the user's certificate chain in `x5c`.
//!
//! The claims (all required, no others allowed, so a client never believes an extra claim
//! such as `aud` restricts anything):
//!
//! ```json
//! {"iss": "<user id>", "sub": "<lock id>", "iat": 1700000000, "nbf": 1700000000,
//!  "exp": 1700000030, "jti": "<unique id>", "operation": {"type": "unlock"}}
//! ```
//!
//! `operation` is one of `{"type": "unlock"}`,
//! `{"type": "add_user", "user_id", "public_key" (standard base64 of 32 bytes),
//! "role": "user" | "admin", "start"?, "end"? (unix seconds)}` and
//! `{"type": "remove_user", "user_id"}`.
//!
//! Replay (`jti`), key revocation and "may this user act on this lock" are the caller's.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use ed25519_dalek::VerifyingKey;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::cert::{self, CertError, Certified, key_fingerprint};
use crate::ids::is_valid_id;
use crate::jws::{self, HeaderProblem};

/// Allowed disagreement between the signer's clock and ours, for `nbf` and `iat`.
pub const CLOCK_SKEW_SECONDS: i64 = 30;
/// An unlock must happen now: its `exp - nbf` is at most this.
pub const MAX_UNLOCK_WINDOW_SECONDS: i64 = 60;
/// A share or removal may wait for an offline door to reconnect, up to this.
pub const MAX_MEMBERSHIP_WINDOW_SECONDS: i64 = 14 * 24 * 60 * 60;
/// The replay cache keys on `jti`; a bound keeps it small.
pub const MAX_JTI_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("malformed operation: {0}")]
    Malformed(&'static str),
    #[error("algorithm {0:?} is not accepted; operations are signed with EdDSA")]
    UnsupportedAlgorithm(String),
    #[error("the operation carries no certificate chain (x5c)")]
    MissingChain,
    #[error("the certificate chain does not verify: {0}")]
    BadChain(CertError),
    #[error("the signer's certificate is not valid yet")]
    CertificateNotYetValid,
    #[error("the signer's certificate has expired")]
    CertificateExpired,
    #[error("the signature does not match the certified key")]
    BadSignature,
    #[error("iss {iss:?} is not the certified user {certified:?}")]
    IssuerMismatch { iss: String, certified: String },
    #[error("invalid claim: {0}")]
    InvalidClaim(&'static str),
    #[error("iat is in the future")]
    IssuedInFuture,
    #[error("exp is not after nbf")]
    EmptyWindow,
    #[error("the window exp - nbf is longer than {max_seconds} seconds")]
    WindowTooLong { max_seconds: i64 },
    #[error("the operation is not valid yet (nbf)")]
    NotYetValid,
    #[error("the operation has expired (exp)")]
    Expired,
    #[error("bad operation: {0}")]
    BadOperation(&'static str),
}

impl Refusal {
    /// A stable snake_case name for API answers and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Malformed(_) => "malformed",
            Refusal::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            Refusal::MissingChain => "missing_chain",
            Refusal::BadChain(_) => "bad_chain",
            Refusal::CertificateNotYetValid => "certificate_not_yet_valid",
            Refusal::CertificateExpired => "certificate_expired",
            Refusal::BadSignature => "bad_signature",
            Refusal::IssuerMismatch { .. } => "issuer_mismatch",
            Refusal::InvalidClaim(_) => "invalid_claim",
            Refusal::IssuedInFuture => "issued_in_future",
            Refusal::EmptyWindow => "empty_window",
            Refusal::WindowTooLong { .. } => "window_too_long",
            Refusal::NotYetValid => "not_yet_valid",
            Refusal::Expired => "expired",
            Refusal::BadOperation(_) => "bad_operation",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Admin,
}

/// "Let this user open this lock": the target user's key and role, and optionally when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub user_id: String,
    pub public_key: [u8; 32],
    pub role: Role,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    Unlock,
    AddUser(Share),
    RemoveUser { user_id: String },
}

impl Operation {
    /// The longest `exp - nbf` this kind of operation may have.
    pub fn max_window_seconds(&self) -> i64 {
        match self {
            Operation::Unlock => MAX_UNLOCK_WINDOW_SECONDS,
            Operation::AddUser(_) | Operation::RemoveUser { .. } => MAX_MEMBERSHIP_WINDOW_SECONDS,
        }
    }
}

/// A verified operation. The caller still checks, in this order of cheapness: the jti was
/// not seen before (keep it until `expires_at`), the key (`signer_fingerprint`) and the
/// certificate (`signer.serial`) are not revoked, and `signer.user_id` may act on `lock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedOperation {
    pub signer: Certified,
    pub signer_fingerprint: String,
    pub lock: String,
    pub issued_at: DateTime<Utc>,
    pub not_before: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub jti: String,
    pub operation: Operation,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Claims {
    iss: String,
    sub: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: String,
    // Read in a second step, so an unknown or incomplete operation is `bad_operation`
    // rather than `malformed`.
    operation: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum WireOperation {
    // A struct variant, so deny_unknown_fields also covers it.
    Unlock {},
    AddUser { user_id: String, public_key: String, role: Role, start: Option<i64>, end: Option<i64> },
    RemoveUser { user_id: String },
}

/// Verifies `token` at `now`, trusting only `authority`.
pub fn verify_operation(token: &str, authority: &VerifyingKey, now: DateTime<Utc>) -> Result<SignedOperation, Refusal> {
    let alg = jws::header_alg(token).map_err(|problem| match problem {
        HeaderProblem::Malformed(why) => Refusal::Malformed(why),
        HeaderProblem::Critical => Refusal::Malformed("crit header extensions are not supported"),
    })?;
    if alg != "EdDSA" {
        return Err(Refusal::UnsupportedAlgorithm(alg));
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| Refusal::Malformed("header"))?;
    let x5c = header.x5c.ok_or(Refusal::MissingChain)?;
    let signer = cert::verify_chain(&x5c, authority, now).map_err(|error| match error {
        CertError::NotYetValid => Refusal::CertificateNotYetValid,
        CertError::Expired => Refusal::CertificateExpired,
        other => Refusal::BadChain(other),
    })?;

    // jsonwebtoken checks the signature (before it reads the claims) and nothing else: the
    // time checks need our `now` and our own answers.
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let key = DecodingKey::from_ed_der(&signer.public_key);
    let claims = match jsonwebtoken::decode::<Claims>(token, &key, &validation) {
        Ok(data) => data.claims,
        Err(error) => {
            return Err(match error.kind() {
                ErrorKind::InvalidSignature => Refusal::BadSignature,
                ErrorKind::InvalidAlgorithm => Refusal::UnsupportedAlgorithm(alg),
                _ => Refusal::Malformed("payload or signature is not valid base64url JSON of the expected shape"),
            });
        }
    };

    if claims.iss != signer.user_id {
        return Err(Refusal::IssuerMismatch { iss: claims.iss, certified: signer.user_id });
    }
    if !is_valid_id(&claims.sub) {
        return Err(Refusal::InvalidClaim("sub must be a lock id"));
    }
    if claims.jti.is_empty() || claims.jti.len() > MAX_JTI_LEN || !claims.jti.chars().all(|c| c.is_ascii_graphic()) {
        return Err(Refusal::InvalidClaim("jti must be 1 to 128 printable ASCII characters"));
    }
    let operation = serde_json::from_value::<WireOperation>(claims.operation)
        .map_err(|_| Refusal::BadOperation("operation is not unlock, add_user or remove_user with their fields"))
        .and_then(operation)?;

    let issued_at = instant(claims.iat)?;
    let not_before = instant(claims.nbf)?;
    let expires_at = instant(claims.exp)?;
    let skew = chrono::Duration::seconds(CLOCK_SKEW_SECONDS);
    if issued_at > now + skew {
        return Err(Refusal::IssuedInFuture);
    }
    if expires_at <= not_before {
        return Err(Refusal::EmptyWindow);
    }
    let max_seconds = operation.max_window_seconds();
    if (expires_at - not_before).num_seconds() > max_seconds {
        return Err(Refusal::WindowTooLong { max_seconds });
    }
    if not_before > now + skew {
        return Err(Refusal::NotYetValid);
    }
    if now > expires_at {
        return Err(Refusal::Expired);
    }

    Ok(SignedOperation {
        signer_fingerprint: key_fingerprint(&signer.public_key),
        signer,
        lock: claims.sub,
        issued_at,
        not_before,
        expires_at,
        jti: claims.jti,
        operation,
    })
}

fn operation(wire: WireOperation) -> Result<Operation, Refusal> {
    Ok(match wire {
        WireOperation::Unlock {} => Operation::Unlock,
        WireOperation::RemoveUser { user_id } => Operation::RemoveUser { user_id: target_user(user_id)? },
        WireOperation::AddUser { user_id, public_key, role, start, end } => {
            let public_key: [u8; 32] = STANDARD
                .decode(&public_key)
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or(Refusal::BadOperation("public_key must be standard base64 of 32 bytes"))?;
            if !cert::is_usable_key(&public_key) {
                return Err(Refusal::BadOperation("public_key is not a usable Ed25519 key"));
            }
            let start = optional_instant(start, "start is out of range")?;
            let end = optional_instant(end, "end is out of range")?;
            if let (Some(start), Some(end)) = (start, end)
                && start >= end
            {
                return Err(Refusal::BadOperation("start must be before end"));
            }
            Operation::AddUser(Share { user_id: target_user(user_id)?, public_key, role, start, end })
        }
    })
}

fn target_user(user_id: String) -> Result<String, Refusal> {
    if is_valid_id(&user_id) { Ok(user_id) } else { Err(Refusal::BadOperation("user_id must be a user id")) }
}

fn optional_instant(seconds: Option<i64>, why: &'static str) -> Result<Option<DateTime<Utc>>, Refusal> {
    seconds.map(|s| DateTime::from_timestamp(s, 0).ok_or(Refusal::BadOperation(why))).transpose()
}

/// Unix seconds to an instant; chrono's range is about ±262,000 years, so anything that
/// fits is safe to subtract.
fn instant(seconds: i64) -> Result<DateTime<Utc>, Refusal> {
    DateTime::from_timestamp(seconds, 0).ok_or(Refusal::Malformed("a time claim is out of range"))
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use ed25519_dalek::SigningKey;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::{Value, json};

    use super::*;
    use crate::cert::{Authority, Chain};
    use crate::test_support::{authority, b64url, ed25519_pkcs8, key, now, sign_compact};

    /// lintel's authority (seed 1) has certified alice's key (seed 2) for a month.
    struct Fixture {
        authority: Authority,
        alice: SigningKey,
        chain: Chain,
    }

    fn fixture() -> Fixture {
        let authority = authority(1);
        let alice = key(2);
        let chain = authority
            .issue("alice", alice.verifying_key().as_bytes(), now() - Duration::days(1), now() + Duration::days(30))
            .unwrap();
        Fixture { authority, alice, chain }
    }

    impl Fixture {
        fn header(&self) -> Value {
            json!({"alg": "EdDSA", "typ": "JWT", "x5c": self.chain.to_x5c()})
        }

        fn sign(&self, claims: &Value) -> String {
            sign_compact(&self.header(), claims, &self.alice)
        }

        fn verify(&self, token: &str) -> Result<SignedOperation, Refusal> {
            verify_operation(token, &self.authority.verifying_key(), now())
        }
    }

    fn t(offset_seconds: i64) -> i64 {
        now().timestamp() + offset_seconds
    }

    /// An unlock of "front" by alice, valid for 30 s from now.
    fn unlock() -> Value {
        json!({"iss": "alice", "sub": "front", "iat": t(0), "nbf": t(0), "exp": t(30), "jti": "op-1",
               "operation": {"type": "unlock"}})
    }

    fn bob_key_b64() -> String {
        STANDARD.encode(key(3).verifying_key().as_bytes())
    }

    /// alice shares "front" with bob as a user for a week, valid for 7 days.
    fn share() -> Value {
        json!({"iss": "alice", "sub": "front", "iat": t(0), "nbf": t(0), "exp": t(7 * 86400), "jti": "op-2",
               "operation": {"type": "add_user", "user_id": "bob", "public_key": bob_key_b64(), "role": "user",
                             "start": t(0), "end": t(7 * 86400)}})
    }

    fn with(mut claims: Value, field: &str, value: Value) -> Value {
        claims[field] = value;
        claims
    }

    #[test]
    fn valid_unlock_is_accepted() {
        let f = fixture();
        let op = f.verify(&f.sign(&unlock())).unwrap();
        assert_eq!(op.signer.user_id, "alice");
        assert_eq!(op.signer.public_key, f.alice.verifying_key().to_bytes());
        assert_eq!(op.signer.serial, f.chain.serial());
        assert_eq!(op.signer_fingerprint, key_fingerprint(&f.alice.verifying_key().to_bytes()));
        assert_eq!(op.lock, "front");
        assert_eq!(op.jti, "op-1");
        assert_eq!(op.issued_at, now());
        assert_eq!(op.not_before, now());
        assert_eq!(op.expires_at, now() + Duration::seconds(30));
        assert_eq!(op.operation, Operation::Unlock);
    }

    #[test]
    fn token_made_by_jsonwebtoken_is_accepted() {
        // A client using an ordinary JWT library, not our hand-made signer.
        let f = fixture();
        let mut header = Header::new(Algorithm::EdDSA);
        header.x5c = Some(f.chain.to_x5c());
        let key = EncodingKey::from_ed_der(&ed25519_pkcs8(&f.alice));
        let token = jsonwebtoken::encode(&header, &unlock(), &key).unwrap();
        assert_eq!(f.verify(&token).unwrap().operation, Operation::Unlock);
    }

    #[test]
    fn valid_share_is_accepted() {
        let f = fixture();
        let op = f.verify(&f.sign(&share())).unwrap();
        let expected = Share {
            user_id: "bob".into(),
            public_key: key(3).verifying_key().to_bytes(),
            role: Role::User,
            start: Some(now()),
            end: Some(now() + Duration::days(7)),
        };
        assert_eq!(op.operation, Operation::AddUser(expected));

        let admin_open_ended = with(
            share(),
            "operation",
            json!({"type": "add_user", "user_id": "bob", "public_key": bob_key_b64(), "role": "admin"}),
        );
        let Operation::AddUser(share) = f.verify(&f.sign(&admin_open_ended)).unwrap().operation else { panic!() };
        assert_eq!((share.role, share.start, share.end), (Role::Admin, None, None));
    }

    #[test]
    fn valid_removal_is_accepted() {
        let f = fixture();
        let claims = with(share(), "operation", json!({"type": "remove_user", "user_id": "bob"}));
        assert_eq!(f.verify(&f.sign(&claims)).unwrap().operation, Operation::RemoveUser { user_id: "bob".into() });
    }

    #[test]
    fn signature_by_another_key_is_refused() {
        let f = fixture();
        let token = sign_compact(&f.header(), &unlock(), &key(9));
        assert_eq!(f.verify(&token), Err(Refusal::BadSignature));
    }

    #[test]
    fn tampered_body_is_refused() {
        let f = fixture();
        let token = f.sign(&unlock());
        let parts: Vec<&str> = token.split('.').collect();
        let other_lock = with(unlock(), "sub", json!("back"));
        let tampered = format!("{}.{}.{}", parts[0], b64url(other_lock.to_string().as_bytes()), parts[2]);
        assert_eq!(f.verify(&tampered), Err(Refusal::BadSignature));
    }

    #[test]
    fn chain_from_another_authority_is_refused() {
        // An attacker's own "lintel signing authority" vouches for a key they hold; its
        // root travels in x5c and must not matter.
        let f = fixture();
        let forged = authority(7)
            .issue("alice", key(9).verifying_key().as_bytes(), now() - Duration::days(1), now() + Duration::days(1))
            .unwrap();
        let header = json!({"alg": "EdDSA", "x5c": forged.to_x5c()});
        let token = sign_compact(&header, &unlock(), &key(9));
        assert_eq!(f.verify(&token), Err(Refusal::BadChain(CertError::BadSignature)));
    }

    #[test]
    fn certificate_validity_is_checked() {
        let f = fixture();
        let pk = f.alice.verifying_key().to_bytes();
        for (from, to, refusal) in [(-2, -1, Refusal::CertificateExpired), (1, 2, Refusal::CertificateNotYetValid)] {
            let chain =
                f.authority.issue("alice", &pk, now() + Duration::days(from), now() + Duration::days(to)).unwrap();
            let token = sign_compact(&json!({"alg": "EdDSA", "x5c": chain.to_x5c()}), &unlock(), &f.alice);
            assert_eq!(f.verify(&token), Err(refusal));
        }
    }

    #[test]
    fn chain_problems_are_refused() {
        let f = fixture();
        let without = sign_compact(&json!({"alg": "EdDSA"}), &unlock(), &f.alice);
        assert_eq!(f.verify(&without), Err(Refusal::MissingChain));
        let garbage = sign_compact(&json!({"alg": "EdDSA", "x5c": ["!!"]}), &unlock(), &f.alice);
        assert_eq!(f.verify(&garbage), Err(Refusal::BadChain(CertError::Base64)));
        let empty = sign_compact(&json!({"alg": "EdDSA", "x5c": []}), &unlock(), &f.alice);
        assert_eq!(f.verify(&empty), Err(Refusal::BadChain(CertError::EmptyChain)));
    }

    #[test]
    fn window_not_yet_open_is_refused() {
        let f = fixture();
        let later = with(with(unlock(), "nbf", json!(t(31))), "exp", json!(t(60)));
        assert_eq!(f.verify(&f.sign(&later)), Err(Refusal::NotYetValid));
        // Within the clock skew is fine.
        let skewed = with(with(unlock(), "nbf", json!(t(30))), "exp", json!(t(60)));
        assert!(f.verify(&f.sign(&skewed)).is_ok());
    }

    #[test]
    fn expired_window_is_refused() {
        let f = fixture();
        let past = with(with(unlock(), "nbf", json!(t(-60))), "exp", json!(t(-1)));
        assert_eq!(f.verify(&f.sign(&past)), Err(Refusal::Expired));
        let last_second = with(with(unlock(), "nbf", json!(t(-30))), "exp", json!(t(0)));
        assert!(f.verify(&f.sign(&last_second)).is_ok());
    }

    #[test]
    fn unlock_window_over_a_minute_is_refused() {
        let f = fixture();
        let long = with(unlock(), "exp", json!(t(61)));
        assert_eq!(f.verify(&f.sign(&long)), Err(Refusal::WindowTooLong { max_seconds: 60 }));
        let minute = with(unlock(), "exp", json!(t(60)));
        assert!(f.verify(&f.sign(&minute)).is_ok());
    }

    #[test]
    fn share_window_over_fourteen_days_is_refused() {
        let f = fixture();
        let fourteen_days = 14 * 86400;
        let long = with(share(), "exp", json!(t(fourteen_days + 1)));
        assert_eq!(f.verify(&f.sign(&long)), Err(Refusal::WindowTooLong { max_seconds: fourteen_days }));
        let exact = with(share(), "exp", json!(t(fourteen_days)));
        assert!(f.verify(&f.sign(&exact)).is_ok());
        let removal = with(long, "operation", json!({"type": "remove_user", "user_id": "bob"}));
        assert_eq!(f.verify(&f.sign(&removal)), Err(Refusal::WindowTooLong { max_seconds: fourteen_days }));
    }

    #[test]
    fn empty_window_and_future_iat_are_refused() {
        let f = fixture();
        let empty = with(unlock(), "exp", json!(t(0)));
        assert_eq!(f.verify(&f.sign(&empty)), Err(Refusal::EmptyWindow));
        let future = with(unlock(), "iat", json!(t(31)));
        assert_eq!(f.verify(&f.sign(&future)), Err(Refusal::IssuedInFuture));
    }

    #[test]
    fn alg_none_is_refused() {
        let f = fixture();
        let header = json!({"alg": "none", "x5c": f.chain.to_x5c()});
        let token = format!("{}.{}.", b64url(header.to_string().as_bytes()), b64url(unlock().to_string().as_bytes()));
        assert_eq!(f.verify(&token), Err(Refusal::UnsupportedAlgorithm("none".into())));
    }

    #[test]
    fn hs256_keyed_with_the_public_key_is_refused() {
        // The classic confusion attack: the "secret" is the certified public key, which
        // anyone can read from the certificate.
        let f = fixture();
        let mut header = Header::new(Algorithm::HS256);
        header.x5c = Some(f.chain.to_x5c());
        let key = EncodingKey::from_secret(f.alice.verifying_key().as_bytes());
        let token = jsonwebtoken::encode(&header, &unlock(), &key).unwrap();
        assert_eq!(f.verify(&token), Err(Refusal::UnsupportedAlgorithm("HS256".into())));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let f = fixture();
        let header = b64url(f.header().to_string().as_bytes());
        // Properly signed payloads that do not decode: the signature passes, parsing fails.
        let signed_payload = |payload: &str| {
            let message = format!("{header}.{payload}");
            let signature = ed25519_dalek::Signer::sign(&f.alice, message.as_bytes());
            format!("{message}.{}", b64url(&signature.to_bytes()))
        };
        let cases = [
            String::new(),
            "not a token".into(),
            "a.b".into(),
            "a.b.c.d".into(),
            "!!!.e30.e30".into(),
            format!("{}.e30.e30", b64url(b"not json")),
            format!("{}.e30.e30", b64url(b"{\"typ\":\"JWT\"}")),
            signed_payload("!!!"),
            signed_payload(&b64url(b"not json")),
            f.sign(&json!({"iss": "alice"})),
            f.sign(&with(unlock(), "exp", json!("soon"))),
            f.sign(&with(unlock(), "extra", json!(1))),
            f.sign(&with(unlock(), "exp", json!(i64::MAX))),
            format!("{}.{}.{}", header, "A".repeat(jws::MAX_TOKEN_LEN), "AAAA"),
        ];
        for token in cases {
            let refusal = f.verify(&token).unwrap_err();
            assert_eq!(refusal.code(), "malformed", "{token:.80}: {refusal:?}");
        }
        // A crit header names extensions we would have to understand.
        let crit = sign_compact(&with(f.header(), "crit", json!(["exp"])), &unlock(), &f.alice);
        assert_eq!(f.verify(&crit).unwrap_err().code(), "malformed");
    }

    #[test]
    fn issuer_must_be_the_certified_user() {
        let f = fixture();
        let mallory = with(unlock(), "iss", json!("mallory"));
        assert_eq!(
            f.verify(&f.sign(&mallory)),
            Err(Refusal::IssuerMismatch { iss: "mallory".into(), certified: "alice".into() })
        );
    }

    #[test]
    fn invalid_claims_are_refused() {
        let f = fixture();
        for claims in [
            with(unlock(), "jti", json!("")),
            with(unlock(), "jti", json!("x".repeat(MAX_JTI_LEN + 1))),
            with(unlock(), "jti", json!("with space")),
            with(unlock(), "sub", json!("")),
            with(unlock(), "sub", json!("front door")),
        ] {
            assert_eq!(f.verify(&f.sign(&claims)).unwrap_err().code(), "invalid_claim", "{claims}");
        }
    }

    #[test]
    fn bad_operations_are_refused() {
        let f = fixture();
        let short_key = STANDARD.encode([7u8; 31]);
        let mut identity = [0u8; 32];
        identity[0] = 1;
        for operation in [
            json!({"type": "open_sesame"}),
            json!({"kind": "unlock"}),
            json!({"type": "unlock", "door": "back"}),
            json!({"type": "add_user", "user_id": "bob", "role": "user"}),
            json!({"type": "add_user", "user_id": "bob", "public_key": short_key, "role": "user"}),
            json!({"type": "add_user", "user_id": "bob", "public_key": "not base64", "role": "user"}),
            json!({"type": "add_user", "user_id": "bob", "public_key": STANDARD.encode(identity), "role": "user"}),
            json!({"type": "add_user", "user_id": "bob", "public_key": bob_key_b64(), "role": "owner"}),
            json!({"type": "add_user", "user_id": "bob", "public_key": bob_key_b64(), "role": "user",
                   "start": t(10), "end": t(10)}),
            json!({"type": "add_user", "user_id": "b b", "public_key": bob_key_b64(), "role": "user"}),
            json!({"type": "remove_user", "user_id": ""}),
            json!({"type": "remove_user"}),
        ] {
            let claims = with(share(), "operation", operation.clone());
            assert_eq!(f.verify(&f.sign(&claims)).unwrap_err().code(), "bad_operation", "{operation}");
        }
    }

    #[test]
    fn refusal_codes_are_distinct() {
        let all = [
            Refusal::Malformed(""),
            Refusal::UnsupportedAlgorithm(String::new()),
            Refusal::MissingChain,
            Refusal::BadChain(CertError::Malformed),
            Refusal::CertificateNotYetValid,
            Refusal::CertificateExpired,
            Refusal::BadSignature,
            Refusal::IssuerMismatch { iss: String::new(), certified: String::new() },
            Refusal::InvalidClaim(""),
            Refusal::IssuedInFuture,
            Refusal::EmptyWindow,
            Refusal::WindowTooLong { max_seconds: 0 },
            Refusal::NotYetValid,
            Refusal::Expired,
            Refusal::BadOperation(""),
        ];
        let codes: std::collections::HashSet<_> = all.iter().map(Refusal::code).collect();
        assert_eq!(codes.len(), all.len());
    }
}
