//! CSV exports (the audit trail, attendance): cells that a spreadsheet opens as text.

/// A cell a spreadsheet would not take for a formula (names and ids come from outside):
/// one starting with `=`, `+`, `-`, `@`, a tab or a carriage return gets a `'` in front.
pub(crate) fn spreadsheet_safe(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_owned() }
}
