//! Checks of outside input that the types alone cannot express. Everything here answers
//! an invalid-input error naming the field.

use crate::error::ServiceError;

const MAX_ID: usize = 128;
const MAX_NAME: usize = 200;

/// Ids are what operators and other systems type and put in URLs: letters, digits and a
/// few separators, starting with a letter or digit.
pub fn id(field: &str, value: &str) -> Result<(), ServiceError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_ID
        && value.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '@' | '+'));
    if ok {
        Ok(())
    } else {
        Err(ServiceError::invalid(format!(
            "{field} must be 1 to {MAX_ID} characters of letters, digits and . _ - : @ +, starting with a letter or digit"
        )))
    }
}

pub fn text(field: &str, value: &str, max: usize) -> Result<(), ServiceError> {
    if value.trim().is_empty() || value.chars().count() > max || value.chars().any(char::is_control) {
        return Err(ServiceError::invalid(format!("{field} must be 1 to {max} characters without control characters")));
    }
    Ok(())
}

pub fn name(field: &str, value: &str) -> Result<(), ServiceError> {
    text(field, value, MAX_NAME)
}

pub fn email(value: &str) -> Result<(), ServiceError> {
    let ok = value.len() <= 254
        && value
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.') && !domain.starts_with('.'))
        && !value.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok { Ok(()) } else { Err(ServiceError::invalid("email must be an address like name@example.org")) }
}

pub fn phone(value: &str) -> Result<(), ServiceError> {
    let ok = (3..=32).contains(&value.len())
        && value.chars().all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')'));
    if ok { Ok(()) } else { Err(ServiceError::invalid("phone must be digits with optional + - ( ) and spaces")) }
}

pub fn skills(values: &[String]) -> Result<(), ServiceError> {
    if values.len() > 100 {
        return Err(ServiceError::invalid("at most 100 skills"));
    }
    values.iter().try_for_each(|s| text("a skill", s, 64))
}

pub fn attributes(values: &serde_json::Map<String, serde_json::Value>) -> Result<(), ServiceError> {
    if serde_json::to_string(values).map(|s| s.len()).unwrap_or(usize::MAX) > 16 * 1024 {
        return Err(ServiceError::invalid("attributes must stay under 16 KiB of JSON"));
    }
    Ok(())
}

pub fn external_ids(values: &std::collections::BTreeMap<String, String>) -> Result<(), ServiceError> {
    if values.len() > 32 {
        return Err(ServiceError::invalid("at most 32 external ids"));
    }
    for (system, value) in values {
        id("an external id's system", system)?;
        text("an external id", value, MAX_ID)?;
    }
    Ok(())
}
