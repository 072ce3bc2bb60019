//! Ids as lintel writes them elsewhere (the server's `validate::id`): what operators type
//! and put in URLs. Kept in step by hand because this crate must not depend on the server.

pub(crate) const MAX_ID: usize = 128;

/// 1 to 128 characters of ASCII letters, digits and `. _ - : @ +`, starting with a letter
/// or digit. ASCII only also makes the id fit an X.509 URI name (IA5String).
pub(crate) fn is_valid_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_ID
        && value.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '@' | '+'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(is_valid_id("alice"));
        assert!(is_valid_id("a.b_c-d:e@f+g"));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("-alice"));
        assert!(!is_valid_id("al ice"));
        assert!(!is_valid_id("älice"));
        assert!(!is_valid_id(&"a".repeat(MAX_ID + 1)));
    }
}
