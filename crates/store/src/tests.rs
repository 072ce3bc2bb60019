//! The store on a temporary SQLite file: what a failed write leaves behind.

use lintel_proto::NewPerson;

use crate::{NewEvent, PendingDecision, SqliteSync, Store, StoreError};

async fn sqlite_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("lintel.db").display());
    let store = Store::open(&url, SqliteSync::Normal).await.expect("store opens");
    (dir, store)
}

fn decision(door: &str) -> PendingDecision {
    let mut event = NewEvent::new("decision").door(door);
    event.allowed = Some(false);
    PendingDecision { event, pass_grants: Vec::new(), backup_code: None }
}

fn person(id: &str, padding: usize) -> NewPerson {
    let mut p = NewPerson { id: Some(id.into()), name: id.into(), ..Default::default() };
    p.attributes.insert("notes".into(), "x".repeat(padding).into());
    p
}

async fn page_count(store: &Store) -> i64 {
    sqlx::query_scalar("PRAGMA page_count").fetch_one(&store.write).await.expect("page count")
}

/// SQLite rolls a transaction back by itself when the disk is full; the pool's connection
/// must not go on believing it is inside one (every later write failed until a restart).
#[tokio::test]
async fn a_write_that_finds_the_disk_full_leaves_the_store_writable() {
    let (_dir, store) = sqlite_store().await;
    store.create_person(&person("before", 10), "before").await.expect("a first write");
    // The write pool has one connection: cap its database at the pages it has now.
    let pages = page_count(&store).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA max_page_count = {pages}")))
        .execute(&store.write)
        .await
        .expect("cap");
    let full = store.create_person(&person("big", 200_000), "big").await;
    assert!(matches!(full, Err(StoreError::Database(_))), "the database is full: {full:?}");
    // The disk has room again (on whatever connection the pool holds now).
    sqlx::query("PRAGMA max_page_count = 1073741823").execute(&store.write).await.expect("uncap");
    store.create_person(&person("after", 10), "after").await.expect("writes work again without a restart");
    assert!(store.person("big").await.is_err(), "nothing of the failed write was kept");
    assert_eq!(store.person("after").await.expect("kept").name, "after");
}

/// Set in the child process that [`a_commit_that_finds_the_disk_full_leaves_the_store_writable`]
/// runs its body in: the file-size limit it sets holds for the whole process.
const DISK_FULL_CHILD: &str = "LINTEL_STORE_TEST_DISK_FULL_CHILD";

/// Without root a disk cannot be filled, but a process's file-size limit refuses writes
/// the same way, at COMMIT, when the WAL must grow; SQLite then rolls the transaction back
/// by itself (as on a full disk).
fn set_file_size_limit(bytes: u64) {
    let limit = libc::rlimit { rlim_cur: bytes, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: plain libc calls with valid arguments. SIGXFSZ ignored: the write fails
    // with EFBIG instead of the process being killed.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0, "setrlimit");
    }
}

#[test]
fn a_commit_that_finds_the_disk_full_leaves_the_store_writable() {
    if std::env::var_os(DISK_FULL_CHILD).is_none() {
        let status = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", "tests::a_commit_that_finds_the_disk_full_leaves_the_store_writable", "--nocapture"])
            .env(DISK_FULL_CHILD, "1")
            .status()
            .expect("the child runs");
        assert!(status.success(), "the child process failed: {status}");
        return;
    }
    tokio::runtime::Runtime::new().expect("runtime").block_on(async {
        let (_dir, store) = sqlite_store().await;
        store.create_person(&person("before", 10), "before").await.expect("a first write");
        store.check_writable().await.expect("writable at first");
        set_file_size_limit(0);
        let full = store.create_person(&person("lost", 10), "lost").await;
        assert!(matches!(full, Err(StoreError::Database(_))), "the disk is full: {full:?}");
        assert!(store.check_writable().await.is_err(), "readiness sees that nothing can be written");
        assert!(store.commit_decision(decision("full")).await.is_err(), "a decision that cannot be recorded fails");
        assert_eq!(store.person("before").await.expect("reads go on").name, "before");
        set_file_size_limit(libc::RLIM_INFINITY);
        store.check_writable().await.expect("writable again");
        store.create_person(&person("after", 10), "after").await.expect("writes work again without a restart");
        store.commit_decision(decision("after")).await.expect("decisions are recorded again");
        assert!(store.person("lost").await.is_err(), "nothing of the failed write was kept");
    });
}

#[tokio::test]
async fn closing_records_queued_decisions_and_leaves_no_wal_behind() {
    let (dir, store) = sqlite_store().await;
    let queued: Vec<_> = (0..50)
        .map(|i| {
            tokio::spawn({
                let store = store.clone();
                async move { store.commit_decision(decision(&format!("d{i}"))).await }
            })
        })
        .collect();
    store.create_person(&person("p", 10), "p").await.expect("a write");
    let wal = dir.path().join("lintel.db-wal");
    assert!(wal.exists(), "a WAL while open");
    let mut answered = 0;
    for q in queued {
        answered += q.await.expect("task").is_ok() as usize;
    }
    store.close().await;
    assert_eq!(answered, 50);
    assert!(store.commit_decision(decision("late")).await.is_err(), "no decision after closing");
    assert!(!wal.exists(), "the WAL is checkpointed and removed at close");
    let again = Store::open(&format!("sqlite://{}", dir.path().join("lintel.db").display()), SqliteSync::Normal)
        .await
        .expect("reopens");
    let events = again
        .events(&crate::EventFilter { kind: Some("decision".into()), limit: 100, ..Default::default() })
        .await
        .expect("events");
    assert_eq!(events.len(), 50, "every answered decision is in the log");
}

/// Events by person are found the same before and after they are indexed in bulk, and
/// across the watermark, with the other filters and in order.
#[tokio::test]
async fn events_by_person_before_and_after_indexing() {
    let (_dir, store) = sqlite_store().await;
    let event = |person: &str, door: &str, kind: &str| NewEvent::new(kind).person(person).door(door);
    let append = async |n: usize| {
        let events: Vec<_> = (0..n)
            .map(|i| event(["ann", "bob"][i % 2], ["front", "back"][i % 3 % 2], ["decision", "door.opened"][i % 5 % 2]))
            .collect();
        for e in &events {
            store.append_event(e).await.expect("appended");
        }
    };
    let by = |person: &str, door: Option<&str>, kind: Option<&str>, after: i64, limit: i64| crate::EventFilter {
        person_id: Some(person.into()),
        door: door.map(Into::into),
        kind: kind.map(Into::into),
        after: Some(after),
        limit,
        ..Default::default()
    };
    let seqs = async |f: crate::EventFilter| -> Vec<i64> {
        store.events(&f).await.expect("events").iter().map(|e| e.id.parse().unwrap()).collect()
    };
    // What a scan of the whole log gives, the reference.
    let reference = async |f: crate::EventFilter| -> Vec<i64> {
        let all = store.events(&crate::EventFilter { limit: 1000, ..Default::default() }).await.expect("all");
        all.iter()
            .filter(|e| e.person_id == f.person_id)
            .filter(|e| f.door.is_none() || e.door == f.door)
            .filter(|e| f.kind.as_ref().is_none_or(|k| &e.kind == k))
            .map(|e| e.id.parse().unwrap())
            .filter(|seq: &i64| *seq > f.after.unwrap_or(0))
            .take(f.limit as usize)
            .collect()
    };
    append(30).await;
    let filters = || {
        [
            by("ann", None, None, 0, 1000),
            by("bob", Some("back"), None, 3, 1000),
            by("ann", Some("front"), Some("decision"), 0, 4),
            by("bob", None, Some("door.opened"), 10, 2),
        ]
    };
    for f in filters() {
        assert_eq!(seqs(f.clone()).await, reference(f.clone()).await, "not yet indexed: {f:?}");
    }
    // The store's own round may have run already: either way, all is indexed after this.
    store.index_event_people().await.expect("indexed");
    assert_eq!(store.index_event_people().await.expect("nothing new"), 0);
    append(30).await;
    for f in filters() {
        assert!(!seqs(f.clone()).await.is_empty(), "{f:?} finds something");
        assert_eq!(seqs(f.clone()).await, reference(f.clone()).await, "half indexed: {f:?}");
    }
    store.index_event_people().await.expect("indexed");
    for f in filters() {
        assert_eq!(seqs(f.clone()).await, reference(f.clone()).await, "indexed: {f:?}");
    }
}

/// A fresh PostgreSQL database for one test (the one of its previous run dropped first),
/// or `None` when PostgreSQL tests are skipped on purpose (`LINTEL_TEST_POSTGRES=skip`).
/// An unreachable server fails the test loudly.
async fn postgres_store(name: &str) -> Option<Store> {
    use sqlx::Connection;
    if std::env::var("LINTEL_TEST_POSTGRES").is_ok_and(|v| v == "skip") {
        eprintln!("SKIPPED: the PostgreSQL half of {name} (LINTEL_TEST_POSTGRES=skip)");
        return None;
    }
    let admin =
        std::env::var("LINTEL_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
        panic!("PostgreSQL is not reachable at {admin} ({e}); start it or set LINTEL_TEST_POSTGRES=skip")
    });
    let db = format!("lintel_store_{name}");
    for sql in [format!("DROP DATABASE IF EXISTS {db}"), format!("CREATE DATABASE {db}")] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.expect("admin SQL");
    }
    let url = format!("{}/{db}", admin.rsplit_once('/').expect("a database path").0);
    Some(Store::open(&url, SqliteSync::Normal).await.expect("store opens"))
}

/// A grant of two passes and a backup code, asked for at once by many decisions.
async fn passes_and_backup_codes_are_used_exactly_once(store: Store) {
    use lintel_proto::{CredentialKind, NewDoor};
    store.create_person(&person("ann", 1), "ann").await.expect("person");
    let door: NewDoor = serde_json::from_value(serde_json::json!({"id": "front", "name": "Front"})).unwrap();
    store.create_door(&door, 5).await.expect("door");
    let grant = crate::NewGrantRecord {
        person_id: Some("ann".into()),
        doors: Some(vec!["front".into()]),
        passes: Some(2),
        ..Default::default()
    };
    let grant = crate::parse_grant_id(&store.create_grant(&grant).await.expect("grant").value.id).unwrap();
    let code = crate::NewCredentialRecord {
        kind: CredentialKind::BackupCode,
        card_uid: None,
        revocation_code: None,
        digest: Some("ab".repeat(32)),
    };
    let code = store.issue_credential("ann", &code).await.expect("code").value.id;
    let code = crate::parse_credential_id(&code).unwrap();
    let allowed = |pass: bool, backup: bool| {
        let mut event = NewEvent::new("decision").door("front").person("ann");
        event.allowed = Some(true);
        event.reason = Some(lintel_proto::Reason::Granted);
        PendingDecision {
            event,
            pass_grants: if pass {
                vec![lintel_core::PassGrant { grant, checked_in_until: i64::MIN }]
            } else {
                Vec::new()
            },
            backup_code: backup.then_some(code),
        }
    };
    // Five taps at once want the two passes: they are committed together.
    let taps: Vec<_> = (0..5)
        .map(|_| {
            let store = store.clone();
            let tap = allowed(true, false);
            tokio::spawn(async move { store.commit_decision(tap).await.expect("recorded") })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in taps {
        outcomes.push(t.await.expect("task").event);
    }
    let granted = outcomes.iter().filter(|e| e.allowed == Some(true)).count();
    assert_eq!(granted, 2, "two passes, two entries: {outcomes:?}");
    for denied in outcomes.iter().filter(|e| e.allowed != Some(true)) {
        assert_eq!(denied.reason, Some(lintel_proto::Reason::NoPassesLeft));
        assert_eq!(denied.data["detail"], lintel_core::index::NO_PASSES_LEFT, "the core's words");
        assert_eq!(denied.grant_id, None);
    }
    // The backup code lets one in; the second use is refused and uses nothing.
    let first = store.commit_decision(allowed(false, true)).await.expect("recorded");
    assert_eq!(first.event.allowed, Some(true));
    assert!(matches!(first.changes.as_slice(), [lintel_core::Change::Credential(..)]), "{:?}", first.changes);
    let again = store.commit_decision(allowed(false, true)).await.expect("recorded");
    assert_eq!(again.event.reason, Some(lintel_proto::Reason::CredentialRevoked));
    assert_eq!(again.event.data["detail"], lintel_core::index::BACKUP_CODE_USED);
    let grants = store.grants(Some("ann")).await.expect("grants");
    assert_eq!(grants[0].passes_used, 2, "{grants:?}");
    store.close().await;
}

#[tokio::test]
async fn the_decision_log_uses_things_up_once_on_sqlite() {
    let (_dir, store) = sqlite_store().await;
    passes_and_backup_codes_are_used_exactly_once(store).await;
}

#[tokio::test]
async fn the_decision_log_uses_things_up_once_on_postgres() {
    if let Some(store) = postgres_store("decision_log").await {
        passes_and_backup_codes_are_used_exactly_once(store).await;
    }
}

/// The change feed brings an index loaded before a run of writes of every kind to what a
/// fresh load reads after them; a door deleted is a reload.
#[tokio::test]
async fn the_change_feed_patches_an_index_to_what_a_reload_reads() {
    use lintel_core::{CredentialKey, Query};
    use lintel_proto::{CredentialKind, NewDoor, PersonPatch, PersonStatus};

    use crate::{Feed, NewCredentialRecord, NewGrantRecord};

    let (_dir, store) = sqlite_store().await;
    let door = |id: &str| -> NewDoor { serde_json::from_value(serde_json::json!({"id": id, "name": id})).unwrap() };
    let card = |uid: &str| NewCredentialRecord {
        kind: CredentialKind::Card,
        card_uid: Some(uid.into()),
        revocation_code: None,
        digest: None,
    };
    let grant = |person: Option<&str>, group: Option<&str>, doors: &[&str]| NewGrantRecord {
        person_id: person.map(Into::into),
        group_id: group.map(Into::into),
        doors: (!doors.is_empty()).then(|| doors.iter().map(|d| d.to_string()).collect()),
        ..Default::default()
    };
    for id in ["front", "lab", "roof"] {
        store.create_door(&door(id), 5).await.expect("door");
    }
    for (id, uid) in [("ann", "0A01"), ("bob", "0B02"), ("cy", "0C03")] {
        store.create_person(&person(id, 1), id).await.expect("person");
        store.issue_credential(id, &card(uid)).await.expect("card");
    }
    store.create_group("makers", "Makers", &["lab".into()]).await.expect("group");
    store.set_member("makers", "ann", true).await.expect("member");
    store.create_grant(&grant(None, Some("makers"), &[])).await.expect("group grant");
    let temporary = store.create_grant(&grant(Some("bob"), None, &["front"])).await.expect("grant").value.id;
    let (before, from) = store.load_index().await.expect("index");

    // Something of every kind changes.
    let suspended = PersonPatch { status: Some(PersonStatus::Suspended), ..Default::default() };
    store.patch_person("ann", &suspended).await.expect("suspended");
    store.set_member("makers", "bob", true).await.expect("member");
    store.set_member("makers", "ann", false).await.expect("no longer");
    store.delete_grant(&temporary).await.expect("grant gone");
    let cy = store.create_grant(&grant(Some("cy"), None, &["roof", "front", "lab"])).await.expect("grant").value;
    let edited = store.update_grant(&cy.id, &cy, &grant(Some("cy"), None, &["roof", "front"])).await.expect("edited");
    assert!(
        matches!(
            store.update_grant(&cy.id, &cy, &grant(Some("cy"), None, &["roof"])).await,
            Err(StoreError::Conflict(_))
        ),
        "an edit made from a grant that changed meanwhile is refused"
    );
    assert_eq!(store.grant(&cy.id).await.expect("grant"), edited.value, "and writes nothing");
    store.issue_credential("cy", &card("0C04")).await.expect("second card");
    let revoked = store.person_credentials("cy").await.expect("cards")[0].id.clone();
    store.revoke_credential(&revoked, "lost").await.expect("revoked");
    store.delete_person("bob").await.expect("bob gone");
    store.create_person(&person("dee", 1), "dee").await.expect("person");
    store.issue_credential("dee", &card("0D05")).await.expect("card");
    store.set_member("makers", "dee", true).await.expect("member");

    let Feed::Patch { changes, version } = store.changes_since(from).await.expect("feed") else {
        panic!("every change here patches");
    };
    let patched = before.apply(&changes);
    let (reloaded, now) = store.load_index().await.expect("index");
    assert_eq!(version, now);
    let at = chrono::Utc::now();
    for uid in ["0A01", "0B02", "0C03", "0C04", "0D05"] {
        for door in ["front", "lab", "roof"] {
            let q = Query { door, key: CredentialKey::card(uid).unwrap(), digest: None, revocation_code: None, at };
            let (p, r) = (patched.decide(&q), reloaded.decide(&q));
            assert_eq!((p.reason, p.person, p.grant), (r.reason, r.person, r.grant), "{uid} at {door}");
        }
    }
    assert!(matches!(store.changes_since(now).await.expect("feed"), Feed::Current));

    store.delete_door("roof").await.expect("door gone");
    assert!(matches!(store.changes_since(now).await.expect("feed"), Feed::Reload), "a structural change");
}

/// One step of the time-pass property: what the member, lintel and the platform do.
#[derive(Debug, Clone)]
enum PassStep {
    /// The member taps (an entry uses a pass if one is left).
    Enter,
    /// lintel's oldest queued check-in reaches the platform, which counts a pass.
    PostCheckIn,
    /// lintel asks the platform how many passes are left (the answer is applied later).
    Ask,
    /// A refresh asked earlier (the oldest, or the newest) is applied.
    Apply { newest: bool },
    /// The member buys a pass on the platform.
    Buy,
}

fn pass_step() -> impl proptest::strategy::Strategy<Value = PassStep> {
    use proptest::prelude::*;
    prop_oneof![
        4 => Just(PassStep::Enter),
        2 => Just(PassStep::PostCheckIn),
        2 => Just(PassStep::Ask),
        2 => any::<bool>().prop_map(|newest| PassStep::Apply { newest }),
        1 => Just(PassStep::Buy),
    ]
}

/// Runs the steps; returns (entries let in, passes the platform ever had).
async fn run_pass_steps(initial: u32, steps: &[PassStep]) -> (u32, u32) {
    use lintel_proto::NewDoor;
    let (_dir, store) = sqlite_store().await;
    store.create_person(&person("ann", 1), "ann").await.expect("person");
    let door: NewDoor = serde_json::from_value(serde_json::json!({"id": "front", "name": "Front"})).unwrap();
    store.create_door(&door, 5).await.expect("door");
    let wanted = |unused: u32| crate::NewGrantRecord {
        person_id: Some("ann".into()),
        doors: Some(vec!["front".into()]),
        passes: Some(unused),
        source: Some("cobot-passes:2:7".into()),
        ..Default::default()
    };
    let apply = |unused: u32, asked_at: i64| {
        let store = store.clone();
        async move {
            store
                .replace_cobot_pass_grants("ann", "cobot-passes:2", &[wanted(unused)], asked_at)
                .await
                .expect("refresh")
        }
    };
    let (mut platform, mut ever, mut entries) = (initial, initial, 0);
    apply(platform, crate::now_micros()).await;
    let grant = crate::parse_grant_id(&store.grants(Some("ann")).await.unwrap()[0].id).unwrap();
    let mut asked: Vec<(u32, i64)> = Vec::new();
    for step in steps {
        match step {
            PassStep::Enter => {
                let mut event = NewEvent::new("decision").door("front").person("ann");
                event.allowed = Some(true);
                event.reason = Some(lintel_proto::Reason::Granted);
                let pass = lintel_core::PassGrant { grant, checked_in_until: i64::MIN };
                let tap = PendingDecision { event, pass_grants: vec![pass], backup_code: None };
                let stored = store.commit_decision(tap).await.expect("recorded").event;
                if stored.allowed == Some(true) {
                    entries += 1;
                    let key = format!("cobot-check-in:{}", stored.id);
                    store.enqueue("cobot", "check_in", &key, &serde_json::json!({})).await.expect("queued");
                }
            }
            PassStep::PostCheckIn => {
                if let Some(item) = store.due_outbox("cobot", 1).await.expect("due").pop() {
                    let attempt = if platform > 0 {
                        platform -= 1;
                        crate::Attempt::Done
                    } else {
                        crate::Attempt::Failed("no time passes left".into())
                    };
                    store.outbox_attempted(item.pk, &attempt).await.expect("recorded");
                }
            }
            PassStep::Ask => asked.push((platform, crate::now_micros())),
            PassStep::Apply { newest } => {
                if !asked.is_empty() {
                    let (unused, at) = if *newest { asked.pop().unwrap() } else { asked.remove(0) };
                    apply(unused, at).await;
                }
            }
            PassStep::Buy => {
                platform += 1;
                ever += 1;
            }
        }
    }
    (entries, ever)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, ..Default::default() })]

    /// However refreshes (asked and applied in any order, late or out of order), entries
    /// and check-ins interleave, the member never gets in more often than the platform
    /// ever had passes.
    #[test]
    fn refreshes_never_admit_more_entries_than_passes(
        initial in 0u32..3,
        steps in proptest::collection::vec(pass_step(), 1..40),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (entries, passes) = runtime.block_on(run_pass_steps(initial, &steps));
        proptest::prop_assert!(entries <= passes, "{entries} entries on {passes} passes");
    }
}

/// An OpenID sign-in under way is taken once; one too old is not returned; at most `max`
/// are kept, the expired ones forgotten first.
#[tokio::test]
async fn an_oidc_sign_in_is_taken_once_and_expires() {
    let (_dir, store) = sqlite_store().await;
    let sign_in = |at| crate::OidcSignIn {
        nonce: "n".into(),
        pkce_verifier: "v".into(),
        redirect_uri: "http://127.0.0.1/ui/login/oidc".into(),
        next: "/ui/".into(),
        created_at: at,
    };
    assert!(store.create_oidc_sign_in("s1", &sign_in(100), "a", 0, (2, 2)).await.expect("kept"));
    assert!(store.create_oidc_sign_in("s2", &sign_in(50), "b", 0, (2, 2)).await.expect("kept"));
    assert!(!store.create_oidc_sign_in("s3", &sign_in(100), "c", 0, (2, 2)).await.expect("asked"), "two at most");
    assert!(store.create_oidc_sign_in("s3", &sign_in(100), "c", 60, (2, 2)).await.expect("kept"), "s2 expired: room");
    assert!(
        !store.create_oidc_sign_in("s4", &sign_in(100), "c", 60, (9, 1)).await.expect("asked"),
        "one client may not hold more than its share"
    );
    assert_eq!(store.take_oidc_sign_in("s2", 0).await.expect("asked"), None, "forgotten");
    assert_eq!(store.take_oidc_sign_in("s1", 60).await.expect("asked"), Some(sign_in(100)));
    assert_eq!(store.take_oidc_sign_in("s1", 60).await.expect("asked"), None, "taken once");
    assert_eq!(store.take_oidc_sign_in("s3", 200).await.expect("asked"), None, "too old");
    assert_eq!(store.take_oidc_sign_in("s3", 0).await.expect("asked"), None, "and gone");
}
