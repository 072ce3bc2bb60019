//! Weekly schedules in a named time zone, evaluated in local wall time: "08:00-20:00"
//! means 08:00 on the clock by the door, in winter and in summer alike. A range whose end
//! is before its start runs past midnight into the next day.

use chrono::{DateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use lintel_proto::{Schedule, Weekday};

const MINUTES_PER_DAY: u16 = 24 * 60;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScheduleError {
    #[error("unknown time zone {0:?} (use an IANA name such as Europe/Berlin)")]
    UnknownTimeZone(String),
    #[error("{0:?} is not a time of day as HH:MM (00:00 to 24:00)")]
    BadTime(String),
    #[error("a rule needs at least one weekday")]
    NoWeekdays,
    #[error("a rule from {0} to {0} is empty; use 00:00 to 24:00 for the whole day")]
    EmptyRange(String),
    #[error("a schedule needs at least one rule")]
    NoRules,
}

/// A schedule checked and compiled to minute ranges of the week (Monday 00:00 = 0).
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledSchedule {
    tz: Tz,
    /// Half-open `[start, end)` minute-of-week ranges.
    ranges: Box<[(u16, u16)]>,
}

pub(crate) fn parse_time(s: &str, allow_24: bool) -> Result<u16, ScheduleError> {
    let bad = || ScheduleError::BadTime(s.to_owned());
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let h: u16 = h.parse().map_err(|_| bad())?;
    let m: u16 = m.parse().map_err(|_| bad())?;
    let minutes = h * 60 + m;
    let valid = m < 60 && (minutes < MINUTES_PER_DAY || (allow_24 && minutes == MINUTES_PER_DAY));
    if valid { Ok(minutes) } else { Err(bad()) }
}

fn day_index(d: Weekday) -> u16 {
    d as u16
}

impl CompiledSchedule {
    pub fn compile(schedule: &Schedule) -> Result<Self, ScheduleError> {
        let tz: Tz = schedule.tz.parse().map_err(|_| ScheduleError::UnknownTimeZone(schedule.tz.clone()))?;
        if schedule.rules.is_empty() {
            return Err(ScheduleError::NoRules);
        }
        let mut ranges = Vec::new();
        for rule in &schedule.rules {
            if rule.weekdays.is_empty() {
                return Err(ScheduleError::NoWeekdays);
            }
            let from = parse_time(&rule.from, false)?;
            let to = parse_time(&rule.to, true)?;
            if from == to {
                return Err(ScheduleError::EmptyRange(rule.from.clone()));
            }
            for &day in &rule.weekdays {
                let start = day_index(day) * MINUTES_PER_DAY;
                if from < to {
                    ranges.push((start + from, start + to));
                } else {
                    // Past midnight: the rest of this day, then the next day (Sunday wraps to Monday).
                    ranges.push((start + from, start + MINUTES_PER_DAY));
                    let next = ((day_index(day) + 1) % 7) * MINUTES_PER_DAY;
                    ranges.push((next, next + to));
                }
            }
        }
        ranges.sort_unstable();
        Ok(Self { tz, ranges: ranges.into_boxed_slice() })
    }

    /// The time zone its times are read in.
    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// Whether `at` falls inside the schedule, read on the local clock of its time zone.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.contains_local(at.timestamp() + self.offset_at(at.timestamp()))
    }

    /// The zone's offset from UTC (seconds) at the unix second `at`.
    fn offset_at(&self, at: i64) -> i64 {
        let at = DateTime::from_timestamp(at, 0).unwrap_or_default();
        i64::from(self.tz.offset_from_utc_datetime(&at.naive_utc()).fix().local_minus_utc())
    }

    /// Whether the local timestamp `local` (seconds) is inside: only the offset comes from
    /// the tz database; the rest is arithmetic (1970-01-01 was a Thursday, day 3 counting
    /// from Monday).
    fn contains_local(&self, local: i64) -> bool {
        let minute = minute_of_week(local);
        self.ranges.iter().any(|&(start, end)| start <= minute && minute < end)
    }

    /// The `[start, end)` unix seconds within `[from, until)` in which the schedule is open,
    /// merged. It walks from one change to the next (an edge of a range on the local clock,
    /// or the zone's offset changing), not minute by minute.
    pub fn open_windows(&self, from: i64, until: i64) -> Vec<[i64; 2]> {
        let mut out: Vec<[i64; 2]> = Vec::new();
        let mut t = from;
        while t < until {
            let offset = self.offset_at(t);
            let offset_ends = self.offset_changes_after(t, offset, until);
            let local = t + offset;
            let end = (self.next_edge(local) - offset).min(offset_ends);
            if self.contains_local(local) {
                match out.last_mut() {
                    Some(last) if last[1] == t => last[1] = end,
                    _ => out.push([t, end]),
                }
            }
            t = end;
        }
        out
    }

    /// The first local second after `local` at which a range begins or ends.
    fn next_edge(&self, local: i64) -> i64 {
        const WEEK: i64 = 7 * 86_400;
        // Local seconds of this week's Monday 00:00.
        let week_start = local - ((local.div_euclid(86_400) + 3).rem_euclid(7) * 86_400 + local.rem_euclid(86_400));
        let edges = self.ranges.iter().flat_map(|&(start, end)| [start, end]).map(|m| i64::from(m) * 60);
        edges
            .flat_map(|edge| [week_start + edge, week_start + WEEK + edge])
            .filter(|&at| at > local)
            .min()
            .unwrap_or(local + WEEK)
    }

    /// The first second after `t` (and before `until`) at which the zone's offset is no
    /// longer `offset`; `until` when it holds. Offsets change at most a few times a year:
    /// looked at hourly, then narrowed down to the second.
    fn offset_changes_after(&self, t: i64, offset: i64, until: i64) -> i64 {
        let mut known = t;
        loop {
            let probe = (known - known.rem_euclid(3600) + 3600).min(until);
            if self.offset_at(probe) != offset {
                let (mut same, mut other) = (known, probe);
                while other - same > 1 {
                    let mid = same + (other - same) / 2;
                    if self.offset_at(mid) == offset { same = mid } else { other = mid }
                }
                return other;
            }
            if probe >= until {
                return until;
            }
            known = probe;
        }
    }
}

/// Minutes since Monday 00:00 of the local timestamp `local` (seconds).
fn minute_of_week(local: i64) -> u16 {
    let weekday = (local.div_euclid(86_400) + 3).rem_euclid(7) as u16;
    weekday * MINUTES_PER_DAY + (local.rem_euclid(86_400) / 60) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use lintel_proto::ScheduleRule;

    fn schedule(tz: &str, days: &[Weekday], from: &str, to: &str) -> CompiledSchedule {
        CompiledSchedule::compile(&Schedule {
            tz: tz.into(),
            rules: vec![ScheduleRule { weekdays: days.to_vec(), from: from.into(), to: to.into() }],
        })
        .unwrap()
    }

    fn berlin(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        chrono_tz::Europe::Berlin.with_ymd_and_hms(y, mo, d, h, mi, 0).earliest().unwrap().with_timezone(&Utc)
    }

    /// The open windows, found minute by minute: what [`CompiledSchedule::open_windows`]
    /// must equal.
    fn minute_by_minute(s: &CompiledSchedule, from: i64, until: i64) -> Vec<[i64; 2]> {
        let mut out: Vec<[i64; 2]> = Vec::new();
        let mut minute = from - from.rem_euclid(60);
        while minute < until {
            if s.contains(DateTime::from_timestamp(minute, 0).unwrap()) {
                let (a, b) = (minute.max(from), (minute + 60).min(until));
                match out.last_mut() {
                    Some(last) if last[1] == a => last[1] = b,
                    _ => out.push([a, b]),
                }
            }
            minute += 60;
        }
        out
    }

    #[test]
    fn windows_walked_edge_to_edge_equal_those_found_minute_by_minute() {
        let week = [Weekday::Mon, Weekday::Wed, Weekday::Sat, Weekday::Sun];
        let zones = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu", "UTC"];
        let hours =
            [("08:00", "20:00"), ("22:30", "06:15"), ("00:00", "24:00"), ("01:30", "03:30"), ("02:00", "02:01")];
        // Around both changes of the clocks in the north and in the south, and an ordinary week.
        let starts = [
            berlin(2026, 3, 26, 0, 0),
            berlin(2026, 10, 22, 13, 7),
            berlin(2026, 4, 2, 0, 0),
            berlin(2026, 9, 30, 0, 0),
        ];
        let mut open = 0;
        for zone in zones {
            for (from, to) in hours {
                let s = schedule(zone, &week, from, to);
                for start in starts {
                    let (a, b) = (start.timestamp() + 17, start.timestamp() + 6 * 86_400 + 29);
                    let walked = s.open_windows(a, b);
                    assert_eq!(walked, minute_by_minute(&s, a, b), "{zone} {from}-{to} from {start}");
                    open += walked.len();
                }
            }
        }
        assert!(open > 100, "the schedules were open now and then: {open}");
    }

    #[test]
    fn office_hours_in_berlin_across_both_dst_changes() {
        let s = schedule("Europe/Berlin", &[Weekday::Sat, Weekday::Sun, Weekday::Mon], "08:00", "20:00");
        // 2026-03-29 (Sunday) clocks go forward at 02:00; 2026-10-25 (Sunday) back at 03:00.
        for (y, mo, d) in [(2026, 3, 28), (2026, 3, 29), (2026, 3, 30), (2026, 10, 24), (2026, 10, 25), (2026, 10, 26)]
        {
            assert!(!s.contains(berlin(y, mo, d, 7, 59)), "{d}.{mo} 07:59");
            assert!(s.contains(berlin(y, mo, d, 8, 0)), "{d}.{mo} 08:00");
            assert!(s.contains(berlin(y, mo, d, 19, 59)), "{d}.{mo} 19:59");
            assert!(!s.contains(berlin(y, mo, d, 20, 0)), "{d}.{mo} 20:00");
        }
        // 08:00 local is 07:00 UTC in winter and 06:00 UTC in summer.
        assert!(s.contains(Utc.with_ymd_and_hms(2026, 3, 30, 6, 0, 0).unwrap()));
        assert!(!s.contains(Utc.with_ymd_and_hms(2026, 3, 28, 6, 30, 0).unwrap()));
    }

    #[test]
    fn the_skipped_and_repeated_hours_of_dst() {
        let s = schedule("Europe/Berlin", &[Weekday::Sun], "02:00", "03:00");
        // Spring: 02:00-03:00 does not exist on 2026-03-29: 00:59 UTC is 01:59 CET, 01:00 UTC is 03:00 CEST.
        assert!(!s.contains(Utc.with_ymd_and_hms(2026, 3, 29, 0, 59, 0).unwrap()));
        assert!(!s.contains(Utc.with_ymd_and_hms(2026, 3, 29, 1, 0, 0).unwrap()));
        // Autumn: 02:00-03:00 happens twice on 2026-10-25 (00:00-01:00 and 01:00-02:00 UTC).
        assert!(s.contains(Utc.with_ymd_and_hms(2026, 10, 25, 0, 30, 0).unwrap()));
        assert!(s.contains(Utc.with_ymd_and_hms(2026, 10, 25, 1, 30, 0).unwrap()));
        assert!(!s.contains(Utc.with_ymd_and_hms(2026, 10, 25, 2, 0, 0).unwrap()));
    }

    #[test]
    fn ranges_across_midnight_belong_to_the_day_they_start() {
        let s = schedule("UTC", &[Weekday::Fri], "22:00", "02:00");
        let fri = |h, m| Utc.with_ymd_and_hms(2026, 11, 20, h, m, 0).unwrap(); // a Friday
        let sat = |h, m| Utc.with_ymd_and_hms(2026, 11, 21, h, m, 0).unwrap();
        let thu_night = Utc.with_ymd_and_hms(2026, 11, 20, 1, 0, 0).unwrap(); // Friday 01:00: Thursday's night
        assert!(!s.contains(fri(21, 59)));
        assert!(s.contains(fri(22, 0)));
        assert!(s.contains(fri(23, 59)));
        assert!(s.contains(sat(0, 0)));
        assert!(s.contains(sat(1, 59)));
        assert!(!s.contains(sat(2, 0)));
        assert!(!s.contains(thu_night));
        assert!(!s.contains(sat(22, 30)));
    }

    #[test]
    fn sunday_night_wraps_to_monday_morning() {
        let s = schedule("UTC", &[Weekday::Sun], "23:00", "01:00");
        assert!(s.contains(Utc.with_ymd_and_hms(2026, 11, 23, 0, 30, 0).unwrap())); // Monday 00:30
        assert!(!s.contains(Utc.with_ymd_and_hms(2026, 11, 23, 1, 0, 0).unwrap()));
    }

    #[test]
    fn whole_day_and_bad_input() {
        let s = schedule("UTC", &[Weekday::Tue], "00:00", "24:00");
        assert!(s.contains(Utc.with_ymd_and_hms(2026, 11, 24, 23, 59, 59).unwrap()));
        let bad = |tz: &str, from: &str, to: &str| {
            CompiledSchedule::compile(&Schedule {
                tz: tz.into(),
                rules: vec![ScheduleRule { weekdays: vec![Weekday::Mon], from: from.into(), to: to.into() }],
            })
        };
        assert!(matches!(bad("Mars/Olympus", "08:00", "09:00"), Err(ScheduleError::UnknownTimeZone(_))));
        assert!(matches!(bad("UTC", "24:00", "09:00"), Err(ScheduleError::BadTime(_))));
        assert!(matches!(bad("UTC", "8:00", "09:00"), Err(ScheduleError::BadTime(_))));
        assert!(matches!(bad("UTC", "+8:00", "09:00"), Err(ScheduleError::BadTime(_))));
        assert!(matches!(bad("UTC", "08:60", "09:00"), Err(ScheduleError::BadTime(_))));
        assert!(matches!(bad("UTC", "08:00", "08:00"), Err(ScheduleError::EmptyRange(_))));
    }
}
