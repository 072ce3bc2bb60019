use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use lintel_proto::{Schedule, ScheduleRule, Weekday};

use super::*;
use Weekday::*;

const WEEKDAYS: [Weekday; 5] = [Mon, Tue, Wed, Thu, Fri];

fn berlin(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    chrono_tz::Europe::Berlin.with_ymd_and_hms(y, mo, d, h, mi, 0).earliest().unwrap().with_timezone(&Utc)
}

fn lobby(days: &[Weekday], from: &str, to: &str) -> UnlockSchedule {
    let rules = vec![ScheduleRule { weekdays: days.to_vec(), from: from.into(), to: to.into() }];
    let schedule = CompiledSchedule::compile(&Schedule { tz: "Europe/Berlin".into(), rules }).unwrap();
    UnlockSchedule::new(schedule, Vec::new(), None, None).unwrap()
}

fn with(schedule: &UnlockSchedule) -> DoorConditions<'_> {
    DoorConditions { schedule: Some(schedule), ..DoorConditions::default() }
}

const OPEN: Mode = Mode::Unlocked(Unlocked::Schedule);

#[test]
fn a_lobby_unlocks_at_eight_and_locks_at_six_on_weekdays() {
    let s = lobby(&WEEKDAYS, "08:00", "18:00");
    // Monday 2026-12-07.
    assert_eq!(mode_at(&with(&s), berlin(2026, 12, 7, 7, 59)), Mode::Secure);
    assert_eq!(mode_at(&with(&s), berlin(2026, 12, 7, 8, 0)), OPEN);
    assert_eq!(mode_at(&with(&s), berlin(2026, 12, 7, 17, 59)), OPEN);
    assert_eq!(mode_at(&with(&s), berlin(2026, 12, 7, 18, 0)), Mode::Secure);
    // Saturday.
    assert_eq!(mode_at(&with(&s), berlin(2026, 12, 12, 12, 0)), Mode::Secure);
    // No schedule: secure.
    assert_eq!(mode_at(&DoorConditions::default(), berlin(2026, 12, 7, 12, 0)), Mode::Secure);
}

#[test]
fn a_schedule_past_midnight_runs_into_the_next_day() {
    // A bar's door: Friday 20:00 to Saturday 02:00.
    let s = lobby(&[Fri], "20:00", "02:00");
    assert_eq!(mode_at(&with(&s), berlin(2026, 12, 11, 23, 30)), OPEN);
    assert_eq!(mode_at(&with(&s), berlin(2026, 12, 12, 1, 59)), OPEN, "Saturday morning, still Friday's");
    assert_eq!(mode_at(&with(&s), berlin(2026, 12, 12, 2, 0)), Mode::Secure);
    assert_eq!(mode_at(&with(&s), berlin(2026, 12, 11, 19, 59)), Mode::Secure);
}

#[test]
fn the_schedule_follows_the_local_clock_across_daylight_saving_changes() {
    let s = lobby(&[Sun, Mon], "08:00", "18:00");
    // 2026-03-29 (Sunday): clocks go from 02:00 CET to 03:00 CEST. 08:00 local is 06:00 UTC.
    let utc = |d, h, m| Utc.with_ymd_and_hms(2026, 3, d, h, m, 0).unwrap();
    assert_eq!(mode_at(&with(&s), utc(29, 5, 59)), Mode::Secure, "07:59 CEST");
    assert_eq!(mode_at(&with(&s), utc(29, 6, 0)), OPEN, "08:00 CEST");
    assert_eq!(mode_at(&with(&s), utc(29, 16, 0)), Mode::Secure, "18:00 CEST");
    // The week before, in winter time, 08:00 local is 07:00 UTC.
    assert_eq!(mode_at(&with(&s), utc(22, 6, 30)), Mode::Secure, "07:30 CET");
    assert_eq!(mode_at(&with(&s), utc(22, 7, 0)), OPEN, "08:00 CET");
    // 2026-10-25 (Sunday): back to CET; 17:59 local is 16:59 UTC.
    let oct = |h, m| Utc.with_ymd_and_hms(2026, 10, 25, h, m, 0).unwrap();
    assert_eq!(mode_at(&with(&s), oct(16, 59)), OPEN);
    assert_eq!(mode_at(&with(&s), oct(17, 0)), Mode::Secure);
    let start = start_of_local_day(chrono_tz::Europe::Berlin, utc(29, 12, 0));
    assert_eq!(start, Utc.with_ymd_and_hms(2026, 3, 28, 23, 0, 0).unwrap(), "midnight CET, the day DST begins");
}

#[test]
fn exceptions_keep_the_door_secure_on_holidays() {
    let schedule = lobby(&WEEKDAYS, "08:00", "18:00");
    let day = |m, d| NaiveDate::from_ymd_opt(2026, m, d).unwrap();
    let holidays = vec![(day(12, 24), day(12, 26)), (day(12, 31), day(12, 31))];
    let s = UnlockSchedule::new(schedule.schedule.clone(), holidays, None, None).unwrap();
    assert_eq!(mode_at(&with(&s), berlin(2026, 12, 23, 12, 0)), OPEN);
    for d in [24, 25, 31] {
        assert_eq!(mode_at(&with(&s), berlin(2026, 12, d, 12, 0)), Mode::Secure, "December {d}");
    }
    assert_eq!(mode_at(&with(&s), berlin(2026, 12, 28, 12, 0)), OPEN, "Monday after");
    assert!(s.excepted(day(12, 26)) && !s.excepted(day(12, 27)));
}

#[test]
fn first_to_arrive_starts_the_schedule_and_the_last_to_leave_ends_it() {
    let schedule = lobby(&WEEKDAYS, "08:00", "18:00").schedule;
    let s = UnlockSchedule::new(schedule, Vec::new(), Some("07:00"), Some("15:00")).unwrap();
    let at = |h, m| berlin(2026, 12, 7, h, m);
    let first = |arrival| DoorConditions { first_arrival: arrival, ..with(&s) };
    assert_eq!(mode_at(&first(None), at(9, 0)), Mode::Secure, "nobody came yet");
    // First badge at 07:30: unlocked from 08:00.
    assert_eq!(mode_at(&first(Some(at(7, 30))), at(7, 45)), Mode::Secure);
    assert_eq!(mode_at(&first(Some(at(7, 30))), at(8, 0)), OPEN);
    // First badge at 08:30: unlocked from 08:30.
    assert_eq!(mode_at(&first(Some(at(8, 30))), at(8, 29)), Mode::Secure);
    assert_eq!(mode_at(&first(Some(at(8, 30))), at(8, 30)), OPEN);
    // An entry at 06:45 is before the window; yesterday's arrival does not count today.
    assert!(!s.counts_as_arrival(at(6, 45)) && s.counts_as_arrival(at(7, 0)));
    assert_eq!(mode_at(&first(Some(at(6, 45))), at(9, 0)), Mode::Secure);
    assert_eq!(mode_at(&first(Some(berlin(2026, 12, 4, 9, 0))), at(9, 0)), Mode::Secure);
    // The last to leave presses the exit button at 16:00 (after 15:00): secure again for the day.
    assert_eq!(s.leave_window(at(9, 0)), Some(at(15, 0)));
    let left = DoorConditions { ended_early: Some(at(16, 0)), ..first(Some(at(7, 30))) };
    assert_eq!(mode_at(&left, at(15, 59)), OPEN);
    assert_eq!(mode_at(&left, at(16, 0)), Mode::Secure);
    let next_day = DoorConditions { first_arrival: Some(berlin(2026, 12, 8, 7, 30)), ..left.clone() };
    assert_eq!(mode_at(&next_day, berlin(2026, 12, 8, 9, 0)), OPEN, "yesterday's early end is over");
}

#[test]
fn an_operators_override_wins_over_the_schedule_and_ends_by_itself() {
    let s = lobby(&WEEKDAYS, "08:00", "18:00");
    let until = berlin(2026, 12, 7, 20, 0);
    let hold = DoorConditions { override_: Some(Override::HoldUnlocked { until }), ..with(&s) };
    assert_eq!(mode_at(&hold, berlin(2026, 12, 7, 19, 0)), Mode::Unlocked(Unlocked::Hold));
    assert_eq!(mode_at(&hold, berlin(2026, 12, 7, 20, 0)), Mode::Secure, "ended");
    let keep = DoorConditions { override_: Some(Override::KeepSecure { until }), ..with(&s) };
    assert_eq!(mode_at(&keep, berlin(2026, 12, 7, 12, 0)), Mode::Secure, "kept secure through its schedule");
    assert_eq!(mode_at(&keep, berlin(2026, 12, 8, 12, 0)), OPEN, "the next day as scheduled");
}

#[test]
fn lockdown_wins_over_schedules_and_holds_and_egress_wins_over_lockdown() {
    let s = lobby(&WEEKDAYS, "08:00", "18:00");
    let noon = berlin(2026, 12, 7, 12, 0);
    let hold = Some(Override::HoldUnlocked { until: berlin(2026, 12, 7, 20, 0) });
    let locked = DoorConditions { lockdown: true, override_: hold, ..with(&s) };
    assert_eq!(mode_at(&locked, noon), Mode::Lockdown);
    // A fire: the doors on exit routes release, in lockdown too; the others stay locked down.
    let fire = DoorConditions { emergency: true, egress: true, ..locked.clone() };
    assert_eq!(mode_at(&fire, noon), Mode::EgressOpen);
    assert!(Mode::EgressOpen.held_open() && !Mode::Lockdown.held_open());
    let not_an_exit = DoorConditions { emergency: true, ..locked };
    assert_eq!(mode_at(&not_an_exit, noon), Mode::Lockdown);
    let names: Vec<&str> = [Mode::Secure, OPEN, Mode::Lockdown, Mode::EgressOpen].iter().map(|m| m.as_str()).collect();
    assert_eq!(names, ["secure", "unlocked", "lockdown", "egress_open"]);
}
