//! Door modes: what each door should be doing now (the pure [`lintel_core::mode_at`] over
//! what the store keeps), recorded when it changes, and told to the door's device: hold
//! the lock released while a door is unlocked, release it after.
//!
//! With several nodes: the node holding the `door-modes` lease records modes, ends lapsed
//! holds and tells the devices any node can reach (HTTP relays, clouds); a device that
//! hangs off one node (the MQTT link, an OSDP reader) is told by that node. Recording is a
//! compare-and-set on the door, so a mode change is recorded once. Each node tells every
//! device it reaches when it starts to (a restart, a lease taken over), and again whenever
//! the device reconnects (a controller's status forgets what it was told).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use lintel_core::{CompiledSchedule, DoorConditions, Mode, Override, mode_at};
use lintel_proto::{Door, HoldState, Holiday, HolidayImport, NewHold, NewHoliday, Schedule, UnlockSchedule};
use lintel_store::{HolidayRecord, ModedDoor};
use tokio::time::Instant;

use crate::directory::{Actor, Directory};
use crate::error::{Result, ServiceError};
use crate::workers::Workers;
use crate::{site_limits, validate};

const LEASE: &str = "door-modes";
/// How often modes are worked out: a schedule's boundary is met within this.
const TICK: Duration = Duration::from_secs(1);
/// How often a held lock is told again.
const REASSERT_HOLD_EVERY: Duration = Duration::from_secs(60);
/// How long a device that failed is left alone before it is told again.
const RETRY_FAILED_AFTER: Duration = Duration::from_secs(30);
/// The longest an operator's hold may last.
const MAX_HOLD: chrono::TimeDelta = chrono::TimeDelta::days(7);
/// The most holidays one calendar may add.
const MAX_IMPORTED: usize = 1000;
/// How deep an iCalendar file's components may nest (VCALENDAR > VEVENT > VALARM).
const MAX_NESTING: usize = 4;
/// The years a holiday may fall in (dates are kept as text and compared so).
const YEARS: std::ops::RangeInclusive<i32> = 1970..=9999;

pub struct DoorModes {
    directory: Arc<Directory>,
    links: lintel_doors::Links,
    told: Mutex<Told>,
}

#[derive(Default)]
struct Told {
    /// Doors this node has told since it began to tell them, and when last.
    since_start: HashMap<String, Instant>,
    /// Devices that failed, and when they may be tried again.
    failing: HashMap<String, Instant>,
    /// The day's first arrival found for a door (under its window and group): (local
    /// day, when).
    arrivals: HashMap<String, (NaiveDate, DateTime<Utc>)>,
    /// The same for the day's early end by the last to leave (under its window).
    leaves: HashMap<String, (NaiveDate, DateTime<Utc>)>,
    /// Whether this node held the lease at its last tick.
    leading: bool,
}

impl DoorModes {
    pub fn new(directory: Arc<Directory>, links: lintel_doors::Links) -> Self {
        Self { directory, links, told: Mutex::default() }
    }

    fn told(&self) -> std::sync::MutexGuard<'_, Told> {
        self.told.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Works the modes out every second until shutdown.
    pub fn spawn(self: &Arc<Self>, workers: &Workers) {
        let (modes, mut ticks, leases) = (self.clone(), workers.every(TICK), workers.clone());
        workers.spawn(async move {
            while ticks.next().await {
                let leading = leases.holds(LEASE).await;
                if let Err(e) = modes.tick(leading, Utc::now()).await {
                    tracing::warn!(error = %e, "door modes not worked out");
                }
            }
        });
    }

    /// One round: ends lapsed holds and records modes (when `leading`), and tells the
    /// devices this node reaches what they should do now.
    pub async fn tick(&self, leading: bool, now: DateTime<Utc>) -> Result<()> {
        {
            let mut told = self.told();
            if told.leading && !leading {
                // Another node tells the shared devices now; taking the lease back tells them again.
                told.since_start.clear();
            }
            told.leading = leading;
        }
        let store = &self.directory.store;
        let mut doors = store.moded_doors().await?;
        if leading && doors.iter().any(|d| d.hold.is_some_and(|(_, until)| until <= now)) {
            self.directory.write(&Actor::lintel(), move |s| async move { s.end_lapsed_holds(now).await }).await?;
            doors = store.moded_doors().await?;
        }
        let holidays = match doors.iter().any(|d| d.unlock_schedule.is_some()) {
            true => store.holidays(None).await?,
            false => Vec::new(),
        };
        // Exit-route doors first: in an emergency they are what matters.
        doors.sort_by_key(|d| !d.egress);
        let mut to_tell = Vec::new();
        for door in doors {
            let attached = lintel_doors::attached_device(&door.driver);
            let tells = match &attached {
                Some(device) => self.links.drives(device),
                None => leading,
            };
            if !leading && !tells {
                continue;
            }
            let mode = match self.mode_of(&door, &holidays, now).await {
                Ok(mode) => mode,
                Err(e) => {
                    tracing::warn!(door = %door.id, error = %e, "door mode not worked out");
                    continue;
                }
            };
            if leading && mode.as_str() != door.mode {
                let (id, from, to, why) = (door.id.clone(), door.mode.clone(), mode.as_str(), why(mode));
                self.directory
                    .write(&Actor::lintel(), move |s| async move { s.record_mode(&id, &from, to, why).await })
                    .await?;
            }
            if tells {
                to_tell.push((door, mode.held_open()));
            }
        }
        // Told side by side: one unreachable relay must not hold back the others.
        let told = futures::future::join_all(to_tell.iter().map(|(door, held)| self.tell(door, *held))).await;
        for (done, (door, _)) in told.into_iter().zip(&to_tell) {
            if let Err(e) = done {
                tracing::warn!(door = %door.id, error = %e, "door's device not told");
            }
        }
        if leading {
            // After the devices: what no input reports (held open, offline) never delays them.
            if let Err(e) = crate::alarms::watch(&self.directory, now).await {
                tracing::warn!(error = %e, "held-open doors and offline devices not watched");
            }
        }
        Ok(())
    }

    /// The door's mode at `now`.
    async fn mode_of(&self, door: &ModedDoor, holidays: &[Holiday], now: DateTime<Utc>) -> Result<Mode> {
        let schedule = door
            .unlock_schedule
            .as_ref()
            .map(|s| {
                let exceptions = holidays.iter().filter(|h| h.site == door.site).map(|h| (h.from, h.to)).collect();
                compile(s, exceptions)
            })
            .transpose()?;
        let first_arrival = match (&schedule, &door.unlock_schedule) {
            (Some(compiled), Some(kept)) if kept.first_to_arrive_from.is_some() => {
                self.first_arrival(&door.id, compiled, kept.first_to_arrive_group.as_deref(), now).await?
            }
            _ => None,
        };
        let override_ = door.hold.map(|(state, until)| match state {
            HoldState::Unlocked => Override::HoldUnlocked { until },
            HoldState::Secure => Override::KeepSecure { until },
        });
        let conditions = DoorConditions {
            schedule: schedule.as_ref(),
            egress: door.egress,
            lockdown: door.lockdown,
            emergency: door.emergency,
            override_,
            first_arrival,
            ended_early: match &schedule {
                Some(compiled) => self.last_to_leave(&door.id, compiled, now).await?,
                None => None,
            },
        };
        Ok(mode_at(&conditions, now))
    }

    /// The day's first allowed entry that starts the door's schedule, once there was one.
    async fn first_arrival(
        &self,
        door: &str,
        schedule: &lintel_core::UnlockSchedule,
        group: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        let Some(window) = schedule.arrival_window(now) else { return Ok(None) };
        let today = now.with_timezone(&schedule.tz()).date_naive();
        // Kept under what it was found for: a window or group changed today looks again.
        let key = format!("{door}\n{window}\n{}", group.unwrap_or_default());
        if let Some(&(day, at)) = self.told().arrivals.get(&key)
            && day == today
        {
            return Ok(Some(at));
        }
        let found = self.directory.store.first_allowed_entry(door, window, now, group).await?;
        if let Some(at) = found {
            let mut told = self.told();
            told.arrivals.retain(|_, (day, _)| *day == today);
            told.arrivals.insert(key, (today, at));
        }
        Ok(found)
    }

    /// The day's exit request that ended the door's schedule early (the last to leave),
    /// once there was one.
    async fn last_to_leave(
        &self,
        door: &str,
        schedule: &lintel_core::UnlockSchedule,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        let Some(window) = schedule.leave_window(now) else { return Ok(None) };
        if now < window {
            return Ok(None);
        }
        let today = now.with_timezone(&schedule.tz()).date_naive();
        let key = format!("{door}\n{window}");
        if let Some(&(day, at)) = self.told().leaves.get(&key)
            && day == today
        {
            return Ok(Some(at));
        }
        let found = self.directory.store.first_exit_request(door, window, now).await?;
        if let Some(at) = found {
            let mut told = self.told();
            told.leaves.retain(|_, (day, _)| *day == today);
            told.leaves.insert(key, (today, at));
        }
        Ok(found)
    }

    /// Tells the device to hold the lock released or not, unless it was told so already
    /// (a held lock is told again every [`REASSERT_HOLD_EVERY`]: a relay that restarted
    /// forgets it).
    async fn tell(&self, door: &ModedDoor, held: bool) -> Result<()> {
        {
            let told = self.told();
            let fresh = told.since_start.get(&door.id).is_some_and(|at| !held || at.elapsed() < REASSERT_HOLD_EVERY);
            if fresh && door.told_held == Some(held) {
                return Ok(());
            }
            if told.failing.get(&door.id).is_some_and(|&again| Instant::now() < again) {
                return Ok(());
            }
        }
        let driver = lintel_doors::driver_for(&door.driver, &door.id, &self.links);
        let store = &self.directory.store;
        let now = Utc::now().timestamp_micros();
        match driver.hold(held).await {
            Ok(_) => {
                store.set_told_held(&door.id, Some(held)).await?;
                store.set_door_answered(&door.id, now).await?;
                let mut told = self.told();
                told.failing.remove(&door.id);
                told.since_start.insert(door.id.clone(), Instant::now());
                tracing::info!(door = %door.id, held, "door's device told");
            }
            Err(e) => {
                tracing::warn!(door = %door.id, held, error = %e, "door's device not told; trying again shortly");
                store.set_door_state(&door.id, false, now, Some(&e.to_string())).await?;
                self.told().failing.insert(door.id.clone(), Instant::now() + RETRY_FAILED_AFTER);
            }
        }
        Ok(())
    }
}

/// Why a door is in its mode, for the event.
fn why(mode: Mode) -> &'static str {
    match mode {
        Mode::Secure => "secure",
        Mode::Unlocked(lintel_core::Unlocked::Schedule) => "schedule",
        Mode::Unlocked(lintel_core::Unlocked::Hold) => "hold",
        Mode::Lockdown => "lockdown",
        Mode::EgressOpen => "emergency",
    }
}

fn compile(s: &UnlockSchedule, exceptions: Vec<(NaiveDate, NaiveDate)>) -> Result<lintel_core::UnlockSchedule> {
    let weekly = CompiledSchedule::compile(&Schedule { tz: s.tz.clone(), rules: s.rules.clone() })
        .map_err(|e| ServiceError::invalid(format!("unlock_schedule: {e}")))?;
    lintel_core::UnlockSchedule::new(
        weekly,
        exceptions,
        s.first_to_arrive_from.as_deref(),
        s.last_to_leave_from.as_deref(),
    )
    .map_err(|e| ServiceError::invalid(format!("unlock_schedule.first_to_arrive_from or last_to_leave_from: {e}")))
}

/// Checks a door's unlock schedule and exit-route flag against its driver before they are
/// kept: the driver must be able to hold the lock, the first-to-arrive group must exist.
pub(crate) async fn check_door_modes(
    directory: &Directory,
    driver: &lintel_proto::DriverConfig,
    schedule: Option<&UnlockSchedule>,
    egress: bool,
) -> Result<()> {
    if let Some(s) = schedule {
        compile(s, Vec::new())?;
        if s.first_to_arrive_group.is_some() && s.first_to_arrive_from.is_none() {
            return Err(ServiceError::invalid("unlock_schedule.first_to_arrive_group needs first_to_arrive_from"));
        }
        if let Some(group) = &s.first_to_arrive_group {
            validate::id("unlock_schedule.first_to_arrive_group", group)?;
            directory.store.group(group).await?;
        }
    }
    if (schedule.is_some() || egress) && !lintel_doors::can_hold(driver) {
        return Err(ServiceError::invalid(format!(
            "a {} driver cannot hold a door unlocked: an unlock schedule or egress needs a relay, a controller or a reader",
            driver.kind()
        )));
    }
    Ok(())
}

/// Refuses `what` (a driver change, a removal) while the door's device holds its lock
/// released: the old device would never be told to let go.
pub(crate) async fn not_held(store: &lintel_store::Store, door: &str, what: &str) -> Result<()> {
    let kept = store.door(door).await?;
    if kept.state.hold_open() || store.told_held(door).await? {
        return Err(ServiceError::Conflict(format!(
            "the door is held unlocked; end its hold or schedule and let it lock before {what}"
        )));
    }
    Ok(())
}

/// Holds a door unlocked, or keeps it secure, until a time; `None` ends a hold early.
pub async fn set_hold(directory: &Arc<Directory>, by: &Actor, door: String, hold: Option<NewHold>) -> Result<Door> {
    site_limits::doors_within(&directory.store, by.site(), [door.as_str()]).await?;
    let kept = directory.store.door(&door).await?;
    let hold = match hold {
        None => None,
        Some(h) => {
            let now = Utc::now();
            if h.until <= now || h.until > now + MAX_HOLD {
                return Err(ServiceError::invalid("until must be in the future, within 7 days"));
            }
            if h.state == HoldState::Unlocked && !lintel_doors::can_hold(&kept.driver) {
                return Err(ServiceError::invalid(format!(
                    "a {} driver cannot hold a door unlocked",
                    kept.driver.kind()
                )));
            }
            if h.state == HoldState::Unlocked && kept.state.lockdown_by.is_some() {
                return Err(ServiceError::forbidden("lockdown", "the door is in lockdown; lift it first"));
            }
            Some((h.state, h.until))
        }
    };
    let id = door.clone();
    directory.write(by, move |s| async move { s.set_hold(&id, hold).await }).await?;
    Ok(directory.store.door(&door).await?)
}

/// Raises an emergency release of a site (`on`: its exit-route doors are held open, over
/// lockdown) or resets it; whether it changed. `why` says what raised it (an input).
pub async fn emergency(
    directory: &Arc<Directory>,
    by: &Actor,
    site: String,
    on: bool,
    why: Option<String>,
) -> Result<bool> {
    directory.store.site(&site).await?;
    if by.site().is_some_and(|own| own != site) {
        site_limits::everywhere(by.site(), "another site's emergency release")?;
    }
    if let Some(why) = &why {
        validate::text("why", why, 200)?;
    }
    let written = directory.write(by, move |s| async move { s.set_emergency(&site, on, why.as_deref()).await }).await?;
    Ok(written.value)
}

/// A site's holidays.
pub async fn holidays(directory: &Directory, by: &Actor, site: &str) -> Result<Vec<Holiday>> {
    directory.store.site(site).await?;
    if by.site().is_some_and(|own| own != site) {
        site_limits::everywhere(by.site(), "another site's holidays")?;
    }
    Ok(directory.store.holidays(Some(site)).await?)
}

/// Adds one holiday (a day or a range of days) to a site.
pub async fn add_holiday(directory: &Arc<Directory>, by: &Actor, site: String, new: NewHoliday) -> Result<Holiday> {
    site_limits::everywhere(by.site(), "changing a site's holidays")?;
    validate::name("name", &new.name)?;
    let to = new.to.unwrap_or(new.from);
    if to < new.from {
        return Err(ServiceError::invalid("to is before from"));
    }
    check_years(new.from, to)?;
    let record = (new.name, new.from, to, None);
    let written = directory.write(by, move |s| async move { s.add_holidays(&site, &[record]).await }).await?;
    written.value.0.into_iter().next().ok_or_else(|| ServiceError::invalid("the holiday was not added"))
}

/// Loads a site's holidays from an iCalendar (`.ics`) file: every event's days (an
/// all-day event's `DTEND` is exclusive), all or none. A calendar loaded again adds only
/// what is new.
pub async fn import_holidays(directory: &Arc<Directory>, by: &Actor, site: String, ics: &str) -> Result<HolidayImport> {
    site_limits::everywhere(by.site(), "changing a site's holidays")?;
    let records = parse_ics(ics)?;
    let written = directory.write(by, move |s| async move { s.add_holidays(&site, &records).await }).await?;
    let (added, unchanged) = written.value;
    Ok(HolidayImport { added: u32::try_from(added.len()).unwrap_or(u32::MAX), unchanged })
}

pub async fn delete_holiday(directory: &Arc<Directory>, by: &Actor, site: String, id: String) -> Result<()> {
    site_limits::everywhere(by.site(), "changing a site's holidays")?;
    directory.write(by, move |s| async move { s.delete_holiday(&site, &id).await }).await?;
    Ok(())
}

fn check_years(from: NaiveDate, to: NaiveDate) -> Result<()> {
    use chrono::Datelike;
    if !YEARS.contains(&from.year()) || !YEARS.contains(&to.year()) {
        return Err(ServiceError::invalid(format!(
            "a holiday falls in the years {} to {}",
            YEARS.start(),
            YEARS.end()
        )));
    }
    Ok(())
}

/// The holidays of an iCalendar file, checked: a calendar, events with a summary and a
/// start date, at most [`MAX_IMPORTED`].
fn parse_ics(text: &str) -> Result<Vec<HolidayRecord>> {
    use icalendar::{Calendar, CalendarComponent, Component, DatePerhapsTime};
    let not_ics = |why: String| ServiceError::invalid(format!("not an iCalendar file: {why}"));
    if !text.trim_start().starts_with("BEGIN:VCALENDAR") {
        return Err(not_ics("it does not begin with BEGIN:VCALENDAR".into()));
    }
    // The parser descends once per nested component: a deep nesting would exhaust the
    // stack, so it is refused before parsing (a calendar nests three deep at most).
    let mut depth = 0usize;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.get(..6).is_some_and(|b| b.eq_ignore_ascii_case("BEGIN:")) {
            depth += 1;
            if depth > MAX_NESTING {
                return Err(not_ics(format!("components nest deeper than {MAX_NESTING}")));
            }
        } else if line.get(..4).is_some_and(|e| e.eq_ignore_ascii_case("END:")) {
            depth = depth.saturating_sub(1);
        }
    }
    let calendar: Calendar = text.parse().map_err(not_ics)?;
    let day = |d: DatePerhapsTime| match d {
        DatePerhapsTime::Date(d) => d,
        DatePerhapsTime::DateTime(t) => match t {
            icalendar::CalendarDateTime::Floating(t) => t.date(),
            icalendar::CalendarDateTime::Utc(t) => t.date_naive(),
            icalendar::CalendarDateTime::WithTimezone { date_time, .. } => date_time.date(),
        },
    };
    let mut records = Vec::new();
    for component in &calendar.components {
        let CalendarComponent::Event(event) = component else { continue };
        let name = event.get_summary().unwrap_or("Holiday").trim().to_owned();
        validate::name("an event's SUMMARY", &name)?;
        let from = event.get_start().map(day).ok_or_else(|| not_ics(format!("{name:?} has no DTSTART")))?;
        let to = match event.get_end() {
            // An all-day event ends the day before its DTEND (RFC 5545 3.6.1).
            Some(DatePerhapsTime::Date(end)) if end > from => end.pred_opt().unwrap_or(end),
            Some(end) => day(end).max(from),
            None => from,
        };
        if event.property_value("RRULE").is_some() {
            return Err(not_ics(format!("{name:?} repeats (RRULE): list each year's date instead")));
        }
        check_years(from, to)?;
        records.push((name, from, to, event.get_uid().map(str::to_owned)));
        if records.len() > MAX_IMPORTED {
            return Err(ServiceError::invalid(format!("at most {MAX_IMPORTED} holidays per calendar")));
        }
    }
    if records.is_empty() {
        return Err(not_ics("it holds no events".into()));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALENDAR: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n\
        BEGIN:VEVENT\r\nUID:xmas-2026@example\r\nDTSTART;VALUE=DATE:20261225\r\nDTEND;VALUE=DATE:20261227\r\n\
        SUMMARY:Christmas\r\nEND:VEVENT\r\n\
        BEGIN:VEVENT\r\nUID:ny-2027@example\r\nDTSTART;VALUE=DATE:20270101\r\nSUMMARY:New Year\r\nEND:VEVENT\r\n\
        END:VCALENDAR\r\n";

    #[test]
    fn an_all_day_events_end_is_exclusive() {
        let records = parse_ics(CALENDAR).unwrap();
        let day = |s: &str| s.parse::<NaiveDate>().unwrap();
        assert_eq!(
            records,
            vec![
                ("Christmas".into(), day("2026-12-25"), day("2026-12-26"), Some("xmas-2026@example".into())),
                ("New Year".into(), day("2027-01-01"), day("2027-01-01"), Some("ny-2027@example".into())),
            ]
        );
    }

    #[test]
    fn what_is_not_a_calendar_is_refused() {
        for text in ["", "hello", "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", "{\"holidays\": []}"] {
            assert!(parse_ics(text).is_err(), "{text:?} was taken for a calendar");
        }
        let repeating = CALENDAR.replace("SUMMARY:Christmas", "SUMMARY:Christmas\r\nRRULE:FREQ=YEARLY");
        assert!(parse_ics(&repeating).is_err());
        // Deep nesting is refused before the parser could exhaust its stack.
        let nested = format!("BEGIN:VCALENDAR\r\n{}END:VCALENDAR\r\n", "BEGIN:A\r\n".repeat(5000));
        assert!(parse_ics(&nested).unwrap_err().to_string().contains("nest deeper"));
    }
}
