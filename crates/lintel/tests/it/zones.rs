//! Anti-passback end to end: a hard zone refuses a second entry at any of its entry
//! readers until an exit, a forgive or its reset; a soft one lets it through with an
//! alarm; concurrent taps at two readers let one in; an offline controller lets a second
//! entry through, marks it, and its upload is reconciled with what other readers saw.
//! Bad zones change nothing.

use serde_json::{Value, json};

use crate::harness::{Backend, Database, Server, card, lintel};
use crate::mqtt::{Broker, Controller, eventually, lintel_key, serve, world};

const ANN: &str = "0A0A0A0A";

async fn gym(s: &Server) {
    for (id, name) in [("gate-in", "Gate in"), ("turnstile-in", "Turnstile in"), ("gate-out", "Gate out")] {
        s.ok("/api/v1/doors", json!({"id": id, "name": name}), 201).await;
    }
    s.ok("/api/v1/people", json!({"id": "ann", "name": "Ann"}), 201).await;
    s.ok("/api/v1/people/ann/credentials", card(ANN, None), 201).await;
    s.ok("/api/v1/grants", json!({"person_id": "ann", "doors": ["gate-in", "turnstile-in", "gate-out"]}), 201).await;
}

async fn put_zone(s: &Server, id: &str, body: Value) -> (u16, Value) {
    s.call(reqwest::Method::PUT, &format!("/api/v1/zones/{id}"), Some(body)).await
}

async fn reason(s: &Server, door: &str) -> String {
    s.decide(door, card(ANN, None)).await["reason"].as_str().unwrap().to_owned()
}

async fn inside(s: &Server, zone: &str) -> Vec<String> {
    let (status, zone) = s.get(&format!("/api/v1/zones/{zone}")).await;
    assert_eq!(status, 200, "{zone}");
    zone["inside"].as_array().unwrap().iter().map(|p| p["person_id"].as_str().unwrap().to_owned()).collect()
}

async fn open_alarms(s: &Server, kind: &str) -> Vec<Value> {
    let (_, alarms) = s.get("/api/v1/alarms").await;
    alarms.as_array().unwrap().iter().filter(|a| a["kind"] == kind).cloned().collect()
}

async fn hard_and_soft_zones_across_two_readers(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    gym(&s).await;
    let zone = json!({"name": "Gym", "entry": ["gate-in", "turnstile-in"], "exit": ["gate-out"]});
    let (status, made) = put_zone(&s, "gym", zone.clone()).await;
    assert_eq!(status, 201, "{made}");
    assert_eq!((&made["strictness"], &made["reset_minutes"]), (&json!("hard"), &json!(720)), "{made}");

    // In at one reader; in again at the other: refused, whichever reader.
    assert_eq!(reason(&s, "gate-in").await, "granted");
    assert_eq!(inside(&s, "gym").await, ["ann"]);
    let refused = s.decide("turnstile-in", card(ANN, None)).await;
    assert_eq!((&refused["allowed"], &refused["reason"]), (&json!(false), &json!("anti_passback")), "{refused}");
    assert_eq!(reason(&s, "gate-in").await, "anti_passback");
    // Out, then in again.
    assert_eq!(reason(&s, "gate-out").await, "granted");
    assert!(inside(&s, "gym").await.is_empty());
    assert_eq!(reason(&s, "gate-out").await, "granted", "an exit is never refused");
    assert_eq!(reason(&s, "turnstile-in").await, "granted");

    // Forgiven by the front desk: in again without an exit.
    let (status, forgiven) =
        s.call(reqwest::Method::POST, "/api/v1/zones/gym/forgive", Some(json!({"person_id": "ann"}))).await;
    assert_eq!((status, &forgiven["forgiven"]), (200, &json!(1)), "{forgiven}");
    assert_eq!(s.all_events("kind=zone.forgiven").await.len(), 1);
    assert_eq!(reason(&s, "gate-in").await, "granted");

    // Several taps at once at both readers, after an exit: one lets her in.
    assert_eq!(reason(&s, "gate-out").await, "granted");
    let taps = (0..8).map(|i| {
        let s = &s;
        async move { s.decide(["gate-in", "turnstile-in"][i % 2], card(ANN, None)).await }
    });
    let answers = futures::future::join_all(taps).await;
    let allowed = answers.iter().filter(|a| a["allowed"] == true).count();
    assert_eq!(allowed, 1, "one of eight concurrent entries: {answers:#?}");
    assert!(answers.iter().all(|a| a["allowed"] == true || a["reason"] == "anti_passback"), "{answers:#?}");

    // Soft: the second entry is let through, marked, and raises an alarm.
    let soft = json!({"name": "Gym", "strictness": "soft", "entry": ["gate-in", "turnstile-in"], "exit": ["gate-out"]});
    assert_eq!(put_zone(&s, "gym", soft).await.0, 200, "replaced");
    assert_eq!(inside(&s, "gym").await, ["ann"], "who is inside is kept");
    let through = s.decide("turnstile-in", card(ANN, None)).await;
    assert_eq!(through["allowed"], true, "{through}");
    let events = s.all_events("kind=decision&door=turnstile-in").await;
    let last = events.last().unwrap();
    assert_eq!((&last["data"]["anti_passback"], &last["data"]["zone"]), (&json!("violation"), &json!("gym")), "{last}");
    let mut alarms = Vec::new();
    for _ in 0..50 {
        alarms = open_alarms(&s, "anti_passback").await;
        if alarms.first().is_some_and(|a| a["cleared_at"].is_string()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(alarms.len(), 1, "an alarm for the second entry");
    assert_eq!(alarms[0]["door"], "turnstile-in");
    assert!(alarms[0]["cleared_at"].is_string(), "nothing stays wrong at the door; it waits for an acknowledgement");

    // The CLI lists who is inside and forgives everyone.
    let cli = |args: &[&str]| {
        let out = lintel().args(args).args(["--database-url", &db.url]).current_dir(&db.dir).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listed = cli(&["zones"]);
    assert!(listed.starts_with("gym\tGym\tsoft") && listed.contains("inside (1): ann"), "{listed}");
    assert_eq!(cli(&["zones", "forgive", "gym"]).trim(), "1 forgiven in zone gym");
    assert!(inside(&s, "gym").await.is_empty());

    // Removed: its doors keep no one out.
    assert_eq!(s.delete("/api/v1/zones/gym").await.0, 204);
    assert_eq!(reason(&s, "gate-in").await, "granted");
    assert_eq!(reason(&s, "gate-in").await, "granted");
    assert_eq!(s.get("/api/v1/zones/gym").await.0, 404);
}

async fn bad_zones_change_nothing(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    gym(&s).await;
    let zone = |entry: Value, exit: Value| json!({"name": "Gym", "entry": entry, "exit": exit});
    let bad = [
        (zone(json!(["gate-in", "nowhere"]), json!([])), 422, "an unknown door"),
        (zone(json!(["gate-in"]), json!(["gate-in"])), 422, "a door both ways"),
        (zone(json!([]), json!(["gate-out"])), 422, "no entry door"),
        (json!({"name": "Gym", "entry": ["gate-in"], "strictness": "loose"}), 422, "an unknown strictness"),
        (json!({"name": "Gym", "entry": ["gate-in"], "reset_minutes": 0}), 422, "no reset time"),
        (json!({"name": "Gym", "entry": ["gate-in"], "colour": "red"}), 422, "an unknown field"),
    ];
    for (body, status, what) in bad {
        let (got, problem) = put_zone(&s, "gym", body).await;
        assert_eq!(got, status, "{what}: {problem}");
        assert_eq!(s.get("/api/v1/zones/gym").await.0, 404, "{what}: nothing made");
    }
    assert_eq!(put_zone(&s, "gym", zone(json!(["gate-in"]), json!(["gate-out"]))).await.0, 201);
    // A door in another zone: refused, neither zone changed.
    let (got, problem) = put_zone(&s, "pool", zone(json!(["turnstile-in", "gate-in"]), json!([]))).await;
    assert_eq!(got, 409, "{problem}");
    assert_eq!(s.get("/api/v1/zones/pool").await.0, 404);
    let (_, zones) = s.get("/api/v1/zones").await;
    assert_eq!(zones.as_array().unwrap().len(), 1);
    assert_eq!(zones[0]["entry"], json!(["gate-in"]));
    let forgive = |zone: &str, body: Value| {
        let (s, path) = (&s, format!("/api/v1/zones/{zone}/forgive"));
        async move { s.call(reqwest::Method::POST, &path, Some(body)).await.0 }
    };
    assert_eq!(forgive("gym", json!({"person_id": "nobody"})).await, 404);
    assert_eq!(forgive("nowhere", json!({})).await, 404);
    assert_eq!(s.all_events("kind=zone.forgiven").await.len(), 0);
    // A door deleted leaves its zone.
    assert_eq!(s.delete("/api/v1/doors/gate-out").await.0, 204);
    assert_eq!(s.get("/api/v1/zones/gym").await.1["exit"], json!([]));
}

/// The MQTT world (door `front` on ctl-1, `side` on none, Ann's card) with the zone
/// `lobby` (in through front, out through side), and the controller holding a list that
/// carries the zone, acknowledged.
async fn lobby_on_a_controller(db: &Database, broker: &Broker) -> (Server, Controller) {
    let s = serve(db, broker, "lintel-it");
    world(&s).await;
    let ctl = Controller::start(broker, &lintel_key(db), &db.dir.join("ctl"));
    let first = ctl.list_with_cards(1)["version"].as_u64().unwrap();
    let (status, zone) = put_zone(&s, "lobby", json!({"name": "Lobby", "entry": ["front"], "exit": ["side"]})).await;
    assert_eq!(status, 201, "{zone}");
    let listed = ctl.list_version(first + 1)["version"].clone();
    eventually(&s, "the list with the zone acknowledged", |c| c["acknowledged_version"] == listed).await;
    (s, ctl)
}

/// Online the controller's taps are judged by lintel (hard: refused); cut off, the
/// controller lets a second entry through and marks it; on upload lintel records it as a
/// violation, raises the alarm, and keeps what it learnt meanwhile (an exit elsewhere).
async fn offline_soft_anti_passback_is_reconciled_on_upload(b: Backend) {
    let db = Database::new(b);
    let mut broker = Broker::start(&db.dir);
    let (s, mut ctl) = lobby_on_a_controller(&db, &broker).await;

    let online = ctl.tap("front", "04A1B2C3");
    assert_eq!((online["source"].as_str(), online["allowed"].as_bool()), (Some("lintel"), Some(true)), "{online}");
    let again = ctl.tap("front", "04A1B2C3");
    assert_eq!((again["allowed"].as_bool(), again["reason"].as_str()), (Some(false), Some("anti_passback")), "{again}");
    assert_eq!(s.decide("side", card("04A1B2C3", None)).await["allowed"], true, "out");

    broker.kill();
    ctl.event("disconnected");
    // The controller saw her enter, not leave (another reader): it marks even this one.
    let first_in = ctl.tap("front", "04A1B2C3");
    assert_eq!((first_in["source"].as_str(), first_in["allowed"].as_bool()), (Some("offline"), Some(true)));
    assert_eq!(first_in["anti_passback"], true, "{first_in}");
    let second_in = ctl.tap("front", "04A1B2C3");
    assert_eq!(
        (second_in["allowed"].as_bool(), &second_in["anti_passback"]),
        (Some(true), &json!(true)),
        "{second_in}"
    );

    broker.restart();
    assert_eq!(ctl.event("uploaded")["pending"], 0);
    let offline: Vec<Value> =
        s.all_events("kind=decision&door=front").await.into_iter().filter(|e| e["data"]["offline"] == true).collect();
    assert_eq!(offline.len(), 2, "{offline:#?}");
    // lintel knew of the exit: the first was in order after all; the second was not.
    assert_eq!(offline[0]["data"]["anti_passback_local"], true);
    assert!(offline[0]["data"].get("anti_passback").is_none(), "{:#}", offline[0]);
    assert_eq!(offline[1]["data"]["anti_passback"], "violation", "{:#}", offline[1]);
    let alarms = open_alarms(&s, "anti_passback").await;
    assert_eq!((alarms.len(), alarms.first().map(|a| a["door"].clone())), (1, Some(json!("front"))), "{alarms:?}");
    // Ann is inside (her last passage was the offline entry): online, the hard zone refuses.
    assert_eq!(inside(&s, "lobby").await, ["ann"]);
    let refused = ctl.tap("front", "04A1B2C3");
    assert_eq!((refused["source"].as_str(), refused["reason"].as_str()), (Some("lintel"), Some("anti_passback")));
}

/// An exit recorded online while the controller was cut off is newer than the entries it
/// uploads: she stays outside, and its own finding of a second entry still stands.
async fn an_upload_does_not_undo_a_later_exit(b: Backend) {
    let db = Database::new(b);
    let mut broker = Broker::start(&db.dir);
    let (s, mut ctl) = lobby_on_a_controller(&db, &broker).await;

    broker.kill();
    ctl.event("disconnected");
    ctl.tap("front", "04A1B2C3");
    assert_eq!(ctl.tap("front", "04A1B2C3")["anti_passback"], true);
    assert_eq!(s.decide("side", card("04A1B2C3", None)).await["allowed"], true, "out, while the controller is cut off");
    broker.restart();
    assert_eq!(ctl.event("uploaded")["pending"], 0);
    assert!(inside(&s, "lobby").await.is_empty(), "the exit is newer than the uploaded entries");
    let offline: Vec<Value> =
        s.all_events("kind=decision&door=front").await.into_iter().filter(|e| e["data"]["offline"] == true).collect();
    assert_eq!(offline.len(), 2);
    assert_eq!(offline[1]["data"]["anti_passback"], "violation", "{:#}", offline[1]);
}

crate::on_both_backends!(
    hard_and_soft_zones_across_two_readers,
    bad_zones_change_nothing,
    offline_soft_anti_passback_is_reconciled_on_upload,
    an_upload_does_not_undo_a_later_exit,
);
