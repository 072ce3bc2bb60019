//! Generating and digesting high-entropy secrets (admin tokens, personal secrets,
//! backup codes).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use lintel_core::Digest;
use lintel_core::credential::sha256;

/// 256 bits from the operating system's RNG, URL-safe base64, with a prefix that tells
/// what the string is when it turns up somewhere (and lets secret scanners find it).
pub fn generate(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random number generator is available");
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

pub fn digest(secret: &str) -> Digest {
    sha256(secret.trim().as_bytes())
}

/// Backup codes are typed by hand, also on a door's numeric keypad when lintel is down:
/// 20 decimal digits in groups of five (about 66 bits; guessing is held back online, and
/// the offline lists keep only salted hashes). Compared without dashes or spaces. Codes
/// issued before they were digits only carry letters too and still work, except at a keypad.
pub fn generate_backup_code() -> String {
    // Bytes of 250 and above are drawn again, so that every digit is equally likely.
    let mut symbols = Vec::with_capacity(20);
    while symbols.len() < 20 {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the OS random number generator is available");
        symbols.extend(bytes.iter().filter(|b| **b < 250).map(|b| char::from(b'0' + b % 10)));
    }
    symbols.truncate(20);
    symbols.chunks(5).map(|c| c.iter().collect::<String>()).collect::<Vec<_>>().join("-")
}

/// Four groups of five letters and digits, as [`generate_backup_code`] writes them.
pub fn looks_like_backup_code(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 4 && groups.iter().all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_alphanumeric()))
}

pub use lintel_core::credential::backup_code_digest;

/// What a keypad sends for a backup code: its 20 digits, without the dashes.
pub fn typed_backup_code(entry: &str) -> bool {
    entry.len() == 20 && entry.bytes().all(|b| b.is_ascii_digit())
}

/// A short random id for people created without one: `p-` and 16 base32 characters.
pub fn person_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random number generator is available");
    let tail: String = bytes.iter().map(|b| ALPHABET[*b as usize % 32] as char).collect();
    format!("p-{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_and_distinct() {
        let a = generate("lsk_");
        assert!(a.starts_with("lsk_") && a.len() == 4 + 43);
        assert_ne!(a, generate("lsk_"));
    }

    #[test]
    fn backup_codes_compare_loosely() {
        let code = generate_backup_code();
        assert_eq!(code.len(), 23);
        assert_eq!(backup_code_digest(&code), backup_code_digest(&code.replace('-', " ").to_lowercase()));
        assert!(looks_like_backup_code(&code));
        assert!(typed_backup_code(&code.replace('-', "")), "a keypad can type {code}");
        assert!(!looks_like_backup_code(&generate("lsk_")));
    }
}
