//! Attendance: who came in on which day (and, split by group, in which group), from the
//! allowed entries at doors that count attendance. The API and the web UI both read it.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Days as DayCount, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use lintel_proto::AttendanceEntry;
use lintel_store::{Store, StoreError};

/// (day, group) -> person -> their first and last entry and how many. The group is `None`
/// unless split by group (and for people in no group).
pub type ByDay = BTreeMap<(NaiveDate, Option<String>), BTreeMap<String, AttendanceEntry>>;

/// The instant a local day begins. Where midnight is skipped by a DST change, the day
/// starts at the first instant after.
pub fn local_midnight(tz: Tz, day: NaiveDate) -> DateTime<Utc> {
    let midnight = day.and_hms_opt(0, 0, 0).expect("midnight exists");
    tz.from_local_datetime(&midnight).earliest().unwrap_or_else(|| tz.from_utc_datetime(&midnight)).with_timezone(&Utc)
}

/// The day after, or the same day at the end of the calendar.
pub fn next_day(day: NaiveDate) -> NaiveDate {
    day.checked_add_days(DayCount::new(1)).unwrap_or(day)
}

/// The time zone a report draws its days in: the one asked for, else the site's, else
/// `default` (the server's); an unknown site or zone is the caller's mistake.
pub async fn zone(store: &Store, asked: Option<&str>, site: Option<&str>, default: Tz) -> crate::Result<Tz> {
    let site_zone = match site {
        Some(id) => crate::edits::existing_site(store, id).await?.time_zone,
        None => None,
    };
    match asked.or(site_zone.as_deref()) {
        Some(name) => name.parse().map_err(|_| crate::ServiceError::invalid(format!("unknown time zone {name:?}"))),
        None => Ok(default),
    }
}

/// What an attendance report covers: days from `from` to `to` (inclusive) drawn in `tz`,
/// at one site's doors or all, split by group or not.
pub struct Report<'a> {
    pub tz: Tz,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub site: Option<&'a str>,
    pub by_group: bool,
}

/// The attendance a report asks for.
pub async fn days(store: &Store, report: Report<'_>) -> Result<ByDay, StoreError> {
    let Report { tz, from, to, site, by_group } = report;
    let entries = store
        .entries_between(
            local_midnight(tz, from).timestamp_micros(),
            local_midnight(tz, next_day(to)).timestamp_micros(),
            site,
        )
        .await?;
    let mut groups: HashMap<String, Vec<String>> = HashMap::new();
    if by_group {
        for (person, group) in store.memberships().await? {
            groups.entry(person).or_default().push(group);
        }
    }
    let mut days = ByDay::new();
    for (person, micros) in entries {
        let Some(at) = DateTime::from_timestamp_micros(micros) else { continue };
        let day = at.with_timezone(&tz).date_naive();
        let keys: Vec<Option<String>> = match groups.get(&person) {
            Some(gs) => gs.iter().cloned().map(Some).collect(),
            None => vec![None],
        };
        for key in keys {
            let entry = days.entry((day, key)).or_default().entry(person.clone()).or_insert(AttendanceEntry {
                person_id: person.clone(),
                first_entry: at,
                last_entry: at,
                entries: 0,
            });
            entry.first_entry = entry.first_entry.min(at);
            entry.last_entry = entry.last_entry.max(at);
            entry.entries += 1;
        }
    }
    Ok(days)
}
