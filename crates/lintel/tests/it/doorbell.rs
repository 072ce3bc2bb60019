//! The doorbell: a camera's webhook posts its snapshot to Slack with an Open door button;
//! a click by a member who may open the door drives the relay and updates the message, a
//! click by anyone else is refused to them alone. Against a fake camera, a fake Slack Web
//! API (with a response_url) and a fake Shelly relay, all on loopback.

use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::doors::{FakeDevice, Seen, json_answer};
use crate::harness::{Backend, Database, Server};
use crate::slack::{SECRET, now, post_signed};

const TOKEN: &str = "doorbell-token-0123456789abcdef";
const CHANNEL: &str = "C0DOORBELL";
const JPEG: &[u8] = b"\xFF\xD8\xFF\xE0 a very small picture \xFF\xD9";

/// Slack's Web API (`chat.postMessage`, `chat.update`) and its response URLs.
async fn fake_slack() -> FakeDevice {
    FakeDevice::start(|seen, n| match seen.uri.split('?').next().unwrap_or_default() {
        "/chat.postMessage" => {
            json_answer(StatusCode::OK, json!({"ok": true, "channel": CHANNEL, "ts": format!("1700000000.{n:06}")}))
        }
        "/chat.update" => json_answer(StatusCode::OK, json!({"ok": true})),
        uri if uri.starts_with("/respond/") => (StatusCode::OK, "ok").into_response(),
        _ => json_answer(StatusCode::OK, json!({"ok": false, "error": "unknown_method"})),
    })
    .await
}

/// A camera that serves its snapshot (and, at `/page`, something that is not an image).
async fn fake_camera() -> FakeDevice {
    FakeDevice::start(|seen, _| match seen.uri.as_str() {
        "/snapshot.jpg" => ([(header::CONTENT_TYPE, "image/jpeg")], JPEG).into_response(),
        _ => ([(header::CONTENT_TYPE, "text/html")], "<html>login</html>").into_response(),
    })
    .await
}

struct Setup {
    _db: Database,
    s: Server,
    slack: FakeDevice,
    camera: FakeDevice,
    relay: FakeDevice,
}

async fn setup(b: Backend) -> Setup {
    let db = Database::new(b);
    let slack = fake_slack().await;
    let camera = fake_camera().await;
    let relay = FakeDevice::shelly_gen2().await;
    let s = Server::start_with(
        &db,
        &[
            ("LINTEL_SLACK_SIGNING_SECRET", SECRET),
            ("LINTEL_SLACK_BOT_TOKEN", "xoxb-test"),
            ("LINTEL_SLACK_API_BASE_URL", &slack.url),
            ("LINTEL_SLACK_DOORBELL_CHANNEL", CHANNEL),
            ("LINTEL_DOORBELL_TOKEN", TOKEN),
            ("LINTEL_DOORBELL_DOOR", "front"),
            ("LINTEL_PUBLIC_URL", "https://doors.example.org"),
        ],
    );
    let driver = json!({"kind": "shelly", "url": relay.url, "generation": 2});
    s.ok("/api/v1/doors", json!({"id": "front", "name": "Front door", "driver": driver}), 201).await;
    s.ok("/api/v1/groups", json!({"id": "members", "name": "Members", "doors": ["front"]}), 201).await;
    s.ok("/api/v1/grants", json!({"group_id": "members"}), 201).await;
    for (id, user) in [("ann", "U1"), ("bert", "U2")] {
        s.ok("/api/v1/people", json!({"id": id, "name": id, "external_ids": {"slack": user}}), 201).await;
    }
    s.put("/api/v1/groups/members/members/ann").await;
    Setup { _db: db, s, slack, camera, relay }
}

async fn ring(s: &Server, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut request = s.client.post(format!("{}/hooks/doorbell", s.base)).json(&body);
    if let Some(token) = token {
        request = request.query(&[("token", token)]);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
}

fn incoming_call(snapshot_url: &str) -> Value {
    json!({"push_type": "NDB-incoming_call", "event_type": "incoming_call", "device_id": "70:ee:50:00:00:01",
           "snapshot_url": snapshot_url, "message": "Someone is ringing"})
}

fn calls_to(device: &FakeDevice, path: &str) -> Vec<Seen> {
    device.seen().into_iter().filter(|s| s.uri.split('?').next() == Some(path)).collect()
}

/// Waits (up to 10 s) until `device` has received `count` requests to `path`.
async fn wait_for(device: &FakeDevice, path: &str, count: usize) -> Vec<Seen> {
    for _ in 0..200 {
        let calls: Vec<Seen> = device.seen().into_iter().filter(|s| s.uri.starts_with(path)).collect();
        if calls.len() >= count {
            return calls;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{path} was not called {count} times: {:?}", device.seen());
}

/// A click on the Open door button, as Slack sends it (signed).
async fn click(s: &Server, user: &str, message: &Value, response_id: &str, slack_url: &str) -> (u16, Value) {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": user, "username": user.to_lowercase()},
        "team": {"id": "T1"},
        "channel": {"id": CHANNEL},
        "container": {"type": "message", "message_ts": message["ts"], "channel_id": CHANNEL},
        "message": message,
        "response_url": format!("{slack_url}/respond/{response_id}"),
        "actions": [{"action_id": "open_door", "block_id": "doorbell", "value": "front", "type": "button",
                     "action_ts": now()}],
    });
    let body = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
    signed_interaction(s, &body).await
}

async fn signed_interaction(s: &Server, body: &str) -> (u16, Value) {
    let ts = now();
    let sig = lintel_connectors::slack::sign(SECRET, &ts, body.as_bytes());
    post_signed(s, "/hooks/slack/interactions", body, &ts, &sig, "application/x-www-form-urlencoded").await
}

async fn a_ring_posts_the_picture_with_an_open_button(b: Backend) {
    let Setup { _db, s, slack, camera, .. } = setup(b).await;
    let snapshot_url = format!("{}/snapshot.jpg", camera.url);
    for token in [None, Some("wrong-token-0123456789abcdef")] {
        let (status, problem) = ring(&s, token, incoming_call(&snapshot_url)).await;
        assert_eq!((status, &problem["status"]), (401, &json!(401)), "{token:?}: {problem}");
    }
    let (status, _) = ring(&s, Some(TOKEN), json!({"push_type": "NDB-connection", "event_type": "connection"})).await;
    assert_eq!(status, 202, "not a ring: acknowledged, ignored");
    assert!(camera.seen().is_empty() && slack.seen().is_empty(), "nothing fetched or posted before a real ring");

    let (status, rang) = ring(&s, Some(TOKEN), incoming_call(&snapshot_url)).await;
    assert_eq!(status, 200, "{rang}");
    assert_eq!((&rang["posted"], &rang["snapshot"]), (&json!(true), &json!(true)));
    assert_eq!(camera.seen().len(), 1, "the snapshot is fetched at once");
    let posts = calls_to(&slack, "/chat.postMessage");
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].header("authorization"), Some("Bearer xoxb-test"));
    let message = posts[0].json();
    assert_eq!(message["channel"], CHANNEL);
    assert!(message["text"].as_str().unwrap().contains("Front door"), "{message}");
    let blocks = message["blocks"].as_array().unwrap();
    let image = blocks.iter().find(|b| b["type"] == "image").unwrap_or_else(|| panic!("no image: {message}"));
    let button = &blocks.iter().find(|b| b["type"] == "actions").unwrap()["elements"][0];
    assert_eq!((&button["action_id"], &button["value"]), (&json!("open_door"), &json!("front")));
    assert_eq!(button["text"]["text"], "Open door");

    // The picture is served to Slack at the public URL lintel was given.
    let image_url = image["image_url"].as_str().unwrap();
    let path = image_url.strip_prefix("https://doors.example.org").unwrap_or_else(|| panic!("{image_url}"));
    let picture = s.client.get(format!("{}{path}", s.base)).send().await.unwrap();
    assert_eq!(picture.status(), 200);
    assert_eq!(picture.headers()["content-type"], "image/jpeg");
    assert_eq!(picture.bytes().await.unwrap().as_ref(), JPEG);
    let guessed = format!("{}/hooks/doorbell/snapshots/snap_{}", s.base, "A".repeat(43));
    assert_eq!(s.client.get(guessed).send().await.unwrap().status(), 404);

    let rang_events: Vec<Value> = s.events().await.into_iter().filter(|e| e["kind"] == "doorbell.rang").collect();
    assert_eq!(rang_events.len(), 1);
    assert_eq!((&rang_events[0]["door"], &rang_events[0]["id"]), (&json!("front"), &rang["event_id"]));

    // A snapshot URL that yields no picture: the ring is still posted, without one.
    let (status, rang) = ring(&s, Some(TOKEN), incoming_call(&format!("{}/page", camera.url))).await;
    assert_eq!((status, &rang["snapshot"]), (200, &json!(false)), "{rang}");
    let second = calls_to(&slack, "/chat.postMessage")[1].json();
    assert!(!second["blocks"].as_array().unwrap().iter().any(|b| b["type"] == "image"), "{second}");
    // The token also works as a header; a body that is not JSON is a 400.
    let response = s
        .client
        .post(format!("{}/hooks/doorbell", s.base))
        .header("x-doorbell-token", TOKEN)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

async fn a_member_opens_from_slack_and_others_are_refused_privately(b: Backend) {
    let Setup { _db, s, slack, camera, relay } = setup(b).await;
    let (status, _) = ring(&s, Some(TOKEN), incoming_call(&format!("{}/snapshot.jpg", camera.url))).await;
    assert_eq!(status, 200);
    let posted = calls_to(&slack, "/chat.postMessage")[0].json();
    // Slack hands the message back in the click, with its ts.
    let message = json!({"ts": "1700000000.000000", "text": posted["text"], "blocks": posted["blocks"]});

    // bert is known but may not open the front door; U5 is not known to lintel at all.
    for (user, response_id, why) in
        [("U2", "bert", "no grant covers this door"), ("U5", "stranger", "does not know you")]
    {
        let (status, _) = click(&s, user, &message, response_id, &slack.url).await;
        assert_eq!(status, 200, "{user}: the click is acknowledged at once");
        let answer = wait_for(&slack, &format!("/respond/{response_id}"), 1).await[0].json();
        assert_eq!(answer["response_type"], "ephemeral", "{user}: only the clicker sees it");
        assert_eq!(answer["replace_original"], false, "{user}: the message stays for others");
        assert!(answer["text"].as_str().unwrap().contains(why), "{user}: {answer}");
    }
    assert!(relay.seen().is_empty(), "nobody who may not open it opened it");
    assert!(calls_to(&slack, "/chat.update").is_empty());

    let (status, _) = click(&s, "U1", &message, "ann", &slack.url).await;
    assert_eq!(status, 200);
    let update = wait_for(&slack, "/chat.update", 1).await[0].json();
    assert_eq!((&update["channel"], &update["ts"]), (&json!(CHANNEL), &message["ts"]));
    let blocks = update["blocks"].as_array().unwrap();
    assert!(!blocks.iter().any(|b| b["type"] == "actions"), "the button is gone: {update}");
    assert!(blocks.iter().any(|b| b["type"] == "image"), "the picture stays: {update}");
    let note = blocks.last().unwrap()["elements"][0]["text"].as_str().unwrap();
    assert!(note.contains("by <@U1> at "), "{note}");
    let switched: Vec<Seen> = relay.seen();
    assert_eq!(switched.len(), 1, "the relay was driven once");
    assert_eq!(switched[0].uri, "/rpc/Switch.Set");

    let events = s.events().await;
    let decisions: Vec<&Value> =
        events.iter().filter(|e| e["kind"] == "decision" && e["data"]["credential_kind"] == "slack").collect();
    assert_eq!(decisions.len(), 2, "bert's refusal and ann's entry (U5 is nobody): {decisions:?}");
    assert_eq!((&decisions[0]["person_id"], &decisions[0]["reason"]), (&json!("bert"), &json!("no_grant")));
    assert_eq!((&decisions[1]["person_id"], &decisions[1]["allowed"]), (&json!("ann"), &json!(true)));
    assert_eq!(decisions[1]["data"]["slack_user"], "U1");
    assert!(events.iter().any(|e| e["kind"] == "door.opened" && e["person_id"] == "ann"), "{events:?}");
}

async fn forged_replayed_and_malformed_clicks_open_nothing(b: Backend) {
    let Setup { _db, s, slack, relay, .. } = setup(b).await;
    let message = json!({"ts": "1700000000.000000", "blocks": []});
    let payload = json!({"type": "block_actions", "user": {"id": "U1"}, "channel": {"id": CHANNEL}, "message": message,
        "response_url": format!("{}/respond/x", slack.url), "actions": [{"action_id": "open_door", "value": "front"}]});
    let body = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
    let ts = now();
    let form = "application/x-www-form-urlencoded";
    let forged = lintel_connectors::slack::sign("not-the-secret", &ts, body.as_bytes());
    assert_eq!(post_signed(&s, "/hooks/slack/interactions", &body, &ts, &forged, form).await.0, 401);
    // Not JSON, no payload: 400; JSON of the wrong shape (no user): 422.
    for (junk, want) in
        [("payload=%7Bnot+json", 400), ("nopayload=1", 400), ("payload=%7B%22type%22%3A%22block_actions%22%7D", 422)]
    {
        let (status, problem) = signed_interaction(&s, junk).await;
        assert_eq!((status, &problem["status"]), (want, &json!(want)), "{junk}: {problem}");
    }
    let good = lintel_connectors::slack::sign(SECRET, &ts, body.as_bytes());
    assert_eq!(post_signed(&s, "/hooks/slack/interactions", &body, &ts, &good, form).await.0, 200);
    wait_for(&relay, "/rpc/Switch.Set", 1).await;
    assert_eq!(post_signed(&s, "/hooks/slack/interactions", &body, &ts, &good, form).await.0, 401, "a replay");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(relay.seen().len(), 1, "the replay opened nothing");
}

crate::on_both_backends!(
    a_ring_posts_the_picture_with_an_open_button,
    a_member_opens_from_slack_and_others_are_refused_privately,
    forged_replayed_and_malformed_clicks_open_nothing,
);
