//! Verifying an OpenID Connect ID token against the provider's JWKS document, so the user
//! directory can find a user by their OpenID identity (issuer + `sub`).
//!
//! The key decides the algorithm, not the token: an RSA key verifies RS256 only, a P-256
//! key ES256 only, an Ed25519 key EdDSA only, and a JWK that names an `alg` must name that
//! one. HMAC (`oct`) keys and `none` are never used: with a public JWKS anyone could make
//! an HMAC token, and `none` is no signature at all.

use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Deserializer};

use crate::jws::{self, HeaderProblem};

/// Allowed disagreement between the provider's clock and ours.
pub const CLOCK_SKEW_SECONDS: i64 = 30;
/// OpenID Connect Core 2: `sub` is at most 255 ASCII characters.
const MAX_SUB_LEN: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    #[error("malformed ID token: {0}")]
    Malformed(&'static str),
    #[error("algorithm {0:?} is not accepted (RS256, ES256 or EdDSA)")]
    UnsupportedAlgorithm(String),
    #[error("no key in the JWKS matches the token's kid")]
    UnknownKid,
    #[error("the token's algorithm does not match its key")]
    KeyMismatch,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the token was issued by someone else")]
    WrongIssuer,
    #[error("the token is meant for another client")]
    WrongAudience,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
}

impl OidcError {
    pub fn code(&self) -> &'static str {
        match self {
            OidcError::Malformed(_) => "malformed",
            OidcError::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            OidcError::UnknownKid => "unknown_kid",
            OidcError::KeyMismatch => "key_mismatch",
            OidcError::BadSignature => "bad_signature",
            OidcError::WrongIssuer => "wrong_issuer",
            OidcError::WrongAudience => "wrong_audience",
            OidcError::Expired => "expired",
            OidcError::NotYetValid => "not_yet_valid",
        }
    }
}

/// What lintel uses from an ID token. Unverified contacts are reported as such; the
/// directory lists a contact only once it is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdClaims {
    pub sub: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub phone_number: Option<String>,
    pub phone_number_verified: bool,
    pub name: Option<String>,
    /// What the client sent to the issuer for this sign-in (the web UI's checks it).
    pub nonce: Option<String>,
}

#[derive(Deserialize)]
struct Wire {
    iss: String,
    sub: String,
    aud: Audience,
    exp: i64,
    iat: Option<i64>,
    nbf: Option<i64>,
    azp: Option<String>,
    email: Option<String>,
    #[serde(default, deserialize_with = "flag")]
    email_verified: bool,
    phone_number: Option<String>,
    #[serde(default, deserialize_with = "flag")]
    phone_number_verified: bool,
    name: Option<String>,
    nonce: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// Verifies `token` from `issuer` for the client `audience` at `now`. Without a `kid` in
/// the header, a JWKS of exactly one key is used (some small providers omit it).
pub fn verify_id_token(
    token: &str,
    jwks: &JwkSet,
    issuer: &str,
    audience: &str,
    now: DateTime<Utc>,
) -> Result<IdClaims, OidcError> {
    let alg = jws::header_alg(token).map_err(|problem| match problem {
        HeaderProblem::Malformed(why) => OidcError::Malformed(why),
        HeaderProblem::Critical => OidcError::Malformed("crit header extensions are not supported"),
    })?;
    let algorithm = match alg.as_str() {
        "RS256" => Algorithm::RS256,
        "ES256" => Algorithm::ES256,
        "EdDSA" => Algorithm::EdDSA,
        _ => return Err(OidcError::UnsupportedAlgorithm(alg)),
    };
    let header = jsonwebtoken::decode_header(token).map_err(|_| OidcError::Malformed("header"))?;
    let jwk = match header.kid.as_deref() {
        Some(kid) => jwks.find(kid).ok_or(OidcError::UnknownKid)?,
        None => match jwks.keys.as_slice() {
            [only] => only,
            _ => return Err(OidcError::UnknownKid),
        },
    };
    if key_algorithm(jwk) != Some(algorithm) {
        return Err(OidcError::KeyMismatch);
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|_| OidcError::KeyMismatch)?;

    // jsonwebtoken checks the signature only; the claims are ours to check with `now`.
    let mut validation = Validation::new(algorithm);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = match jsonwebtoken::decode::<Wire>(token, &key, &validation) {
        Ok(data) => data.claims,
        Err(error) => {
            return Err(match error.kind() {
                ErrorKind::InvalidSignature => OidcError::BadSignature,
                // A key jsonwebtoken cannot use (bad modulus, point off the curve).
                ErrorKind::InvalidRsaKey(_)
                | ErrorKind::InvalidEcdsaKey
                | ErrorKind::InvalidEddsaKey
                | ErrorKind::InvalidKeyFormat => OidcError::KeyMismatch,
                _ => OidcError::Malformed("payload or signature is not valid base64url JSON of the expected shape"),
            });
        }
    };

    if claims.iss != issuer {
        return Err(OidcError::WrongIssuer);
    }
    let audiences = match &claims.aud {
        Audience::One(one) => std::slice::from_ref(one),
        Audience::Many(many) => many.as_slice(),
    };
    // OpenID Connect Core 3.1.3.7: we must be an audience, and the authorized party if named.
    if !audiences.iter().any(|aud| aud == audience) || claims.azp.as_deref().is_some_and(|azp| azp != audience) {
        return Err(OidcError::WrongAudience);
    }
    let now = now.timestamp();
    if now > claims.exp.saturating_add(CLOCK_SKEW_SECONDS) {
        return Err(OidcError::Expired);
    }
    let future = |at: Option<i64>| at.is_some_and(|at| at > now.saturating_add(CLOCK_SKEW_SECONDS));
    if future(claims.nbf) || future(claims.iat) {
        return Err(OidcError::NotYetValid);
    }
    if claims.sub.is_empty() || claims.sub.len() > MAX_SUB_LEN {
        return Err(OidcError::Malformed("sub must be 1 to 255 characters"));
    }

    Ok(IdClaims {
        sub: claims.sub,
        email: claims.email,
        email_verified: claims.email_verified,
        phone_number: claims.phone_number,
        phone_number_verified: claims.phone_number_verified,
        name: claims.name,
        nonce: claims.nonce,
    })
}

/// The one algorithm a JWK may verify, or None if lintel does not use such keys.
fn key_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    let algorithm = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => Algorithm::EdDSA,
        _ => return None,
    };
    let named = match algorithm {
        Algorithm::RS256 => KeyAlgorithm::RS256,
        Algorithm::ES256 => KeyAlgorithm::ES256,
        _ => KeyAlgorithm::EdDSA,
    };
    let alg_agrees = jwk.common.key_algorithm.is_none_or(|alg| alg == named);
    let use_agrees = jwk.common.public_key_use.as_ref().is_none_or(|u| *u == PublicKeyUse::Signature);
    (alg_agrees && use_agrees).then_some(algorithm)
}

/// `email_verified` is a boolean, but some providers send the string "true" (or null).
fn flag<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Text(String),
    }
    Ok(match Option::<Flag>::deserialize(deserializer)? {
        Some(Flag::Bool(value)) => value,
        Some(Flag::Text(text)) => text.eq_ignore_ascii_case("true"),
        None => false,
    })
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::{Value, json};

    use super::*;
    use crate::test_support::{b64url, ed25519_pkcs8, key, now};

    const ISSUER: &str = "https://id.example.org";
    const CLIENT: &str = "lintel";

    fn t(offset_seconds: i64) -> i64 {
        now().timestamp() + offset_seconds
    }

    fn ed_key() -> EncodingKey {
        EncodingKey::from_ed_der(&ed25519_pkcs8(&key(5)))
    }

    fn rsa_key() -> EncodingKey {
        EncodingKey::from_rsa_pem(include_bytes!("../testdata/rsa-test-key.pem")).unwrap()
    }

    fn ec_key() -> EncodingKey {
        EncodingKey::from_ec_pem(include_bytes!("../testdata/ec-test-key.pem")).unwrap()
    }

    fn jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(key, alg).unwrap();
        jwk.common.key_id = Some(kid.into());
        jwk
    }

    /// The provider's published keys: one of each kind we accept, and an HMAC key that
    /// must never be used.
    fn jwks() -> JwkSet {
        let hmac = serde_json::from_value(json!({"kty": "oct", "kid": "hmac", "k": b64url(b"shared")})).unwrap();
        JwkSet {
            keys: vec![
                jwk(&ed_key(), Algorithm::EdDSA, "ed"),
                jwk(&rsa_key(), Algorithm::RS256, "rsa"),
                jwk(&ec_key(), Algorithm::ES256, "ec"),
                hmac,
            ],
        }
    }

    fn claims() -> Value {
        json!({"iss": ISSUER, "sub": "248289761001", "aud": CLIENT, "exp": t(300), "iat": t(0),
               "email": "alice@example.org", "email_verified": true, "name": "Alice"})
    }

    fn with(mut claims: Value, field: &str, value: Value) -> Value {
        claims[field] = value;
        claims
    }

    fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    fn ed(claims: &Value) -> String {
        sign(Algorithm::EdDSA, Some("ed"), claims, &ed_key())
    }

    fn verify(token: &str) -> Result<IdClaims, OidcError> {
        verify_id_token(token, &jwks(), ISSUER, CLIENT, now())
    }

    #[test]
    fn ed25519_token_is_accepted() {
        let expected = IdClaims {
            sub: "248289761001".into(),
            email: Some("alice@example.org".into()),
            email_verified: true,
            phone_number: None,
            phone_number_verified: false,
            name: Some("Alice".into()),
            nonce: None,
        };
        assert_eq!(verify(&ed(&claims())), Ok(expected));
    }

    #[test]
    fn rsa_and_ec_tokens_are_accepted() {
        let rs = sign(Algorithm::RS256, Some("rsa"), &claims(), &rsa_key());
        assert_eq!(verify(&rs).unwrap().sub, "248289761001");
        let es = sign(Algorithm::ES256, Some("ec"), &claims(), &ec_key());
        assert_eq!(verify(&es).unwrap().sub, "248289761001");
    }

    #[test]
    fn verified_flags_default_to_false_and_accept_strings() {
        let phone = json!({"iss": ISSUER, "sub": "s", "aud": [CLIENT], "exp": t(60),
                           "phone_number": "+49301234567", "phone_number_verified": "true", "email_verified": null});
        let claims = verify(&ed(&phone)).unwrap();
        assert_eq!(claims.phone_number.as_deref(), Some("+49301234567"));
        assert!(claims.phone_number_verified);
        assert!(!claims.email_verified);
        let unverified = with(with(self::claims(), "email_verified", json!("false")), "name", Value::Null);
        let claims = verify(&ed(&unverified)).unwrap();
        assert!(!claims.email_verified);
        assert_eq!(claims.name, None);
    }

    #[test]
    fn wrong_issuer_is_refused() {
        let other = with(claims(), "iss", json!("https://evil.example"));
        assert_eq!(verify(&ed(&other)), Err(OidcError::WrongIssuer));
    }

    #[test]
    fn wrong_audience_is_refused() {
        assert_eq!(verify(&ed(&with(claims(), "aud", json!("someone-else")))), Err(OidcError::WrongAudience));
        assert_eq!(verify(&ed(&with(claims(), "aud", json!(["a", "b"])))), Err(OidcError::WrongAudience));
        let many = with(claims(), "aud", json!(["other", CLIENT]));
        assert!(verify(&ed(&many)).is_ok());
        assert_eq!(verify(&ed(&with(many, "azp", json!("other")))), Err(OidcError::WrongAudience));
    }

    #[test]
    fn expired_token_is_refused() {
        assert_eq!(verify(&ed(&with(claims(), "exp", json!(t(-31))))), Err(OidcError::Expired));
        assert!(verify(&ed(&with(claims(), "exp", json!(t(-30))))).is_ok());
    }

    #[test]
    fn future_token_is_refused() {
        assert_eq!(verify(&ed(&with(claims(), "iat", json!(t(31))))), Err(OidcError::NotYetValid));
        assert_eq!(verify(&ed(&with(claims(), "nbf", json!(t(31))))), Err(OidcError::NotYetValid));
    }

    #[test]
    fn unknown_kid_is_refused() {
        let token = sign(Algorithm::EdDSA, Some("rotated-away"), &claims(), &ed_key());
        assert_eq!(verify(&token), Err(OidcError::UnknownKid));
        // Without kid: only a single-key set is unambiguous.
        let no_kid = sign(Algorithm::EdDSA, None, &claims(), &ed_key());
        assert_eq!(verify(&no_kid), Err(OidcError::UnknownKid));
        let single = JwkSet { keys: vec![jwk(&ed_key(), Algorithm::EdDSA, "ed")] };
        assert!(verify_id_token(&no_kid, &single, ISSUER, CLIENT, now()).is_ok());
    }

    #[test]
    fn bad_signature_is_refused() {
        let forged = sign(Algorithm::EdDSA, Some("ed"), &claims(), &EncodingKey::from_ed_der(&ed25519_pkcs8(&key(6))));
        assert_eq!(verify(&forged), Err(OidcError::BadSignature));
        let token = ed(&claims());
        let parts: Vec<&str> = token.split('.').collect();
        let other = with(claims(), "sub", json!("someone-else"));
        let tampered = format!("{}.{}.{}", parts[0], b64url(other.to_string().as_bytes()), parts[2]);
        assert_eq!(verify(&tampered), Err(OidcError::BadSignature));
    }

    #[test]
    fn none_and_hmac_are_refused() {
        let header = b64url(br#"{"alg":"none","kid":"ed"}"#);
        let none = format!("{header}.{}.", b64url(claims().to_string().as_bytes()));
        assert_eq!(verify(&none), Err(OidcError::UnsupportedAlgorithm("none".into())));
        // Even with a published oct key: a JWKS is public, so its HMAC secret is too.
        let hs = sign(Algorithm::HS256, Some("hmac"), &claims(), &EncodingKey::from_secret(b"shared"));
        assert_eq!(verify(&hs), Err(OidcError::UnsupportedAlgorithm("HS256".into())));
        let rs384 = sign(Algorithm::RS384, Some("rsa"), &claims(), &rsa_key());
        assert_eq!(verify(&rs384), Err(OidcError::UnsupportedAlgorithm("RS384".into())));
    }

    #[test]
    fn algorithm_must_match_the_key() {
        // An EdDSA token naming the RSA key's kid.
        let token = sign(Algorithm::EdDSA, Some("rsa"), &claims(), &ed_key());
        assert_eq!(verify(&token), Err(OidcError::KeyMismatch));
        // The JWK says which algorithm it is for, or what it is used for.
        let mut named = jwk(&rsa_key(), Algorithm::RS256, "rsa");
        named.common.key_algorithm = Some(KeyAlgorithm::PS256);
        let mut encryption = jwk(&ed_key(), Algorithm::EdDSA, "ed");
        encryption.common.public_key_use = Some(PublicKeyUse::Encryption);
        let rs = sign(Algorithm::RS256, Some("rsa"), &claims(), &rsa_key());
        for (set, token) in [(named, rs), (encryption, ed(&claims()))] {
            let jwks = JwkSet { keys: vec![set] };
            assert_eq!(verify_id_token(&token, &jwks, ISSUER, CLIENT, now()), Err(OidcError::KeyMismatch));
        }
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for token in [
            String::new(),
            "garbage".into(),
            "a.b.c".into(),
            format!("{}.e30.", b64url(b"[]")),
            ed(&json!({"iss": ISSUER, "aud": CLIENT, "exp": t(60)})),
            ed(&json!({"iss": ISSUER, "sub": "s", "aud": CLIENT})),
            ed(&with(claims(), "exp", json!("later"))),
            ed(&with(claims(), "sub", json!(""))),
            ed(&with(claims(), "aud", json!(7))),
        ] {
            let error = verify(&token).unwrap_err();
            assert_eq!(error.code(), "malformed", "{token:.60}: {error:?}");
        }
    }

    #[test]
    fn error_codes_are_distinct() {
        let all = [
            OidcError::Malformed(""),
            OidcError::UnsupportedAlgorithm(String::new()),
            OidcError::UnknownKid,
            OidcError::KeyMismatch,
            OidcError::BadSignature,
            OidcError::WrongIssuer,
            OidcError::WrongAudience,
            OidcError::Expired,
            OidcError::NotYetValid,
        ];
        let codes: std::collections::HashSet<_> = all.iter().map(OidcError::code).collect();
        assert_eq!(codes.len(), all.len());
    }
}
