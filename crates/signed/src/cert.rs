//! User certificates: the authority binds a user id to an Ed25519 public key.
//!
//! A chain is `[leaf, root]`, both DER. The leaf names the user twice: subject CN = the
//! user id (for people reading it with `openssl x509`), and a URI subject alternative name
//! `urn:lintel:user:<id>`, which is the one verification reads; the CN must agree when
//! present. The root is self-signed (CN "lintel signing authority") and is derived from the
//! key alone (fixed validity, serial from the key's hash; Ed25519 signatures are
//! deterministic), so rebuilding it on each start yields the same bytes.
//!
//! Verification never uses the root in the chain: only the authority's verifying key
//! passed in by the caller decides (see the crate documentation).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, TimeZone, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyIdMethod, KeyUsagePurpose,
    PublicKeyData, SanType, SerialNumber, SignatureAlgorithm,
};
use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_SIG_ED25519, OID_X509_EXT_BASIC_CONSTRAINTS, OID_X509_EXT_KEY_USAGE, OID_X509_EXT_SUBJECT_ALT_NAME,
};
use x509_parser::prelude::{FromDer, X509Version};

use crate::ids::is_valid_id;

/// Subject CN of the authority's root certificate.
pub const ROOT_COMMON_NAME: &str = "lintel signing authority";
/// A leaf's URI subject alternative name is this prefix followed by the user id.
pub const USER_URI_PREFIX: &str = "urn:lintel:user:";
/// `x5c` holds the leaf and optionally the root; anything longer is not ours.
pub const MAX_CHAIN_LEN: usize = 2;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    // Issuing.
    #[error("user id must be 1 to 128 characters of letters, digits and . _ - : @ +")]
    InvalidUserId,
    #[error("not_before must be earlier than not_after, both between 1950 and 9999")]
    InvalidValidity,
    #[error("the public key is not a usable Ed25519 key")]
    BadPublicKey,
    #[error("could not get random bytes for the serial number")]
    Random,
    #[error("could not build the certificate: {0}")]
    Build(String),

    // Verifying.
    #[error("the certificate chain is empty")]
    EmptyChain,
    #[error("the certificate chain has more than {MAX_CHAIN_LEN} certificates")]
    ChainTooLong,
    #[error("a certificate in the chain is not standard base64")]
    Base64,
    #[error("the certificate is not valid DER X.509")]
    Malformed,
    #[error("the certificate is not signed with Ed25519")]
    UnsupportedSignatureAlgorithm,
    #[error("the certificate is not signed by the lintel authority")]
    BadSignature,
    #[error("the certificate is not valid yet")]
    NotYetValid,
    #[error("the certificate has expired")]
    Expired,
    #[error("the certificate is a CA certificate, not a user's")]
    NotALeaf,
    #[error("the certificate's key may not sign (key usage)")]
    NotForSigning,
    #[error("the certificate has a critical extension lintel does not know")]
    UnknownCriticalExtension,
    #[error("the certified key is not Ed25519")]
    UnsupportedKeyAlgorithm,
    #[error("the certificate names no lintel user (urn:lintel:user:<id>)")]
    MissingUserId,
    #[error("the certificate's user names disagree")]
    UserIdMismatch,
}

/// What a verified leaf says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certified {
    pub user_id: String,
    pub public_key: [u8; 32],
    pub not_after: DateTime<Utc>,
    /// Lowercase hex of the serial number, no leading zeros; with [`key_fingerprint`],
    /// what a revocation list names.
    pub serial: String,
}

/// A certificate chain, leaf first, as issued by [`Authority::issue`] or read from `x5c`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    certs: Vec<Vec<u8>>,
    serial: String,
}

impl Chain {
    /// The leaf's DER.
    pub fn leaf_der(&self) -> &[u8] {
        &self.certs[0]
    }

    /// All certificates, leaf first.
    pub fn certs_der(&self) -> &[Vec<u8>] {
        &self.certs
    }

    /// The leaf's serial number, as [`Certified::serial`] will show it.
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// The chain as an RFC 7515 `x5c` header value: standard (not URL-safe) base64 DER.
    pub fn to_x5c(&self) -> Vec<String> {
        self.certs.iter().map(|der| STANDARD.encode(der)).collect()
    }

    /// Reads an `x5c` value back. This only decodes and parses: it says nothing about who
    /// signed it. Use [`verify_chain`] for that.
    pub fn from_x5c(x5c: &[String]) -> Result<Chain, CertError> {
        if x5c.is_empty() {
            return Err(CertError::EmptyChain);
        }
        if x5c.len() > MAX_CHAIN_LEN {
            return Err(CertError::ChainTooLong);
        }
        let certs =
            x5c.iter().map(|b64| STANDARD.decode(b64).map_err(|_| CertError::Base64)).collect::<Result<Vec<_>, _>>()?;
        for der in &certs {
            parse(der)?;
        }
        let serial = serial_hex(parse(&certs[0])?.raw_serial());
        Ok(Chain { certs, serial })
    }
}

/// lintel's signing authority. Debug output never shows the key.
pub struct Authority {
    pub(crate) key: SigningKey,
    root_params: CertificateParams,
    root_der: Vec<u8>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").field("public_key", &hex::encode(self.key.verifying_key().as_bytes())).finish()
    }
}

impl Authority {
    /// The authority for a 32-byte Ed25519 secret (the server keeps it in its 0600 key file).
    pub fn from_secret_bytes(secret: &[u8; 32]) -> Result<Authority, CertError> {
        Authority::new(SigningKey::from_bytes(secret))
    }

    pub fn new(key: SigningKey) -> Result<Authority, CertError> {
        let public = key.verifying_key().to_bytes();
        let mut params = CertificateParams::default();
        params.distinguished_name = name(ROOT_COMMON_NAME);
        // Fixed dates and a serial from the key: the same key always yields the same root.
        params.not_before = time_of(Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap())?;
        // RFC 5280 4.1.2.5: 99991231235959Z means "no well-defined expiration date".
        params.not_after = time_of(Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap())?;
        params.serial_number = Some(SerialNumber::from_slice(&Sha256::digest(public)[..16]));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        params.key_identifier_method = KeyIdMethod::PreSpecified(key_id(&public));
        let root_der = params.self_signed(&RcgenSigner(&key)).map_err(build_error)?.der().to_vec();
        Ok(Authority { key, root_params: params, root_der })
    }

    /// What verifiers need; the only thing they trust.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// Certifies that `public_key` belongs to `user_id` from `not_before` to `not_after`
    /// (whole seconds; fractions are dropped). The serial number is 128 random bits.
    pub fn issue(
        &self,
        user_id: &str,
        public_key: &[u8; 32],
        not_before: DateTime<Utc>,
        not_after: DateTime<Utc>,
    ) -> Result<Chain, CertError> {
        if !is_valid_id(user_id) {
            return Err(CertError::InvalidUserId);
        }
        if not_before.timestamp() >= not_after.timestamp() {
            return Err(CertError::InvalidValidity);
        }
        usable_key(public_key)?;
        let mut serial = [0u8; 16];
        getrandom::fill(&mut serial).map_err(|_| CertError::Random)?;

        let mut params = CertificateParams::default();
        params.distinguished_name = name(user_id);
        let uri = Ia5String::try_from(format!("{USER_URI_PREFIX}{user_id}")).map_err(|_| CertError::InvalidUserId)?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.not_before = time_of(not_before)?;
        params.not_after = time_of(not_after)?;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method = KeyIdMethod::PreSpecified(key_id(public_key));

        let issuer = Issuer::from_params(&self.root_params, RcgenSigner(&self.key));
        let leaf = params.signed_by(&UserKey(*public_key), &issuer).map_err(build_error)?;
        Ok(Chain { certs: vec![leaf.der().to_vec(), self.root_der.clone()], serial: serial_hex(&serial) })
    }
}

/// Checks `x5c` (leaf first; a root after it is allowed and ignored) against the authority
/// key, at `now`.
pub fn verify_chain(x5c: &[String], authority: &VerifyingKey, now: DateTime<Utc>) -> Result<Certified, CertError> {
    let leaf = match x5c {
        [] => return Err(CertError::EmptyChain),
        [leaf] | [leaf, _] => leaf,
        _ => return Err(CertError::ChainTooLong),
    };
    let der = STANDARD.decode(leaf).map_err(|_| CertError::Base64)?;
    verify_leaf(&der, authority, now)
}

/// Hex SHA-256 of a raw Ed25519 public key: how revocation lists and logs name a key.
pub fn key_fingerprint(public_key: &[u8; 32]) -> String {
    hex::encode(Sha256::digest(public_key))
}

fn verify_leaf(der: &[u8], authority: &VerifyingKey, now: DateTime<Utc>) -> Result<Certified, CertError> {
    let cert = parse(der)?;

    // The signature first: nothing else about a certificate is worth reading until we know
    // the authority wrote it.
    let alg = &cert.signature_algorithm;
    if alg.algorithm != OID_SIG_ED25519 || alg.parameters.is_some() || cert.tbs_certificate.signature != *alg {
        return Err(CertError::UnsupportedSignatureAlgorithm);
    }
    if cert.signature_value.unused_bits != 0 {
        return Err(CertError::BadSignature);
    }
    let signature = Signature::from_slice(&cert.signature_value.data).map_err(|_| CertError::BadSignature)?;
    // verify_strict: refuses malleable signatures and weak keys.
    authority.verify_strict(cert.tbs_certificate.as_ref(), &signature).map_err(|_| CertError::BadSignature)?;

    if cert.version() != X509Version::V3 {
        return Err(CertError::Malformed);
    }
    let validity = cert.validity();
    if now.timestamp() < validity.not_before.timestamp() {
        return Err(CertError::NotYetValid);
    }
    if now.timestamp() > validity.not_after.timestamp() {
        return Err(CertError::Expired);
    }
    check_extensions(&cert)?;

    // The root is signed by the same key; it must never pass as a user's certificate.
    let spki = cert.public_key();
    if spki.algorithm.algorithm != OID_SIG_ED25519 || spki.algorithm.parameters.is_some() {
        return Err(CertError::UnsupportedKeyAlgorithm);
    }
    let public_key: [u8; 32] = spki.subject_public_key.data.as_ref().try_into().map_err(|_| CertError::BadPublicKey)?;
    usable_key(&public_key)?;

    let user_id = user_id(&cert)?;
    let not_after = DateTime::from_timestamp(validity.not_after.timestamp(), 0).ok_or(CertError::Malformed)?;
    Ok(Certified { user_id, public_key, not_after, serial: serial_hex(cert.raw_serial()) })
}

/// Basic constraints, key usage and critical extensions.
fn check_extensions(cert: &X509Certificate<'_>) -> Result<(), CertError> {
    for ext in cert.extensions() {
        if matches!(ext.parsed_extension(), ParsedExtension::ParseError { .. }) {
            return Err(CertError::Malformed);
        }
        // RFC 5280 4.2: a critical extension we cannot process means refusing the certificate.
        let known = ext.oid == OID_X509_EXT_BASIC_CONSTRAINTS
            || ext.oid == OID_X509_EXT_KEY_USAGE
            || ext.oid == OID_X509_EXT_SUBJECT_ALT_NAME;
        if ext.critical && !known {
            return Err(CertError::UnknownCriticalExtension);
        }
    }
    // Errors here mean a duplicated extension.
    if cert.basic_constraints().map_err(|_| CertError::Malformed)?.is_some_and(|bc| bc.value.ca) {
        return Err(CertError::NotALeaf);
    }
    match cert.key_usage().map_err(|_| CertError::Malformed)? {
        Some(usage) if usage.value.digital_signature() => Ok(()),
        _ => Err(CertError::NotForSigning),
    }
}

/// The user id from the URI name; the CN, if any, must agree.
fn user_id(cert: &X509Certificate<'_>) -> Result<String, CertError> {
    let san = cert.subject_alternative_name().map_err(|_| CertError::Malformed)?;
    let mut ids = san.iter().flat_map(|san| san.value.general_names.iter()).filter_map(|name| match name {
        GeneralName::URI(uri) => uri.strip_prefix(USER_URI_PREFIX),
        _ => None,
    });
    let (Some(id), None) = (ids.next(), ids.next()) else {
        return Err(CertError::MissingUserId);
    };
    if !is_valid_id(id) {
        return Err(CertError::MissingUserId);
    }
    for cn in cert.subject().iter_common_name() {
        if cn.as_str().map_err(|_| CertError::UserIdMismatch)? != id {
            return Err(CertError::UserIdMismatch);
        }
    }
    Ok(id.to_owned())
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, CertError> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        _ => Err(CertError::Malformed),
    }
}

/// Whether an Ed25519 public key decodes to a curve point and is not of small order (which
/// would let one signature verify for many messages).
pub fn is_usable_key(public_key: &[u8; 32]) -> bool {
    VerifyingKey::from_bytes(public_key).is_ok_and(|key| !key.is_weak())
}

fn usable_key(public_key: &[u8; 32]) -> Result<(), CertError> {
    if is_usable_key(public_key) { Ok(()) } else { Err(CertError::BadPublicKey) }
}

fn serial_hex(raw: &[u8]) -> String {
    let start = raw.iter().position(|&b| b != 0).unwrap_or(raw.len());
    hex::encode(&raw[start..])
}

/// Subject/authority key identifier: truncated SHA-256 of the raw key (RFC 7093 style).
fn key_id(public_key: &[u8; 32]) -> Vec<u8> {
    Sha256::digest(public_key)[..20].to_vec()
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

/// X.509 can say years 1950 to 9999 (UTCTime, then GeneralizedTime).
fn time_of(at: DateTime<Utc>) -> Result<time::OffsetDateTime, CertError> {
    let lowest = Utc.with_ymd_and_hms(1950, 1, 1, 0, 0, 0).unwrap();
    let highest = Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap();
    if at < lowest || at > highest {
        return Err(CertError::InvalidValidity);
    }
    time::OffsetDateTime::from_unix_timestamp(at.timestamp()).map_err(|_| CertError::InvalidValidity)
}

fn build_error(error: rcgen::Error) -> CertError {
    CertError::Build(error.to_string())
}

/// The authority key as rcgen's signer: rcgen writes the DER, ed25519-dalek signs it.
struct RcgenSigner<'a>(&'a SigningKey);

impl PublicKeyData for RcgenSigner<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.0.as_ref().as_bytes()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_ED25519
    }
}

impl rcgen::SigningKey for RcgenSigner<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        Ok(self.0.sign(msg).to_bytes().to_vec())
    }
}

/// A user's public key, which rcgen writes into the leaf's SubjectPublicKeyInfo.
struct UserKey([u8; 32]);

impl PublicKeyData for UserKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_ED25519
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::test_support::{authority, key, now};

    fn alice_chain(authority: &Authority, not_before: DateTime<Utc>, not_after: DateTime<Utc>) -> Chain {
        authority.issue("alice", key(2).verifying_key().as_bytes(), not_before, not_after).unwrap()
    }

    fn day() -> Duration {
        Duration::days(1)
    }

    #[test]
    fn issued_chain_verifies_and_names_the_user_and_key() {
        let authority = authority(1);
        let chain = alice_chain(&authority, now() - day(), now() + day());
        assert_eq!(chain.certs_der().len(), 2);
        assert_eq!(chain.certs_der()[1], authority.root_der());

        let certified = verify_chain(&chain.to_x5c(), &authority.verifying_key(), now()).unwrap();
        assert_eq!(certified.user_id, "alice");
        assert_eq!(certified.public_key, key(2).verifying_key().to_bytes());
        assert_eq!(certified.not_after, now() + day());
        assert_eq!(certified.serial, chain.serial());
        assert!(!certified.serial.is_empty() && certified.serial.len() <= 32);

        // The leaf alone is enough: the root adds no trust.
        let leaf_only = &chain.to_x5c()[..1];
        assert_eq!(verify_chain(leaf_only, &authority.verifying_key(), now()), Ok(certified));
    }

    #[test]
    fn leaf_names_the_user_in_cn_and_uri() {
        let chain = alice_chain(&authority(1), now() - day(), now() + day());
        let cert = parse(chain.leaf_der()).unwrap();
        let cn: Vec<_> = cert.subject().iter_common_name().map(|cn| cn.as_str().unwrap()).collect();
        assert_eq!(cn, ["alice"]);
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(san.value.general_names, [GeneralName::URI("urn:lintel:user:alice")]);
        assert!(!cert.is_ca());
    }

    #[test]
    fn serials_are_random() {
        let authority = authority(1);
        let a = alice_chain(&authority, now() - day(), now() + day());
        let b = alice_chain(&authority, now() - day(), now() + day());
        assert_ne!(a.serial(), b.serial());
        assert_ne!(a.leaf_der(), b.leaf_der());
    }

    #[test]
    fn root_is_rebuilt_identically_from_the_key() {
        assert_eq!(authority(1).root_der(), authority(1).root_der());
        assert_ne!(authority(1).root_der(), authority(2).root_der());
        let authority = authority(1);
        let root = parse(authority.root_der()).unwrap();
        let cn: Vec<_> = root.subject().iter_common_name().map(|cn| cn.as_str().unwrap()).collect();
        assert_eq!(cn, [ROOT_COMMON_NAME]);
        assert!(root.is_ca());
        // Self-signed with the authority key.
        let signature = Signature::from_slice(&root.signature_value.data).unwrap();
        authority.verifying_key().verify_strict(root.tbs_certificate.as_ref(), &signature).unwrap();
    }

    #[test]
    fn x5c_round_trips() {
        let chain = alice_chain(&authority(1), now() - day(), now() + day());
        assert_eq!(Chain::from_x5c(&chain.to_x5c()), Ok(chain.clone()));
        assert_eq!(Chain::from_x5c(&[]), Err(CertError::EmptyChain));
        assert_eq!(Chain::from_x5c(&["%%%".to_owned()]), Err(CertError::Base64));
        assert_eq!(Chain::from_x5c(&["AAAA".to_owned()]), Err(CertError::Malformed));
    }

    #[test]
    fn another_authority_is_not_trusted_even_with_its_root_in_the_chain() {
        let chain = alice_chain(&authority(7), now() - day(), now() + day());
        assert_eq!(verify_chain(&chain.to_x5c(), &authority(1).verifying_key(), now()), Err(CertError::BadSignature));
    }

    #[test]
    fn the_root_is_not_a_user_certificate() {
        let authority = authority(1);
        let x5c = [STANDARD.encode(authority.root_der())];
        assert_eq!(verify_chain(&x5c, &authority.verifying_key(), now()), Err(CertError::NotALeaf));
    }

    #[test]
    fn validity_window_is_checked() {
        let authority = authority(1);
        let vk = authority.verifying_key();
        let expired = alice_chain(&authority, now() - day() * 2, now() - day());
        assert_eq!(verify_chain(&expired.to_x5c(), &vk, now()), Err(CertError::Expired));
        let future = alice_chain(&authority, now() + day(), now() + day() * 2);
        assert_eq!(verify_chain(&future.to_x5c(), &vk, now()), Err(CertError::NotYetValid));
        // Both ends are inclusive.
        let exact = alice_chain(&authority, now(), now() + day());
        assert!(verify_chain(&exact.to_x5c(), &vk, now()).is_ok());
        assert!(verify_chain(&exact.to_x5c(), &vk, now() + day()).is_ok());
        assert_eq!(verify_chain(&exact.to_x5c(), &vk, now() + day() + Duration::seconds(1)), Err(CertError::Expired));
    }

    #[test]
    fn tampered_leaf_is_refused() {
        let authority = authority(1);
        let chain = alice_chain(&authority, now() - day(), now() + day());
        let mut der = chain.leaf_der().to_vec();
        // Change the user name inside the TBS ("alice" -> "mlice"): still DER, no longer signed.
        let at = der.windows(5).position(|w| w == b"alice").unwrap();
        der[at] = b'm';
        let x5c = [STANDARD.encode(&der)];
        assert_eq!(verify_chain(&x5c, &authority.verifying_key(), now()), Err(CertError::BadSignature));
    }

    #[test]
    fn chain_shape_errors() {
        let vk = authority(1).verifying_key();
        assert_eq!(verify_chain(&[], &vk, now()), Err(CertError::EmptyChain));
        let three = vec!["AAAA".to_owned(); 3];
        assert_eq!(verify_chain(&three, &vk, now()), Err(CertError::ChainTooLong));
        assert_eq!(verify_chain(&["not base64!".to_owned()], &vk, now()), Err(CertError::Base64));
        assert_eq!(verify_chain(&["AAAA".to_owned()], &vk, now()), Err(CertError::Malformed));
    }

    #[test]
    fn issue_refuses_bad_input() {
        let authority = authority(1);
        let pk = key(2).verifying_key().to_bytes();
        assert_eq!(authority.issue("", &pk, now(), now() + day()), Err(CertError::InvalidUserId));
        assert_eq!(authority.issue("al ice", &pk, now(), now() + day()), Err(CertError::InvalidUserId));
        assert_eq!(authority.issue("alice", &pk, now(), now()), Err(CertError::InvalidValidity));
        let year_10000 = Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(authority.issue("alice", &pk, now(), year_10000), Err(CertError::InvalidValidity));
        // The identity point: small order, so a "signature" by it proves nothing.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(authority.issue("alice", &identity, now(), now() + day()), Err(CertError::BadPublicKey));
    }

    #[test]
    fn fingerprint_is_hex_sha256() {
        let fingerprint = key_fingerprint(&[0u8; 32]);
        assert_eq!(fingerprint, "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925");
    }

    #[test]
    fn debug_does_not_show_the_secret() {
        let text = format!("{:?}", authority(1));
        assert!(!text.contains(&hex::encode([1u8; 32])));
    }
}
