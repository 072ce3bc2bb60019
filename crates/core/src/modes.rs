//! What a door is doing now, derived purely from its settings, its unlock schedule, what
//! operators and the building said, and the time, as decisions are: the same answer on
//! every node and after every restart, so that a device can always be put back into the
//! mode its door should be in now.
//!
//! Precedence, highest first: an emergency release of an egress door (people must always
//! be able to leave), lockdown, an operator's override, the unlock schedule, secure.

use chrono::{DateTime, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use crate::schedule::{CompiledSchedule, ScheduleError, parse_time};

/// A door's mode (the names follow BACnet's access-door states where they fit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Locked; credentials decide.
    Secure,
    /// Held unlocked: free passage.
    Unlocked(Unlocked),
    /// Locked and refusing every credential but those of people exempt from lockdown.
    Lockdown,
    /// Released by an emergency (a fire panel): free passage out, whatever else holds.
    EgressOpen,
}

/// Why a door is held unlocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unlocked {
    /// Its unlock schedule.
    Schedule,
    /// An operator's hold.
    Hold,
}

impl Mode {
    /// How the API, the events and the metrics name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Secure => "secure",
            Mode::Unlocked(_) => "unlocked",
            Mode::Lockdown => "lockdown",
            Mode::EgressOpen => "egress_open",
        }
    }

    /// Whether the door's lock is to be held open (the device is told to hold).
    pub fn held_open(self) -> bool {
        matches!(self, Mode::Unlocked(_) | Mode::EgressOpen)
    }
}

/// A door's unlock schedule, checked and compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct UnlockSchedule {
    schedule: CompiledSchedule,
    /// Local dates (both ends included) on which the schedule does not apply: holidays.
    exceptions: Vec<(NaiveDate, NaiveDate)>,
    /// The schedule starts only after the first allowed entry of the day at or after this
    /// local minute (first to arrive); `None`: it starts by itself.
    first_arrival_from: Option<u16>,
    /// From this local minute on, an exit request ends the day's schedule (the last to
    /// leave presses the exit button); `None`: it runs to its end.
    last_to_leave_from: Option<u16>,
}

impl UnlockSchedule {
    /// `first_arrival_from` is `HH:MM`: from then on, the day's first allowed entry (of
    /// the chosen people; the caller knows whom) starts the schedule. `last_to_leave_from`
    /// is `HH:MM`: from then on, an exit request ends it for the day.
    pub fn new(
        schedule: CompiledSchedule,
        mut exceptions: Vec<(NaiveDate, NaiveDate)>,
        first_arrival_from: Option<&str>,
        last_to_leave_from: Option<&str>,
    ) -> Result<Self, ScheduleError> {
        let first_arrival_from = first_arrival_from.map(|t| parse_time(t, false)).transpose()?;
        let last_to_leave_from = last_to_leave_from.map(|t| parse_time(t, false)).transpose()?;
        exceptions.sort_unstable();
        Ok(Self { schedule, exceptions, first_arrival_from, last_to_leave_from })
    }

    pub fn tz(&self) -> Tz {
        self.schedule.tz()
    }

    fn local_date(&self, at: DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&self.tz()).date_naive()
    }

    /// Whether `day` (local) is an exception.
    pub fn excepted(&self, day: NaiveDate) -> bool {
        self.exceptions.iter().any(|&(from, to)| from <= day && day <= to)
    }

    /// Whether an allowed entry at `at` counts as the day's first arrival (within the
    /// window: from the chosen time on, on the same local day).
    pub fn counts_as_arrival(&self, at: DateTime<Utc>) -> bool {
        let Some(from) = self.first_arrival_from else { return false };
        let local = at.with_timezone(&self.tz());
        local.hour() * 60 + local.minute() >= u32::from(from)
    }

    /// Where today's first-to-arrive window begins (the local day at its chosen time), if
    /// the schedule waits for a first arrival.
    pub fn arrival_window(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.today_at(now, self.first_arrival_from?)
    }

    /// From when today an exit request ends the schedule early, if one does.
    pub fn leave_window(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.today_at(now, self.last_to_leave_from?)
    }

    /// The local day of `now` at the local minute `from`, as UTC.
    fn today_at(&self, now: DateTime<Utc>, from: u16) -> Option<DateTime<Utc>> {
        let day_start = start_of_local_day(self.tz(), now);
        let local = day_start.with_timezone(&self.tz()).date_naive().and_hms_opt(0, 0, 0)?
            + chrono::Duration::minutes(i64::from(from));
        // On a DST change the chosen time may not exist: the earliest instant after it.
        self.tz()
            .from_local_datetime(&local)
            .earliest()
            .or_else(|| self.tz().from_local_datetime(&(local + chrono::Duration::hours(1))).earliest())
            .map(|t| t.with_timezone(&Utc))
    }

    /// Whether the schedule holds the door unlocked at `now`, given the day's first arrival
    /// and an early end (the last to leave) if there were any.
    fn holds(&self, now: DateTime<Utc>, first_arrival: Option<DateTime<Utc>>, ended: Option<DateTime<Utc>>) -> bool {
        if !self.schedule.contains(now) || self.excepted(self.local_date(now)) {
            return false;
        }
        let today = self.local_date(now);
        let started = match self.first_arrival_from {
            None => true,
            Some(_) => {
                first_arrival.is_some_and(|at| at <= now && self.local_date(at) == today && self.counts_as_arrival(at))
            }
        };
        let ended = ended.is_some_and(|at| at <= now && self.local_date(at) == today);
        started && !ended
    }
}

/// An operator's override of the schedule, until a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Override {
    /// Held unlocked until `until`.
    HoldUnlocked { until: DateTime<Utc> },
    /// Kept secure through its schedule until `until`.
    KeepSecure { until: DateTime<Utc> },
}

/// Everything a door's mode follows from besides the time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DoorConditions<'a> {
    pub schedule: Option<&'a UnlockSchedule>,
    /// The door is on an exit route: an emergency releases it.
    pub egress: bool,
    /// A lockdown of the door or its site is in force.
    pub lockdown: bool,
    /// An emergency release of the door's site is in force.
    pub emergency: bool,
    pub override_: Option<Override>,
    /// The day's first allowed entry that counts for first to arrive.
    pub first_arrival: Option<DateTime<Utc>>,
    /// When the last to leave ended the day's schedule early.
    pub ended_early: Option<DateTime<Utc>>,
}

/// The door's mode at `now`.
pub fn mode_at(c: &DoorConditions<'_>, now: DateTime<Utc>) -> Mode {
    if c.emergency && c.egress {
        return Mode::EgressOpen;
    }
    if c.lockdown {
        return Mode::Lockdown;
    }
    match c.override_ {
        Some(Override::HoldUnlocked { until }) if now < until => return Mode::Unlocked(Unlocked::Hold),
        Some(Override::KeepSecure { until }) if now < until => return Mode::Secure,
        _ => {}
    }
    match c.schedule {
        Some(s) if s.holds(now, c.first_arrival, c.ended_early) => Mode::Unlocked(Unlocked::Schedule),
        _ => Mode::Secure,
    }
}

/// The start of the local day of `at` in `tz`, as UTC: where "today" begins for first
/// arrivals and early ends.
pub fn start_of_local_day(tz: Tz, at: DateTime<Utc>) -> DateTime<Utc> {
    let date = at.with_timezone(&tz).date_naive();
    let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    // A day may begin at 01:00 where a DST change skips midnight: the earliest time that exists.
    tz.from_local_datetime(&midnight)
        .earliest()
        .or_else(|| tz.from_local_datetime(&(midnight + chrono::Duration::hours(1))).earliest())
        .map_or(at, |t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests;
