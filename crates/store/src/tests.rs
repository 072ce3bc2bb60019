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
