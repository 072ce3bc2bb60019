//! Lockdown end to end: the API and the CLI put a site or doors in lockdown, decisions
//! refuse everyone but the exempt (reason `lockdown`), lifting restores; the reference
//! controller gets it in its signed list and keeps it with the broker gone.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Backend, Database, Server, lintel, small_world};
use crate::mqtt::{Broker, Controller, eventually, lintel_key, serve, world};

async fn reason(s: &Server, door: &str, uid: &str) -> Value {
    let answer = s.decide(door, json!({"kind": "card", "uid": uid, "revocation_code": "7"})).await;
    answer["reason"].clone()
}

/// Sam, exempt from lockdown, with a card and a grant to the front door.
async fn security_guard(s: &Server) {
    let sam = json!({"id": "sam", "name": "Sam", "attributes": {"lockdown_exempt": true}});
    s.ok("/api/v1/people", sam, 201).await;
    s.ok("/api/v1/people/sam/credentials", json!({"kind": "card", "uid": "04EEEEEE", "revocation_code": "7"}), 201)
        .await;
    s.ok("/api/v1/grants", json!({"person_id": "sam", "doors": ["front"]}), 201).await;
}

async fn a_lockdown_refuses_all_but_the_exempt_and_lifting_restores(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    small_world(&s).await;
    security_guard(&s).await;
    s.ok("/api/v1/doors", json!({"id": "back", "name": "Back"}), 201).await;
    assert_eq!(reason(&s, "front", "04A1B2C3").await, "granted");

    // Bad input: 4xx, nothing changed.
    for (body, status) in [
        (json!({}), 422),
        (json!({"site": "main", "doors": ["front"]}), 422),
        (json!({"doors": []}), 422),
        (json!({"doors": ["front", "nowhere"]}), 404),
        (json!({"site": "nowhere"}), 404),
        (json!({"site": "main", "until": "never"}), 422),
    ] {
        let (got, problem) = s.post("/api/v1/lockdown", body.clone()).await;
        assert_eq!(got, status, "{body}: {problem}");
    }
    assert_eq!(s.get("/api/v1/lockdown").await.1, json!([]), "nothing is in lockdown");
    assert_eq!(reason(&s, "front", "04A1B2C3").await, "granted");

    let (status, changed) = s.post("/api/v1/lockdown", json!({"site": "main"})).await;
    assert_eq!((status, &changed["changed"]), (200, &json!(["back", "front"])), "{changed}");
    let refused = s.decide("front", json!({"kind": "card", "uid": "04A1B2C3", "revocation_code": "7"})).await;
    assert_eq!((refused["allowed"].as_bool(), refused["reason"].as_str()), (Some(false), Some("lockdown")));
    assert_eq!(reason(&s, "front", "04EEEEEE").await, "granted", "exempt");
    let (_, door) = s.get("/api/v1/doors/front").await;
    assert_eq!(door["state"]["mode"], "lockdown", "{door}");
    assert_eq!(door["state"]["lockdown_by"], "token:environment");
    let (_, locked) = s.get("/api/v1/lockdown").await;
    assert_eq!(locked.as_array().unwrap().len(), 2, "{locked}");
    // An operator's open is refused too: no unlock action takes place.
    let (status, opened) = s.post("/api/v1/doors/front/open", json!({})).await;
    assert_eq!(status, 403, "{opened}");
    let again = s.post("/api/v1/lockdown", json!({"doors": ["front"]})).await.1;
    assert_eq!(again["changed"], json!([]), "already in lockdown");

    // Lifting one door restores it; the other stays.
    let (_, lifted) = s.post("/api/v1/lockdown/lift", json!({"doors": ["front"]})).await;
    assert_eq!(lifted["changed"], json!(["front"]));
    assert_eq!(reason(&s, "front", "04A1B2C3").await, "granted");
    assert_eq!(s.get("/api/v1/doors/front").await.1["state"]["mode"], "secure");
    assert_eq!(s.get("/api/v1/doors/back").await.1["state"]["mode"], "lockdown");
    let started = s.all_events("kind=door.lockdown_started").await;
    assert_eq!(started.len(), 2, "one event per door");
    assert!(started.iter().all(|e| e["actor"] == "token:environment" && e["data"]["site"] == "main"), "{started:?}");
    assert_eq!(s.all_events("kind=door.lockdown_ended").await.len(), 1);

    // Exempting someone is an admin's: a front desk may not.
    let desk = crate::roles::create_token(&db, "front_desk");
    crate::roles::wait_for_token(&s, &desk).await;
    let exempt = Some(json!({"attributes": {"lockdown_exempt": true}}));
    let (status, _) = crate::roles::call_as(&s, &desk, reqwest::Method::PATCH, "/api/v1/people/alice", exempt).await;
    assert_eq!(status, 403);
    assert_eq!(s.get("/api/v1/people/alice").await.1["attributes"].get("lockdown_exempt"), None);
}

async fn the_cli_puts_a_site_in_lockdown_and_a_running_server_follows(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    small_world(&s).await;
    let cli = |args: &[&str]| {
        let out = lintel().args(args).args(["--database-url", &db.url]).current_dir(&db.dir).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(cli(&["lockdown", "on", "--site", "main"]).trim(), "front in lockdown now");
    let started = Instant::now();
    while reason(&s, "front", "04A1B2C3").await != "lockdown" {
        assert!(started.elapsed() < Duration::from_secs(10), "the server never followed the CLI's lockdown");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s.all_events("kind=door.lockdown_started").await[0]["actor"], "cli");
    assert!(cli(&["lockdown", "on", "--door", "front"]).contains("already"));
    cli(&["lockdown", "off", "--door", "front"]);
    while reason(&s, "front", "04A1B2C3").await != "granted" {
        assert!(started.elapsed() < Duration::from_secs(20), "the server never followed the lifting");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bad = lintel().args(["lockdown", "on", "--database-url", &db.url]).current_dir(&db.dir).output().unwrap();
    assert!(!bad.status.success(), "neither a site nor a door");
}

/// Lockdown reaches the reference controller as a new signed list (the refused left out),
/// and holds there with the broker gone. Prints the latency from the call to the list.
async fn a_lockdown_reaches_the_controller_and_holds_offline(backend: Backend) {
    let db = Database::new(backend);
    let mut broker = Broker::start(&db.dir);
    let s = serve(&db, &broker, "lintel-it");
    world(&s).await;
    let ctl = Controller::start(&broker, &lintel_key(&db), &db.dir.join("ctl"));
    let mut version = ctl.list_with_cards(1)["version"].as_u64().unwrap();
    let mut took = Vec::new();
    for round in 0..10 {
        let on = round % 2 == 0;
        let path = if on { "/api/v1/lockdown" } else { "/api/v1/lockdown/lift" };
        let called = Instant::now();
        let (status, changed) = s.post(path, json!({"doors": ["front"]})).await;
        assert_eq!((status, &changed["changed"]), (200, &json!(["front"])), "{changed}");
        let list = ctl.list_version(version + 1);
        took.push(called.elapsed());
        assert_eq!(list["cards"], if on { 0 } else { 1 }, "round {round}: {list}");
        version = list["version"].as_u64().unwrap();
    }
    took.sort();
    let (p50, p99) = (took[took.len() / 2], took[took.len() - 1]);
    eprintln!("lockdown call to the controller's new list: p50 {p50:?}, p99 (max of 10) {p99:?}");
    assert!(p99 < Duration::from_secs(3), "lockdown took {p99:?} to reach the controller");

    s.post("/api/v1/lockdown", json!({"doors": ["front"]})).await;
    let locked = ctl.list_version(version + 1);
    assert_eq!(locked["cards"], 0);
    eventually(&s, "the lockdown's list acknowledged", |c| c["acknowledged_version"] == locked["version"]).await;
    broker.kill();
    ctl.event("disconnected");
    let mut ctl = ctl;
    let offline = ctl.tap("front", "04A1B2C3");
    assert_eq!(
        (offline["source"].as_str(), offline["allowed"].as_bool()),
        (Some("offline"), Some(false)),
        "the controller keeps the lockdown alone: {offline}"
    );
}

crate::on_both_backends!(
    a_lockdown_refuses_all_but_the_exempt_and_lifting_restores,
    the_cli_puts_a_site_in_lockdown_and_a_running_server_follows,
    a_lockdown_reaches_the_controller_and_holds_offline,
);
