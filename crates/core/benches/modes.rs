//! The cost of a door's mode: `mode_at` for a door with an unlock schedule, holidays and
//! first to arrive (the worst case the scheduler evaluates per door per tick), and for a
//! door in lockdown (the first rule decides).
//!
//! Run with `cargo bench -p lintel-core --bench modes` (or `-- --quick`).

use std::hint::black_box;

use chrono::{NaiveDate, TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use lintel_core::{CompiledSchedule, DoorConditions, UnlockSchedule, mode_at};
use lintel_proto::{Schedule, ScheduleRule, Weekday};

fn modes(c: &mut Criterion) {
    use Weekday::*;
    let rules = vec![
        ScheduleRule { weekdays: vec![Mon, Tue, Wed, Thu, Fri], from: "08:00".into(), to: "18:00".into() },
        ScheduleRule { weekdays: vec![Sat], from: "10:00".into(), to: "14:00".into() },
    ];
    let schedule = CompiledSchedule::compile(&Schedule { tz: "Europe/Berlin".into(), rules }).unwrap();
    let day = |m, d| NaiveDate::from_ymd_opt(2026, m, d).unwrap();
    let holidays = (1..=12).map(|m| (day(m, 1), day(m, 2))).collect();
    let lobby = UnlockSchedule::new(schedule, holidays, Some("07:00"), None).unwrap();
    let now = chrono_tz::Europe::Berlin.with_ymd_and_hms(2026, 12, 7, 12, 0, 0).unwrap().with_timezone(&Utc);
    let arrived = now - chrono::Duration::hours(4);
    let scheduled = DoorConditions { schedule: Some(&lobby), first_arrival: Some(arrived), ..Default::default() };
    c.bench_function("mode_at/unlock schedule, 12 holidays, first to arrive", |b| {
        b.iter(|| mode_at(black_box(&scheduled), black_box(now)))
    });
    let locked = DoorConditions { lockdown: true, ..scheduled.clone() };
    c.bench_function("mode_at/lockdown", |b| b.iter(|| mode_at(black_box(&locked), black_box(now))));
}

criterion_group!(benches, modes);
criterion_main!(benches);
