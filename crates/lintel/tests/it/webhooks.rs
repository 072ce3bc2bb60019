//! Outbound webhooks against a receiver on loopback: every delivery's signature is checked
//! by the `standardwebhooks` Python package (an implementation lintel did not write);
//! deliveries arrive in order, are retried until accepted, survive a key rotation with
//! both signatures, stop on 410 Gone, and can be replayed and re-sent.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Backend, Database, Server, lintel, small_world};

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    timestamp: String,
    signature: String,
    body: String,
    /// What the receiver answered.
    status: u16,
}

#[derive(Default)]
struct Receiver {
    /// Statuses to answer, in order; 200 once they run out.
    script: VecDeque<u16>,
    got: Vec<Received>,
}

type Shared = Arc<Mutex<Receiver>>;

async fn receiver() -> (String, Shared) {
    async fn hook(State(r): State<Shared>, headers: HeaderMap, body: String) -> StatusCode {
        let mut r = r.lock().unwrap();
        let status = r.script.pop_front().unwrap_or(200);
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        r.got.push(Received {
            id: header("webhook-id"),
            timestamp: header("webhook-timestamp"),
            signature: header("webhook-signature"),
            body,
            status,
        });
        StatusCode::from_u16(status).unwrap()
    }
    let state: Shared = Arc::default();
    let app = axum::Router::new().route("/hook", axum::routing::post(hook)).with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, state)
}

/// How many of the requests the `standardwebhooks` package accepts under `secret`.
fn verified_by_the_standard_library(secret: &str, requests: &[Received]) -> usize {
    let messages: Vec<Value> = requests
        .iter()
        .map(|r| {
            json!({"body": r.body, "headers": {"webhook-id": r.id, "webhook-timestamp": r.timestamp,
                   "webhook-signature": r.signature}})
        })
        .collect();
    let script = "import json, sys\n\
                  from standardwebhooks.webhooks import Webhook\n\
                  secret, messages = sys.argv[1], json.load(sys.stdin)\n\
                  ok = 0\n\
                  for m in messages:\n\
                  \x20   try:\n\
                  \x20       Webhook(secret).verify(m['body'], m['headers'])\n\
                  \x20       ok += 1\n\
                  \x20   except Exception as e:\n\
                  \x20       print(e, file=sys.stderr)\n\
                  print(ok)\n";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script, secret])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("python3 with standardwebhooks is needed (pip install standardwebhooks): {e}"));
    use std::io::Write;
    child.stdin.take().unwrap().write_all(Value::Array(messages).to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the standardwebhooks check did not run (pip install standardwebhooks)");
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("a count")
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..400 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("waited 40 s for {what}");
}

fn card() -> Value {
    json!({"kind": "card", "uid": "04A1B2C3", "revocation_code": "7"})
}

/// Decisions reach the endpoint signed, in order, once each, also when it fails at first.
async fn deliveries_are_signed_in_order_and_retried(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    small_world(&s).await;
    let (url, receiver) = receiver().await;
    receiver.lock().unwrap().script.extend([500, 503]);
    let created = s.ok("/api/v1/webhooks", json!({"url": url, "kinds": ["decision"], "allow_http": true}), 201).await;
    let secret = created["secret"].as_str().unwrap().to_owned();
    let id = created["endpoint"]["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{created}");
    assert_eq!(s.get(&format!("/api/v1/webhooks/{id}")).await.1.get("secret"), None, "shown once only");

    let mut decided = Vec::new();
    for door in ["front", "front", "nowhere"] {
        let answer = s.post("/api/v1/decisions", json!({"door": door, "credential": card()})).await.1;
        decided.push(answer["reason"].as_str().unwrap().to_owned());
    }
    let accepted = || receiver.lock().unwrap().got.iter().filter(|r| r.status == 200).count();
    until("three accepted deliveries", || accepted() == 3).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = receiver.lock().unwrap().got.clone();
    assert_eq!(got.len(), 5, "two failures, then three deliveries: {got:?}");
    assert!(got[..3].iter().all(|r| r.id == got[0].id), "a retry keeps its webhook-id");
    let bodies: Vec<Value> = got[2..].iter().map(|r| serde_json::from_str(&r.body).unwrap()).collect();
    let reasons: Vec<&str> = bodies.iter().map(|b| b["data"]["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, decided.iter().map(String::as_str).collect::<Vec<_>>(), "in order, once each");
    assert!(bodies.iter().all(|b| b["type"] == "decision" && b["timestamp"].is_string()), "{bodies:?}");

    // An implementation we did not write checks every signature; a changed body fails.
    assert_eq!(verified_by_the_standard_library(&secret, &got), 5);
    let mut forged = got[4].clone();
    forged.body = forged.body.replace("decision", "decisioN");
    assert_eq!(verified_by_the_standard_library(&secret, &[forged]), 0, "a changed body is refused");

    // Every attempt is kept.
    let deliveries = s.get(&format!("/api/v1/webhooks/{id}/deliveries")).await.1;
    let first = deliveries.as_array().unwrap().last().unwrap().clone();
    let statuses: Vec<&Value> = first["attempts"].as_array().unwrap().iter().map(|a| &a["status"]).collect();
    assert_eq!(statuses, [&json!(500), &json!(503), &json!(200)], "{first}");
    assert_eq!(first["state"], "done");

    // A rotated secret: both signatures are sent for a day, each verifies.
    let rotated = s.post(&format!("/api/v1/webhooks/{id}/rotate"), json!({})).await.1;
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    s.post("/api/v1/decisions", json!({"door": "front", "credential": card()})).await;
    until("the delivery after the rotation", || accepted() == 4).await;
    let last = receiver.lock().unwrap().got.last().unwrap().clone();
    assert_eq!(last.signature.split(' ').count(), 2, "{}", last.signature);
    assert_eq!(verified_by_the_standard_library(&new_secret, std::slice::from_ref(&last)), 1);
    assert_eq!(verified_by_the_standard_library(&secret, std::slice::from_ref(&last)), 1);
}

/// 410 Gone stops an endpoint (an event says so); re-enabled, a delivery can be replayed
/// and a time range re-sent. Bad endpoints are refused.
async fn gone_endpoints_stop_and_deliveries_can_be_sent_again(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    small_world(&s).await;
    let (url, receiver) = receiver().await;
    for bad in [
        json!({"url": "http://203.0.113.9/hook", "kinds": ["decision"], "allow_http": true}),
        json!({"url": url, "kinds": ["decision"]}),
        json!({"url": url, "kinds": [], "allow_http": true}),
        json!({"url": url, "kinds": ["Decision!"], "allow_http": true}),
        json!({"url": "ftp://example.org/", "kinds": ["*"]}),
    ] {
        let (status, problem) = s.post("/api/v1/webhooks", bad.clone()).await;
        assert_eq!(status, 422, "{bad}: {problem}");
    }
    let started = chrono::Utc::now();
    let created = s.ok("/api/v1/webhooks", json!({"url": url, "kinds": ["*"], "allow_http": true}), 201).await;
    let id = created["endpoint"]["id"].as_str().unwrap().to_owned();
    s.post("/api/v1/decisions", json!({"door": "front", "credential": card()})).await;
    until("a delivery", || !receiver.lock().unwrap().got.is_empty()).await;

    receiver.lock().unwrap().script.push_back(410);
    s.post("/api/v1/decisions", json!({"door": "front", "credential": card()})).await;
    until("the 410", || receiver.lock().unwrap().got.len() == 2).await;
    for _ in 0..50 {
        if s.get(&format!("/api/v1/webhooks/{id}")).await.1["enabled"] == false {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let endpoint = s.get(&format!("/api/v1/webhooks/{id}")).await.1;
    assert_eq!(endpoint["enabled"], false, "{endpoint}");
    assert!(endpoint["disabled_reason"].as_str().unwrap().contains("410"), "{endpoint}");
    let disabled = s.all_events("kind=webhook.disabled").await;
    assert_eq!(disabled.len(), 1, "{disabled:?}");
    s.post("/api/v1/decisions", json!({"door": "front", "credential": card()})).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(receiver.lock().unwrap().got.len(), 2, "nothing goes to a disabled endpoint");

    // Enabled again: the first delivery replayed (same webhook-id), then the range re-sent.
    let (status, _) = s.patch(&format!("/api/v1/webhooks/{id}"), json!({"enabled": true})).await;
    assert_eq!(status, 200);
    let deliveries = s.get(&format!("/api/v1/webhooks/{id}/deliveries")).await.1;
    let first = deliveries.as_array().unwrap().last().unwrap().clone();
    let (status, _) = s.post(&format!("/api/v1/webhooks/{id}/deliveries/{}/replay", first["id"]), json!({})).await;
    assert_eq!(status, 204);
    // A replay is the same message (beside it comes the endpoint's own `webhook.updated`,
    // the change that enabled it, which a `*` endpoint receives like any event).
    let replayed = || {
        let got = receiver.lock().unwrap().got.clone();
        got[2..].iter().any(|r| r.id == got[0].id)
    };
    until("the replay", replayed).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before_resend = receiver.lock().unwrap().got.len();

    let range = json!({"from": started.to_rfc3339(), "to": chrono::Utc::now().to_rfc3339()});
    let resent = s.post(&format!("/api/v1/webhooks/{id}/resend"), range).await.1;
    let wanted = s.all_events("").await.iter().filter(|e| e["at"].as_str().is_some()).count() as u64;
    let queued = resent["queued"].as_u64().unwrap();
    assert!(queued >= 3 && queued <= wanted, "{resent}: up to {wanted}");
    until("the re-sent events", || receiver.lock().unwrap().got.len() == before_resend + queued as usize).await;

    let (status, _) = s.delete(&format!("/api/v1/webhooks/{id}")).await;
    assert_eq!(status, 204);
    assert_eq!(s.get(&format!("/api/v1/webhooks/{id}")).await.0, 404);

    // The CLI manages the same endpoints.
    let run = |args: &[&str]| {
        let out = lintel().args(args).args(["--database-url", &db.url]).current_dir(&db.dir).output().unwrap();
        assert!(out.status.success(), "lintel {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let secret = tokio::task::block_in_place(|| {
        run(&["webhooks", "add", "--url", &url, "--kind", "door.*", "--kind", "decision", "--allow-http"])
    });
    assert!(secret.trim().starts_with("whsec_"), "{secret}");
    let listed = s.get("/api/v1/webhooks").await.1;
    assert_eq!(listed[0]["kinds"], json!(["door.*", "decision"]), "{listed}");
    let id = listed[0]["id"].as_str().unwrap().to_owned();
    let shown = tokio::task::block_in_place(|| run(&["webhooks", "list"]));
    assert!(shown.contains(&id) && shown.contains("enabled"), "{shown}");
    tokio::task::block_in_place(|| run(&["webhooks", "remove", &id]));
    assert_eq!(s.get("/api/v1/webhooks").await.1, json!([]));
}

/// An endpoint limited to a site gets the events at that site's doors only, also when a
/// range is re-sent; one for every site gets them all. An unknown site is refused.
async fn a_site_endpoint_gets_only_its_sites_events(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    small_world(&s).await;
    s.ok("/api/v1/sites", json!({"id": "annex", "name": "Annex"}), 201).await;
    s.ok("/api/v1/doors", json!({"id": "lab", "name": "Lab", "site": "annex"}), 201).await;
    s.ok("/api/v1/grants", json!({"person_id": "alice", "doors": ["lab"]}), 201).await;
    let (url, receiver) = receiver().await;
    let hook = |site: Value| json!({"url": url, "kinds": ["decision"], "allow_http": true, "site": site});
    let (status, problem) = s.post("/api/v1/webhooks", hook(json!("nowhere"))).await;
    assert_eq!(status, 422, "{problem}");
    let started = chrono::Utc::now();
    let at_annex = s.ok("/api/v1/webhooks", hook(json!("annex")), 201).await;
    assert_eq!(at_annex["endpoint"]["site"], "annex");
    let annex_id = at_annex["endpoint"]["id"].as_str().unwrap().to_owned();
    s.ok("/api/v1/webhooks", hook(Value::Null), 201).await;
    for door in ["front", "lab", "front", "lab"] {
        s.decide(door, card()).await;
    }
    until("six deliveries", || receiver.lock().unwrap().got.len() == 6).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let doors = |r: &[Received]| -> Vec<String> {
        r.iter()
            .map(|r| serde_json::from_str::<Value>(&r.body).unwrap()["data"]["door"].as_str().unwrap().to_owned())
            .collect()
    };
    let got = receiver.lock().unwrap().got.clone();
    let by_endpoint = |secret: &str| -> Vec<Received> {
        got.iter().filter(|r| verified_by_the_standard_library(secret, std::slice::from_ref(r)) == 1).cloned().collect()
    };
    assert_eq!(doors(&by_endpoint(at_annex["secret"].as_str().unwrap())), ["lab", "lab"], "the annex's only");
    assert_eq!(got.len(), 6, "two to the annex's endpoint, four to the other: {:?}", doors(&got));

    // A re-send keeps to the site too; the endpoint can be opened to every site.
    let resent = s
        .ok(&format!("/api/v1/webhooks/{annex_id}/resend"), json!({"from": started, "to": chrono::Utc::now()}), 200)
        .await;
    assert_eq!(resent["queued"], 2, "{resent}");
    let (status, opened) = s.patch(&format!("/api/v1/webhooks/{annex_id}"), json!({"site": null})).await;
    assert_eq!((status, opened.get("site")), (200, None), "{opened}");
}

crate::on_both_backends!(
    deliveries_are_signed_in_order_and_retried,
    gone_endpoints_stop_and_deliveries_can_be_sent_again,
    a_site_endpoint_gets_only_its_sites_events
);
