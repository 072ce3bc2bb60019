//! The crash loop: 16 tappers ask for decisions while the server is killed (SIGKILL) at
//! random moments and started again on the same database, over and over. The oracle:
//! every decision that was answered is in the event log exactly once, with the outcome it
//! was answered with; nothing is in the log that nobody asked; no limited grant let in
//! more people than it has passes; and each grant's `passes_used` is the number of
//! allowed decisions that used it.
//!
//! Each request carries its own `at` (a base moment plus its sequence number in
//! microseconds): that is how a decision in the log is told apart from every other, also
//! one whose answer the kill cut off. `LINTEL_CRASH_ITERATIONS` (default 10) sets the
//! number of kills, `LINTEL_CRASH_SEED` replays a run; `scripts/crash-loop` runs a long one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Timelike, Utc};
use serde_json::{Value, json};

use crate::harness::{ADMIN, Backend, Database, Server};

const TAPPERS: usize = 16;
/// Each request's `at` is now (to the second) with its sequence number as the
/// microseconds: a recorded decision's `at` must be within seconds of the server's clock.
const MAX_SEQ: u64 = 1_000_000;

/// xorshift64*: enough randomness for kill moments and card choices, and replayable.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.trim().parse().unwrap_or_else(|_| panic!("{name} is a number, not {v:?}")))
}

/// A card, and whose it is.
struct Card {
    uid: String,
    person: Option<String>,
}

/// A grant with passes: its id and how many.
struct Limited {
    id: String,
    person: String,
    passes: u64,
}

/// What a request got back (requests the kill cut off get nothing).
#[derive(Debug, Clone)]
struct Answered {
    seq: u64,
    status: u16,
    body: Value,
}

/// A grant in the world: passes per kill (and an end), or `None` for unlimited.
type GrantSpec = Option<(u64, Option<&'static str>)>;

/// People with cards at door `front`: six with one limited grant each, one with two
/// (the one expiring first is used first), three with unlimited grants, one with none,
/// and a card nobody has. Passes grow with the number of kills, so that a long run also
/// spends them all and goes on refusing.
async fn world(s: &Server, iterations: u64) -> (Vec<Card>, Vec<Limited>) {
    s.ok("/api/v1/doors", json!({"id": "front", "name": "Front"}), 201).await;
    let one = |per: u64| vec![Some((per, None))];
    let specs: Vec<Vec<GrantSpec>> = vec![
        one(5),
        one(10),
        one(15),
        one(25),
        one(40),
        one(60),
        vec![Some((4, Some("2030-01-01T00:00:00Z"))), Some((8, None))],
        vec![None],
        vec![None],
        vec![None],
        vec![],
    ];
    let mut cards = Vec::new();
    let mut limited = Vec::new();
    for (i, grants) in specs.into_iter().enumerate() {
        let person = format!("p{i:02}");
        let uid = format!("C0DE{i:04X}");
        s.ok("/api/v1/people", json!({"id": person, "name": person}), 201).await;
        s.ok(&format!("/api/v1/people/{person}/credentials"), json!({"kind": "card", "uid": uid}), 201).await;
        for spec in grants {
            let mut body = json!({"person_id": person, "doors": ["front"]});
            let Some((per, until)) = spec else {
                s.ok("/api/v1/grants", body, 201).await;
                continue;
            };
            let passes = per * iterations.max(1);
            body["passes"] = json!(passes);
            if let Some(until) = until {
                body["valid_until"] = json!(until);
            }
            let created = s.ok("/api/v1/grants", body, 201).await;
            let id = created["id"].as_str().expect("grant id").to_owned();
            limited.push(Limited { id, person: person.clone(), passes });
        }
        cards.push(Card { uid, person: Some(person) });
    }
    cards.push(Card { uid: "DEADBEEF".into(), person: None });
    (cards, limited)
}

/// Taps until the server stops answering; every answer is kept.
async fn tapper(
    base: String,
    client: reqwest::Client,
    uids: Arc<Vec<String>>,
    seq: Arc<AtomicU64>,
    mut rng: Rng,
    answers: Arc<std::sync::Mutex<Vec<Answered>>>,
) {
    loop {
        let n = seq.fetch_add(1, Ordering::SeqCst);
        assert!(n < MAX_SEQ, "more taps than the microseconds can number");
        let uid = &uids[rng.below(uids.len() as u64) as usize];
        let at = Utc::now().with_nanosecond(n as u32 * 1000).expect("µs");
        let body = json!({"door": "front", "credential": {"kind": "card", "uid": uid}, "at": at.to_rfc3339()});
        let sent = client.post(format!("{base}/api/v1/decisions")).bearer_auth(ADMIN).json(&body).send().await;
        let Ok(response) = sent else { return };
        let status = response.status().as_u16();
        let Ok(text) = response.text().await else { return };
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        answers.lock().expect("answers").push(Answered { seq: n, status, body });
    }
}

/// The sequence number a decision's `at` carries.
fn seq_of(event: &Value) -> u64 {
    let at: DateTime<Utc> =
        event["at"].as_str().and_then(|t| t.parse().ok()).unwrap_or_else(|| panic!("no moment in {event}"));
    u64::from(at.timestamp_subsec_micros())
}

async fn answered_decisions_survive_kill_9_exactly_once(b: Backend) {
    let iterations = env_number("LINTEL_CRASH_ITERATIONS").unwrap_or(10);
    let seed = env_number("LINTEL_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos() as u64
    });
    eprintln!("crash loop on {b:?}: {iterations} kills, LINTEL_CRASH_SEED={seed}");
    let mut rng = Rng::new(seed);
    let db = Database::new(b);
    let s = Server::start(&db);
    let (cards, limited) = world(&s, iterations).await;
    s.kill();
    let uids: Arc<Vec<String>> = Arc::new(cards.iter().map(|c| c.uid.clone()).collect());
    let seq = Arc::new(AtomicU64::new(0));
    let answers = Arc::new(std::sync::Mutex::new(Vec::new()));
    let started = Instant::now();
    for _ in 0..iterations {
        let s = Server::start(&db);
        let tappers: Vec<_> = (0..TAPPERS)
            .map(|_| {
                let rng = Rng::new(rng.next());
                tokio::spawn(tapper(s.base.clone(), s.client.clone(), uids.clone(), seq.clone(), rng, answers.clone()))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(rng.below(700))).await;
        s.kill();
        for t in tappers {
            t.await.expect("a tapper panicked");
        }
    }
    let took = started.elapsed();

    let s = Server::start(&db);
    let events = s.all_events("kind=decision").await;
    let answers = answers.lock().expect("answers").clone();
    let sent = seq.load(Ordering::SeqCst);
    let mut by_seq: HashMap<u64, Vec<&Value>> = HashMap::new();
    for e in &events {
        by_seq.entry(seq_of(e)).or_default().push(e);
    }
    let mut wrong = Vec::new();
    let doubled: Vec<_> = by_seq.iter().filter(|(_, es)| es.len() > 1).map(|(n, es)| (n, es.len())).collect();
    if !doubled.is_empty() {
        wrong.push(format!("decisions recorded more than once (seq, times): {doubled:?}"));
    }
    let phantom: Vec<_> = by_seq.keys().filter(|n| **n >= sent).collect();
    if !phantom.is_empty() {
        wrong.push(format!("decisions in the log that were never asked: {phantom:?}"));
    }
    let mut lost = Vec::new();
    let mut refused = 0;
    for a in &answers {
        let recorded = by_seq.get(&a.seq).and_then(|es| es.first());
        if a.status != 200 {
            // The door stayed shut: nothing may have been recorded or used up for it.
            refused += 1;
            if let Some(e) = recorded {
                wrong.push(format!("answered {} ({}) but recorded as {e}", a.status, a.body));
            }
            continue;
        }
        let Some(e) = recorded else {
            lost.push(a.body.clone());
            continue;
        };
        for (field, answer_field) in [
            ("id", "event_id"),
            ("allowed", "allowed"),
            ("reason", "reason"),
            ("grant_id", "grant_id"),
            ("person_id", "person_id"),
        ] {
            let recorded = e.get(field).cloned().unwrap_or(Value::Null);
            let answered = a.body.get(answer_field).cloned().unwrap_or(Value::Null);
            if recorded != answered {
                wrong.push(format!(
                    "answered {answer_field} {answered}, recorded {field} {recorded}: {} vs {e}",
                    a.body
                ));
            }
        }
    }
    if !lost.is_empty() {
        wrong.push(format!(
            "{} answered decisions are not in the log, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(3)]
        ));
    }
    let answered_ids: Vec<&str> = answers.iter().filter_map(|a| a.body["event_id"].as_str()).collect();
    if answered_ids.iter().collect::<HashSet<_>>().len() != answered_ids.len() {
        wrong.push("two answers name the same event".to_owned());
    }

    // Passes: never more entries than passes, and passes_used is what the log shows.
    let mut allowed_by_grant: HashMap<&str, u64> = HashMap::new();
    for e in events.iter().filter(|e| e["allowed"] == true) {
        if let Some(g) = e["grant_id"].as_str() {
            *allowed_by_grant.entry(g).or_default() += 1;
        }
    }
    let mut spent = Vec::new();
    for g in &limited {
        let (status, grant) = s.get(&format!("/api/v1/grants/{}", g.id)).await;
        assert_eq!(status, 200, "{grant}");
        let used = grant["passes_used"].as_u64().unwrap_or_else(|| panic!("no passes_used in {grant}"));
        let entries = allowed_by_grant.get(g.id.as_str()).copied().unwrap_or(0);
        if entries > g.passes {
            wrong.push(format!("grant {} of {}: {entries} entries on {} passes", g.id, g.person, g.passes));
        }
        if used != entries {
            wrong.push(format!("grant {} of {}: passes_used {used}, but {entries} allowed decisions", g.id, g.person));
        }
        spent.push(format!("{}: {used}/{}", g.person, g.passes));
    }
    // Nobody was refused for want of passes while one of theirs was left.
    for a in answers.iter().filter(|a| a.body["reason"] == "no_passes_left") {
        let person = a.body["person_id"].as_str().unwrap_or_default();
        for g in limited.iter().filter(|g| g.person == person) {
            let entries = allowed_by_grant.get(g.id.as_str()).copied().unwrap_or(0);
            if entries < g.passes {
                wrong.push(format!("{person} refused for no passes while grant {} has {entries}/{}", g.id, g.passes));
            }
        }
    }
    // A card without a grant never gets in; nobody gets in on somebody else's grant.
    for e in events.iter().filter(|e| e["allowed"] == true) {
        let holder = cards.iter().find(|c| c.person.is_some() && c.person.as_deref() == e["person_id"].as_str());
        if holder.is_none() || e["person_id"] == "p10" {
            wrong.push(format!("let in without a grant: {e}"));
        }
    }

    let ok = answers.iter().filter(|a| a.status == 200).count();
    let cut_off = sent as usize - answers.len();
    let answered_seqs: HashSet<u64> = answers.iter().map(|a| a.seq).collect();
    let recorded_unanswered = by_seq.keys().filter(|n| !answered_seqs.contains(n)).count();
    eprintln!(
        "crash loop on {b:?}: {iterations} kills in {:.1} s; {sent} decisions asked, {ok} answered, {refused} refused \
         with an error, {cut_off} cut off by a kill ({recorded_unanswered} of those recorded before it); {} in the log; \
         lost {} answered decisions, doubled {}; passes used {}",
        took.as_secs_f64(),
        events.len(),
        lost.len(),
        doubled.len(),
        spent.join(", ")
    );
    assert!(ok > 0, "no decision was ever answered: the loop tested nothing");
    assert!(wrong.is_empty(), "the crash loop broke its oracle:\n{}", wrong.join("\n"));
}

crate::on_both_backends!(answered_decisions_survive_kill_9_exactly_once);
