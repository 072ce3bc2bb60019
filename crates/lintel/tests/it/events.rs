//! The event log: cursor paging and filters, the live Server-Sent Events stream and its
//! resumption with `Last-Event-ID`, and attendance per day.

use std::time::Duration;

use serde_json::{Value, json};

use crate::bad_input::{assert_problem, send};
use crate::harness::{ADMIN, Backend, Database, FakeClock, Server, card, small_world};

pub(crate) fn ids(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["id"].as_str().expect("event id").to_owned()).collect()
}

pub(crate) fn seq(id: &str) -> i64 {
    id.parse().unwrap_or_else(|_| panic!("event id {id:?} is not a number"))
}

async fn page(s: &Server, query: &str) -> (Vec<Value>, Value) {
    let (status, page) = s.get(&format!("/api/v1/events?{query}")).await;
    assert_eq!(status, 200, "{query}: {page}");
    (page["items"].as_array().cloned().expect("items"), page["next"].clone())
}

/// Follows `next` from `after` with pages of `limit`, until a page comes back empty.
pub(crate) async fn walk(s: &Server, filter: &str, limit: usize) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("{filter}&limit={limit}&after={c}"),
            None => format!("{filter}&limit={limit}"),
        };
        let (items, next) = page(s, &query).await;
        assert!(items.len() <= limit, "{query}: {} items", items.len());
        if items.is_empty() {
            if let Some(c) = &cursor {
                assert_eq!(next, c.as_str(), "an empty page keeps the cursor");
            }
            return all;
        }
        assert_eq!(next, items.last().unwrap()["id"], "{query}: next is the last item's id");
        cursor = Some(next.as_str().expect("next is a string").to_owned());
        all.extend(items);
        assert!(all.len() < 10_000, "paging does not end");
    }
}

/// Two doors, alice (front) and bob (side), and a few decisions of each kind.
async fn busy_world(s: &Server) {
    small_world(s).await;
    s.ok("/api/v1/doors", json!({"id": "side", "name": "Side"}), 201).await;
    s.ok("/api/v1/people", json!({"id": "bob", "name": "Bob"}), 201).await;
    s.ok("/api/v1/people/bob/credentials", card("0B0B0B0B", None), 201).await;
    s.ok("/api/v1/grants", json!({"person_id": "bob", "doors": ["side"]}), 201).await;
    for _ in 0..3 {
        assert_eq!(s.decide("front", card("04A1B2C3", Some("7"))).await["reason"], "granted");
    }
    for _ in 0..2 {
        assert_eq!(s.decide("side", card("0B0B0B0B", None)).await["reason"], "granted");
    }
    assert_eq!(s.decide("front", card("DEADBEEF", None)).await["reason"], "unknown_credential");
    assert_eq!(s.decide("front", card("0B0B0B0B", None)).await["reason"], "no_grant");
}

async fn event_log_pages_with_a_cursor(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    busy_world(&s).await;
    let all = s.events().await;
    assert_eq!(all.len(), 15, "{all:?}");
    let all_ids = ids(&all);
    assert!(all_ids.windows(2).all(|w| seq(&w[0]) < seq(&w[1])), "oldest first, ids increasing: {all_ids:?}");
    for e in &all {
        assert!(e["at"].as_str().is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()), "{e}");
        assert!(e["kind"].is_string() && e["data"].is_object(), "{e}");
    }

    // Paging visits every event once, in order.
    for limit in [1, 4, 1000] {
        assert_eq!(ids(&walk(&s, "", limit).await), all_ids, "limit {limit}");
    }
    // `after` is exclusive; past the end is an empty page that keeps the cursor.
    let (items, _) = page(&s, &format!("after={}&limit=3", all_ids[4])).await;
    assert_eq!(ids(&items), all_ids[5..8].to_vec());
    let last = all_ids.last().unwrap();
    let (items, next) = page(&s, &format!("after={last}")).await;
    assert!(items.is_empty());
    assert_eq!(next, last.as_str());

    // Filters, alone and together, also while paging.
    let only = |f: &dyn Fn(&Value) -> bool| ids(&all.iter().filter(|e| f(e)).cloned().collect::<Vec<_>>());
    let decisions = walk(&s, "kind=decision", 2).await;
    assert_eq!(ids(&decisions), only(&|e| e["kind"] == "decision"));
    assert_eq!(decisions.len(), 7);
    let bobs = walk(&s, "person_id=bob", 3).await;
    assert_eq!(ids(&bobs), only(&|e| e["person_id"] == "bob"));
    assert!(bobs.iter().any(|e| e["kind"] == "person.created"), "{bobs:?}");
    assert_eq!(bobs.iter().filter(|e| e["kind"] == "decision").count(), 3);
    let side = walk(&s, "door=side", 100).await;
    assert_eq!(ids(&side), only(&|e| e["door"] == "side"));
    assert!(side.iter().any(|e| e["kind"] == "door.created"));
    let (alice_front, _) = page(&s, "kind=decision&door=front&person_id=alice").await;
    assert_eq!(alice_front.len(), 3, "{alice_front:?}");
    assert!(alice_front.iter().all(|e| e["allowed"] == true && e["reason"] == "granted"));
    for hostile in ["door=front%27%20OR%20%271%27%3D%271", "person_id=%25", "kind=decision%27--"] {
        let (items, _) = page(&s, hostile).await;
        assert!(items.is_empty(), "{hostile}: {items:?}");
    }
    let (none, next) = page(&s, "kind=no.such.kind").await;
    assert!(none.is_empty());
    assert_eq!(next, "0", "no cursor given and nothing found: the start");
    let unknown = all.iter().find(|e| e["reason"] == "unknown_credential").expect("the unknown card");
    assert_eq!(unknown["data"]["uid"], "DEADBEEF", "an unknown card's UID is kept for enrolment");
    assert!(unknown["person_id"].is_null());

    // The default page is 100 events.
    let taps = (0..100).map(|_| s.decide("front", card("04A1B2C3", Some("7"))));
    futures::future::join_all(taps).await;
    let (items, next) = page(&s, "").await;
    assert_eq!(items.len(), 100);
    assert_eq!(ids(&items)[..all_ids.len()], all_ids[..]);
    assert_eq!(next, items[99]["id"]);
    assert_eq!(walk(&s, "", 1000).await.len(), all.len() + 100);
}

/// One Server-Sent Event.
#[derive(Debug, Clone, Default)]
pub(crate) struct Message {
    id: Option<String>,
    event: Option<String>,
    data: String,
}

impl Message {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("SSE data is not JSON ({e}): {:?}", self.data))
    }
}

pub(crate) struct Stream {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl Stream {
    pub(crate) async fn open(s: &Server, query: &str, last_event_id: Option<&str>) -> Self {
        // No overall timeout: the stream stays open.
        let client = reqwest::Client::new();
        let mut request = client.get(format!("{}/api/v1/events/stream{query}", s.base)).bearer_auth(ADMIN);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.expect("stream connects");
        assert_eq!(response.status(), 200);
        let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(content_type.starts_with("text/event-stream"), "{content_type}");
        Self { response, buffer: Vec::new() }
    }

    /// The next event that carries data (keep-alive comments are skipped), or `None` when
    /// none comes within `wait`.
    pub(crate) async fn next(&mut self, wait: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let block = String::from_utf8(block).expect("SSE is UTF-8");
                let mut message = Message::default();
                let mut data = Vec::new();
                for line in block.lines() {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "id" => message.id = Some(value.to_owned()),
                        "event" => message.event = Some(value.to_owned()),
                        "data" => data.push(value.to_owned()),
                        _ => {}
                    }
                }
                if !data.is_empty() {
                    message.data = data.join("\n");
                    return Some(message);
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk()).await.ok()?;
            match chunk.expect("the stream reads") {
                Some(bytes) => self.buffer.extend(bytes.iter().filter(|b| **b != b'\r')),
                None => return None,
            }
        }
    }

    pub(crate) async fn expect(&mut self, what: &str) -> Message {
        self.next(Duration::from_secs(10)).await.unwrap_or_else(|| panic!("no event arrived: {what}"))
    }

    /// Reads `n` events, failing with what did arrive when they do not.
    pub(crate) async fn take(&mut self, n: usize) -> Vec<Message> {
        let mut got = Vec::new();
        while got.len() < n {
            match self.next(Duration::from_secs(10)).await {
                Some(m) => got.push(m),
                None => panic!(
                    "only {} of {n} events arrived: {:?}",
                    got.len(),
                    got.iter().map(|m| m.id.clone().unwrap_or_default()).collect::<Vec<_>>()
                ),
            }
        }
        got
    }
}

pub(crate) fn message_ids(messages: &[Message]) -> Vec<String> {
    messages.iter().map(|m| m.id.clone().expect("every event has an id")).collect()
}

async fn stream_delivers_live_and_resumes_without_gaps(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    small_world(&s).await;
    let mut stream = Stream::open(&s, "", None).await;

    // Live: a decision made after connecting arrives, and nothing from before does.
    let d1 = s.decide("front", card("04A1B2C3", Some("7"))).await;
    let m1 = stream.expect("the first decision").await;
    assert_eq!(m1.id.as_deref(), d1["event_id"].as_str(), "{m1:?}");
    assert_eq!(m1.event.as_deref(), Some("decision"));
    let data = m1.json();
    assert_eq!(data["id"], d1["event_id"]);
    assert_eq!(data["kind"], "decision");
    assert_eq!(data["reason"], "granted");
    assert_eq!(data["allowed"], true);
    assert_eq!(data["person_id"], "alice");
    assert_eq!(data["door"], "front");
    let d2 = s.decide("front", card("04A1B2C3", Some("6"))).await;
    let m2 = stream.expect("the second decision").await;
    assert_eq!(m2.id.as_deref(), d2["event_id"].as_str());
    assert_eq!(m2.json()["reason"], "revoked_card");
    drop(stream);

    // While nobody listens: decisions and a directory change.
    let d2_id = d2["event_id"].as_str().unwrap().to_owned();
    s.decide("front", card("DEADBEEF", None)).await;
    s.ok("/api/v1/people", json!({"id": "carol", "name": "Carol"}), 201).await;
    s.decide("front", card("04A1B2C3", Some("7"))).await;
    let (missed, _) = page(&s, &format!("after={d2_id}")).await;
    assert_eq!(missed.len(), 3, "{missed:?}");

    // Resuming gets exactly what was missed, in order, then live events, nothing twice.
    let mut stream = Stream::open(&s, "", Some(&d2_id)).await;
    let caught_up = stream.take(missed.len()).await;
    assert_eq!(message_ids(&caught_up), ids(&missed));
    assert_eq!(caught_up[1].event.as_deref(), Some("person.created"));
    assert_eq!(caught_up.iter().map(Message::json).collect::<Vec<_>>(), missed, "the stream carries the stored events");
    let d5 = s.decide("front", card("04A1B2C3", Some("7"))).await;
    let m5 = stream.expect("a live decision after catching up").await;
    assert_eq!(m5.id.as_deref(), d5["event_id"].as_str());
    assert!(stream.next(Duration::from_millis(500)).await.is_none(), "nothing is repeated");
    drop(stream);

    // `?after=` resumes like `Last-Event-ID`; filters apply to the backlog and live.
    let (after_d2, _) = page(&s, &format!("after={d2_id}")).await;
    let mut stream = Stream::open(&s, &format!("?after={d2_id}"), None).await;
    assert_eq!(message_ids(&stream.take(after_d2.len()).await), ids(&after_d2));
    drop(stream);
    let mut decisions = Stream::open(&s, "?kind=decision", Some(&d2_id)).await;
    let expected: Vec<_> = after_d2.iter().filter(|e| e["kind"] == "decision").cloned().collect();
    assert_eq!(message_ids(&decisions.take(expected.len()).await), ids(&expected));
    s.ok("/api/v1/people", json!({"id": "dave", "name": "Dave"}), 201).await;
    let d6 = s.decide("front", card("04A1B2C3", Some("7"))).await;
    let m6 = decisions.expect("the next decision").await;
    assert_eq!(m6.id.as_deref(), d6["event_id"].as_str(), "person.created is filtered out: {m6:?}");
    let mut from_start = Stream::open(&s, "", Some("0")).await;
    let all = s.events().await;
    assert_eq!(message_ids(&from_start.take(all.len()).await), ids(&all), "Last-Event-ID 0 replays the whole log");

    let bad = send(
        s.client
            .get(format!("{}/api/v1/events/stream", s.base))
            .bearer_auth(ADMIN)
            .header("Last-Event-ID", "yesterday"),
    )
    .await;
    assert_problem(&bad, 400, "a Last-Event-ID that is not an event id");
    let anonymous = send(s.client.get(format!("{}/api/v1/events/stream", s.base))).await;
    assert_problem(&anonymous, 401, "stream without a token");
}

/// Decisions, directory writes and door openings all at once: the live stream still
/// carries every event exactly once, in order.
async fn stream_misses_nothing_under_concurrent_writers(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    small_world(&s).await;
    s.ok("/api/v1/doors", json!({"id": "side", "name": "Side"}), 201).await;
    let start = s.events().await.last().unwrap()["id"].as_str().unwrap().to_owned();
    let mut stream = Stream::open(&s, "", None).await;
    let mut seen = Vec::new();
    for round in 0..3 {
        let decisions = futures::future::join_all((0..40).map(|_| s.decide("front", card("04A1B2C3", Some("7")))));
        let people = futures::future::join_all(
            (0..15).map(|i| s.post("/api/v1/people", json!({"id": format!("p{round}-{i}"), "name": "P"}))),
        );
        let opens =
            futures::future::join_all((0..15).map(|_| s.post("/api/v1/doors/side/open", json!({"note": "load"}))));
        let (_, created, opened) = futures::join!(decisions, people, opens);
        assert!(created.iter().all(|(status, _)| *status == 201));
        assert!(opened.iter().all(|(status, _)| *status == 200), "{opened:?}");
        // Everything is written: what has not arrived within a few seconds never will.
        let want = (round + 1) * 85;
        while seen.len() < want {
            match stream.next(Duration::from_secs(3)).await {
                Some(m) => seen.push(m),
                None => break,
            }
        }
    }
    let expected: Vec<_> =
        walk(&s, "", 1000).await.into_iter().filter(|e| seq(e["id"].as_str().unwrap()) > seq(&start)).collect();
    assert_eq!(expected.len(), 3 * 85);
    let got = message_ids(&seen);
    let missing: Vec<String> = expected
        .iter()
        .filter(|e| !got.contains(&e["id"].as_str().unwrap().to_owned()))
        .map(|e| format!("{} {}", e["id"].as_str().unwrap(), e["kind"].as_str().unwrap()))
        .collect();
    assert!(missing.is_empty(), "the live stream lost {} of {} events: {missing:?}", missing.len(), expected.len());
    assert_eq!(got, ids(&expected), "the live stream repeated or reordered events");
    assert!(stream.next(Duration::from_millis(300)).await.is_none(), "nothing extra");
    let mut resumed = Stream::open(&s, "", Some(&start)).await;
    assert_eq!(message_ids(&resumed.take(expected.len()).await), ids(&expected));
}

/// A backlog longer than one read of the store is replayed whole, in order.
async fn stream_catches_up_on_a_long_backlog(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    small_world(&s).await;
    for _ in 0..6 {
        futures::future::join_all((0..120).map(|_| s.decide("front", card("04A1B2C3", Some("7"))))).await;
    }
    let all = walk(&s, "", 1000).await;
    assert_eq!(all.len(), 4 + 720);
    let mut stream = Stream::open(&s, "", Some("0")).await;
    assert_eq!(message_ids(&stream.take(all.len()).await), ids(&all));
    let live = s.decide("front", card("04A1B2C3", Some("7"))).await;
    assert_eq!(stream.expect("a live event after the backlog").await.id.as_deref(), live["event_id"].as_str());
    let mut decisions = Stream::open(&s, "?kind=decision&person_id=alice", Some("0")).await;
    assert_eq!(decisions.take(721).await.last().and_then(|m| m.id.clone()).as_deref(), live["event_id"].as_str());
}

fn day<'a>(answer: &'a Value, date: &str, group: Option<&str>) -> Option<&'a Value> {
    answer["days"].as_array().expect("days").iter().find(|d| {
        d["date"] == date && d.get("group").and_then(Value::as_str) == group && d["present"].as_u64() != Some(0)
    })
}

fn time(value: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap_or_else(|| panic!("not a time: {value}")))
        .unwrap_or_else(|e| panic!("{value}: {e}"))
        .with_timezone(&chrono::Utc)
}

/// (person, entries, first, last) of a day, sorted by person.
fn people_of(d: &Value) -> Vec<(String, u64, String, String)> {
    let mut people: Vec<_> = d["people"]
        .as_array()
        .expect("people")
        .iter()
        .map(|p| {
            (
                p["person_id"].as_str().unwrap().to_owned(),
                p["entries"].as_u64().unwrap(),
                time(&p["first_entry"]).format("%Y-%m-%dT%H:%M").to_string(),
                time(&p["last_entry"]).format("%Y-%m-%dT%H:%M").to_string(),
            )
        })
        .collect();
    people.sort();
    assert_eq!(d["present"].as_u64(), Some(people.len() as u64), "present counts the people: {d}");
    people
}

fn entry(person: &str, n: u64, first: &str, last: &str) -> (String, u64, String, String) {
    (person.to_owned(), n, first.to_owned(), last.to_owned())
}

fn days_with_people(answer: &Value) -> Vec<(String, Option<String>)> {
    answer["days"]
        .as_array()
        .expect("days")
        .iter()
        .filter(|d| d["present"].as_u64() != Some(0))
        .map(|d| (d["date"].as_str().unwrap().to_owned(), d.get("group").and_then(Value::as_str).map(str::to_owned)))
        .collect()
}

async fn attendance(s: &Server, query: &str) -> Value {
    let (status, answer) = s.get(&format!("/api/v1/attendance?{query}")).await;
    assert_eq!(status, 200, "{query}: {answer}");
    answer
}

async fn attendance_counts_entries_per_day(b: Backend) {
    let db = Database::new(b);
    // Entries happen at the server's time (a recorded decision's `at` is now): the
    // server's clock is moved to each moment.
    let clock = FakeClock::new(&db);
    let s = Server::start_with(&db, &clock.env());
    s.ok("/api/v1/doors", json!({"id": "front", "name": "Front"}), 201).await;
    s.ok("/api/v1/doors", json!({"id": "store", "name": "Storeroom", "attendance": false}), 201).await;
    assert_eq!(s.get("/api/v1/doors/store").await.1["attendance"], false);
    for (person, uid) in [("alice", "0A000001"), ("bob", "0B000002"), ("carol", "0C000003"), ("erin", "0E000005")] {
        s.ok("/api/v1/people", json!({"id": person, "name": person}), 201).await;
        s.ok(&format!("/api/v1/people/{person}/credentials"), card(uid, None), 201).await;
        if person != "carol" {
            s.ok("/api/v1/grants", json!({"person_id": person, "doors": ["front", "store"]}), 201).await;
        }
    }
    s.ok("/api/v1/groups", json!({"id": "staff", "name": "Staff"}), 201).await;
    s.ok("/api/v1/groups", json!({"id": "makers", "name": "Makers"}), 201).await;
    for (group, person) in [("staff", "alice"), ("makers", "alice"), ("makers", "bob")] {
        assert_eq!(s.put(&format!("/api/v1/groups/{group}/members/{person}")).await.0, 204);
    }
    let tap =
        |door: &str, uid: &str, dry_run: bool| json!({"door": door, "credential": card(uid, None), "dry_run": dry_run});
    for (door, uid, at, dry, reason) in [
        ("front", "0A000001", "2026-03-02T12:00:00Z", false, "granted"),
        ("front", "0A000001", "2026-03-02T08:15:00Z", false, "granted"),
        ("front", "0A000001", "2026-03-02T17:45:00Z", false, "granted"),
        ("store", "0A000001", "2026-03-02T19:00:00Z", false, "granted"),
        ("front", "0B000002", "2026-03-02T09:30:00Z", false, "granted"),
        ("store", "0B000002", "2026-03-02T06:00:00Z", false, "granted"),
        ("front", "0E000005", "2026-03-02T10:00:00Z", false, "granted"),
        ("front", "0C000003", "2026-03-02T11:00:00Z", false, "no_grant"),
        ("front", "0A000001", "2026-03-03T23:30:00Z", false, "granted"),
        ("front", "0B000002", "2026-03-04T06:00:00Z", false, "granted"),
        ("front", "0A000001", "2026-03-05T10:00:00Z", true, "granted"),
        ("store", "0B000002", "2026-03-05T10:00:00Z", false, "granted"),
    ] {
        clock.set_to(at.parse().expect("moment")).await;
        let answer = s.ok("/api/v1/decisions", tap(door, uid, dry), 200).await;
        assert_eq!(answer["reason"], reason, "{door} {uid} {at}: {answer}");
    }

    // Per day in UTC (the server's default): the storeroom, denials and dry runs do not count.
    let utc = attendance(&s, "from=2026-03-01&to=2026-03-05").await;
    assert_eq!(utc["from"], "2026-03-01");
    assert_eq!(utc["to"], "2026-03-05");
    assert_eq!(utc["tz"], "UTC");
    assert_eq!(
        days_with_people(&utc),
        vec![("2026-03-02".into(), None), ("2026-03-03".into(), None), ("2026-03-04".into(), None)],
        "{utc}"
    );
    assert_eq!(
        people_of(day(&utc, "2026-03-02", None).unwrap()),
        vec![
            entry("alice", 3, "2026-03-02T08:15", "2026-03-02T17:45"),
            entry("bob", 1, "2026-03-02T09:30", "2026-03-02T09:30"),
            entry("erin", 1, "2026-03-02T10:00", "2026-03-02T10:00"),
        ]
    );
    assert_eq!(
        people_of(day(&utc, "2026-03-03", None).unwrap()),
        vec![entry("alice", 1, "2026-03-03T23:30", "2026-03-03T23:30")]
    );
    assert_eq!(
        people_of(day(&utc, "2026-03-04", None).unwrap()),
        vec![entry("bob", 1, "2026-03-04T06:00", "2026-03-04T06:00")]
    );
    let one = attendance(&s, "from=2026-03-03&to=2026-03-03").await;
    assert_eq!(days_with_people(&one), vec![("2026-03-03".into(), None)], "{one}");

    // In Berlin (UTC+1 in March) alice's 23:30 UTC entry belongs to the next day.
    let berlin = attendance(&s, "from=2026-03-01&to=2026-03-05&tz=Europe/Berlin").await;
    assert_eq!(berlin["tz"], "Europe/Berlin");
    assert_eq!(days_with_people(&berlin), vec![("2026-03-02".into(), None), ("2026-03-04".into(), None)], "{berlin}");
    assert_eq!(people_of(day(&berlin, "2026-03-02", None).unwrap()).len(), 3);
    assert_eq!(
        people_of(day(&berlin, "2026-03-04", None).unwrap()),
        vec![
            entry("alice", 1, "2026-03-03T23:30", "2026-03-03T23:30"),
            entry("bob", 1, "2026-03-04T06:00", "2026-03-04T06:00"),
        ]
    );

    // Split by group: alice counts in both of hers, erin (no group) under none.
    let groups = attendance(&s, "from=2026-03-02&to=2026-03-04&by=group").await;
    let g = |date: &str, group: Option<&str>| {
        people_of(day(&groups, date, group).unwrap_or_else(|| panic!("{date} {group:?} missing: {groups}")))
            .into_iter()
            .map(|p| p.0)
            .collect::<Vec<_>>()
    };
    assert_eq!(g("2026-03-02", Some("staff")), ["alice"]);
    assert_eq!(g("2026-03-02", Some("makers")), ["alice", "bob"]);
    assert_eq!(g("2026-03-02", None), ["erin"]);
    assert_eq!(g("2026-03-03", Some("staff")), ["alice"]);
    assert_eq!(g("2026-03-03", Some("makers")), ["alice"]);
    assert_eq!(g("2026-03-04", Some("makers")), ["bob"]);
    assert_eq!(days_with_people(&groups).len(), 6, "{groups}");
    let staff_day = day(&groups, "2026-03-02", Some("staff")).unwrap();
    assert_eq!(people_of(staff_day), vec![entry("alice", 3, "2026-03-02T08:15", "2026-03-02T17:45")]);

    // Opening with a personal secret is an entry; an admin's opening is nobody's.
    clock.set_to(chrono::Utc::now()).await;
    let secret = s.ok("/api/v1/people/erin/credentials", json!({"kind": "secret"}), 201).await["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let opened = send(s.client.post(format!("{}/open/front", s.base)).bearer_auth(&secret)).await;
    assert_eq!(opened.status, 200, "{:?}", opened.body);
    assert_eq!(s.post("/api/v1/doors/front/open", json!({})).await.0, 200);
    let today = chrono::Utc::now().date_naive();
    let now = attendance(&s, &format!("from={}&to={}", today.pred_opt().unwrap(), today.succ_opt().unwrap())).await;
    let present: Vec<_> = now["days"].as_array().unwrap().iter().flat_map(people_of).map(|p| p.0).collect();
    assert_eq!(present, ["erin"], "{now}");

    // Ranges: at most 366 days, forwards; dates and names that parse.
    attendance(&s, "from=2025-01-01&to=2026-01-02").await;
    for (query, status) in [
        ("from=2025-01-01&to=2026-01-03", 422),
        ("from=2026-03-05&to=2026-03-01", 422),
        ("from=2026-02-30&to=2026-03-01", 400),
        ("from=02.03.2026&to=2026-03-03", 400),
        ("from=2026-03-01", 400),
        ("to=2026-03-01", 400),
        ("from=2026-03-01&to=2026-03-02&tz=Europe/Atlantis", 422),
        ("from=2026-03-01&to=2026-03-02&by=person", 422),
        ("from=2026-03-01&to=2026-03-02&door=front", 400),
    ] {
        let answer = send(s.client.get(format!("{}/api/v1/attendance?{query}", s.base)).bearer_auth(ADMIN)).await;
        assert_problem(&answer, status, query);
    }
}

crate::on_both_backends!(
    event_log_pages_with_a_cursor,
    stream_delivers_live_and_resumes_without_gaps,
    stream_misses_nothing_under_concurrent_writers,
    stream_catches_up_on_a_long_backlog,
    attendance_counts_entries_per_day,
);
