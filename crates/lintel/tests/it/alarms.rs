//! Door inputs and alarms end to end: a building system's token (and a relay's URL call)
//! reports inputs; a door opened without a release is forced, one left open is held open
//! (after a warning), tamper; alarms stay until cleared and acknowledged; a fire input
//! releases the exit doors; the reference controller reports inputs over MQTT, and only
//! for its own doors.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use axum::http::StatusCode;

use crate::doors::{FakeDevice, json_answer};
use crate::harness::{Backend, Database, Server, card, lintel, smtp_sink};
use crate::mqtt::{Broker, Controller, lintel_key, serve, world};
use crate::roles::{call_as, create_token, wait_for_token};

async fn input(s: &Server, token: &str, door: &str, input: &str, state: &str) -> (u16, Value) {
    let body = Some(json!({"input": input, "state": state}));
    call_as(s, token, reqwest::Method::POST, &format!("/api/v1/doors/{door}/inputs"), body).await
}

async fn open_alarms(s: &Server) -> Vec<(String, String)> {
    let (status, alarms) = s.get("/api/v1/alarms").await;
    assert_eq!(status, 200, "{alarms}");
    alarms
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["door"].as_str().unwrap().into(), a["kind"].as_str().unwrap().into()))
        .collect()
}

async fn alarm_id(s: &Server, kind: &str) -> String {
    let (_, alarms) = s.get("/api/v1/alarms").await;
    alarms.as_array().unwrap().iter().find(|a| a["kind"] == kind).expect(kind)["id"].as_str().unwrap().to_owned()
}

async fn door_alarms(s: &Server, door: &str) -> Value {
    s.get(&format!("/api/v1/doors/{door}")).await.1["state"].get("alarms").cloned().unwrap_or(json!([]))
}

async fn inputs_raise_alarms_until_cleared_and_acknowledged(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    s.ok("/api/v1/doors", json!({"id": "front", "name": "Front", "held_open_seconds": 3}), 201).await;
    s.ok("/api/v1/people", json!({"id": "ann", "name": "Ann"}), 201).await;
    s.ok("/api/v1/people/ann/credentials", card("0A0A0A0A", None), 201).await;
    s.ok("/api/v1/grants", json!({"person_id": "ann", "doors": ["front"]}), 201).await;
    let panel = create_token(&db, "building");
    wait_for_token(&s, &panel).await;

    // Opened with no entry before it: forced.
    let (status, taken) = input(&s, &panel, "front", "door", "open").await;
    assert_eq!(status, 200, "{taken}");
    assert_eq!((&taken["outcome"], &taken["alarm"]["kind"]), (&json!("alarm"), &json!("forced_open")), "{taken}");
    assert_eq!(door_alarms(&s, "front").await, json!(["forced_open"]));
    // Left open past held_open_seconds: a warning, then held open.
    let started = Instant::now();
    while !open_alarms(&s).await.contains(&("front".into(), "held_open".into())) {
        assert!(started.elapsed() < Duration::from_secs(10), "no held-open alarm: {:?}", open_alarms(&s).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s.all_events("kind=alarm.warning&door=front").await.len(), 1);
    assert_eq!(s.all_events("kind=alarm.raised&door=front").await.len(), 2, "each raised once");

    // Closed: cleared, still open until acknowledged.
    input(&s, &panel, "front", "door", "closed").await;
    assert_eq!(s.all_events("kind=alarm.cleared&door=front").await.len(), 2);
    assert_eq!(open_alarms(&s).await.len(), 2);
    let forced = alarm_id(&s, "forced_open").await;
    let ack = |id: String, note: Value| {
        let s = &s;
        async move { s.call(reqwest::Method::POST, &format!("/api/v1/alarms/{id}/ack"), Some(note)).await }
    };
    let (status, acked) = ack(forced.clone(), json!({"note": "the cleaner, with a key"})).await;
    assert_eq!(status, 200, "{acked}");
    assert_eq!((&acked["acked_by"], &acked["note"]), (&json!("token:environment"), &json!("the cleaner, with a key")));
    assert_eq!(ack(forced.clone(), json!({})).await.0, 409, "acknowledged once");
    assert_eq!(ack("alarm-nowhere".into(), json!({})).await.0, 404);
    assert_eq!(ack(alarm_id(&s, "held_open").await, json!({"bogus": 1})).await.0, 422);
    // The command line lists and acknowledges too.
    let cli = |args: &[&str]| {
        let out = lintel().args(args).args(["--database-url", &db.url]).current_dir(&db.dir).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let held = alarm_id(&s, "held_open").await;
    let listed = cli(&["alarms"]);
    assert!(listed.lines().any(|l| l.starts_with(&held) && l.ends_with("cleared, not acknowledged")), "{listed}");
    assert!(cli(&["alarms", "ack", &held, "--note", "propped by the caterer"]).contains("acknowledged"));
    let (_, acked) = s.get("/api/v1/alarms?all=true").await;
    let acked = acked.as_array().unwrap().iter().find(|a| a["id"] == held.as_str()).cloned().unwrap();
    assert_eq!((&acked["acked_by"], &acked["note"]), (&json!("cli"), &json!("propped by the caterer")));
    assert!(open_alarms(&s).await.is_empty());
    assert_eq!(door_alarms(&s, "front").await, json!([]));
    let (_, all) = s.get("/api/v1/alarms?all=true").await;
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");

    // Opened after an allowed entry, or an exit request: not forced.
    assert_eq!(s.decide("front", card("0A0A0A0A", None)).await["allowed"], true);
    assert_eq!(input(&s, &panel, "front", "door", "open").await.1["outcome"], "recorded");
    input(&s, &panel, "front", "door", "closed").await;
    assert_eq!(input(&s, &panel, "front", "exit", "active").await.1["outcome"], "recorded");
    assert_eq!(input(&s, &panel, "front", "door", "open").await.1["outcome"], "recorded");
    input(&s, &panel, "front", "door", "closed").await;

    // Tamper, by a relay that can only call a URL.
    let hook = |query: String| {
        let s = &s;
        async move {
            let response = s.client.get(format!("{}/hooks/doors/front/input?{query}", s.base)).send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, taken) = hook(format!("token={panel}&input=tamper&state=active")).await;
    assert_eq!((status, &taken["alarm"]["kind"]), (200, &json!("tamper")), "{taken}");
    let viewer = create_token(&db, "viewer");
    wait_for_token(&s, &viewer).await;
    for (query, status) in [
        ("token=wrong&input=tamper&state=active".to_owned(), 401),
        (format!("token={viewer}&input=tamper&state=active"), 403),
        (format!("token={panel}&input=door&state=active"), 422),
        (format!("token={panel}&input=smoke&state=active"), 400),
        ("input=door&state=open".to_owned(), 401),
        // Only a building token goes into a device's URL, and never a fire input.
        (format!("token={}&input=tamper&state=active", crate::harness::ADMIN), 403),
        (format!("token={panel}&input=fire&state=active"), 403),
    ] {
        assert_eq!(hook(query.clone()).await.0, status, "{query}");
    }
    let (status, _) = input(&s, &panel, "nowhere", "door", "open").await;
    assert_eq!(status, 404);
    assert_eq!(open_alarms(&s).await, vec![("front".to_owned(), "tamper".to_owned())], "nothing else raised");

    // A fire input releases the site's exit doors.
    assert_eq!(input(&s, &panel, "front", "fire", "active").await.1["outcome"], "emergency");
    let (_, site) = s.get("/api/v1/sites/main").await;
    assert!(site["emergency_by"].as_str().is_some_and(|by| by.starts_with("token:")), "{site}");
}

/// The reference controller reports its door's inputs over MQTT; an input for a door on
/// another controller is refused and changes nothing.
async fn a_controller_reports_inputs_for_its_own_doors_only(b: Backend) {
    let db = Database::new(b);
    let broker = Broker::start(&db.dir);
    let s = serve(&db, &broker, "lintel-inputs");
    world(&s).await;
    s.ok(
        "/api/v1/doors",
        json!({"id": "other", "name": "Other", "driver": {"kind": "mqtt", "controller": "ctl-2"}}),
        201,
    )
    .await;
    let mut controller = Controller::start(&broker, &lintel_key(&db), &db.dir.join("ctl"));
    controller.list_version(1);
    controller.input("other", "door", "open");
    controller.input("front", "door", "open");
    let started = Instant::now();
    while open_alarms(&s).await.is_empty() {
        assert!(started.elapsed() < Duration::from_secs(5), "the controller's input raised nothing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("alarm latency, input published to alarm listed: {:?} (at most)", started.elapsed());
    assert_eq!(open_alarms(&s).await, vec![("front".to_owned(), "forced_open".to_owned())]);
    let raised = s.all_events("kind=alarm.raised").await;
    assert_eq!(raised.len(), 1, "{raised:?}");
    let inputs = s.all_events("kind=door.input").await;
    assert!(inputs.iter().all(|e| e["door"] == "front" && e["actor"] == "controller:ctl-1"), "{inputs:?}");
    assert_eq!(s.get("/api/v1/doors/other").await.1["state"]["position"], Value::Null, "another's door unchanged");
}

/// Alarms, lockdown and emergencies reach the fake Slack and the SMTP sink, each once,
/// and a restart sends nothing again.
async fn alarms_lockdown_and_emergencies_are_told_once(b: Backend) {
    let db = Database::new(b);
    let slack = FakeDevice::start(|seen, n| match seen.uri.split('?').next().unwrap_or_default() {
        "/chat.postMessage" => {
            json_answer(StatusCode::OK, json!({"ok": true, "channel": "C0SECURITY", "ts": format!("1.{n}")}))
        }
        _ => json_answer(StatusCode::OK, json!({"ok": false, "error": "unknown_method"})),
    })
    .await;
    let (smtp, mail) = smtp_sink().await;
    let env = [
        ("LINTEL_SLACK_SIGNING_SECRET", crate::slack::SECRET),
        ("LINTEL_SLACK_BOT_TOKEN", "xoxb-test"),
        ("LINTEL_SLACK_API_BASE_URL", &slack.url),
        ("LINTEL_SMTP_URL", &smtp),
        ("LINTEL_SMTP_FROM", "lintel <doors@example.org>"),
        ("LINTEL_NOTIFY_SLACK_CHANNEL", "C0SECURITY"),
        ("LINTEL_NOTIFY_EMAIL", "security@example.org"),
    ];
    let s = Server::start_with(&db, &env);
    s.ok("/api/v1/doors", json!({"id": "front", "name": "Front"}), 201).await;
    s.ok("/api/v1/doors", json!({"id": "back", "name": "Back"}), 201).await;
    // The notifier starts from the log's end: let it take its place first.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let panel = create_token(&db, "building");
    wait_for_token(&s, &panel).await;
    let raised = Instant::now();
    input(&s, &panel, "front", "door", "open").await;
    let posted = |slack: &FakeDevice| -> Vec<String> {
        slack
            .seen()
            .iter()
            .filter(|r| r.uri.starts_with("/chat.postMessage"))
            .map(|r| r.json()["text"].as_str().unwrap().to_owned())
            .collect()
    };
    while posted(&slack).is_empty() {
        assert!(raised.elapsed() < Duration::from_secs(10), "no notification in Slack");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("alarm latency, input to Slack notification: {:?}", raised.elapsed());
    s.ok("/api/v1/lockdown", json!({"site": "main"}), 200).await;
    assert_eq!(
        call_as(&s, &panel, reqwest::Method::POST, "/api/v1/sites/main/emergency", Some(json!({"why": "zone 3"})))
            .await
            .0,
        200
    );
    let started = Instant::now();
    while posted(&slack).len() < 3 || mail.lock().unwrap().len() < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{:?}; {} mails",
            posted(&slack),
            mail.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let texts = posted(&slack);
    assert_eq!(texts.len(), 3, "each once: {texts:?}");
    assert!(texts[0].starts_with("Alarm at door front: forced open"), "{texts:?}");
    assert!(
        texts[1].starts_with("Lockdown started by token:environment: ")
            && texts[1].contains("back")
            && texts[1].contains("front"),
        "one message for the site's doors: {texts:?}"
    );
    assert!(texts[2].starts_with("Emergency release at site main (zone 3)"), "{texts:?}");
    assert!(
        slack.seen().iter().all(|r| !r.uri.starts_with("/chat.postMessage") || r.json()["channel"] == "C0SECURITY")
    );
    {
        let mails = mail.lock().unwrap();
        assert_eq!(mails.len(), 3);
        assert!(mails.iter().all(|m| m.contains("security@example.org")), "{mails:?}");
        assert!(mails.iter().any(|m| m.contains("Alarm at door front")), "{mails:?}");
    }
    // A restart sends nothing again.
    s.kill();
    let s = Server::start_with(&db, &env);
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(posted(&slack).len(), 3);
    assert_eq!(mail.lock().unwrap().len(), 3);
    drop(s);
}

crate::on_both_backends!(
    inputs_raise_alarms_until_cleared_and_acknowledged,
    a_controller_reports_inputs_for_its_own_doors_only,
    alarms_lockdown_and_emergencies_are_told_once,
);
