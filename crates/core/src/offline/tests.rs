//! The offline list against the online decision: whatever the list lets a controller
//! decide must be what lintel itself would have decided at that moment.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use lintel_proto::{CredentialKind, CredentialStatus, FailMode, Reason, Schedule, ScheduleRule, Weekday};

use super::*;
use crate::index::{
    DoorSet, Index, IndexBuilder, IndexCredential, IndexDoor, IndexGrant, IndexGroup, IndexPerson, Query, Subject,
};
use crate::{Change, CompiledSchedule, CredentialKey, revocation_hash};

const FRONT: i64 = 1;
const THREE_DAYS: i64 = 3 * 86_400;
/// 2026-03-28T15:00:00.5Z and 2026-03-29T03:00:00.5Z, in microseconds.
const EVE_FROM: i64 = 1_774_710_000_500_000;
const EVE_UNTIL: i64 = 1_774_753_200_500_000;
const LAB: i64 = 2;

fn utc(s: &str) -> i64 {
    s.parse::<DateTime<Utc>>().unwrap().timestamp()
}

fn grant(pk: i64, subject: Subject, doors: DoorSet, schedule: Option<Schedule>) -> IndexGrant {
    IndexGrant {
        pk,
        subject,
        doors,
        schedule: schedule.map(|s| CompiledSchedule::compile(&s).unwrap()),
        valid_from: i64::MIN,
        valid_until: i64::MAX,
        passes: None,
        passes_used: 0,
        pass_lasts: lintel_proto::PassLasts::Entry,
        checked_in_until: i64::MIN,
    }
}

fn card(pk: i64, person: i64, revocation: Option<&str>) -> IndexCredential {
    IndexCredential {
        pk,
        person: Some(person),
        kind: CredentialKind::Card,
        status: CredentialStatus::Active,
        revocation: revocation_hash(revocation),
        digest: None,
    }
}

fn person(id: &str, skills: &[&str]) -> IndexPerson {
    IndexPerson {
        id: id.into(),
        suspended: false,
        lockdown_exempt: false,
        skills: skills.iter().map(|s| (*s).into()).collect(),
    }
}

/// Ann: weekday office hours in Berlin through the "staff" group, plus the lab (she has the
/// skill). Bo: the front door always, his own grant, but he carries an old revocation
/// code. Cy: a 10-pass grant only (not offline). Di: suspended.
fn world() -> Index {
    let mut b = IndexBuilder::default();
    b.door(IndexDoor { pk: FRONT, id: "front".into(), required_skill: None, lockdown: false });
    b.door(IndexDoor { pk: LAB, id: "lab".into(), required_skill: Some("laser".into()), lockdown: false });
    b.door(IndexDoor { pk: 3, id: "elsewhere".into(), required_skill: None, lockdown: false });
    b.person(10, person("ann", &["laser"]));
    b.person(11, person("bo", &[]));
    b.person(12, person("cy", &[]));
    b.person(13, IndexPerson { suspended: true, ..person("di", &[]) });
    b.group(50, IndexGroup { id: "staff".into(), doors: vec![FRONT, LAB].into() });
    b.member(50, 10);
    b.member(50, 13);
    let office = Schedule {
        tz: "Europe/Berlin".into(),
        rules: vec![ScheduleRule {
            weekdays: vec![Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri],
            from: "08:00".into(),
            to: "18:00".into(),
        }],
    };
    b.grant(grant(1, Subject::Group(50), DoorSet::SubjectGroup, Some(office)));
    b.grant(grant(2, Subject::Person(11), DoorSet::Doors(vec![FRONT].into()), None));
    b.grant(IndexGrant { passes: Some(10), ..grant(3, Subject::Person(12), DoorSet::Doors(vec![FRONT].into()), None) });
    b.credential(CredentialKey::card("04A1B2C3").unwrap(), card(100, 10, None));
    b.credential(CredentialKey::card("04B0B0B0").unwrap(), card(101, 11, Some("R2")));
    b.credential(CredentialKey::card("04C0C0C0").unwrap(), card(102, 12, None));
    b.credential(CredentialKey::card("04D0D0D0").unwrap(), card(103, 13, None));
    // Eve: the front door within a validity window whose ends fall on half seconds.
    b.person(14, person("eve", &[]));
    b.grant(IndexGrant {
        valid_from: EVE_FROM,
        valid_until: EVE_UNTIL,
        ..grant(4, Subject::Person(14), DoorSet::Doors(vec![FRONT].into()), None)
    });
    b.credential(CredentialKey::card("04E0E0E0").unwrap(), card(104, 14, None));
    // The front door's backup codes (one used), one of Ann's (office hours), one of Cy's
    // (passes only: never offline).
    b.person(15, person("backup-front", &[]));
    b.grant(grant(5, Subject::Person(15), DoorSet::Doors(vec![FRONT].into()), None));
    b.credential(CredentialKey::backup_code(&backup_code_digest(FRONT_CODE)), code(105, 15, FRONT_CODE));
    let used = IndexCredential { status: CredentialStatus::Used, ..code(106, 15, USED_CODE) };
    b.credential(CredentialKey::backup_code(&backup_code_digest(USED_CODE)), used);
    b.credential(CredentialKey::backup_code(&backup_code_digest(ANN_CODE)), code(107, 10, ANN_CODE));
    b.credential(CredentialKey::backup_code(&backup_code_digest(CY_CODE)), code(108, 12, CY_CODE));
    b.build()
}

const FRONT_CODE: &str = "11111-22222-33333-44444";
const USED_CODE: &str = "55555-22222-33333-44444";
const ANN_CODE: &str = "66666-22222-33333-44444";
const CY_CODE: &str = "77777-22222-33333-44444";

fn code(pk: i64, person: i64, code: &str) -> IndexCredential {
    IndexCredential {
        pk,
        person: Some(person),
        kind: CredentialKind::BackupCode,
        status: CredentialStatus::Active,
        revocation: 0,
        digest: Some(Box::new(backup_code_digest(code))),
    }
}

fn doors() -> Vec<ListDoor> {
    vec![
        ListDoor {
            id: "front".into(),
            fail_mode: FailMode::Secure,
            open_seconds: 5,
            max_age_seconds: THREE_DAYS,
            zone: None,
        },
        ListDoor {
            id: "lab".into(),
            fail_mode: FailMode::Safe,
            open_seconds: 3,
            max_age_seconds: THREE_DAYS,
            zone: None,
        },
    ]
}

fn list_at(index: &Index, issued_at: i64) -> AllowList {
    list_salted(index, issued_at, [9; 16])
}

fn list_salted(index: &Index, issued_at: i64, salt: [u8; 16]) -> AllowList {
    let doors = doors();
    let cards = index.offline_cards(&["front", "lab"]);
    let codes = HashMap::from([(101, "R2".to_owned())]);
    let backup_codes = index.offline_backup_codes(&["front", "lab"]);
    build_list(&ListInput {
        controller: "ctl-1",
        version: 7,
        issued_at,
        salt,
        doors: &doors,
        cards: &cards,
        revocation_codes: &codes,
        codes: &backup_codes,
        credential_id: |pk| format!("c-{pk}"),
    })
}

#[test]
fn unused_backup_codes_are_listed_by_salted_hash() {
    let list = list_at(&world(), utc("2026-06-10T10:05:00Z"));
    let mut listed: Vec<&str> = list.codes.iter().map(|c| c.credential.as_str()).collect();
    listed.sort_unstable();
    // The used code is gone, and Cy's opens nothing without passes.
    assert_eq!(listed, ["c-105", "c-107"]);
    let text = serde_json::to_string(&list).unwrap();
    for secret in [FRONT_CODE, &FRONT_CODE.replace('-', ""), &hex::encode(backup_code_digest(FRONT_CODE))] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let other_salt = list_salted(&world(), utc("2026-06-10T10:05:00Z"), [8; 16]);
    assert_ne!(other_salt.codes[0].hash, list.codes[0].hash, "hashes are salted per controller");
}

#[test]
fn keypad_entries_are_decided_offline_against_backup_codes() {
    let index = world();
    let weekday = utc("2026-06-10T10:05:00Z");
    let night = utc("2026-06-10T23:05:00Z");
    let list = InstalledList::new(list_at(&index, weekday));
    let at = |door: &str, entry: &str, used: &[String], now: i64| {
        let v = list.decide_keypad(door, entry, used, now);
        (v.verdict.allowed, v.verdict.reason, v.backup_code)
    };
    let front = Some("c-105".to_owned());
    // Typed on a keypad: digits only, no dashes.
    assert_eq!(at("front", &FRONT_CODE.replace('-', ""), &[], weekday), (true, Reason::Granted, front.clone()));
    assert_eq!(at("front", FRONT_CODE, &[], night), (true, Reason::Granted, front.clone()), "no schedule");
    assert_eq!(
        at("front", FRONT_CODE, &["c-105".to_owned()], weekday),
        (false, Reason::CredentialRevoked, front.clone()),
        "used before at this controller"
    );
    assert_eq!(at("lab", FRONT_CODE, &[], weekday), (false, Reason::NoGrant, front));
    assert_eq!(at("front", USED_CODE, &[], weekday), (false, Reason::UnknownCredential, None));
    assert_eq!(at("front", "1234", &[], weekday), (false, Reason::UnknownCredential, None), "a PIN needs lintel");
    assert_eq!(at("nowhere", FRONT_CODE, &[], weekday), (false, Reason::UnknownDoor, None));
    let ann = Some("c-107".to_owned());
    assert_eq!(at("lab", ANN_CODE, &[], weekday), (true, Reason::Granted, ann.clone()));
    assert_eq!(at("lab", ANN_CODE, &[], night), (false, Reason::OutsideSchedule, ann));
    // What lintel decides online for the same codes, at the same moments.
    for (door, code, now) in [("front", FRONT_CODE, night), ("lab", ANN_CODE, weekday), ("lab", ANN_CODE, night)] {
        let digest = backup_code_digest(code);
        let online = index.decide(&Query {
            door,
            key: CredentialKey::backup_code(&digest),
            digest: Some(&digest),
            revocation_code: None,
            at: DateTime::from_timestamp(now, 0).unwrap(),
        });
        assert_eq!(list.decide_keypad(door, code, &[], now).verdict.reason, online.reason, "{door} {code} {now}");
    }
    let lapsed = list.list.doors["front"].lapses_at;
    assert_eq!(at("front", FRONT_CODE, &[], lapsed).1, Reason::ListExpired);
}

#[test]
fn a_checked_in_pass_holder_is_listed_until_the_check_in_ends() {
    let issued = utc("2026-06-10T10:00:00Z");
    let ends = issued + 5400;
    let index = world().apply(&[Change::PassesUsed { grant: 3, used: 1, checked_in_until: ends * 1_000_000 }]);
    let cards = index.offline_cards(&["front", "lab"]);
    assert_eq!(cards.iter().map(|c| c.credential).collect::<Vec<_>>(), vec![100, 101, 102, 104], "Cy is in");
    let list = list_at(&index, issued);
    let installed = InstalledList::new(list);
    let cy = hex::decode("04C0C0C0").unwrap();
    assert!(installed.decide("front", &cy, None, ends - 1).allowed, "inside the check-in");
    assert_eq!(installed.decide("front", &cy, None, ends).reason, Reason::OutsideSchedule, "after it");
    // Before any check-in, a pass grant is not listed (the controller cannot count).
    assert!(!world().offline_cards(&["front"]).iter().any(|c| c.credential == 102));
    // The check-in touches the lists of the grant's doors.
    let before = world();
    let changes = [Change::PassesUsed { grant: 3, used: 1, checked_in_until: ends * 1_000_000 }];
    let after = before.apply(&changes);
    assert!(before.offline_doors_touched(&after, &changes).concerns(["front"].into_iter()));
}

#[test]
fn only_active_cards_with_lasting_grants_are_listed() {
    let index = world();
    let cards = index.offline_cards(&["front", "lab"]);
    let holders: Vec<i64> = cards.iter().map(|c| c.credential).collect();
    // Cy's grant counts passes and Di is suspended.
    assert_eq!(holders, vec![100, 101, 104]);
    assert!(cards[1].has_revocation_code);
    assert_eq!(cards[0].doors.iter().map(|(d, _)| *d).collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(cards[1].doors.iter().map(|(d, _)| *d).collect::<Vec<_>>(), vec![0]);
}

#[test]
fn offline_verdicts_match_online_decisions_minute_by_minute() {
    let index = world();
    // A Saturday in March, over the night of the change to summer time (Sunday 01:00 UTC).
    let issued = utc("2026-03-28T12:10:00Z");
    let installed = InstalledList::new(list_at(&index, issued));
    let uids = [
        ("04A1B2C3", Some("x")),
        ("04B0B0B0", Some("R2")),
        ("04B0B0B0", Some("R1")),
        ("04C0C0C0", None),
        ("04E0E0E0", None),
    ];
    let lapse = installed.list.doors["front"].lapses_at;
    // Every 7 min 13 s, and each second around Eve's validity's ends.
    let mut moments: Vec<i64> = (0..).map(|i| issued + i * (7 * 60 + 13)).take_while(|t| *t < lapse).collect();
    for edge in [EVE_FROM / 1_000_000, EVE_UNTIL / 1_000_000] {
        moments.extend(edge - 2..=edge + 2);
    }
    for t in moments {
        for door in ["front", "lab"] {
            for (uid, code) in uids {
                let code = if uid == "04A1B2C3" { None } else { code };
                let offline = installed.decide(door, &hex::decode(uid).unwrap(), code, t);
                let online = index.decide(&Query {
                    door,
                    key: CredentialKey::card(uid).unwrap(),
                    digest: None,
                    revocation_code: code,
                    at: DateTime::from_timestamp(t, 0).unwrap(),
                });
                if uid == "04C0C0C0" {
                    // Pass grants are not offline: an unknown card there.
                    assert_eq!(offline.reason, Reason::UnknownCredential);
                    assert_eq!(online.allowed(), door == "front");
                    continue;
                }
                assert!(!offline.allowed || online.allowed(), "offline lets in {uid} at {door} at {t}");
                // A validity that ends on a fraction of a second ends offline on the whole
                // second before it: the list is never more generous than lintel.
                if t == EVE_UNTIL / 1_000_000 && uid == "04E0E0E0" && door == "front" {
                    assert!(online.allowed() && !offline.allowed);
                    continue;
                }
                assert_eq!(offline.allowed, online.allowed(), "{door} {uid} {code:?} at {t}");
                if !online.allowed() {
                    // The list does not say why a card lacks a door (a skill or a grant).
                    // Nor whether a time is outside a schedule or a validity window.
                    let expected = match online.reason {
                        Reason::MissingSkill => Reason::NoGrant,
                        Reason::NotYetValid | Reason::Expired => Reason::OutsideSchedule,
                        other => other,
                    };
                    assert_eq!(offline.reason, expected, "{door} {uid} at {t}");
                }
            }
        }
    }
}

#[test]
fn a_lapsed_list_refuses_at_secure_doors_and_admits_at_safe_ones() {
    let index = world();
    let issued = utc("2026-06-10T10:30:00Z");
    let installed = InstalledList::new(list_at(&index, issued));
    let lapse = installed.list.doors["front"].lapses_at;
    assert!(lapse <= issued + THREE_DAYS && lapse > issued + THREE_DAYS - 3600, "lapses within the period before");
    let ann = hex::decode("04A1B2C3").unwrap();
    let bo = hex::decode("04B0B0B0").unwrap();
    assert!(installed.decide("front", &bo, Some("R2"), lapse - 1).allowed);
    let secure = installed.decide("front", &bo, Some("R2"), lapse);
    assert!(!installed.decide("front", &ann, None, lapse).allowed);
    assert_eq!((secure.allowed, secure.reason), (false, Reason::ListExpired));
    let safe = installed.decide("lab", &hex::decode("FFFF").unwrap(), None, lapse);
    assert!(safe.allowed && safe.fail_safe);
}

#[test]
fn content_is_stable_within_a_period_and_changes_with_the_directory() {
    let index = world();
    let a = list_at(&index, utc("2026-06-10T10:05:00Z"));
    let b = list_at(&index, utc("2026-06-10T10:55:00Z"));
    assert_eq!(content_digest(&a), content_digest(&b));
    let next_hour = list_at(&index, utc("2026-06-10T11:05:00Z"));
    assert_ne!(content_digest(&a), content_digest(&next_hour));
    let revoked = index.apply(&[crate::Change::Credential(
        CredentialKey::card("04B0B0B0").unwrap(),
        IndexCredential { status: CredentialStatus::Revoked, ..card(101, 11, Some("R2")) },
    )]);
    let c = list_at(&revoked, utc("2026-06-10T10:05:00Z"));
    assert_ne!(content_digest(&a), content_digest(&c));
    assert_eq!(c.cards.len(), 1);
}

#[test]
fn hashes_hide_uids_and_codes() {
    let list = list_at(&world(), utc("2026-06-10T10:05:00Z"));
    let text = serde_json::to_string(&list).unwrap();
    for secret in ["04A1B2C3", "04a1b2c3", "R2"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}
