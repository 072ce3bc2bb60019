//! Tests of the decision policy through its public surface: [`IndexBuilder`], [`Index::decide`]
//! and [`Index::apply`]. The unit tests pin one rule each; the property tests compare the
//! index with a small reference model over plain `Vec`s, and the builder with `apply`.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use lintel_proto::{CredentialKind, CredentialStatus, PassLasts, Reason, Schedule, ScheduleRule, Weekday};
use proptest::prelude::*;

use super::*;
use crate::credential::{CredentialKey, Digest, pin_digest, sha256};
use crate::schedule::CompiledSchedule;

// ---------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------

const FRONT: Pk = 1;
/// Needs the skill "laser".
const LAB: Pk = 2;
const STORE: Pk = 3;
const ALICE: Pk = 10;
const BOB: Pk = 11;
const ALICE_CARD: Pk = 100;
const BOB_CARD: Pk = 101;

/// A Wednesday, noon UTC (14:00 in Berlin).
fn now() -> DateTime<Utc> {
    utc("2026-06-10T12:00:00Z")
}

fn utc(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap()
}

fn berlin(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    chrono_tz::Europe::Berlin.with_ymd_and_hms(y, mo, d, h, mi, 0).single().unwrap().with_timezone(&Utc)
}

fn schedule(tz: &str, days: &[Weekday], from: &str, to: &str) -> CompiledSchedule {
    CompiledSchedule::compile(&Schedule {
        tz: tz.into(),
        rules: vec![ScheduleRule { weekdays: days.to_vec(), from: from.into(), to: to.into() }],
    })
    .unwrap()
}

const EVERY_DAY: [Weekday; 7] =
    [Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri, Weekday::Sat, Weekday::Sun];

fn door(pk: Pk, id: &str, skill: Option<&str>) -> IndexDoor {
    IndexDoor { pk, id: id.into(), required_skill: skill.map(Into::into), lockdown: false }
}

fn person(id: &str, skills: &[&str]) -> IndexPerson {
    IndexPerson {
        id: id.into(),
        suspended: false,
        lockdown_exempt: false,
        skills: skills.iter().map(|s| (*s).into()).collect(),
    }
}

fn card_key(uid: u32) -> CredentialKey {
    CredentialKey::card_bytes(&uid.to_be_bytes())
}

fn card(pk: Pk, person: Pk) -> IndexCredential {
    IndexCredential {
        pk,
        person: Some(person),
        kind: CredentialKind::Card,
        status: CredentialStatus::Active,
        revocation: 0,
        digest: None,
    }
}

fn with_digest(pk: Pk, person: Pk, kind: CredentialKind, digest: &Digest) -> IndexCredential {
    IndexCredential { kind, digest: Some(Box::new(*digest)), ..card(pk, person) }
}

fn alice_card() -> CredentialKey {
    card_key(0xA1)
}

fn bob_card() -> CredentialKey {
    card_key(0xB0)
}

/// An open-ended grant without schedule or passes.
fn grant(pk: Pk, subject: Subject, doors: DoorSet) -> IndexGrant {
    IndexGrant {
        pk,
        subject,
        doors,
        schedule: None,
        valid_from: i64::MIN,
        valid_until: i64::MAX,
        passes: None,
        passes_used: 0,
        pass_lasts: lintel_proto::PassLasts::Entry,
        checked_in_until: i64::MIN,
    }
}

fn person_grant(pk: Pk, person: Pk, doors: &[Pk]) -> IndexGrant {
    grant(pk, Subject::Person(person), DoorSet::Doors(doors.into()))
}

/// Doors `front`, `lab` (needs "laser") and `store`; alice (can use the laser) and bob, each
/// with one card; no grants.
fn base() -> IndexBuilder {
    let mut b = IndexBuilder::default();
    b.door(door(FRONT, "front", None));
    b.door(door(LAB, "lab", Some("laser")));
    b.door(door(STORE, "store", None));
    b.person(ALICE, person("alice", &["laser"]));
    b.person(BOB, person("bob", &[]));
    b.credential(alice_card(), card(ALICE_CARD, ALICE));
    b.credential(bob_card(), card(BOB_CARD, BOB));
    b
}

fn with_grants(grants: impl IntoIterator<Item = IndexGrant>) -> Index {
    let mut b = base();
    grants.into_iter().for_each(|g| b.grant(g));
    b.build()
}

fn ask_at(index: &Index, door: &str, key: CredentialKey, at: DateTime<Utc>) -> Decision {
    index.decide(&Query { door, key, digest: None, revocation_code: None, at })
}

fn ask(index: &Index, door: &str, key: CredentialKey) -> Decision {
    ask_at(index, door, key, now())
}

fn reason_at(index: &Index, door: &str, key: CredentialKey, at: DateTime<Utc>) -> Reason {
    ask_at(index, door, key, at).reason
}

fn reason(index: &Index, door: &str, key: CredentialKey) -> Reason {
    ask(index, door, key).reason
}

/// A grant of alice's to the front door that fails at [`now`] for `why`.
fn failing(pk: Pk, why: Reason) -> IndexGrant {
    let g = person_grant(pk, ALICE, &[FRONT]);
    let day = 86_400_000_000;
    match why {
        Reason::NotYetValid => IndexGrant { valid_from: now().timestamp_micros() + day, ..g },
        Reason::Expired => IndexGrant { valid_until: now().timestamp_micros() - day, ..g },
        Reason::OutsideSchedule => {
            IndexGrant { schedule: Some(schedule("UTC", &[Weekday::Sun], "00:00", "01:00")), ..g }
        }
        Reason::NoPassesLeft => IndexGrant { passes: Some(1), passes_used: 1, ..g },
        other => panic!("{other:?} is not a grant failure"),
    }
}

// ---------------------------------------------------------------------------------------
// Deciding for a person (a chat button, a signed operation): the same rules after the credential
// ---------------------------------------------------------------------------------------

#[test]
fn a_person_is_decided_on_by_the_same_rules_as_their_card() {
    let mut b = base();
    b.person(12, IndexPerson { suspended: true, ..person("carol", &[]) });
    b.grant(person_grant(1, ALICE, &[FRONT, LAB]));
    b.grant(person_grant(2, BOB, &[LAB]));
    b.grant(person_grant(3, 12, &[FRONT]));
    b.grant(IndexGrant { pk: 4, passes: Some(2), ..person_grant(4, BOB, &[STORE]) });
    let index = b.build();
    let by_person = |door: &str, person: Pk| index.decide_for_person(door, person, now());
    for (door, person, card) in [("front", ALICE, alice_card()), ("lab", ALICE, alice_card()), ("lab", BOB, bob_card())]
    {
        let (mine, theirs) = (by_person(door, person), ask(&index, door, card));
        assert_eq!((mine.reason, mine.grant, mine.person), (theirs.reason, theirs.grant, theirs.person), "{door}");
        assert_eq!(mine.credential, None, "no credential was presented");
    }
    assert_eq!(by_person("front", ALICE).reason, Reason::Granted);
    assert_eq!(by_person("lab", BOB).reason, Reason::MissingSkill);
    assert_eq!(by_person("front", BOB).reason, Reason::NoGrant);
    assert_eq!(by_person("front", 12).reason, Reason::PersonSuspended);
    assert_eq!(by_person("nowhere", ALICE).reason, Reason::UnknownDoor);
    let nobody = by_person("front", 999);
    assert_eq!((nobody.reason, nobody.person), (Reason::UnknownCredential, None));
    let pass = by_person("store", BOB);
    assert_eq!((pass.reason, pass.consume), (Reason::Granted, Consume { pass: true, backup_code: false }));
}

#[test]
fn a_door_in_lockdown_refuses_everyone_but_the_exempt_online_and_offline() {
    let mut b = base();
    b.door(IndexDoor { lockdown: true, ..door(FRONT, "front", None) });
    b.person(BOB, IndexPerson { lockdown_exempt: true, ..person("bob", &[]) });
    b.grant(person_grant(1, ALICE, &[FRONT, STORE]));
    b.grant(person_grant(2, BOB, &[FRONT]));
    let index = b.build();
    let refused = ask(&index, "front", alice_card());
    assert_eq!((refused.reason, refused.person), (Reason::Lockdown, Some(ALICE)));
    assert_eq!(reason(&index, "store", alice_card()), Reason::Granted, "another door is not locked down");
    assert_eq!(reason(&index, "front", bob_card()), Reason::Granted, "exempt");
    assert_eq!(index.decide_for_person("front", ALICE, now()).reason, Reason::Lockdown);
    // Offline: the list of the door holds only the exempt.
    let holders: Vec<Pk> = index.offline_cards(&["front"]).iter().map(|c| c.credential).collect();
    assert_eq!(holders, [BOB_CARD]);
    // Lifting it restores what was.
    let lifted = index.apply(&[Change::Door(FRONT, Some(door(FRONT, "front", None)))]);
    assert_eq!(reason(&lifted, "front", alice_card()), Reason::Granted);
    assert_eq!(lifted.offline_cards(&["front"]).len(), 2);
}

#[test]
fn only_an_active_secret_of_an_unsuspended_person_identifies_its_holder() {
    let (mine, pin, revoked, carols) = (sha256(b"alice's"), sha256(b"1234"), sha256(b"old"), sha256(b"carol's"));
    let mut b = base();
    b.person(12, IndexPerson { suspended: true, ..person("carol", &[]) });
    b.credential(CredentialKey::secret(&mine), with_digest(200, ALICE, CredentialKind::Secret, &mine));
    b.credential(CredentialKey::pin(&pin), with_digest(201, ALICE, CredentialKind::Pin, &pin));
    let old = IndexCredential {
        status: CredentialStatus::Revoked,
        ..with_digest(202, ALICE, CredentialKind::Secret, &revoked)
    };
    b.credential(CredentialKey::secret(&revoked), old);
    b.credential(CredentialKey::secret(&carols), with_digest(203, 12, CredentialKind::Secret, &carols));
    let index = b.build();
    assert_eq!(index.secret_holder(&CredentialKey::secret(&mine), &mine), Some(ALICE));
    assert_eq!(index.secret_holder(&CredentialKey::secret(&mine), &sha256(b"other")), None, "digest must match");
    assert_eq!(index.secret_holder(&CredentialKey::pin(&pin), &pin), None, "a PIN is not a secret");
    assert_eq!(index.secret_holder(&CredentialKey::secret(&revoked), &revoked), None, "revoked");
    assert_eq!(index.secret_holder(&CredentialKey::secret(&carols), &carols), None, "suspended");
}

// ---------------------------------------------------------------------------------------
// Reasons and the order of checks
// ---------------------------------------------------------------------------------------

#[test]
fn every_reason_decided_by_the_core_is_reachable() {
    let secret: Digest = sha256(b"a personal secret");
    let mut b = base();
    let people = [
        (11, "suspended"),
        (12, "unskilled"),
        (13, "not-yet"),
        (14, "expired"),
        (15, "scheduled"),
        (16, "passes"),
        (17, "no-grant"),
    ];
    for (pk, id) in people {
        b.person(pk, IndexPerson { suspended: pk == 11, ..person(id, &[]) });
        b.credential(card_key(pk as u32), card(pk + 100, pk));
    }
    b.credential(card_key(20), IndexCredential { status: CredentialStatus::Revoked, ..card(120, ALICE) });
    b.credential(card_key(21), IndexCredential { revocation: revocation_hash(Some("r2")), ..card(121, ALICE) });
    b.credential(CredentialKey::secret(&secret), with_digest(122, ALICE, CredentialKind::Secret, &secret));
    b.grant(person_grant(1, ALICE, &[FRONT, LAB]));
    b.grant(person_grant(2, 11, &[FRONT]));
    b.grant(person_grant(3, 12, &[FRONT, LAB]));
    b.grant(IndexGrant { pk: 4, subject: Subject::Person(13), ..failing(4, Reason::NotYetValid) });
    b.grant(IndexGrant { pk: 5, subject: Subject::Person(14), ..failing(5, Reason::Expired) });
    b.grant(IndexGrant { pk: 6, subject: Subject::Person(15), ..failing(6, Reason::OutsideSchedule) });
    b.grant(IndexGrant { pk: 7, subject: Subject::Person(16), ..failing(7, Reason::NoPassesLeft) });
    let index = b.build();

    let wrong_secret = sha256(b"another secret");
    let cases: Vec<(Reason, Decision)> = vec![
        (Reason::Granted, ask(&index, "front", alice_card())),
        (Reason::UnknownDoor, ask(&index, "back", alice_card())),
        (Reason::UnknownCredential, ask(&index, "front", card_key(0xDEAD))),
        (
            Reason::UnknownCredential,
            index.decide(&Query {
                door: "front",
                key: CredentialKey::secret(&wrong_secret),
                digest: Some(&wrong_secret),
                revocation_code: None,
                at: now(),
            }),
        ),
        (Reason::PersonSuspended, ask(&index, "front", card_key(11))),
        (Reason::CredentialRevoked, ask(&index, "front", card_key(20))),
        (Reason::RevokedCard, ask(&index, "front", card_key(21))),
        (Reason::NoGrant, ask(&index, "front", card_key(17))),
        (Reason::OutsideSchedule, ask(&index, "front", card_key(15))),
        (Reason::NotYetValid, ask(&index, "front", card_key(13))),
        (Reason::Expired, ask(&index, "front", card_key(14))),
        (Reason::NoPassesLeft, ask(&index, "front", card_key(16))),
        (Reason::MissingSkill, ask(&index, "lab", card_key(12))),
        (Reason::Lockdown, {
            let mut b = base();
            b.door(IndexDoor { lockdown: true, ..door(FRONT, "front", None) });
            b.grant(person_grant(1, ALICE, &[FRONT]));
            ask(&b.build(), "front", alice_card())
        }),
        (
            Reason::UnknownMember,
            index.decide_member(&MemberQuery { door: "front", person_id: "nobody", revocation_code: "1", at: now() }),
        ),
    ];
    let mut seen = HashSet::new();
    for (expected, decision) in &cases {
        assert_eq!(decision.reason, *expected, "{decision:?}");
        assert_eq!(decision.allowed(), *expected == Reason::Granted);
        assert!(!decision.detail.is_empty(), "{decision:?} has no detail");
        seen.insert(*expected);
    }
    // ListExpired is decided by controllers from their offline list (offline/tests.rs),
    // CrmUnavailable by the service when the CRM cannot vouch for a member, AntiPassback
    // by the decision log's commit from who is inside (passback.rs holds its rule).
    let decided_outside_the_core =
        [Reason::RateLimited, Reason::ListExpired, Reason::CrmUnavailable, Reason::AntiPassback];
    for r in Reason::ALL {
        assert!(seen.contains(&r) || decided_outside_the_core.contains(&r), "no test reaches {}", r.as_str());
    }
}

#[test]
fn a_granted_decision_names_door_credential_person_and_grant() {
    let index = with_grants([person_grant(7, ALICE, &[FRONT])]);
    let d = ask(&index, "front", alice_card());
    assert_eq!(
        d,
        Decision {
            reason: Reason::Granted,
            detail: d.detail.clone(),
            door: Some(FRONT),
            credential: Some(ALICE_CARD),
            person: Some(ALICE),
            grant: Some(7),
            consume: Consume::default(),
            pass_grants: Vec::new(),
            checked_in_until: None,
        }
    );
    assert!(d.allowed());
}

#[test]
fn unknown_door_comes_first_and_names_nothing() {
    let index = with_grants([person_grant(1, ALICE, &[FRONT])]);
    for key in [alice_card(), card_key(0xDEAD)] {
        let d = ask(&index, "Front", key);
        assert_eq!((d.reason, d.door, d.credential, d.person, d.grant), (Reason::UnknownDoor, None, None, None, None));
    }
}

#[test]
fn unknown_credential_names_the_door_only() {
    let index = with_grants([person_grant(1, ALICE, &[FRONT])]);
    let d = ask(&index, "front", card_key(0xDEAD));
    assert_eq!(
        (d.reason, d.door, d.credential, d.person, d.grant),
        (Reason::UnknownCredential, Some(FRONT), None, None, None)
    );
    // A PIN and a card with the same bytes are different credentials.
    let d = ask(&index, "front", CredentialKey::pin(&[0xA1; 32]));
    assert_eq!(d.reason, Reason::UnknownCredential);
}

#[test]
fn checks_run_in_the_documented_order() {
    // Each person fails several checks; the first in the order wins:
    // credential_revoked, revoked_card, person_suspended, missing_skill, then grants.
    let mut b = base();
    let suspended = |id| IndexPerson { suspended: true, ..person(id, &[]) };
    b.person(20, suspended("s1"));
    b.credential(
        card_key(20),
        IndexCredential {
            status: CredentialStatus::Revoked,
            revocation: revocation_hash(Some("new")),
            ..card(120, 20)
        },
    );
    b.person(21, suspended("s2"));
    b.credential(card_key(21), IndexCredential { revocation: revocation_hash(Some("new")), ..card(121, 21) });
    b.person(22, suspended("s3"));
    b.credential(card_key(22), card(122, 22));
    b.person(23, person("unskilled", &[]));
    b.credential(card_key(23), card(123, 23));
    // 24 has no grant at all, and lacks the skill.
    b.person(24, person("nothing", &[]));
    b.credential(card_key(24), card(124, 24));
    for p in [20, 21, 22] {
        b.grant(person_grant(p, p, &[LAB]));
    }
    b.grant(IndexGrant { subject: Subject::Person(23), ..failing(23, Reason::Expired) });
    let index = b.build();
    assert_eq!(reason(&index, "lab", card_key(20)), Reason::CredentialRevoked);
    assert_eq!(reason(&index, "lab", card_key(21)), Reason::RevokedCard);
    assert_eq!(reason(&index, "lab", card_key(22)), Reason::PersonSuspended);
    assert_eq!(reason(&index, "lab", card_key(23)), Reason::MissingSkill);
    assert_eq!(reason(&index, "lab", card_key(24)), Reason::MissingSkill);
    assert_eq!(reason(&index, "front", card_key(24)), Reason::NoGrant);
    // Denials after the credential was found still say whose it was.
    let d = ask(&index, "lab", card_key(22));
    assert_eq!((d.credential, d.person, d.grant), (Some(122), Some(22), None));
}

#[test]
fn a_credential_without_a_living_person_is_revoked() {
    let mut b = base();
    // The person was deleted: the credential lost its person...
    b.credential(card_key(1), IndexCredential { person: None, ..card(150, ALICE) });
    // ... or the credential still points at a person the index does not have.
    b.credential(card_key(2), card(151, 99));
    b.grant(person_grant(1, 99, &[FRONT]));
    let index = b.build();
    assert_eq!(reason(&index, "front", card_key(1)), Reason::CredentialRevoked);
    assert_eq!(reason(&index, "front", card_key(2)), Reason::CredentialRevoked);
    // And a person deleted through `apply`.
    let index = with_grants([person_grant(1, ALICE, &[FRONT])]).apply(&[Change::Person(ALICE, None)]);
    assert_eq!(reason(&index, "front", alice_card()), Reason::CredentialRevoked);
}

#[test]
fn a_door_with_a_required_skill_needs_a_person_who_has_it() {
    let index = with_grants([person_grant(1, ALICE, &[LAB]), person_grant(2, BOB, &[LAB])]);
    assert_eq!(reason(&index, "lab", alice_card()), Reason::Granted);
    assert_eq!(reason(&index, "lab", bob_card()), Reason::MissingSkill);
    // Learning the skill is a person change.
    let index = index.apply(&[Change::Person(BOB, Some(person("bob", &["welding", "laser"])))]);
    assert_eq!(reason(&index, "lab", bob_card()), Reason::Granted);
    // A skill alone opens nothing.
    assert_eq!(reason(&index, "front", bob_card()), Reason::NoGrant);
}

// ---------------------------------------------------------------------------------------
// Schedules through a grant
// ---------------------------------------------------------------------------------------

fn scheduled(s: CompiledSchedule) -> Index {
    with_grants([IndexGrant { schedule: Some(s), ..person_grant(1, ALICE, &[FRONT]) }])
}

#[test]
fn a_night_schedule_runs_past_midnight_into_the_next_day() {
    let index = scheduled(schedule("Europe/Berlin", &[Weekday::Fri], "22:00", "02:00"));
    let at = |d, h, m| reason_at(&index, "front", alice_card(), berlin(2026, 6, d, h, m));
    // 2026-06-11 is a Thursday, 06-12 a Friday, 06-13 a Saturday (CEST, UTC+2).
    assert_eq!(at(12, 21, 59), Reason::OutsideSchedule);
    assert_eq!(at(12, 22, 0), Reason::Granted);
    assert_eq!(at(12, 23, 59), Reason::Granted);
    assert_eq!(at(13, 0, 0), Reason::Granted);
    assert_eq!(at(13, 1, 59), Reason::Granted);
    assert_eq!(at(13, 2, 0), Reason::OutsideSchedule);
    // Thursday's night and Saturday's night are not Friday's.
    assert_eq!(at(12, 1, 0), Reason::OutsideSchedule);
    assert_eq!(at(13, 23, 0), Reason::OutsideSchedule);
    // In UTC, Friday 22:00 Berlin is 20:00.
    assert_eq!(reason_at(&index, "front", alice_card(), utc("2026-06-12T20:00:00Z")), Reason::Granted);
    assert_eq!(reason_at(&index, "front", alice_card(), utc("2026-06-12T19:59:59Z")), Reason::OutsideSchedule);
}

#[test]
fn a_sunday_night_schedule_wraps_to_monday() {
    let index = scheduled(schedule("Europe/Berlin", &[Weekday::Sun], "23:00", "01:00"));
    let at = |d, h, m| reason_at(&index, "front", alice_card(), berlin(2026, 6, d, h, m));
    assert_eq!(at(14, 23, 30), Reason::Granted); // Sunday
    assert_eq!(at(15, 0, 59), Reason::Granted); // Monday
    assert_eq!(at(15, 1, 0), Reason::OutsideSchedule);
    assert_eq!(at(15, 23, 30), Reason::OutsideSchedule);
}

#[test]
fn a_whole_day_schedule_ends_at_midnight() {
    let index = scheduled(schedule("Europe/Berlin", &[Weekday::Mon], "00:00", "24:00"));
    let sunday_last_second = berlin(2026, 6, 14, 23, 59) + chrono::Duration::seconds(59);
    assert_eq!(reason_at(&index, "front", alice_card(), sunday_last_second), Reason::OutsideSchedule);
    assert_eq!(reason_at(&index, "front", alice_card(), berlin(2026, 6, 15, 0, 0)), Reason::Granted);
    let monday_last_micro = berlin(2026, 6, 16, 0, 0) - chrono::Duration::microseconds(1);
    assert_eq!(reason_at(&index, "front", alice_card(), monday_last_micro), Reason::Granted);
    assert_eq!(reason_at(&index, "front", alice_card(), berlin(2026, 6, 16, 0, 0)), Reason::OutsideSchedule);
}

#[test]
fn office_hours_follow_berlin_wall_time_across_both_dst_changes() {
    let index = scheduled(schedule("Europe/Berlin", &EVERY_DAY, "08:00", "20:00"));
    let at = |s| reason_at(&index, "front", alice_card(), utc(s));
    // Saturday 2026-03-28 is CET (UTC+1): 08:00 local is 07:00 UTC.
    assert_eq!(at("2026-03-28T06:30:00Z"), Reason::OutsideSchedule);
    assert_eq!(at("2026-03-28T07:00:00Z"), Reason::Granted);
    assert_eq!(at("2026-03-28T18:30:00Z"), Reason::Granted);
    assert_eq!(at("2026-03-28T19:00:00Z"), Reason::OutsideSchedule);
    // Sunday 2026-03-29, after the clocks went forward (CEST, UTC+2): 08:00 local is 06:00 UTC.
    assert_eq!(at("2026-03-29T05:59:00Z"), Reason::OutsideSchedule);
    assert_eq!(at("2026-03-29T06:00:00Z"), Reason::Granted);
    assert_eq!(at("2026-03-29T06:30:00Z"), Reason::Granted);
    assert_eq!(at("2026-03-29T17:59:00Z"), Reason::Granted);
    assert_eq!(at("2026-03-29T18:00:00Z"), Reason::OutsideSchedule);
    assert_eq!(at("2026-03-29T18:30:00Z"), Reason::OutsideSchedule);
    // Saturday 2026-10-24 is still CEST; Sunday 2026-10-25 is CET again.
    assert_eq!(at("2026-10-24T06:00:00Z"), Reason::Granted);
    assert_eq!(at("2026-10-24T18:00:00Z"), Reason::OutsideSchedule);
    assert_eq!(at("2026-10-25T06:30:00Z"), Reason::OutsideSchedule);
    assert_eq!(at("2026-10-25T07:00:00Z"), Reason::Granted);
    assert_eq!(at("2026-10-25T18:30:00Z"), Reason::Granted);
    assert_eq!(at("2026-10-25T19:00:00Z"), Reason::OutsideSchedule);
}

#[test]
fn a_night_schedule_across_the_dst_nights() {
    let index = scheduled(schedule("Europe/Berlin", &[Weekday::Sat], "22:00", "06:00"));
    let at = |s| reason_at(&index, "front", alice_card(), utc(s));
    // Spring: Saturday 22:00 CET is 21:00 UTC; Sunday 06:00 CEST is 04:00 UTC (a night of 7 hours).
    assert_eq!(at("2026-03-28T20:59:00Z"), Reason::OutsideSchedule);
    assert_eq!(at("2026-03-28T21:00:00Z"), Reason::Granted);
    assert_eq!(at("2026-03-29T00:59:00Z"), Reason::Granted); // 01:59 CET
    assert_eq!(at("2026-03-29T01:00:00Z"), Reason::Granted); // 03:00 CEST
    assert_eq!(at("2026-03-29T03:59:00Z"), Reason::Granted);
    assert_eq!(at("2026-03-29T04:00:00Z"), Reason::OutsideSchedule);
    // Autumn: Saturday 22:00 CEST is 20:00 UTC; Sunday 06:00 CET is 05:00 UTC (a night of 9 hours),
    // and the repeated hour 02:00-03:00 counts both times.
    assert_eq!(at("2026-10-24T19:59:00Z"), Reason::OutsideSchedule);
    assert_eq!(at("2026-10-24T20:00:00Z"), Reason::Granted);
    assert_eq!(at("2026-10-25T00:30:00Z"), Reason::Granted); // 02:30 CEST
    assert_eq!(at("2026-10-25T01:30:00Z"), Reason::Granted); // 02:30 CET
    assert_eq!(at("2026-10-25T04:59:00Z"), Reason::Granted);
    assert_eq!(at("2026-10-25T05:00:00Z"), Reason::OutsideSchedule);
}

// ---------------------------------------------------------------------------------------
// Validity windows
// ---------------------------------------------------------------------------------------

#[test]
fn valid_from_is_inclusive_and_valid_until_exclusive() {
    let from = utc("2026-06-10T00:00:00Z").timestamp_micros();
    let until = utc("2026-06-11T00:00:00Z").timestamp_micros();
    let index = with_grants([IndexGrant { valid_from: from, valid_until: until, ..person_grant(1, ALICE, &[FRONT]) }]);
    let at = |us| reason_at(&index, "front", alice_card(), from_micros(us));
    assert_eq!(at(from - 1), Reason::NotYetValid);
    assert_eq!(at(from), Reason::Granted);
    assert_eq!(at(until - 1), Reason::Granted);
    assert_eq!(at(until), Reason::Expired);
    assert_eq!(at(until + 1), Reason::Expired);
    // Sub-microsecond parts do not move the edges.
    let just_before_until = from_micros(until - 1) + chrono::Duration::nanoseconds(999);
    assert_eq!(reason_at(&index, "front", alice_card(), just_before_until), Reason::Granted);
}

#[test]
fn open_ended_grants_hold_at_any_time() {
    let index = with_grants([person_grant(1, ALICE, &[FRONT])]);
    for s in ["1970-01-01T00:00:00Z", "1901-12-13T20:45:52Z", "2999-12-31T23:59:59Z"] {
        assert_eq!(reason_at(&index, "front", alice_card(), utc(s)), Reason::Granted, "{s}");
    }
}

#[test]
fn one_grant_checks_validity_then_schedule_then_passes() {
    let never_now = schedule("UTC", &[Weekday::Sun], "00:00", "01:00");
    let day = 86_400_000_000;
    let all_wrong = |pk, valid_from, valid_until| IndexGrant {
        schedule: Some(never_now.clone()),
        passes: Some(1),
        passes_used: 1,
        valid_from,
        valid_until,
        ..person_grant(pk, ALICE, &[FRONT])
    };
    let t = now().timestamp_micros();
    let one = |g| reason(&with_grants([g]), "front", alice_card());
    assert_eq!(one(all_wrong(1, t + day, i64::MAX)), Reason::NotYetValid);
    assert_eq!(one(all_wrong(1, i64::MIN, t - day)), Reason::Expired);
    assert_eq!(one(all_wrong(1, i64::MIN, i64::MAX)), Reason::OutsideSchedule);
    assert_eq!(one(IndexGrant { schedule: None, ..all_wrong(1, i64::MIN, i64::MAX) }), Reason::NoPassesLeft);
}

// ---------------------------------------------------------------------------------------
// Choosing among grants
// ---------------------------------------------------------------------------------------

#[test]
fn among_failing_grants_the_one_closest_to_success_is_reported() {
    let order = [Reason::NoPassesLeft, Reason::OutsideSchedule, Reason::NotYetValid, Reason::Expired];
    for (i, a) in order.iter().enumerate() {
        for (j, b) in order.iter().enumerate() {
            for grants in [[failing(1, *a), failing(2, *b)], [failing(1, *b), failing(2, *a)]] {
                let d = ask(&with_grants(grants), "front", alice_card());
                assert_eq!(d.reason, order[i.min(j)], "{a:?} with {b:?}");
                assert_eq!(d.grant, None);
            }
        }
    }
}

#[test]
fn an_allowing_grant_beats_every_failing_one() {
    let mut grants: Vec<_> = [Reason::NoPassesLeft, Reason::OutsideSchedule, Reason::NotYetValid, Reason::Expired]
        .into_iter()
        .zip(1..)
        .map(|(r, pk)| failing(pk, r))
        .collect();
    grants.push(person_grant(9, ALICE, &[FRONT]));
    let d = ask(&with_grants(grants), "front", alice_card());
    assert_eq!((d.reason, d.grant), (Reason::Granted, Some(9)));
}

#[test]
fn grants_for_other_doors_or_other_people_do_not_count() {
    let index = with_grants([
        person_grant(1, ALICE, &[STORE]),
        person_grant(2, BOB, &[FRONT]),
        person_grant(3, ALICE, &[]),
        failing(4, Reason::Expired),
    ]);
    // The expired grant covers the front door, the others do not.
    assert_eq!(reason(&index, "front", alice_card()), Reason::Expired);
    let index = with_grants([person_grant(1, ALICE, &[STORE]), person_grant(2, BOB, &[FRONT])]);
    assert_eq!(reason(&index, "front", alice_card()), Reason::NoGrant);
    assert_eq!(reason(&index, "store", alice_card()), Reason::Granted);
}

// ---------------------------------------------------------------------------------------
// Passes
// ---------------------------------------------------------------------------------------

fn pass_grant(pk: Pk, passes: u32, used: u32) -> IndexGrant {
    IndexGrant { passes: Some(passes), passes_used: used, ..person_grant(pk, ALICE, &[FRONT]) }
}

#[test]
fn a_pass_grant_consumes_a_pass() {
    let d = ask(&with_grants([pass_grant(1, 3, 2)]), "front", alice_card());
    assert_eq!((d.reason, d.grant), (Reason::Granted, Some(1)));
    assert_eq!(d.consume, Consume { pass: true, backup_code: false });
    // The index is pure: deciding used nothing up.
    let index = with_grants([pass_grant(1, 1, 0)]);
    for _ in 0..3 {
        assert_eq!(reason(&index, "front", alice_card()), Reason::Granted);
    }
}

#[test]
fn used_up_passes_give_no_passes_left() {
    for (passes, used) in [(0, 0), (1, 1), (3, 3), (3, 7)] {
        let d = ask(&with_grants([pass_grant(1, passes, used)]), "front", alice_card());
        assert_eq!((d.reason, d.consume), (Reason::NoPassesLeft, Consume::default()), "{used}/{passes}");
    }
}

#[test]
fn an_unlimited_grant_is_preferred_over_a_pass_grant() {
    // The pass grant is older and ends sooner, yet the unlimited one costs nothing.
    let until = now().timestamp_micros() + 1_000_000;
    let unlimited = person_grant(9, ALICE, &[FRONT]);
    let passes = IndexGrant { valid_until: until, ..pass_grant(1, 5, 0) };
    for grants in [[unlimited.clone(), passes.clone()], [passes, unlimited]] {
        let d = ask(&with_grants(grants), "front", alice_card());
        assert_eq!((d.reason, d.grant, d.consume), (Reason::Granted, Some(9), Consume::default()));
    }
    // A used-up pass grant falls back to another one with passes left.
    let d = ask(&with_grants([pass_grant(1, 2, 2), pass_grant(2, 2, 1)]), "front", alice_card());
    assert_eq!((d.reason, d.grant, d.consume.pass), (Reason::Granted, Some(2), true));
}

#[test]
fn among_allowing_grants_the_one_ending_first_then_the_oldest_wins() {
    let t = now().timestamp_micros();
    let ends = |g: IndexGrant, after: i64| IndexGrant { valid_until: t + after, ..g };
    let chosen = |grants: Vec<IndexGrant>| ask(&with_grants(grants), "front", alice_card()).grant;
    // Pass grants: the one ending first, whatever its pk.
    assert_eq!(chosen(vec![ends(pass_grant(1, 5, 0), 20), ends(pass_grant(2, 5, 0), 10)]), Some(2));
    assert_eq!(chosen(vec![pass_grant(3, 5, 0), ends(pass_grant(2, 5, 0), 10)]), Some(2));
    // Same end: the lowest pk.
    assert_eq!(chosen(vec![ends(pass_grant(5, 5, 0), 10), ends(pass_grant(4, 5, 0), 10)]), Some(4));
    assert_eq!(chosen(vec![pass_grant(5, 5, 0), pass_grant(4, 5, 0)]), Some(4));
    // Unlimited grants follow the same order.
    let unlimited = |pk| person_grant(pk, ALICE, &[FRONT]);
    assert_eq!(chosen(vec![ends(unlimited(1), 20), ends(unlimited(2), 10), unlimited(0)]), Some(2));
    assert_eq!(chosen(vec![unlimited(8), unlimited(7)]), Some(7));
    // Person and group grants compete on equal terms.
    let mut b = base();
    b.group(50, IndexGroup { id: "g".into(), doors: Box::new([FRONT]) });
    b.member(50, ALICE);
    b.grant(IndexGrant { valid_until: t + 20, ..pass_grant(1, 5, 0) });
    b.grant(IndexGrant { valid_until: t + 10, passes: Some(5), ..grant(2, Subject::Group(50), DoorSet::SubjectGroup) });
    assert_eq!(ask(&b.build(), "front", alice_card()).grant, Some(2));
}

#[test]
fn a_check_in_lets_its_holder_in_without_a_pass() {
    let hour = 3_600_000_000;
    let t = now().timestamp_micros();
    // The last pass went on a check-in that runs for another hour, outside the schedule.
    let office = schedule("UTC", &EVERY_DAY, "08:00", "09:00");
    let checked_in = IndexGrant {
        checked_in_until: t + hour,
        schedule: Some(office),
        pass_lasts: PassLasts::Span,
        ..pass_grant(1, 1, 1)
    };
    let d = ask(&with_grants([checked_in.clone()]), "front", alice_card());
    assert_eq!((d.reason, d.consume, d.checked_in_until), (Reason::Granted, Consume::default(), Some(t + hour)));
    assert!(d.pass_grants.is_empty());
    // When it ends, the schedule and the count decide again.
    let later = from_micros(t + hour);
    assert_eq!(reason_at(&with_grants([checked_in.clone()]), "front", alice_card(), later), Reason::OutsideSchedule);
    let anytime = IndexGrant { schedule: None, ..checked_in.clone() };
    assert_eq!(reason_at(&with_grants([anytime]), "front", alice_card(), later), Reason::NoPassesLeft);
    // Validity still bounds it.
    let expired = IndexGrant { valid_until: t, ..checked_in.clone() };
    assert_eq!(reason(&with_grants([expired]), "front", alice_card()), Reason::Expired);
    // A running check-in costs nothing, so it wins over a grant with passes left.
    let d = ask(&with_grants([pass_grant(2, 5, 0), checked_in]), "front", alice_card());
    assert_eq!((d.grant, d.consume.pass), (Some(1), false));
}

#[test]
fn a_pass_that_lasts_says_until_when_it_checks_in() {
    let t = now(); // Wednesday 12:00 UTC.
    let ends = |lasts: PassLasts, office: Option<CompiledSchedule>, valid_until: i64| {
        let grant = IndexGrant { pass_lasts: lasts, schedule: office, valid_until, ..pass_grant(1, 3, 0) };
        let d = ask_at(&with_grants([grant]), "front", alice_card(), t);
        assert!(d.consume.pass);
        d.pass_grants[0].checked_in_until
    };
    let day = Some(schedule("UTC", &EVERY_DAY, "04:00", "03:59"));
    assert_eq!(ends(PassLasts::Entry, day.clone(), i64::MAX), i64::MIN, "one entry");
    assert_eq!(ends(PassLasts::Span, day.clone(), i64::MAX), utc("2026-06-11T03:59:00Z").timestamp_micros());
    let afternoon = Some(schedule("UTC", &[Weekday::Wed], "11:00", "13:30"));
    assert_eq!(ends(PassLasts::Span, afternoon, i64::MAX), utc("2026-06-10T13:30:00Z").timestamp_micros());
    assert_eq!(ends(PassLasts::Minutes(90), None, i64::MAX), utc("2026-06-10T13:30:00Z").timestamp_micros());
    let soon = utc("2026-06-10T12:10:00Z").timestamp_micros();
    assert_eq!(ends(PassLasts::Minutes(90), None, soon), soon, "never past the grant's validity");
    // Open around the clock: a day at most.
    let always = Some(schedule("UTC", &EVERY_DAY, "00:00", "24:00"));
    assert_eq!(ends(PassLasts::Span, always, i64::MAX), utc("2026-06-11T12:00:00Z").timestamp_micros());
}

#[test]
fn passes_used_changes_never_lower_the_count() {
    let index = with_grants([pass_grant(1, 3, 0)]);
    let index = index.apply(&[Change::PassesUsed { grant: 1, used: 2, checked_in_until: i64::MIN }]);
    assert_eq!(index.grant(1).unwrap().passes_used, 2);
    assert_eq!(reason(&index, "front", alice_card()), Reason::Granted);
    let index = index.apply(&[Change::PassesUsed { grant: 1, used: 3, checked_in_until: i64::MIN }]);
    assert_eq!(reason(&index, "front", alice_card()), Reason::NoPassesLeft);
    // A late, older read does not give a pass back.
    let index = index.apply(&[
        Change::PassesUsed { grant: 1, used: 1, checked_in_until: i64::MIN },
        Change::PassesUsed { grant: 1, used: 0, checked_in_until: i64::MIN },
    ]);
    assert_eq!(index.grant(1).unwrap().passes_used, 3);
    assert_eq!(reason(&index, "front", alice_card()), Reason::NoPassesLeft);
    // Passes of a grant the index does not know change nothing.
    let index = index.apply(&[Change::PassesUsed { grant: 42, used: 1, checked_in_until: i64::MIN }]);
    assert_eq!(index.grant(42), None);
    assert_eq!(index.stats().grants, 1);
}

// ---------------------------------------------------------------------------------------
// Credentials: backup codes, revocation codes, digests, shadowing
// ---------------------------------------------------------------------------------------

fn ask_digest(index: &Index, key: CredentialKey, digest: &Digest) -> Decision {
    index.decide(&Query { door: "front", key, digest: Some(digest), revocation_code: None, at: now() })
}

#[test]
fn a_backup_code_is_consumed_when_used() {
    let code = sha256(b"ABCD-EFGH-1234");
    let key = CredentialKey::backup_code(&code);
    let mut b = base();
    b.credential(key, with_digest(130, ALICE, CredentialKind::BackupCode, &code));
    b.grant(person_grant(1, ALICE, &[FRONT]));
    let index = b.build();
    let d = ask_digest(&index, key, &code);
    assert_eq!((d.reason, d.credential), (Reason::Granted, Some(130)));
    assert_eq!(d.consume, Consume { pass: false, backup_code: true });
    // With a pass grant, both are used up.
    let index = index.apply(&[Change::Grant(1, Some(pass_grant(1, 2, 0)))]);
    assert_eq!(ask_digest(&index, key, &code).consume, Consume { pass: true, backup_code: true });
    // A card never spends a backup code.
    assert_eq!(ask(&index, "front", alice_card()).consume, Consume { pass: true, backup_code: false });
    // Once used, it is revoked.
    let used = IndexCredential {
        status: CredentialStatus::Used,
        ..with_digest(130, ALICE, CredentialKind::BackupCode, &code)
    };
    let after = index.apply(&[Change::Credential(key, used)]);
    let d = ask_digest(&after, key, &code);
    assert_eq!((d.reason, d.credential, d.consume), (Reason::CredentialRevoked, Some(130), Consume::default()));
    assert_eq!(ask_digest(&index, key, &code).reason, Reason::Granted, "the old snapshot keeps the code");
}

#[test]
fn a_card_with_a_revocation_code_needs_the_current_one() {
    let mut b = base();
    b.credential(card_key(7), IndexCredential { revocation: revocation_hash(Some("7")), ..card(107, ALICE) });
    b.grant(person_grant(1, ALICE, &[FRONT]));
    let index = b.build();
    let with_code = |index: &Index, code| {
        index.decide(&Query { door: "front", key: card_key(7), digest: None, revocation_code: code, at: now() })
    };
    assert_eq!(with_code(&index, None).reason, Reason::RevokedCard);
    assert_eq!(with_code(&index, Some("6")).reason, Reason::RevokedCard);
    assert_eq!(with_code(&index, Some("")).reason, Reason::RevokedCard);
    assert_eq!(with_code(&index, Some("7")).reason, Reason::Granted);
    let d = with_code(&index, Some("6"));
    assert_eq!((d.credential, d.person, d.grant), (Some(107), Some(ALICE), None));
    // The card is re-encoded with code 8: 7 is now a copy of the old card.
    let index = index.apply(&[Change::Credential(
        card_key(7),
        IndexCredential { revocation: revocation_hash(Some("8")), ..card(107, ALICE) },
    )]);
    assert_eq!(with_code(&index, Some("7")).reason, Reason::RevokedCard);
    assert_eq!(with_code(&index, Some("8")).reason, Reason::Granted);
}

// ---------------------------------------------------------------------------------------
// Makerspace stations: a person id and a revocation code instead of a card UID
// ---------------------------------------------------------------------------------------

fn station(index: &Index, door: &str, person_id: &str, code: &str) -> Decision {
    index.decide_member(&MemberQuery { door, person_id, revocation_code: code, at: now() })
}

fn coded_card(pk: Pk, person: Pk, code: &str) -> IndexCredential {
    IndexCredential { revocation: revocation_hash(Some(code)), ..card(pk, person) }
}

/// Alice holds a station card with code "r1" (and her plain card); both may use front and lab.
fn stations() -> Index {
    let mut b = base();
    b.credential(card_key(0x1001), coded_card(150, ALICE, "r1"));
    b.credential(card_key(0xB1), coded_card(151, BOB, "b1"));
    b.grant(person_grant(1, ALICE, &[FRONT, LAB]));
    b.grant(person_grant(2, BOB, &[FRONT, LAB]));
    b.build()
}

#[test]
fn a_station_decides_on_the_person_and_their_current_code() {
    let index = stations();
    let d = station(&index, "front", "alice", "r1");
    assert_eq!(
        (d.reason, d.person, d.credential, d.grant, d.door),
        (Reason::Granted, Some(ALICE), Some(150), Some(1), Some(FRONT))
    );
    let d = station(&index, "front", "alice", "r0");
    assert_eq!((d.reason, d.person, d.grant), (Reason::RevokedCard, Some(ALICE), None));
    // Nobody by that id: its own answer, naming nobody.
    for id in ["carol", "Alice", "alice ", ""] {
        let d = station(&index, "front", id, "r1");
        assert_eq!(
            (d.reason, d.person, d.credential, d.door),
            (Reason::UnknownMember, None, None, Some(FRONT)),
            "{id:?}"
        );
    }
    assert_eq!(station(&index, "back", "alice", "r1").reason, Reason::UnknownDoor);
    // A tool: bob has no laser checkoff, alice has.
    assert_eq!(station(&index, "lab", "bob", "b1").reason, Reason::MissingSkill);
    assert_eq!(station(&index, "lab", "alice", "r1").reason, Reason::Granted);
    // A person without a card with a code is not someone a station knows.
    let plain = base().build();
    assert_eq!(station(&plain, "front", "alice", "r1").reason, Reason::UnknownMember);
}

#[test]
fn a_station_checks_suspension_before_the_code() {
    let index = stations()
        .apply(&[Change::Person(ALICE, Some(IndexPerson { suspended: true, ..person("alice", &["laser"]) }))]);
    assert_eq!(station(&index, "front", "alice", "r1").reason, Reason::PersonSuspended);
    assert_eq!(station(&index, "front", "alice", "wrong").reason, Reason::PersonSuspended);
}

#[test]
fn a_new_card_makes_older_codes_stop_working_at_stations() {
    let index = stations();
    let newer = index.apply(&[Change::Credential(card_key(0x1002), coded_card(160, ALICE, "r2"))]);
    assert_eq!(station(&newer, "front", "alice", "r1").reason, Reason::RevokedCard);
    let d = station(&newer, "front", "alice", "r2");
    assert_eq!((d.reason, d.credential), (Reason::Granted, Some(160)));
    // A late update of the older card (say, revoked now) changes nothing.
    let late = newer.apply(&[Change::Credential(
        card_key(0x1001),
        IndexCredential { status: CredentialStatus::Revoked, ..coded_card(150, ALICE, "r1") },
    )]);
    assert_eq!(station(&late, "front", "alice", "r2").reason, Reason::Granted);
    // Revoking the current card leaves no current code: the older one does not come back.
    let revoked = newer.apply(&[Change::Credential(
        card_key(0x1002),
        IndexCredential { status: CredentialStatus::Revoked, ..coded_card(160, ALICE, "r2") },
    )]);
    assert_eq!(station(&revoked, "front", "alice", "r2").reason, Reason::CredentialRevoked);
    assert_eq!(station(&revoked, "front", "alice", "r1").reason, Reason::RevokedCard);
    // Cards without a code (a key fob) do not change the current code.
    let fob = newer.apply(&[Change::Credential(card_key(0xF0B), card(170, ALICE))]);
    assert_eq!(station(&fob, "front", "alice", "r2").reason, Reason::Granted);
}

#[test]
fn the_builder_and_apply_agree_on_the_current_card() {
    // Loaded in the store's order (revoked first): the newest card counts whatever its status.
    let mut b = base();
    b.credential(
        card_key(0x1002),
        IndexCredential { status: CredentialStatus::Revoked, ..coded_card(160, ALICE, "r2") },
    );
    b.credential(card_key(0x1001), coded_card(150, ALICE, "r1"));
    let built = b.build();
    let applied = base().build().apply(&[
        Change::Credential(card_key(0x1001), coded_card(150, ALICE, "r1")),
        Change::Credential(
            card_key(0x1002),
            IndexCredential { status: CredentialStatus::Revoked, ..coded_card(160, ALICE, "r2") },
        ),
    ]);
    for index in [&built, &applied] {
        assert_eq!(station(index, "front", "alice", "r2").reason, Reason::CredentialRevoked);
        assert_eq!(station(index, "front", "alice", "r1").reason, Reason::RevokedCard);
    }
}

#[test]
fn a_deleted_person_is_unknown_to_stations() {
    let index = stations().apply(&[Change::Person(ALICE, None)]);
    assert_eq!(station(&index, "front", "alice", "r1").reason, Reason::UnknownMember);
    assert_eq!(station(&index, "front", "bob", "b1").reason, Reason::Granted);
    // Someone new under the old id, with a card of their own, is found (not the old card).
    let again = index.apply(&[
        Change::Person(40, Some(person("alice", &[]))),
        Change::Credential(card_key(0x40), coded_card(180, 40, "n1")),
    ]);
    let d = station(&again, "front", "alice", "n1");
    assert_eq!((d.reason, d.person, d.credential), (Reason::NoGrant, Some(40), Some(180)));
}

#[test]
fn a_card_without_a_revocation_code_accepts_any() {
    let index = with_grants([person_grant(1, ALICE, &[FRONT])]);
    for code in [None, Some(""), Some("7"), Some("anything")] {
        let d =
            index.decide(&Query { door: "front", key: alice_card(), digest: None, revocation_code: code, at: now() });
        assert_eq!(d.reason, Reason::Granted, "{code:?}");
    }
}

#[test]
fn secrets_pins_and_backup_codes_are_compared_by_their_full_digest() {
    let secret = sha256(b"correct horse battery staple");
    let pin = pin_digest(b"server key", "1234");
    let code = sha256(b"backup");
    type KeyOf = fn(&Digest) -> CredentialKey;
    let creds: [(KeyOf, Digest, CredentialKind, Pk); 3] = [
        (CredentialKey::secret, secret, CredentialKind::Secret, 140),
        (CredentialKey::pin, pin, CredentialKind::Pin, 141),
        (CredentialKey::backup_code, code, CredentialKind::BackupCode, 142),
    ];
    let mut b = base();
    for (key_of, digest, kind, pk) in creds {
        b.credential(key_of(&digest), with_digest(pk, ALICE, kind, &digest));
    }
    b.grant(person_grant(1, ALICE, &[FRONT]));
    let index = b.build();
    for (key_of, digest, kind, pk) in creds {
        let key = key_of(&digest);
        assert_eq!(ask_digest(&index, key, &digest).reason, Reason::Granted, "{kind:?}");
        // A digest that differs only after the bytes the key keeps: same key, wrong secret.
        let mut other = digest;
        other[31] ^= 0x01;
        assert_eq!(key_of(&other), key, "{kind:?}: the key ignores the last byte");
        let d = ask_digest(&index, key, &other);
        assert_eq!(
            (d.reason, d.credential, d.person, d.door),
            (Reason::UnknownCredential, None, None, Some(FRONT)),
            "{kind:?} {pk}"
        );
    }
    // Same key, different digest, even for a revoked credential: nothing about it leaks.
    let revoked = index.apply(&[Change::Credential(
        CredentialKey::secret(&secret),
        IndexCredential {
            status: CredentialStatus::Revoked,
            ..with_digest(140, ALICE, CredentialKind::Secret, &secret)
        },
    )]);
    let mut other = secret;
    other[20] ^= 0x80;
    assert_eq!(ask_digest(&revoked, CredentialKey::secret(&secret), &other).reason, Reason::UnknownCredential);
    assert_eq!(ask_digest(&revoked, CredentialKey::secret(&secret), &secret).reason, Reason::CredentialRevoked);
}

#[test]
fn secret_keys_keep_the_first_fifteen_digest_bytes() {
    // What the test above relies on: a digest change past byte 15 keeps the key.
    let d = sha256(b"x");
    let mut other = d;
    other[31] ^= 1;
    assert_eq!(CredentialKey::secret(&d), CredentialKey::secret(&other));
    assert_eq!(CredentialKey::pin(&d), CredentialKey::pin(&other));
    assert_eq!(CredentialKey::backup_code(&d), CredentialKey::backup_code(&other));
    other[3] ^= 1;
    assert_ne!(CredentialKey::secret(&d), CredentialKey::secret(&other));
}

#[test]
fn a_revoked_credential_never_shadows_an_active_one_in_the_builder() {
    let key = card_key(0x77);
    let active = card(200, ALICE);
    let revoked = IndexCredential { status: CredentialStatus::Revoked, ..card(201, BOB) };
    let used = IndexCredential { status: CredentialStatus::Used, ..card(202, BOB) };
    let orders = [
        vec![active.clone(), revoked.clone()],
        vec![revoked.clone(), active.clone()],
        vec![revoked.clone(), active.clone(), used.clone()],
        vec![used, revoked, active],
    ];
    for creds in orders {
        let mut b = base();
        b.grant(person_grant(1, ALICE, &[FRONT]));
        creds.iter().for_each(|c| b.credential(key, c.clone()));
        let d = ask(&b.build(), "front", key);
        assert_eq!((d.reason, d.credential, d.person), (Reason::Granted, Some(200), Some(ALICE)), "{creds:?}");
    }
}

#[test]
fn a_revoked_credential_never_shadows_an_active_one_on_apply() {
    let key = card_key(0x77);
    let old = |status| IndexCredential { status, ..card(200, BOB) };
    let new = card(201, ALICE);
    let index = with_grants([person_grant(1, ALICE, &[FRONT]), person_grant(2, BOB, &[FRONT])]);
    let old_active = index.apply(&[Change::Credential(key, old(CredentialStatus::Active))]);
    assert_eq!(ask(&old_active, "front", key).credential, Some(200));
    // The card is re-issued to someone else: old revoked, new added, in either order.
    for changes in [
        [Change::Credential(key, old(CredentialStatus::Revoked)), Change::Credential(key, new.clone())],
        [Change::Credential(key, new.clone()), Change::Credential(key, old(CredentialStatus::Revoked))],
    ] {
        let d = ask(&old_active.apply(&changes), "front", key);
        assert_eq!((d.reason, d.credential, d.person), (Reason::Granted, Some(201), Some(ALICE)));
        // The same in two batches.
        let two = old_active.apply(&changes[..1]).apply(&changes[1..]);
        assert_eq!(ask(&two, "front", key).credential, Some(201));
    }
    // A late update of the revoked one (still revoked) does not hide the new card.
    let reissued = old_active
        .apply(&[Change::Credential(key, old(CredentialStatus::Revoked)), Change::Credential(key, new.clone())]);
    let later = reissued.apply(&[Change::Credential(key, old(CredentialStatus::Revoked))]);
    assert_eq!(ask(&later, "front", key).credential, Some(201));
    // But revoking the live card itself takes effect.
    let revoked = later.apply(&[Change::Credential(key, IndexCredential { status: CredentialStatus::Revoked, ..new })]);
    assert_eq!(reason(&revoked, "front", key), Reason::CredentialRevoked);
}

// ---------------------------------------------------------------------------------------
// Groups
// ---------------------------------------------------------------------------------------

const STAFF: Pk = 50;
const LASER_USERS: Pk = 51;

/// Group `staff` (front door; alice is a member) and `laser-users` (lab and store; nobody).
fn grouped(grants: impl IntoIterator<Item = IndexGrant>) -> Index {
    let mut b = base();
    b.group(STAFF, IndexGroup { id: "staff".into(), doors: Box::new([FRONT]) });
    b.group(LASER_USERS, IndexGroup { id: "laser-users".into(), doors: Box::new([LAB, STORE]) });
    b.member(STAFF, ALICE);
    grants.into_iter().for_each(|g| b.grant(g));
    b.build()
}

#[test]
fn a_group_grant_covers_its_members_only() {
    let index = grouped([grant(1, Subject::Group(STAFF), DoorSet::Doors(Box::new([FRONT, STORE])))]);
    let d = ask(&index, "front", alice_card());
    assert_eq!((d.reason, d.grant, d.person), (Reason::Granted, Some(1), Some(ALICE)));
    assert_eq!(reason(&index, "store", alice_card()), Reason::Granted);
    assert_eq!(reason(&index, "front", bob_card()), Reason::NoGrant);
    // A member of another group gets nothing from it.
    let index = index.apply(&[Change::Membership { group: LASER_USERS, person: BOB, member: true }]);
    assert_eq!(reason(&index, "front", bob_card()), Reason::NoGrant);
}

#[test]
fn a_group_grant_without_doors_covers_the_groups_own_doors() {
    let index = grouped([grant(1, Subject::Group(STAFF), DoorSet::SubjectGroup)]);
    assert_eq!(reason(&index, "front", alice_card()), Reason::Granted);
    assert_eq!(reason(&index, "store", alice_card()), Reason::NoGrant);
    assert_eq!(reason(&index, "front", bob_card()), Reason::NoGrant);
    // ... and follows the group's doors as they change.
    let index = index.apply(&[Change::Group(STAFF, Some(IndexGroup { id: "staff".into(), doors: Box::new([STORE]) }))]);
    assert_eq!(reason(&index, "front", alice_card()), Reason::NoGrant);
    assert_eq!(reason(&index, "store", alice_card()), Reason::Granted);
}

#[test]
fn a_door_group_grant_covers_that_groups_doors() {
    // Staff members may use the laser users' doors.
    let index = grouped([grant(1, Subject::Group(STAFF), DoorSet::Group(LASER_USERS))]);
    assert_eq!(reason(&index, "lab", alice_card()), Reason::Granted);
    assert_eq!(reason(&index, "store", alice_card()), Reason::Granted);
    assert_eq!(reason(&index, "front", alice_card()), Reason::NoGrant);
    // A person's grant may name a door group too.
    let index = grouped([grant(2, Subject::Person(BOB), DoorSet::Group(LASER_USERS))]);
    assert_eq!(reason(&index, "store", bob_card()), Reason::Granted);
    assert_eq!(reason(&index, "front", bob_card()), Reason::NoGrant);
    // A door group that changes its doors changes what both grants cover.
    let index = index
        .apply(&[Change::Group(LASER_USERS, Some(IndexGroup { id: "laser-users".into(), doors: Box::new([FRONT]) }))]);
    assert_eq!(reason(&index, "store", bob_card()), Reason::NoGrant);
    assert_eq!(reason(&index, "front", bob_card()), Reason::Granted);
    // A door group that does not exist covers nothing.
    let index = grouped([grant(3, Subject::Person(ALICE), DoorSet::Group(999))]);
    assert_eq!(reason(&index, "front", alice_card()), Reason::NoGrant);
}

#[test]
fn a_person_grant_without_doors_covers_nothing() {
    let index = grouped([grant(1, Subject::Person(ALICE), DoorSet::SubjectGroup)]);
    for door in ["front", "lab", "store"] {
        assert_eq!(reason(&index, door, alice_card()), Reason::NoGrant, "{door}");
    }
}

#[test]
fn membership_and_group_changes_take_effect_on_apply() {
    let index = grouped([grant(1, Subject::Group(STAFF), DoorSet::SubjectGroup)]);
    let joined = index.apply(&[Change::Membership { group: STAFF, person: BOB, member: true }]);
    assert_eq!(reason(&joined, "front", bob_card()), Reason::Granted);
    let left = joined.apply(&[Change::Membership { group: STAFF, person: ALICE, member: false }]);
    assert_eq!(reason(&left, "front", alice_card()), Reason::NoGrant);
    assert_eq!(reason(&left, "front", bob_card()), Reason::Granted);
    // Deleting the group ends its grants for everyone, even when it comes back.
    let gone = left.apply(&[Change::Group(STAFF, None)]);
    assert_eq!(reason(&gone, "front", bob_card()), Reason::NoGrant);
    let back = gone.apply(&[Change::Group(STAFF, Some(IndexGroup { id: "staff".into(), doors: Box::new([FRONT]) }))]);
    assert_eq!(reason(&back, "front", bob_card()), Reason::NoGrant, "memberships went with the group");
    // A new group grant added later covers members at once.
    let added = index.apply(&[Change::Grant(2, Some(grant(2, Subject::Group(LASER_USERS), DoorSet::SubjectGroup)))]);
    assert_eq!(reason(&added, "store", alice_card()), Reason::NoGrant);
    let added = added.apply(&[Change::Membership { group: LASER_USERS, person: ALICE, member: true }]);
    assert_eq!(ask(&added, "store", alice_card()).grant, Some(2));
}

#[test]
fn a_failing_group_grant_and_a_person_grant_are_ranked_together() {
    let index = grouped([
        IndexGrant { subject: Subject::Group(STAFF), doors: DoorSet::SubjectGroup, ..failing(1, Reason::NoPassesLeft) },
        failing(2, Reason::Expired),
    ]);
    assert_eq!(reason(&index, "front", alice_card()), Reason::NoPassesLeft);
}

// ---------------------------------------------------------------------------------------
// apply: rows removed and moved, snapshot isolation
// ---------------------------------------------------------------------------------------

#[test]
fn apply_removes_renames_and_moves_rows() {
    let index = grouped([person_grant(1, ALICE, &[FRONT]), grant(2, Subject::Group(STAFF), DoorSet::SubjectGroup)]);
    // A grant moved from alice to bob.
    let moved = index.apply(&[Change::Grant(1, Some(person_grant(1, BOB, &[FRONT, STORE])))]);
    assert_eq!(ask(&moved, "front", alice_card()).grant, Some(2));
    assert_eq!(reason(&moved, "store", alice_card()), Reason::NoGrant);
    assert_eq!(reason(&moved, "store", bob_card()), Reason::Granted);
    // A grant turned from a person's into a group's, and back.
    let to_group = index.apply(&[Change::Grant(1, Some(grant(1, Subject::Group(LASER_USERS), DoorSet::SubjectGroup)))]);
    assert_eq!(ask(&to_group, "front", alice_card()).grant, Some(2));
    let to_group = to_group.apply(&[Change::Grant(2, None)]);
    assert_eq!(reason(&to_group, "front", alice_card()), Reason::NoGrant);
    let back = to_group.apply(&[Change::Grant(1, Some(person_grant(1, ALICE, &[FRONT])))]);
    assert_eq!(ask(&back, "front", alice_card()).grant, Some(1));
    // Deleting grants.
    let none = index.apply(&[Change::Grant(1, None), Change::Grant(2, None), Change::Grant(3, None)]);
    assert_eq!(reason(&none, "front", alice_card()), Reason::NoGrant);
    assert_eq!(none.stats().grants, 0);
    // A door renamed keeps its grants under the new id; a deleted door is unknown.
    let renamed = index.apply(&[Change::Door(FRONT, Some(door(FRONT, "main-entrance", None)))]);
    assert_eq!(reason(&renamed, "front", alice_card()), Reason::UnknownDoor);
    assert_eq!(reason(&renamed, "main-entrance", alice_card()), Reason::Granted);
    assert_eq!(renamed.stats().doors, 3);
    let deleted = index.apply(&[Change::Door(FRONT, None)]);
    assert_eq!(reason(&deleted, "front", alice_card()), Reason::UnknownDoor);
    assert_eq!(deleted.stats().doors, 2);
    // A skill added to a door through apply.
    let skilled = index.apply(&[Change::Door(FRONT, Some(door(FRONT, "front", Some("keys"))))]);
    assert_eq!(reason(&skilled, "front", alice_card()), Reason::MissingSkill);
    // A suspended person.
    let suspended =
        index.apply(&[Change::Person(ALICE, Some(IndexPerson { suspended: true, ..person("alice", &[]) }))]);
    assert_eq!(reason(&suspended, "front", alice_card()), Reason::PersonSuspended);
}

/// Every decision an index gives for a small grid of questions.
fn snapshot_decisions(index: &Index) -> Vec<Decision> {
    let keys = [alice_card(), bob_card(), card_key(12), card_key(0xDEAD)];
    let times = [now(), utc("2026-06-14T03:00:00Z"), utc("2030-01-01T00:00:00Z")];
    let mut out = Vec::new();
    for door in ["front", "lab", "store", "new"] {
        for key in keys {
            for at in times {
                out.push(ask_at(index, door, key, at));
            }
        }
    }
    out
}

#[test]
fn apply_leaves_the_old_snapshot_unchanged() {
    let old = grouped([
        IndexGrant { passes: Some(3), ..person_grant(1, ALICE, &[FRONT, LAB]) },
        grant(2, Subject::Group(STAFF), DoorSet::SubjectGroup),
        IndexGrant { valid_until: utc("2027-01-01T00:00:00Z").timestamp_micros(), ..person_grant(3, BOB, &[STORE]) },
    ]);
    let before = snapshot_decisions(&old);
    let stats = old.stats();
    let changes = [
        Change::Person(ALICE, Some(person("alice", &[]))),
        Change::Person(12, Some(person("carol", &[]))),
        Change::Credential(card_key(12), card(112, 12)),
        Change::Credential(bob_card(), IndexCredential { status: CredentialStatus::Revoked, ..card(BOB_CARD, BOB) }),
        Change::Door(STORE, None),
        Change::Door(9, Some(door(9, "new", None))),
        Change::Group(STAFF, Some(IndexGroup { id: "staff".into(), doors: Box::new([FRONT, 9]) })),
        Change::Membership { group: STAFF, person: 12, member: true },
        Change::Membership { group: STAFF, person: ALICE, member: false },
        Change::Grant(3, None),
        Change::Grant(4, Some(person_grant(4, ALICE, &[9]))),
        Change::PassesUsed { grant: 1, used: 3, checked_in_until: i64::MIN },
    ];
    // Applied at once and one by one, the old snapshots never move.
    let next = old.apply(&changes);
    let mut chain = vec![(old.clone(), before.clone())];
    for change in &changes {
        let last = chain.last().unwrap().0.apply(std::slice::from_ref(change));
        let answers = snapshot_decisions(&last);
        chain.push((last, answers));
    }
    assert_eq!(snapshot_decisions(&old), before);
    assert_eq!(old.stats(), stats);
    assert_eq!(old.grant(1).unwrap().passes_used, 0);
    assert!(old.grant(3).is_some() && old.grant(4).is_none());
    assert_eq!(old.person(ALICE).unwrap().skills.len(), 1);
    assert!(old.door("store").is_some() && old.door("new").is_none());
    // The new snapshot did change, in every way asked.
    for index in [&next, &chain.last().unwrap().0] {
        assert_eq!(reason(index, "front", card_key(12)), Reason::Granted);
        assert_eq!(reason(index, "new", card_key(12)), Reason::Granted);
        assert_eq!(reason(index, "front", bob_card()), Reason::CredentialRevoked);
        assert_eq!(reason(index, "store", alice_card()), Reason::UnknownDoor);
        assert_eq!(reason(index, "lab", alice_card()), Reason::MissingSkill);
        assert_eq!(reason(index, "front", alice_card()), Reason::NoPassesLeft);
        assert_eq!(ask(index, "new", alice_card()).grant, Some(4));
        assert_eq!(index.grant(3), None);
        assert_eq!(snapshot_decisions(index), snapshot_decisions(&next));
    }
    // Every intermediate snapshot still answers as it did when it was made.
    for (i, (index, answers)) in chain.iter().enumerate() {
        assert_eq!(&snapshot_decisions(index), answers, "snapshot after {i} changes");
    }
}

#[test]
fn an_empty_index_answers_and_grows_by_apply() {
    let empty = Index::default();
    assert_eq!(ask(&empty, "front", alice_card()).reason, Reason::UnknownDoor);
    let index = empty.apply(&[
        Change::Door(FRONT, Some(door(FRONT, "front", None))),
        Change::Person(ALICE, Some(person("alice", &[]))),
        Change::Credential(alice_card(), card(ALICE_CARD, ALICE)),
        Change::Grant(1, Some(person_grant(1, ALICE, &[FRONT]))),
    ]);
    assert_eq!(reason(&index, "front", alice_card()), Reason::Granted);
    assert_eq!(index.stats(), IndexStats { people: 1, credentials: 1, doors: 1, groups: 0, grants: 1 });
    assert_eq!(empty.stats(), IndexStats { people: 0, credentials: 0, doors: 0, groups: 0, grants: 0 });
}

// ---------------------------------------------------------------------------------------
// Property tests: the index against a reference model, and builder against apply
// ---------------------------------------------------------------------------------------

/// Monday 2026-03-23 00:00 UTC; the worlds live in the two weeks after it, across the
/// spring DST change in Berlin (2026-03-29).
fn base_micros() -> i64 {
    utc("2026-03-23T00:00:00Z").timestamp_micros()
}
const MINUTE: i64 = 60_000_000;
const SPAN_MINUTES: i64 = 14 * 24 * 60;
/// Validity bounds fall on a six-hour grid, so that queries often hit them exactly.
const GRID: i64 = 6 * 60 * MINUTE;
const GRID_POINTS: i64 = SPAN_MINUTES * MINUTE / GRID;

const SCHEDULES: usize = 5;

/// The schedules a random grant may carry, as the index reads them.
fn compiled_schedule(i: usize) -> CompiledSchedule {
    use Weekday::*;
    match i {
        0 => schedule("Europe/Berlin", &[Mon, Tue, Wed, Thu, Fri], "08:00", "18:00"),
        1 => schedule("Europe/Berlin", &[Sat, Sun], "22:00", "02:00"),
        2 => schedule("UTC", &EVERY_DAY, "00:00", "24:00"),
        3 => schedule("America/New_York", &[Wed], "09:30", "10:00"),
        4 => schedule("Europe/Berlin", &EVERY_DAY, "23:00", "01:00"),
        _ => unreachable!(),
    }
}

/// The same schedules, written out by hand on the local clock.
fn model_in_schedule(i: usize, at: DateTime<Utc>) -> bool {
    use chrono::Weekday::*;
    let local = |tz: Tz| {
        let l = at.with_timezone(&tz);
        (l.weekday(), l.hour() * 60 + l.minute())
    };
    let berlin = chrono_tz::Europe::Berlin;
    match i {
        0 => {
            let (day, m) = local(berlin);
            !matches!(day, Sat | Sun) && (8 * 60..18 * 60).contains(&m)
        }
        1 => {
            let (day, m) = local(berlin);
            (matches!(day, Sat | Sun) && m >= 22 * 60) || (matches!(day, Sun | Mon) && m < 2 * 60)
        }
        2 => true,
        3 => {
            let (day, m) = local(chrono_tz::America::New_York);
            day == Wed && (9 * 60 + 30..10 * 60).contains(&m)
        }
        4 => {
            let (_, m) = local(berlin);
            !(60..23 * 60).contains(&m)
        }
        _ => unreachable!(),
    }
}

/// Credential keys: 0-2 cards, 3 a PIN, 4 a secret, 5 a backup code; 6 is never issued.
const KEYS: u8 = 6;

fn key_kind(k: u8) -> CredentialKind {
    match k {
        0..=2 => CredentialKind::Card,
        3 => CredentialKind::Pin,
        4 => CredentialKind::Secret,
        _ => CredentialKind::BackupCode,
    }
}

/// The digest of key `k`'s secret (a credential's key is derived from its digest, so two
/// credentials with one key have one digest).
fn model_digest(k: u8) -> Digest {
    [k + 1; 32]
}

fn model_key(k: u8) -> CredentialKey {
    let d = model_digest(k);
    match key_kind(k) {
        CredentialKind::Card => CredentialKey::card_bytes(&[0x04, k]),
        CredentialKind::Pin => CredentialKey::pin(&d),
        CredentialKind::Secret => CredentialKey::secret(&d),
        CredentialKind::BackupCode => CredentialKey::backup_code(&d),
    }
}

#[derive(Debug, Clone)]
struct MDoor {
    pk: Pk,
    skill: Option<&'static str>,
    lockdown: bool,
}

#[derive(Debug, Clone)]
struct MPerson {
    pk: Pk,
    suspended: bool,
    lockdown_exempt: bool,
    skills: Vec<&'static str>,
}

#[derive(Debug, Clone)]
struct MGroup {
    pk: Pk,
    doors: Vec<Pk>,
}

#[derive(Debug, Clone)]
struct MCred {
    pk: Pk,
    key: u8,
    person: Option<Pk>,
    status: CredentialStatus,
    /// The revocation code of a card.
    code: Option<&'static str>,
}

#[derive(Debug, Clone)]
struct MGrant {
    pk: Pk,
    subject: Subject,
    doors: DoorSet,
    schedule: Option<usize>,
    from: i64,
    until: i64,
    passes: Option<u32>,
    used: u32,
}

/// A small world, as plain rows.
#[derive(Debug, Clone)]
struct World {
    doors: Vec<MDoor>,
    people: Vec<MPerson>,
    groups: Vec<MGroup>,
    members: Vec<(Pk, Pk)>,
    creds: Vec<MCred>,
    grants: Vec<MGrant>,
}

#[derive(Debug, Clone)]
struct MQuery {
    /// Door pks 1-3 may exist, 4 never does.
    door: Pk,
    key: u8,
    /// Whether a secret's digest is the right one (the wrong one has the same key).
    digest_ok: bool,
    code: Option<&'static str>,
    at: i64,
}

fn door_id(pk: Pk) -> String {
    format!("door-{pk}")
}

fn mdoor(d: &MDoor) -> IndexDoor {
    IndexDoor { lockdown: d.lockdown, ..door(d.pk, &door_id(d.pk), d.skill) }
}

fn mperson(p: &MPerson) -> IndexPerson {
    IndexPerson {
        suspended: p.suspended,
        lockdown_exempt: p.lockdown_exempt,
        ..person(&format!("p{}", p.pk), &p.skills)
    }
}

fn mgroup(g: &MGroup) -> IndexGroup {
    IndexGroup { id: format!("g{}", g.pk).into(), doors: g.doors.clone().into() }
}

fn mcred(c: &MCred) -> (CredentialKey, IndexCredential) {
    let kind = key_kind(c.key);
    let cred = IndexCredential {
        pk: c.pk,
        person: c.person,
        kind,
        status: c.status,
        revocation: revocation_hash(c.code),
        digest: (kind != CredentialKind::Card).then(|| Box::new(model_digest(c.key))),
    };
    (model_key(c.key), cred)
}

fn mgrant(g: &MGrant) -> IndexGrant {
    IndexGrant {
        pk: g.pk,
        subject: g.subject,
        doors: g.doors.clone(),
        schedule: g.schedule.map(compiled_schedule),
        valid_from: g.from,
        valid_until: g.until,
        passes: g.passes,
        passes_used: g.used,
        pass_lasts: lintel_proto::PassLasts::Entry,
        checked_in_until: i64::MIN,
    }
}

fn build(w: &World) -> Index {
    let mut b = IndexBuilder::default();
    w.doors.iter().for_each(|d| b.door(mdoor(d)));
    w.people.iter().for_each(|p| b.person(p.pk, mperson(p)));
    w.groups.iter().for_each(|g| b.group(g.pk, mgroup(g)));
    w.members.iter().for_each(|&(g, p)| b.member(g, p));
    for c in &w.creds {
        let (key, cred) = mcred(c);
        b.credential(key, cred);
    }
    w.grants.iter().for_each(|g| b.grant(mgrant(g)));
    b.build()
}

fn decide(index: &Index, q: &MQuery) -> Decision {
    let door = door_id(q.door);
    let digest = {
        let mut d = model_digest(q.key);
        if !q.digest_ok {
            d[31] ^= 0xFF;
        }
        d
    };
    let is_card = key_kind(q.key) == CredentialKind::Card;
    index.decide(&Query {
        door: &door,
        key: model_key(q.key),
        digest: (!is_card).then_some(&digest),
        revocation_code: q.code,
        at: from_micros(q.at),
    })
}

/// What the model says: the reason, the grant that allows entry, and what it uses up.
fn model_decide(w: &World, q: &MQuery) -> (Reason, Option<Pk>, Consume) {
    let deny = |r| (r, None, Consume::default());
    let Some(door) = w.doors.iter().find(|d| d.pk == q.door) else {
        return deny(Reason::UnknownDoor);
    };
    // Of the credentials with this key, the active one (the world has at most one).
    let with_key: Vec<&MCred> = w.creds.iter().filter(|c| c.key == q.key).collect();
    let Some(cred) = with_key.iter().find(|c| c.status == CredentialStatus::Active).or(with_key.first()) else {
        return deny(Reason::UnknownCredential);
    };
    let kind = key_kind(cred.key);
    if kind != CredentialKind::Card && !q.digest_ok {
        return deny(Reason::UnknownCredential);
    }
    if cred.status != CredentialStatus::Active {
        return deny(Reason::CredentialRevoked);
    }
    if kind == CredentialKind::Card && cred.code.is_some() && cred.code != q.code {
        return deny(Reason::RevokedCard);
    }
    let Some(person) = cred.person.and_then(|pk| w.people.iter().find(|p| p.pk == pk)) else {
        return deny(Reason::CredentialRevoked);
    };
    if person.suspended {
        return deny(Reason::PersonSuspended);
    }
    if door.lockdown && !person.lockdown_exempt {
        return deny(Reason::Lockdown);
    }
    if door.skill.is_some_and(|s| !person.skills.contains(&s)) {
        return deny(Reason::MissingSkill);
    }
    let group_has_door = |g: Pk| w.groups.iter().any(|x| x.pk == g && x.doors.contains(&door.pk));
    let applies = |g: &&MGrant| {
        let covers = match &g.doors {
            DoorSet::Doors(ds) => ds.contains(&door.pk),
            DoorSet::Group(dg) => group_has_door(*dg),
            DoorSet::SubjectGroup => matches!(g.subject, Subject::Group(sg) if group_has_door(sg)),
        };
        let concerns = match g.subject {
            Subject::Person(p) => p == person.pk,
            Subject::Group(sg) => w.members.contains(&(sg, person.pk)),
        };
        covers && concerns
    };
    let check = |g: &MGrant| {
        if q.at < g.from {
            Err(Reason::NotYetValid)
        } else if q.at >= g.until {
            Err(Reason::Expired)
        } else if g.schedule.is_some_and(|s| !model_in_schedule(s, from_micros(q.at))) {
            Err(Reason::OutsideSchedule)
        } else if g.passes.is_some_and(|p| g.used >= p) {
            Err(Reason::NoPassesLeft)
        } else {
            Ok(())
        }
    };
    let mut allowing = Vec::new();
    let mut failures = Vec::new();
    for g in w.grants.iter().filter(applies) {
        match check(g) {
            Ok(()) => allowing.push(g),
            Err(r) => failures.push(r),
        }
    }
    if let Some(g) = allowing.iter().min_by_key(|g| (g.passes.is_some(), g.until, g.pk)) {
        let consume = Consume { pass: g.passes.is_some(), backup_code: kind == CredentialKind::BackupCode };
        return (Reason::Granted, Some(g.pk), consume);
    }
    for r in [Reason::NoPassesLeft, Reason::OutsideSchedule, Reason::NotYetValid, Reason::Expired] {
        if failures.contains(&r) {
            return deny(r);
        }
    }
    deny(Reason::NoGrant)
}

fn skill() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["laser", "weld"])
}

fn grid_time() -> impl Strategy<Value = i64> {
    (0..=GRID_POINTS).prop_map(|i| base_micros() + i * GRID)
}

fn query_time() -> impl Strategy<Value = i64> {
    prop_oneof![
        (0..SPAN_MINUTES).prop_map(|m| base_micros() + m * MINUTE),
        grid_time(),
        grid_time().prop_map(|t| t - 1),
    ]
}

fn bound(open: i64) -> impl Strategy<Value = i64> {
    prop_oneof![2 => Just(open), 1 => grid_time()]
}

fn mgrant_strategy() -> impl Strategy<Value = MGrant> {
    (
        prop_oneof![2 => (1..=5 as Pk).prop_map(Subject::Person), 1 => (1..=3 as Pk).prop_map(Subject::Group)],
        prop_oneof![
            1 => prop::collection::vec(1..=4 as Pk, 0..=1).prop_map(|d| DoorSet::Doors(d.into())),
            4 => prop::collection::vec(1..=3 as Pk, 1..=3).prop_map(|d| DoorSet::Doors(d.into())),
            1 => (1..=3 as Pk).prop_map(DoorSet::Group),
            1 => Just(DoorSet::SubjectGroup),
        ],
        prop::option::weighted(0.3, 0..SCHEDULES),
        bound(i64::MIN),
        bound(i64::MAX),
        prop::option::weighted(0.3, 0..=3u32),
        0..=3u32,
    )
        .prop_map(|(subject, doors, schedule, from, until, passes, used)| MGrant {
            pk: 0,
            subject,
            doors,
            schedule,
            from,
            until,
            passes,
            used,
        })
}

fn world_strategy() -> impl Strategy<Value = World> {
    let cred = || {
        let status = prop_oneof![
            10 => Just(CredentialStatus::Active),
            1 => Just(CredentialStatus::Revoked),
            1 => Just(CredentialStatus::Used),
        ];
        (prop::option::weighted(0.97, 1..=5 as Pk), status, prop::option::weighted(0.2, skill()))
    };
    // Per key: mostly one credential, sometimes none, sometimes two (a re-issued card).
    let holders = prop_oneof![
        1 => Just(vec![]),
        8 => prop::collection::vec(cred(), 1),
        2 => prop::collection::vec(cred(), 2),
    ];
    (
        prop::collection::vec((prop::option::weighted(0.2, skill()), prop::bool::weighted(0.1)), 3),
        prop::collection::vec(
            (prop::bool::weighted(0.08), prop::bool::weighted(0.3), prop::collection::vec(skill(), 0..=2)),
            4..=5,
        ),
        prop::collection::vec(prop::collection::vec(1..=4 as Pk, 0..=3), 0..=3),
        prop::collection::vec((1..=3 as Pk, 1..=5 as Pk), 0..=8),
        prop::collection::vec(holders, KEYS as usize),
        prop::collection::vec(mgrant_strategy(), 2..=16),
    )
        .prop_map(|(doors, people, groups, members, creds, grants)| {
            let mut active_keys = HashSet::new();
            World {
                doors: doors
                    .into_iter()
                    .zip(1..)
                    .map(|((skill, lockdown), pk)| MDoor { pk, skill, lockdown })
                    .collect(),
                people: people
                    .into_iter()
                    .zip(1..)
                    .map(|((suspended, lockdown_exempt, skills), pk)| MPerson {
                        pk,
                        suspended,
                        lockdown_exempt,
                        skills,
                    })
                    .collect(),
                groups: groups.into_iter().zip(1..).map(|(doors, pk)| MGroup { pk, doors }).collect(),
                members,
                creds: creds
                    .into_iter()
                    .zip(0..)
                    .flat_map(|(holders, key)| holders.into_iter().map(move |h| (key, h)))
                    .zip(100..)
                    .map(|((key, (person, mut status, code)), pk)| {
                        // At most one active credential per key: the store's invariant.
                        if status == CredentialStatus::Active && !active_keys.insert(key) {
                            status = CredentialStatus::Revoked;
                        }
                        // Revocation codes are a card's ("laser"/"weld" serve as codes here).
                        let code = code.filter(|_| key_kind(key) == CredentialKind::Card);
                        MCred { pk, key, person, status, code }
                    })
                    .collect(),
                grants: grants.into_iter().zip(1000..).map(|(g, pk)| MGrant { pk, ..g }).collect(),
            }
        })
}

fn query_strategy() -> impl Strategy<Value = MQuery> {
    let door = prop_oneof![9 => 1..=3 as Pk, 1 => Just(4)];
    let key = prop_oneof![19 => 0..KEYS, 1 => Just(KEYS)];
    (door, key, prop::bool::weighted(0.9), prop::option::weighted(0.5, skill()), query_time())
        .prop_map(|(door, key, digest_ok, code, at)| MQuery { door, key, digest_ok, code, at })
}

/// A small deterministic generator for the order of changes (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }
}

/// The world as histories of changes, one per row (credentials share one history so that
/// their relative order stays the builder's), with detours that end where the builder is:
/// earlier versions of rows, rows that come and go, passes read late.
fn change_scripts(w: &World, rng: &mut Rng) -> Vec<Vec<Change>> {
    let mut scripts: Vec<Vec<Change>> = Vec::new();
    for d in &w.doors {
        let mut s = Vec::new();
        if rng.one_in(3) {
            s.push(Change::Door(d.pk, Some(door(d.pk, &format!("old-{}", d.pk), Some("weld")))));
        }
        s.push(Change::Door(d.pk, Some(mdoor(d))));
        scripts.push(s);
    }
    scripts.push(vec![Change::Door(9, Some(door(9, "temporary", None))), Change::Door(9, None)]);
    for p in &w.people {
        let mut s = Vec::new();
        if rng.one_in(3) {
            s.push(Change::Person(p.pk, Some(IndexPerson { suspended: !p.suspended, ..person("old", &["laser"]) })));
        }
        s.push(Change::Person(p.pk, Some(mperson(p))));
        scripts.push(s);
    }
    scripts.push(vec![Change::Person(8, Some(person("gone", &[]))), Change::Person(8, None)]);
    for g in &w.groups {
        let mut s = Vec::new();
        if rng.one_in(3) {
            s.push(Change::Group(g.pk, Some(IndexGroup { id: "old".into(), doors: Box::new([1, 2, 3]) })));
        }
        s.push(Change::Group(g.pk, Some(mgroup(g))));
        scripts.push(s);
    }
    scripts.push(vec![
        Change::Group(9, Some(IndexGroup { id: "temporary".into(), doors: Box::new([1, 2, 3]) })),
        Change::Membership { group: 9, person: 1, member: true },
        Change::Group(9, None),
    ]);
    for &(g, p) in &w.members {
        scripts.push(vec![Change::Membership { group: g, person: p, member: true }]);
    }
    for g in 1..=3 {
        for p in 1..=5 {
            if !w.members.contains(&(g, p)) && rng.one_in(6) {
                scripts.push(vec![
                    Change::Membership { group: g, person: p, member: true },
                    Change::Membership { group: g, person: p, member: false },
                ]);
            }
        }
    }
    let mut creds = Vec::new();
    for c in &w.creds {
        let (key, cred) = mcred(c);
        if rng.one_in(3) {
            // An earlier, inactive version of the same row.
            let status = if rng.one_in(2) { CredentialStatus::Revoked } else { CredentialStatus::Used };
            creds.push(Change::Credential(key, IndexCredential { status, person: Some(1), ..cred.clone() }));
        }
        creds.push(Change::Credential(key, cred));
    }
    scripts.push(creds);
    for g in &w.grants {
        let last = mgrant(g);
        let mut s = Vec::new();
        if rng.one_in(3) {
            let subject = if rng.one_in(2) { Subject::Group(1) } else { Subject::Person(1) };
            s.push(Change::Grant(g.pk, Some(IndexGrant { subject, doors: DoorSet::SubjectGroup, ..last.clone() })));
        }
        if g.used > 0 && rng.one_in(2) {
            // Passes used reach the index after the grant; a late read never lowers them.
            s.push(Change::Grant(g.pk, Some(IndexGrant { passes_used: 0, ..last.clone() })));
            s.push(Change::PassesUsed { grant: g.pk, used: g.used, checked_in_until: i64::MIN });
            s.push(Change::PassesUsed { grant: g.pk, used: g.used - 1, checked_in_until: i64::MIN });
        } else {
            s.push(Change::Grant(g.pk, Some(last)));
        }
        scripts.push(s);
    }
    scripts.push(vec![
        Change::Grant(999, Some(grant(999, Subject::Group(1), DoorSet::Doors(Box::new([1, 2, 3]))))),
        Change::PassesUsed { grant: 999, used: 5, checked_in_until: i64::MIN },
        Change::Grant(999, None),
    ]);
    scripts
}

/// Interleaves the scripts at random (keeping each one's order) and cuts them into batches.
fn batches(mut scripts: Vec<Vec<Change>>, rng: &mut Rng) -> Vec<Vec<Change>> {
    scripts.retain(|s| !s.is_empty());
    scripts.iter_mut().for_each(|s| s.reverse());
    let mut out = vec![Vec::new()];
    while !scripts.is_empty() {
        let i = rng.below(scripts.len());
        out.last_mut().unwrap().push(scripts[i].pop().unwrap());
        if scripts[i].is_empty() {
            scripts.swap_remove(i);
        }
        if rng.one_in(4) {
            out.push(Vec::new());
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decisions_match_the_reference_model(
        world in world_strategy(),
        queries in prop::collection::vec(query_strategy(), 1..24),
    ) {
        let index = build(&world);
        for q in &queries {
            let d = decide(&index, q);
            let expected = model_decide(&world, q);
            prop_assert_eq!((d.reason, d.grant, d.consume), expected, "query {:?} -> {:?}", q, d);
            if d.reason != Reason::UnknownDoor {
                prop_assert_eq!(d.door, Some(q.door));
            }
        }
    }

    #[test]
    fn building_at_once_equals_applying_changes(world in world_strategy(), seed in any::<u64>()) {
        let built = build(&world);
        let mut rng = Rng(seed);
        let scripts = change_scripts(&world, &mut rng);
        let sample: Vec<MQuery> = (0..24)
            .map(|i| MQuery {
                door: 1 + (i % 4) as Pk,
                key: (i % (KEYS as usize + 1)) as u8,
                digest_ok: true,
                code: None,
                at: base_micros() + (i as i64) * 13 * GRID / 3,
            })
            .collect();
        let mut applied = if rng.one_in(2) { Index::default() } else { IndexBuilder::default().build() };
        for batch in batches(scripts, &mut rng) {
            // Applying a batch leaves the snapshot it started from as it was.
            let before: Vec<Decision> = sample.iter().map(|q| decide(&applied, q)).collect();
            let next = applied.apply(&batch);
            let after: Vec<Decision> = sample.iter().map(|q| decide(&applied, q)).collect();
            prop_assert_eq!(before, after);
            applied = next;
        }
        prop_assert_eq!(applied.stats(), built.stats());
        for g in &world.grants {
            prop_assert_eq!(applied.grant(g.pk), built.grant(g.pk));
        }
        prop_assert_eq!(applied.grant(999), None);
        let times = [0, 7 * GRID + MINUTE, 25 * GRID, 26 * GRID - 1, 31 * GRID + 17 * MINUTE, GRID_POINTS * GRID];
        for door in 1..=4 {
            for key in 0..=KEYS {
                for digest_ok in [true, false] {
                    for code in [None, Some("laser"), Some("weld")] {
                        for t in times {
                            let q = MQuery { door, key, digest_ok, code, at: base_micros() + t };
                            let (a, b) = (decide(&applied, &q), decide(&built, &q));
                            prop_assert_eq!(&a, &b, "query {:?}", q);
                            let model = model_decide(&world, &q);
                            prop_assert_eq!((b.reason, b.grant, b.consume), model, "query {:?}", q);
                        }
                    }
                }
            }
        }
    }
}

/// What each door's offline list is built from: its cards and, per card, the grants' times
/// (a count of passes used does not matter: grants that count passes are left out).
fn offline_rights(index: &Index) -> BTreeMap<Box<str>, String> {
    let rights = |id: &str| {
        let cards = index.offline_cards(&[id]);
        let cards: Vec<_> = cards
            .iter()
            .map(|c| {
                let grants: Vec<_> = c
                    .doors
                    .iter()
                    .flat_map(|(_, grants)| {
                        grants.iter().map(|g| (g.pk, g.valid_from, g.valid_until, format!("{:?}", g.schedule)))
                    })
                    .collect();
                (c.credential, c.uid.clone(), c.has_revocation_code, grants)
            })
            .collect();
        let codes: Vec<_> = index
            .offline_backup_codes(&[id])
            .iter()
            .map(|c| {
                let grants: Vec<_> = c
                    .doors
                    .iter()
                    .flat_map(|(_, grants)| {
                        grants.iter().map(|g| (g.pk, g.valid_from, g.valid_until, format!("{:?}", g.schedule)))
                    })
                    .collect();
                (c.credential, c.digest, grants)
            })
            .collect();
        format!("{cards:?} {codes:?}")
    };
    index.doors_by_id.keys().map(|id| (id.clone(), rights(id))).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A door left out of what a change touches keeps exactly the cards and grants it had:
    /// a controller with only such doors need not build its list again.
    #[test]
    fn changes_touch_every_door_whose_offline_list_they_alter(world in world_strategy(), seed in any::<u64>()) {
        let mut rng = Rng(seed);
        let scripts = change_scripts(&world, &mut rng);
        let mut applied = build(&World { grants: Vec::new(), ..world.clone() });
        for batch in batches(scripts, &mut rng) {
            let next = applied.apply(&batch);
            let touched = applied.offline_doors_touched(&next, &batch);
            let (before, after) = (offline_rights(&applied), offline_rights(&next));
            for (door, rights) in &after {
                if !touched.concerns([door.as_ref()].into_iter()) {
                    prop_assert_eq!(before.get(door), Some(rights), "door {} changed untouched by {:?}", door, batch);
                }
            }
            applied = next;
        }
    }
}

#[test]
fn a_pass_used_or_a_pin_touches_no_offline_list() {
    let index = with_grants([person_grant(1, ALICE, &[FRONT])]);
    let used = [Change::PassesUsed { grant: 1, used: 1, checked_in_until: i64::MIN }];
    assert_eq!(index.offline_doors_touched(&index.apply(&used), &used), OfflineDoors::none());
    let digest = pin_digest(&[1; 32], "1234");
    let pin = [Change::Credential(CredentialKey::pin(&digest), with_digest(200, ALICE, CredentialKind::Pin, &digest))];
    assert_eq!(index.offline_doors_touched(&index.apply(&pin), &pin), OfflineDoors::none());
    let revoked = [Change::Credential(
        alice_card(),
        IndexCredential { status: CredentialStatus::Revoked, ..card(ALICE_CARD, ALICE) },
    )];
    let touched = index.offline_doors_touched(&index.apply(&revoked), &revoked);
    assert_eq!(
        touched,
        OfflineDoors::Some(["front".into()].into_iter().collect()),
        "Alice's card opens the front door only"
    );
    let door = [Change::Door(STORE, None)];
    assert_eq!(index.offline_doors_touched(&index.apply(&door), &door), OfflineDoors::All);
}

#[test]
fn a_backup_code_issued_or_used_touches_the_doors_it_opens() {
    let index = with_grants([person_grant(1, ALICE, &[FRONT])]);
    let code = sha256(b"11111222223333344444");
    let key = CredentialKey::backup_code(&code);
    let front = OfflineDoors::Some(["front".into()].into_iter().collect());
    let issued = [Change::Credential(key, with_digest(210, ALICE, CredentialKind::BackupCode, &code))];
    let with_code = index.apply(&issued);
    assert_eq!(index.offline_doors_touched(&with_code, &issued), front);
    assert_eq!(with_code.offline_backup_codes(&["front"]).len(), 1);
    let used = [Change::Credential(
        key,
        IndexCredential {
            status: CredentialStatus::Used,
            ..with_digest(210, ALICE, CredentialKind::BackupCode, &code)
        },
    )];
    let after = with_code.apply(&used);
    assert_eq!(with_code.offline_doors_touched(&after, &used), front, "a used code leaves the list");
    assert!(after.offline_backup_codes(&["front"]).is_empty());
}

/// Guards the generators: the random worlds and queries must reach every reason the
/// core decides, or the comparison with the model above would prove little.
#[test]
fn random_worlds_reach_every_reason() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut counts: HashMap<Reason, usize> = HashMap::new();
    let mut pass_grants = 0;
    let mut backup_codes = 0;
    let mut choices = 0;
    for _ in 0..400 {
        let world = world_strategy().new_tree(&mut runner).unwrap().current();
        let index = build(&world);
        for _ in 0..20 {
            let q = query_strategy().new_tree(&mut runner).unwrap().current();
            let d = decide(&index, &q);
            *counts.entry(d.reason).or_default() += 1;
            pass_grants += usize::from(d.consume.pass);
            backup_codes += usize::from(d.consume.backup_code);
            if let Some(chosen) = d.grant {
                // Another grant would have let them in too: the index had to choose.
                let mut without = world.clone();
                without.grants.retain(|g| g.pk != chosen);
                choices += usize::from(model_decide(&without, &q).0 == Reason::Granted);
            }
        }
    }
    eprintln!(
        "8000 random questions: {counts:?}; {pass_grants} passes, {backup_codes} backup codes, {choices} choices"
    );
    for r in Reason::ALL.into_iter().filter(|r| {
        !matches!(
            r,
            Reason::RateLimited
                | Reason::UnknownMember
                | Reason::ListExpired
                | Reason::CrmUnavailable
                | Reason::AntiPassback
        )
    }) {
        assert!(counts.get(&r).copied().unwrap_or(0) >= 20, "{r:?} is rare: {counts:?}");
    }
    assert!(pass_grants >= 20 && backup_codes >= 20 && choices >= 20, "{pass_grants} {backup_codes} {choices}");
}
