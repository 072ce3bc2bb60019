//! What both verifiers do before handing a compact JWS to `jsonwebtoken`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

/// Longer tokens are refused before any decoding: an operation with a two-certificate
/// chain is about 1.5 KB, an ID token a few KB.
pub(crate) const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Why the header could not be read. The verifiers map these to their own error types.
pub(crate) enum HeaderProblem {
    Malformed(&'static str),
    /// RFC 7515 4.1.11: a recipient must refuse a `crit` header it does not understand,
    /// and we understand no extensions.
    Critical,
}

/// The header's `alg`, read as a plain string. `jsonwebtoken`'s own header type cannot
/// represent `none` or unknown names (it fails as bad JSON), and a refused algorithm
/// deserves its own answer, so we read it ourselves first. Nothing here is trusted: the
/// value only decides whether to go on.
pub(crate) fn header_alg(token: &str) -> Result<String, HeaderProblem> {
    #[derive(Deserialize)]
    struct AlgOnly {
        alg: String,
        #[serde(default)]
        crit: Option<serde_json::Value>,
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(HeaderProblem::Malformed("token too long"));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(_payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeaderProblem::Malformed("not a compact JWS (three dot-separated parts)"));
    };
    let bytes = URL_SAFE_NO_PAD.decode(header).map_err(|_| HeaderProblem::Malformed("header is not base64url"))?;
    let parsed: AlgOnly =
        serde_json::from_slice(&bytes).map_err(|_| HeaderProblem::Malformed("header is not a JSON object with alg"))?;
    if parsed.crit.is_some() {
        return Err(HeaderProblem::Critical);
    }
    Ok(parsed.alg)
}
