//! Anti-passback zones, as operators set them up and forgive people in them. The rule
//! itself is `lintel_core::passback`, applied by the decision log's commit so that every
//! reader of a zone, on every node, sees one order of passages.

use std::collections::HashSet;
use std::sync::Arc;

use lintel_core::passback::Strictness;
use lintel_proto::{Zone, ZoneSpec};
use lintel_store::ZoneRecord;

use crate::directory::{Actor, Directory};
use crate::error::{Result, ServiceError};
use crate::{site_limits, validate};

/// After this long a person inside counts as outside again, unless the zone says.
pub const DEFAULT_RESET_MINUTES: u32 = 12 * 60;
const MAX_RESET_MINUTES: u32 = 7 * 24 * 60;
const MAX_DOORS: usize = 200;

/// Makes or replaces a zone whole; whether it was made.
pub async fn put(directory: &Arc<Directory>, by: &Actor, id: String, spec: ZoneSpec) -> Result<(Zone, bool)> {
    site_limits::everywhere(by.site(), "changing anti-passback zones")?;
    let record = check(&id, spec)?;
    let zone = id.clone();
    let written = directory.write(by, move |s| async move { s.put_zone(&zone, &record).await }).await?;
    Ok((directory.store.zone(&id).await?, written.value))
}

pub async fn delete(directory: &Arc<Directory>, by: &Actor, id: String) -> Result<()> {
    site_limits::everywhere(by.site(), "changing anti-passback zones")?;
    directory.write(by, move |s| async move { s.delete_zone(&id).await }).await?;
    Ok(())
}

/// Lets one person, or everyone, inside a zone count as outside (they may enter again);
/// how many.
pub async fn forgive(directory: &Arc<Directory>, by: &Actor, zone: String, person: Option<String>) -> Result<u32> {
    site_limits::everywhere(by.site(), "forgiving in an anti-passback zone")?;
    Ok(directory.write(by, move |s| async move { s.forgive(&zone, person.as_deref()).await }).await?.value)
}

fn check(id: &str, spec: ZoneSpec) -> Result<ZoneRecord> {
    validate::id("id", id)?;
    validate::name("name", &spec.name)?;
    let strictness = match spec.strictness.as_deref() {
        None => Strictness::Hard,
        Some(s) => Strictness::parse(s).ok_or_else(|| ServiceError::invalid("strictness is hard or soft"))?,
    };
    let reset_minutes = spec.reset_minutes.unwrap_or(DEFAULT_RESET_MINUTES);
    if !(1..=MAX_RESET_MINUTES).contains(&reset_minutes) {
        return Err(ServiceError::invalid(format!("reset_minutes is 1 to {MAX_RESET_MINUTES} (a week)")));
    }
    if spec.entry.is_empty() {
        return Err(ServiceError::invalid("a zone needs at least one entry door"));
    }
    if spec.entry.len() + spec.exit.len() > MAX_DOORS {
        return Err(ServiceError::invalid(format!("a zone has at most {MAX_DOORS} doors")));
    }
    let mut seen = HashSet::new();
    for door in spec.entry.iter().chain(&spec.exit) {
        validate::id("door", door)?;
        if !seen.insert(door) {
            return Err(ServiceError::invalid(format!("door {door:?} is named twice (a door leads one way)")));
        }
    }
    Ok(ZoneRecord { name: spec.name, strictness, reset_minutes, entry: spec.entry, exit: spec.exit })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(entry: &[&str], exit: &[&str]) -> ZoneSpec {
        ZoneSpec {
            name: "Gym".into(),
            strictness: None,
            reset_minutes: None,
            entry: entry.iter().map(|d| d.to_string()).collect(),
            exit: exit.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn a_zone_is_checked_before_anything_is_written() {
        let fine = check("gym", spec(&["in"], &["out"])).expect("valid");
        assert_eq!((fine.strictness, fine.reset_minutes), (Strictness::Hard, DEFAULT_RESET_MINUTES));
        assert!(check("gym", spec(&["in"], &["in"])).is_err(), "a door both ways");
        assert!(check("gym", spec(&[], &["out"])).is_err(), "no entry");
        assert!(check("gym", ZoneSpec { strictness: Some("loose".into()), ..spec(&["in"], &[]) }).is_err());
        assert!(check("gym", ZoneSpec { reset_minutes: Some(0), ..spec(&["in"], &[]) }).is_err());
        assert!(check("gym", ZoneSpec { reset_minutes: Some(MAX_RESET_MINUTES + 1), ..spec(&["in"], &[]) }).is_err());
        assert!(check("no such id!", spec(&["in"], &[])).is_err());
    }
}
