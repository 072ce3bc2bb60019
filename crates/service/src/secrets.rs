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

/// Backup codes are typed by hand: 20 characters of an alphabet without look-alikes,
/// in groups of five (about 100 bits). Compared without dashes, spaces or case.
pub fn generate_backup_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTVWXYZ23456789"; // 30 symbols, no 0/O, 1/I/L, U
    // Bytes of 240 and above are drawn again, so that every symbol is equally likely.
    let mut symbols = Vec::with_capacity(20);
    while symbols.len() < 20 {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the OS random number generator is available");
        symbols.extend(bytes.iter().filter(|b| **b < 240).map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char));
    }
    symbols.truncate(20);
    symbols.chunks(5).map(|c| c.iter().collect::<String>()).collect::<Vec<_>>().join("-")
}

/// Four groups of five letters and digits, as [`generate_backup_code`] writes them.
pub fn looks_like_backup_code(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 4 && groups.iter().all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_alphanumeric()))
}

pub fn backup_code_digest(code: &str) -> Digest {
    let normalized: String =
        code.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_uppercase();
    sha256(normalized.as_bytes())
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
        assert!(!looks_like_backup_code(&generate("lsk_")));
    }
}
