//! People from a real OpenLDAP `slapd` (`[ldap.sync]`, `lintel ldap sync`): they appear
//! with their name, email, card and groups, and their card opens the doors of their groups;
//! a change in the directory moves them; an entry deleted or disabled (Active Directory's
//! `userAccountControl` bit 0x2) is offboarded, and comes back when it returns; the
//! directory is read page by page past its size limit; a sync that fails (a directory that
//! hangs past the deadline, stops answering midway, refuses the bind or is gone), or would
//! remove too many, offboards nobody; and the server syncs on its own.

use std::collections::HashSet;
use std::time::Duration;

use ldap3::{Mod, Scope, SearchEntry};
use serde_json::{Value, json};

use crate::harness::{ADMIN, Backend, Database, Server, card, lintel};
use crate::slapd::{BIND_DN, BIND_PASSWORD, LIMITED_DN, SIZE_LIMIT, SUFFIX, Slapd, directory_top};

const STAFF: &str = "cn=Staff,ou=groups,dc=example,dc=org";
const LAB: &str = "cn=Lab,ou=groups,dc=example,dc=org";
/// More than one search may answer, and more than three pages of ten.
const FILLERS: usize = 32;

/// An entry as Active Directory would have it (`memberOf`, `userAccountControl`).
fn person(uid: &str, cn: &str, card: Option<&str>, groups: &[&str], uac: u32) -> String {
    let card = card.map(|c| format!("employeeNumber: {c}\n")).unwrap_or_default();
    let groups: String = groups.iter().map(|g| format!("memberOf: {g}\n")).collect();
    format!(
        "dn: uid={uid},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nobjectClass: adAccount\nuid: {uid}\n\
         cn: {cn}\nsn: {cn}\nmail: {uid}@example.org\n{card}{groups}userAccountControl: {uac}\n\n"
    )
}

/// Ann and Bob with cards, Carol disabled, and fillers without cards: 35 entries.
fn directory() -> String {
    let mut ldif = directory_top();
    ldif += &person("ann", "Ann Lovelace", Some("04A1B2C3"), &[STAFF], 512);
    ldif += &person("bob", "Bob Builder", Some("0A0B0C0D"), &[STAFF, LAB], 512);
    ldif += &person("carol", "Carol Disabled", Some("0C0C0C0C"), &[STAFF], 514);
    for n in 0..FILLERS {
        ldif += &person(&format!("filler{n}"), &format!("Filler {n}"), None, &[], 512);
    }
    ldif
}

fn env(slapd: &Slapd) -> Vec<(&'static str, String)> {
    vec![
        ("LINTEL_LDAP_URL", slapd.url.clone()),
        ("LINTEL_LDAP_BIND_DN", BIND_DN.into()),
        ("LINTEL_LDAP_BIND_PASSWORD", BIND_PASSWORD.into()),
        ("LINTEL_LDAP_BASE", SUFFIX.into()),
        ("LINTEL_LDAP_SYNC_BASE", format!("ou=people,{SUFFIX}")),
        ("LINTEL_LDAP_SYNC_FILTER", "(objectClass=inetOrgPerson)".into()),
        ("LINTEL_LDAP_SYNC_CARD_ATTRIBUTE", "employeeNumber".into()),
        ("LINTEL_LDAP_SYNC_GROUPS", format!("{STAFF}=staff;{LAB}=lab")),
        ("LINTEL_LDAP_SYNC_PAGE_SIZE", "10".into()),
    ]
}

/// Doors `front` (group `staff`) and `lab` (group `lab`), each group granted its doors.
async fn building(s: &Server) {
    for (door, group) in [("front", "staff"), ("lab", "lab")] {
        s.ok("/api/v1/doors", json!({"id": door, "name": door}), 201).await;
        s.ok("/api/v1/groups", json!({"id": group, "name": group, "doors": [door]}), 201).await;
        s.ok("/api/v1/grants", json!({"group_id": group}), 201).await;
    }
}

/// `lintel ldap sync` with these settings: its exit, output and error output.
fn sync(db: &Database, env: &[(&'static str, String)], args: &[&str]) -> (bool, String, String) {
    let mut cmd = lintel();
    cmd.args(["ldap", "sync"]).args(args).args(["--database-url", &db.url]).current_dir(&db.dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::task::block_in_place(|| cmd.output().expect("lintel runs"));
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

fn synced(db: &Database, env: &[(&'static str, String)]) -> String {
    let (ok, out, err) = sync(db, env, &["--quiet"]);
    assert!(ok, "lintel ldap sync failed: {err}");
    out
}

/// Asks (dry run) until the card is allowed or refused at the door, as wanted (the server
/// sees what the CLI wrote within its follow interval); the last answer.
async fn eventually(s: &Server, door: &str, uid: &str, allowed: bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..100 {
        last = s
            .client
            .post(format!("{}/api/v1/decisions", s.base))
            .bearer_auth(ADMIN)
            .json(&json!({"door": door, "credential": card(uid, None), "dry_run": true}))
            .send()
            .await
            .expect("decision")
            .json()
            .await
            .expect("decision JSON");
        if last["allowed"] == allowed {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{uid} at {door}: wanted allowed={allowed}, last {last}");
}

async fn person_with(s: &Server, uid: &str) -> Value {
    let decided = eventually(s, "front", uid, true).await;
    let id = decided["person_id"].as_str().expect("a person").to_owned();
    let (status, person) = s.get(&format!("/api/v1/people/{id}")).await;
    assert_eq!(status, 200, "{person}");
    person
}

async fn modify(slapd: &Slapd, uid: &str, mods: Vec<Mod<&str>>) {
    let mut admin = slapd.admin().await;
    let dn = format!("uid={uid},ou=people,{SUFFIX}");
    admin.modify(&dn, mods).await.expect("modify").success().expect("modified");
}

async fn people_come_change_and_go_with_the_directory(b: Backend) {
    let slapd = Slapd::start(&directory());
    let db = Database::new(b);
    let s = Server::start(&db);
    building(&s).await;
    let env = env(&slapd);

    // More entries than one search may answer (a plain search is cut at the limit): read
    // page by page, with progress. Carol is disabled: not created.
    const { assert!(FILLERS + 3 > SIZE_LIMIT) };
    assert_eq!(plain_search_result(&slapd).await, 4, "sizeLimitExceeded without paging");
    let (ok, out, err) = sync(&db, &env, &[]);
    assert!(ok, "{err}");
    assert!(out.contains("35 entries: 34 new, 0 updated, 0 unchanged; 0 offboarded; 1 disabled"), "{out}");
    let ann = person_with(&s, "04A1B2C3").await;
    assert_eq!(
        (&ann["name"], &ann["email"], &ann["groups"]),
        (&json!("Ann Lovelace"), &json!("ann@example.org"), &json!(["staff"]))
    );
    assert_eq!(ann["status"], "active");
    let uuid = ann["external_ids"]["ldap"].as_str().expect("the entry's id").to_owned();
    assert_eq!(uuid, entry_uuid(&slapd, "ann").await, "the id is the entry's entryUUID");
    eventually(&s, "lab", "04A1B2C3", false).await;
    eventually(&s, "lab", "0A0B0C0D", true).await;
    eventually(&s, "front", "0C0C0C0C", false).await;
    let (_, people) = s.get("/api/v1/people?limit=500").await;
    assert_eq!(people["items"].as_array().map(Vec::len), Some(34), "{people}");

    // The same directory again: nothing changes.
    let out = synced(&db, &env);
    assert!(out.contains("35 entries: 0 new, 0 updated, 34 unchanged; 0 offboarded"), "{out}");

    // Ann's name, email, groups and card change in the directory: so in lintel.
    modify(
        &slapd,
        "ann",
        vec![
            Mod::Replace("cn", HashSet::from(["Ann Byron"])),
            Mod::Replace("mail", HashSet::from(["ann.byron@example.org"])),
            Mod::Replace("memberOf", HashSet::from([LAB])),
            Mod::Replace("employeeNumber", HashSet::from(["0D0D0D0D"])),
        ],
    )
    .await;
    let out = synced(&db, &env);
    assert!(out.contains("0 new, 1 updated, 33 unchanged"), "{out}");
    eventually(&s, "front", "04A1B2C3", false).await;
    let decided = eventually(&s, "lab", "0D0D0D0D", true).await;
    assert_eq!(decided["person_id"], ann["id"], "the same person, a new card");
    let (_, moved) = s.get(&format!("/api/v1/people/{}", ann["id"].as_str().unwrap())).await;
    assert_eq!(
        (&moved["name"], &moved["email"], &moved["groups"]),
        (&json!("Ann Byron"), &json!("ann.byron@example.org"), &json!(["lab"]))
    );

    // Bob leaves the directory: offboarded, his card refused.
    let mut admin = slapd.admin().await;
    admin.delete(&format!("uid=bob,ou=people,{SUFFIX}")).await.expect("delete").success().expect("deleted");
    let out = synced(&db, &env);
    assert!(out.contains("34 entries: 0 new, 0 updated, 33 unchanged; 1 offboarded"), "{out}");
    let refused = eventually(&s, "lab", "0A0B0C0D", false).await;
    let (_, bob) = s.get(&format!("/api/v1/people/{}", refused["person_id"].as_str().expect("bob"))).await;
    assert_eq!((&bob["status"], &bob["groups"]), (&json!("suspended"), &json!([])), "{bob}");

    // Ann's account is disabled (ACCOUNTDISABLE): offboarded; enabled again: she returns,
    // with her card.
    modify(&slapd, "ann", vec![Mod::Replace("userAccountControl", HashSet::from(["514"]))]).await;
    let out = synced(&db, &env);
    assert!(out.contains("1 offboarded; 2 disabled"), "{out}");
    eventually(&s, "lab", "0D0D0D0D", false).await;
    let (_, gone) = s.get(&format!("/api/v1/people/{}", ann["id"].as_str().unwrap())).await;
    assert_eq!(gone["status"], "suspended", "{gone}");
    modify(&slapd, "ann", vec![Mod::Replace("userAccountControl", HashSet::from(["66048"]))]).await;
    let out = synced(&db, &env);
    assert!(out.contains("0 new, 1 updated"), "{out}");
    eventually(&s, "lab", "0D0D0D0D", true).await;

    // What happened is in the log: the syncs that changed something and each departure.
    let syncs = s.all_events("kind=ldap.synced").await;
    assert_eq!(syncs.len(), 5, "{syncs:?}");
    assert_eq!((&syncs[0]["data"]["created"], &syncs[0]["data"]["seen"]), (&json!(34), &json!(35)));
    let offboarded = s.all_events("kind=person.offboarded").await;
    let reasons: Vec<_> = offboarded.iter().map(|e| e["data"]["reason"].as_str().unwrap_or_default()).collect();
    assert_eq!(reasons, ["gone from the LDAP directory", "disabled in the LDAP directory"], "{offboarded:?}");
}

/// The result code of an unpaged search of every person, as lintel's account.
async fn plain_search_result(slapd: &Slapd) -> u32 {
    let (conn, mut ldap) = ldap3::LdapConnAsync::new(&slapd.url).await.expect("connect");
    tokio::spawn(async move {
        let _ = conn.drive().await;
    });
    ldap.simple_bind(BIND_DN, BIND_PASSWORD).await.expect("bind").success().expect("bound");
    let base = format!("ou=people,{SUFFIX}");
    let result = ldap.search(&base, Scope::Subtree, "(objectClass=inetOrgPerson)", vec!["cn"]).await.expect("search");
    result.1.rc
}

async fn entry_uuid(slapd: &Slapd, uid: &str) -> String {
    let mut admin = slapd.admin().await;
    let dn = format!("uid={uid},ou=people,{SUFFIX}");
    let (entries, _) =
        admin.search(&dn, Scope::Base, "(objectClass=*)", vec!["entryUUID"]).await.expect("search").success().unwrap();
    let entry = SearchEntry::construct(entries.into_iter().next().expect("the entry"));
    entry.attrs["entryUUID"][0].clone()
}

async fn a_failed_or_suspicious_sync_offboards_nobody(b: Backend) {
    let mut slapd = Slapd::start(&directory());
    let db = Database::new(b);
    let s = Server::start(&db);
    building(&s).await;
    let mut env = env(&slapd);
    synced(&db, &env);
    eventually(&s, "front", "04A1B2C3", true).await;

    // A filter that is not one: refused at start.
    let mut bad = env.clone();
    bad.push(("LINTEL_LDAP_SYNC_FILTER", "objectClass=person)(".into()));
    let (ok, _, err) = sync(&db, &bad, &["--quiet"]);
    assert!(!ok && err.contains("[ldap.sync] is not usable"), "{err}");

    // The directory hangs: the sync stops at its deadline (2 s, shorter than the 10 s a
    // bind may take), having changed nothing.
    slapd.freeze();
    let mut patient = env.clone();
    patient.extend([("LINTEL_LDAP_SYNC_DEADLINE_SECONDS", "2".into()), ("LINTEL_LDAP_TIMEOUT_MS", "10000".into())]);
    let started = std::time::Instant::now();
    let (ok, _, err) = sync(&db, &patient, &["--quiet"]);
    assert!(!ok && err.contains("did not answer within 2s"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(9), "took {:?}", started.elapsed());
    slapd.thaw();
    // The directory stops answering midway (after two pages of ten): nothing changes,
    // though Bob, deleted meanwhile, and most people are missing from what was read.
    let mut admin = slapd.admin().await;
    admin.delete(&format!("uid=bob,ou=people,{SUFFIX}")).await.expect("delete").success().expect("deleted");
    let limited: Vec<_> = env
        .iter()
        .map(|(k, v)| (*k, if *k == "LINTEL_LDAP_BIND_DN" { LIMITED_DN.to_owned() } else { v.clone() }))
        .collect();
    let (ok, _, err) = sync(&db, &limited, &["--quiet"]);
    assert!(!ok && err.contains("sizeLimitExceeded"), "{err}");
    eventually(&s, "lab", "0A0B0C0D", true).await;
    // A wrong bind password: refused, nothing changed.
    let wrong: Vec<_> = env
        .iter()
        .map(|(k, v)| (*k, if *k == "LINTEL_LDAP_BIND_PASSWORD" { "wrong".to_owned() } else { v.clone() }))
        .collect();
    let (ok, _, err) = sync(&db, &wrong, &["--quiet"]);
    assert!(!ok && err.contains("refused lintel's bind"), "{err}");

    // A filter that matches nobody: everyone would leave. Refused, unless forced.
    env.push(("LINTEL_LDAP_SYNC_FILTER", "(uid=nobody)".into()));
    let (ok, _, err) = sync(&db, &env, &["--quiet"]);
    assert!(!ok && err.contains("max_departures_percent"), "{err}");
    eventually(&s, "front", "04A1B2C3", true).await;
    eventually(&s, "lab", "0A0B0C0D", true).await;
    assert!(s.all_events("kind=person.offboarded").await.is_empty());

    // The directory is gone: still nobody offboarded.
    slapd.stop();
    env.pop();
    let (ok, _, err) = sync(&db, &env, &["--quiet"]);
    assert!(!ok && err.contains("unreachable"), "{err}");
    assert!(s.all_events("kind=person.offboarded").await.is_empty());
    eventually(&s, "front", "04A1B2C3", true).await;

    // Forced, the empty answer counts: everyone is offboarded, Ann and Bob lose their access.
    let slapd = Slapd::start(&directory_top());
    let env: Vec<_> =
        env.into_iter().map(|(k, v)| (k, if k == "LINTEL_LDAP_URL" { slapd.url.clone() } else { v })).collect();
    let (ok, _, err) = sync(&db, &env, &["--quiet"]);
    assert!(!ok && err.contains("max_departures_percent"), "{err}");
    let (ok, out, err) = sync(&db, &env, &["--quiet", "--force"]);
    assert!(ok, "{err}");
    assert!(out.contains("0 entries: 0 new, 0 updated, 0 unchanged; 34 offboarded"), "{out}");
    eventually(&s, "front", "04A1B2C3", false).await;
}

/// `lintel serve` with `[ldap.sync]` syncs by itself (on the node holding the lease), at
/// once on start.
async fn the_server_syncs_on_its_own(b: Backend) {
    let slapd = Slapd::start(&directory());
    let db = Database::new(b);
    let env = env(&slapd);
    let borrowed: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s = Server::start_with(&db, &borrowed);
    // The sync's event comes when it is done (34 people on a busy machine take a while).
    let mut synced = Vec::new();
    for _ in 0..600 {
        synced = s.all_events("kind=ldap.synced").await;
        if !synced.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(synced.first().map(|e| &e["data"]["created"]), Some(&json!(34)), "{synced:?}");
    let (_, page) = s.get("/api/v1/people?limit=500").await;
    let people = page["items"].as_array().cloned().unwrap_or_default();
    let bob = people.iter().find(|p| p["name"] == "Bob Builder").expect("Bob");
    let (_, credentials) = s.get(&format!("/api/v1/people/{}/credentials", bob["id"].as_str().unwrap())).await;
    assert!(credentials.to_string().contains("0A0B0C0D"), "{credentials}");
}

crate::on_both_backends!(
    people_come_change_and_go_with_the_directory,
    a_failed_or_suspicious_sync_offboards_nobody,
    the_server_syncs_on_its_own,
);
