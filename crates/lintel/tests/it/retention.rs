//! Events kept as long as wanted, people forgotten when asked: `[events] retain_days`
//! prunes old events in batches (attendance keeps who entered when), the event log filters
//! by time (`from`, `to`), and `lintel person forget` erases a person and pseudonymises
//! their events.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Backend, Database, Server, card, lintel, small_world};

const DAY_MICROS: i64 = 86_400_000_000;
/// More than two of the pruner's batches of 1,000.
const OLD_ENTRIES: i64 = 2_500;

fn micros_to_rfc3339(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros).expect("a time").to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Alice's entries at the front door, `days` ago, a second apart, written into the log as
/// lintel writes decisions.
async fn write_old_entries(db: &Database, days: i64) -> i64 {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&db.url).await.expect("the test database opens");
    let start = chrono::Utc::now().timestamp_micros() - days * DAY_MICROS;
    for chunk in (0..OLD_ENTRIES).collect::<Vec<_>>().chunks(500) {
        let values: Vec<String> = chunk
            .iter()
            .map(|i| format!("({}, 'decision', 1, 'granted', 'alice', 'front', '{{}}')", start + i * 1_000_000))
            .collect();
        let sql = format!(
            "INSERT INTO events (at, kind, allowed, reason, person_id, door_id, data) VALUES {}",
            values.join(", ")
        );
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await.expect("old events written");
    }
    pool.close().await;
    start
}

async fn events(s: &Server, query: &str) -> Vec<Value> {
    s.all_events(query).await
}

async fn old_events_are_pruned_and_attendance_stays(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    small_world(&s).await;
    s.terminate();
    let start = write_old_entries(&db, 40).await;
    let s = Server::start(&db);
    assert!(s.decide("front", card("04A1B2C3", Some("7"))).await["allowed"] == true);

    // The log by time: the old entries alone, then the recent events alone.
    let (old_from, old_to) = (micros_to_rfc3339(start), micros_to_rfc3339(start + DAY_MICROS));
    let old = events(&s, &format!("from={old_from}&to={old_to}")).await;
    assert_eq!(old.len() as i64, OLD_ENTRIES, "the old entries by time");
    let recent = events(&s, &format!("from={}", micros_to_rfc3339(start + 30 * DAY_MICROS))).await;
    assert!(!recent.is_empty() && recent.iter().all(|e| e["at"].as_str() > Some(old_to.as_str())), "{recent:?}");
    let day = old_from[..10].to_owned();
    let attendance_before = s.get(&format!("/api/v1/attendance?from={day}&to={day}")).await.1;
    s.terminate();

    // Kept for 30 days: the 40-day-old events go, in batches, at the first tick.
    let s = Server::start_with(&db, &[("LINTEL_EVENTS_RETAIN_DAYS", "30")]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !events(&s, &format!("to={old_to}")).await.is_empty() {
        assert!(Instant::now() < deadline, "the old events are never pruned");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let kept = events(&s, "").await;
    assert_eq!(kept.len(), recent.len(), "the recent events stay: {kept:?}");
    assert_eq!(events(&s, "person_id=alice").await.len(), recent.iter().filter(|e| e["person_id"] == "alice").count());
    // Attendance of the pruned day is what it was.
    let attendance_after = s.get(&format!("/api/v1/attendance?from={day}&to={day}")).await.1;
    assert_eq!(attendance_after, attendance_before);
    let people = &attendance_after["days"][0]["people"];
    assert!(people.to_string().contains("alice"), "{attendance_after}");
    // Still one event after another: the next event's number follows the last one seen.
    let last: i64 = kept.last().expect("events")["id"].as_str().unwrap().parse().unwrap();
    let next = s.decide("front", card("04A1B2C3", Some("7"))).await;
    assert!(next["event_id"].as_str().unwrap().parse::<i64>().unwrap() > last, "{next}");
}

async fn forgotten_people_leave_no_name(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    small_world(&s).await;
    for _ in 0..3 {
        assert!(s.decide("front", card("04A1B2C3", Some("7"))).await["allowed"] == true);
    }
    let today = chrono::Utc::now().date_naive().to_string();

    // The card keeps being tapped while the command runs: the server decides with it until
    // it has seen the erasure, and those decisions must not name Alice either.
    let mut forget = lintel()
        .args(["person", "forget", "alice", "--database-url", &db.url])
        .current_dir(&db.dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("lintel runs");
    let (status, out, refused_at_last) = loop {
        let refused = s.decide("front", card("04A1B2C3", Some("7"))).await["reason"] == "unknown_credential";
        if let Some(exited) = forget.try_wait().unwrap() {
            break (exited, forget.wait_with_output().expect("output"), refused);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(refused_at_last, "the server had not seen the erasure when the command ended");
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("forgotten-"), "{token}");
    assert_eq!(s.get("/api/v1/people/alice").await.0, 404);
    let log = events(&s, "").await;
    let text = serde_json::to_string(&log).unwrap();
    assert!(!text.contains("\"alice\"") && !text.contains("alice@example.org"), "{text}");
    let theirs: Vec<&Value> = log.iter().filter(|e| e["person_id"] == token.as_str()).collect();
    assert!(theirs.iter().filter(|e| e["kind"] == "decision").count() >= 3, "{theirs:?}");
    assert!(theirs.iter().any(|e| e["kind"] == "person.forgotten"), "the erasure is recorded: {theirs:?}");
    assert!(events(&s, "person_id=alice").await.is_empty());
    let attendance = s.get(&format!("/api/v1/attendance?from={today}&to={today}")).await.1.to_string();
    assert!(attendance.contains(&token) && !attendance.contains("\"alice\""), "{attendance}");

    // Forgetting someone who is not there says so.
    let out = lintel()
        .args(["person", "forget", "alice", "--database-url", &db.url])
        .current_dir(&db.dir)
        .output()
        .expect("lintel runs");
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("not found"));
}

crate::on_both_backends!(old_events_are_pruned_and_attendance_stays, forgotten_people_leave_no_name);
