//! The hot path: `Index::decide` at 10k, 100k and 1M credentials.
//!
//! The world: 20 doors; 4 groups, each covering the front door and a few more; every
//! person holds one card and belongs to one group; each group has one group grant, two of
//! them on a weekly schedule (Europe/Berlin office hours), and every tenth person also has
//! a personal pass grant elsewhere. The questions: a card that is let in (the same card
//! every time, under a schedule and without one, and a rotation through 4096 cards spread
//! over the population, which is what a busy hub sees), and a card the index does not know.
//!
//! Run with `cargo bench -p lintel-core` (or `-- --quick` for a short run).

use std::hint::black_box;
use std::time::Instant;

use chrono::{DateTime, Utc};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use lintel_core::{
    CompiledSchedule, CredentialKey, DoorSet, Index, IndexBuilder, IndexCredential, IndexDoor, IndexGrant, IndexGroup,
    IndexPerson, Query, Reason, Subject,
};
use lintel_proto::{CredentialKind, CredentialStatus, Schedule, ScheduleRule, Weekday};

const SIZES: [u32; 3] = [10_000, 100_000, 1_000_000];
const DOORS: i64 = 20;
const GROUPS: i64 = 4;
const FRONT: &str = "door-1";
/// Grants' pks start here, after the groups' own.
const GRANT_PK: i64 = 1_000;

/// A 7-byte UID, as most MIFARE cards have, spread over the key space.
fn card_key(person: u32) -> CredentialKey {
    let x = person.wrapping_mul(0x9E37_79B1).to_be_bytes();
    CredentialKey::card_bytes(&[0x04, x[0], x[1], x[2], x[3], 0x5A, 0x80])
}

fn office_hours() -> CompiledSchedule {
    use Weekday::*;
    CompiledSchedule::compile(&Schedule {
        tz: "Europe/Berlin".into(),
        rules: vec![ScheduleRule { weekdays: vec![Mon, Tue, Wed, Thu, Fri], from: "07:00".into(), to: "22:00".into() }],
    })
    .expect("a valid schedule")
}

fn build(people: u32) -> Index {
    let mut b = IndexBuilder::default();
    for d in 1..=DOORS {
        b.door(IndexDoor { pk: d, id: format!("door-{d}").into(), required_skill: None, lockdown: false });
    }
    for g in 1..=GROUPS {
        // The front door, and four doors of the group's own.
        let doors: Box<[i64]> = std::iter::once(1).chain((0..4).map(|i| 2 + (g - 1) * 4 + i)).collect();
        b.group(g, IndexGroup { id: format!("group-{g}").into(), doors });
        b.grant(IndexGrant {
            pk: GRANT_PK + g,
            subject: Subject::Group(g),
            doors: DoorSet::SubjectGroup,
            schedule: (g % 2 == 0).then(office_hours),
            valid_from: i64::MIN,
            valid_until: i64::MAX,
            passes: None,
            passes_used: 0,
            pass_lasts: lintel_proto::PassLasts::Entry,
            checked_in_until: i64::MIN,
        });
    }
    for p in 1..=people {
        let pk = i64::from(p);
        b.person(
            pk,
            IndexPerson { id: format!("p-{p}").into(), suspended: false, lockdown_exempt: false, skills: Box::new([]) },
        );
        b.credential(
            card_key(p),
            IndexCredential {
                pk,
                person: Some(pk),
                kind: CredentialKind::Card,
                status: CredentialStatus::Active,
                revocation: 0,
                digest: None,
            },
        );
        b.member(1 + pk % GROUPS, pk);
        if p % 10 == 0 {
            b.grant(IndexGrant {
                pk: GRANT_PK + GROUPS + pk,
                subject: Subject::Person(pk),
                doors: DoorSet::Doors(Box::new([DOORS])),
                schedule: None,
                valid_from: i64::MIN,
                valid_until: i64::MAX,
                passes: Some(10),
                passes_used: 3,
                pass_lasts: lintel_proto::PassLasts::Entry,
                checked_in_until: i64::MIN,
            });
        }
    }
    b.build()
}

fn ask(index: &Index, key: CredentialKey, at: DateTime<Utc>) -> Reason {
    index.decide(&Query { door: FRONT, key, digest: None, revocation_code: None, at }).reason
}

fn decide(c: &mut Criterion) {
    // A Wednesday at 10:00 in Berlin: inside office hours.
    let at: DateTime<Utc> = "2026-06-10T08:00:00Z".parse().expect("a valid time");
    let mut group = c.benchmark_group("decide");
    for people in SIZES {
        let started = Instant::now();
        let index = build(people);
        eprintln!("decide/{people}: built {:?} in {:.2?}", index.stats(), started.elapsed());

        // Person 3 is in group 4 (office hours), person 2 in group 3 (no schedule).
        let allowed = card_key(3);
        assert_eq!(ask(&index, allowed, at), Reason::Granted);
        let unscheduled = card_key(2);
        assert_eq!(ask(&index, unscheduled, at), Reason::Granted);
        let rotation: Vec<CredentialKey> =
            (0..4096u32).map(|i| card_key(1 + i.wrapping_mul(2_654_435_761) % people)).collect();
        assert!(rotation.iter().all(|k| ask(&index, *k, at) == Reason::Granted));
        let unknown = card_key(people + 1);
        assert_eq!(ask(&index, unknown, at), Reason::UnknownCredential);

        group.bench_with_input(BenchmarkId::new("allowed_card", people), &index, |b, index| {
            b.iter(|| {
                index.decide(black_box(&Query { door: FRONT, key: allowed, digest: None, revocation_code: None, at }))
            })
        });
        group.bench_with_input(BenchmarkId::new("allowed_card_unscheduled", people), &index, |b, index| {
            b.iter(|| {
                index.decide(black_box(&Query {
                    door: FRONT,
                    key: unscheduled,
                    digest: None,
                    revocation_code: None,
                    at,
                }))
            })
        });
        group.bench_with_input(BenchmarkId::new("allowed_card_rotating", people), &index, |b, index| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % rotation.len();
                index.decide(black_box(&Query {
                    door: FRONT,
                    key: rotation[i],
                    digest: None,
                    revocation_code: None,
                    at,
                }))
            })
        });
        group.bench_with_input(BenchmarkId::new("unknown_card", people), &index, |b, index| {
            b.iter(|| {
                index.decide(black_box(&Query { door: FRONT, key: unknown, digest: None, revocation_code: None, at }))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decide);
criterion_main!(benches);
