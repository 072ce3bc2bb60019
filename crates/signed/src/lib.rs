//! Signed operations on doors: a user signs "unlock", "share" (add user) or "remove user"
//! with their own Ed25519 key, and lintel checks the signature before acting.
//!
//! # Trust model
//!
//! lintel holds one Ed25519 signing key, the *authority* ([`Authority`]). When a user
//! registers a public key, the authority issues an X.509 certificate binding that key to
//! the user id. An operation is a compact JWS signed with the user's private key, carrying
//! that certificate in its `x5c` header.
//!
//! Trust comes **only** from the authority's verifying key, handed to the verifier by the
//! caller (the server reads it from its own key file). Nothing in a token's header is
//! trusted on its own: a root certificate in `x5c` is ignored, because anyone can make a
//! self-signed certificate named "lintel signing authority". So:
//!
//! - a leaked admin API token cannot forge an operation: it holds no user's private key,
//!   and the authority key never leaves the server's key file;
//! - a compromised relay or door controller that sees operations can neither change them
//!   (the signature covers lock, window, jti and operation) nor mint new ones;
//! - the certificate only says "this key belongs to this user until then". Whether that
//!   user may act on that lock, whether the jti was seen before and whether the key was
//!   revoked are the caller's questions; [`SignedOperation`] carries what it needs for
//!   them (user id, key fingerprint, certificate serial, jti and its expiry).
//!
//! The crate is pure: no I/O, no clock (callers pass `now`), no randomness except the
//! certificate serial number in [`Authority::issue`].
//!
//! [`oidc`] verifies OpenID Connect ID tokens against a JWKS document, for the user
//! directory's "find a user by their OpenID identity".

pub mod allow_list;
pub mod cert;
mod ids;
mod jws;
pub mod oidc;
pub mod operation;

pub use allow_list::{ListError, verify_allow_list};
pub use cert::{Authority, CertError, Certified, Chain, is_usable_key, key_fingerprint, verify_chain};
pub use jsonwebtoken::jwk::JwkSet;
pub use oidc::{IdClaims, OidcError, verify_id_token};
pub use operation::{Operation, Refusal, Role, Share, SignedOperation, verify_operation};

#[cfg(test)]
mod test_support;
