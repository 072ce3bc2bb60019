//! Door drivers against fake devices: a Shelly relay (Gen2 RPC with and without digest
//! auth, Gen1 with basic auth) and a generic HTTP lock API, each an axum server inside the
//! test that records what it receives. Both ways in: the admin's `POST
//! /api/v1/doors/{id}/open` and a person's `POST /open/{door}` with a personal secret.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::bad_input::{Answer, assert_problem, send};
use crate::harness::{Backend, Database, Server};

/// One request as the fake device received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query, as sent.
    pub uri: String,
    pub headers: HeaderMap,
    pub body: String,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("the device got no JSON ({e}): {:?}", self.body))
    }
}

type Respond = dyn Fn(&Seen, usize) -> Response + Send + Sync;

#[derive(Clone)]
struct FakeState {
    seen: Arc<Mutex<Vec<Seen>>>,
    respond: Arc<Respond>,
}

/// A fake device on 127.0.0.1: every request is recorded and answered by `respond`
/// (which also gets the request's number, from 0).
pub struct FakeDevice {
    pub url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeDevice {
    pub async fn start(respond: impl Fn(&Seen, usize) -> Response + Send + Sync + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("fake device binds");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = FakeState { seen: seen.clone(), respond: Arc::new(respond) };
        let app = axum::Router::new().fallback(record).with_state(state);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, seen, task }
    }

    /// A Gen2+ Shelly without a password: `Switch.Set` answered `{"was_on": false}`.
    pub async fn shelly_gen2() -> Self {
        Self::start(|seen, _| {
            if seen.method == "POST" && seen.uri == "/rpc/Switch.Set" {
                json_answer(StatusCode::OK, json!({"was_on": false}))
            } else {
                json_answer(StatusCode::NOT_FOUND, json!({"code": 404, "message": "no such method"}))
            }
        })
        .await
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
}

impl Drop for FakeDevice {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn record(State(state): State<FakeState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let seen = Seen {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts.headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    };
    let n = {
        let mut all = state.seen.lock().expect("lock");
        all.push(seen.clone());
        all.len() - 1
    };
    (state.respond)(&seen, n)
}

pub fn json_answer(status: StatusCode, body: Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// A URL where nothing listens (a port that was just free).
pub fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    format!("http://{addr}")
}

pub async fn create_door(s: &Server, id: &str, driver: Value, open_seconds: u32) -> Value {
    s.ok(
        "/api/v1/doors",
        json!({"id": id, "name": format!("Door {id}"), "driver": driver, "open_seconds": open_seconds}),
        201,
    )
    .await
}

/// A person with a personal secret; returns (credential, secret).
pub async fn person_with_secret(s: &Server, person: &str) -> (Value, String) {
    s.ok("/api/v1/people", json!({"id": person, "name": person}), 201).await;
    let credential = s.ok(&format!("/api/v1/people/{person}/credentials"), json!({"kind": "secret"}), 201).await;
    let secret = credential["secret"].as_str().unwrap_or_else(|| panic!("no secret in {credential}")).to_owned();
    (credential, secret)
}

pub async fn open_with_secret(s: &Server, door: &str, secret: &str) -> Answer {
    send(s.client.post(format!("{}/open/{door}", s.base)).bearer_auth(secret)).await
}

async fn admin_open(s: &Server, door: &str, body: Option<Value>) -> Answer {
    let mut request = s.client.post(format!("{}/api/v1/doors/{door}/open", s.base)).bearer_auth(crate::harness::ADMIN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    send(request).await
}

fn of_kind(events: &[Value], kind: &str) -> Vec<Value> {
    events.iter().filter(|e| e["kind"] == kind).cloned().collect()
}

async fn shelly_gen2_switch_set_confirms(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    let relay = FakeDevice::shelly_gen2().await;
    create_door(&s, "front", json!({"kind": "shelly", "url": relay.url, "generation": 2}), 7).await;
    create_door(&s, "gate", json!({"kind": "shelly", "url": format!("{}/", relay.url), "channel": 2}), 4).await;

    let opened = admin_open(&s, "front", None).await;
    assert_eq!(opened.status, 200, "{:?}", opened.body);
    assert_eq!(opened.body["allowed"], true);
    assert_eq!(opened.body["reason"], "granted");
    assert_eq!(opened.body["door"], "front");
    assert_eq!(opened.body["opened"], true);
    assert_eq!(opened.body["confirmed"], true, "{:?}", opened.body);
    assert!(opened.body.get("driver_error").is_none_or(Value::is_null));
    assert!(opened.body["event_id"].is_string());

    let seen = relay.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].uri, "/rpc/Switch.Set");
    assert!(seen[0].header("content-type").is_some_and(|v| v.starts_with("application/json")), "{seen:?}");
    assert_eq!(seen[0].json(), json!({"id": 0, "on": true, "toggle_after": 7}));
    assert!(seen[0].header("authorization").is_none(), "no password: no Authorization header");

    // The seconds of the request win over the door's; the channel is the switch id; a
    // trailing slash on the URL does not double.
    let opened = admin_open(&s, "front", Some(json!({"seconds": 3, "note": "delivery"}))).await;
    assert_eq!(opened.status, 200, "{:?}", opened.body);
    let opened = admin_open(&s, "gate", Some(json!({}))).await;
    assert_eq!(opened.status, 200, "{:?}", opened.body);
    assert_eq!(opened.body["confirmed"], true);
    let seen = relay.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[1].json(), json!({"id": 0, "on": true, "toggle_after": 3}));
    assert_eq!(seen[2].uri, "/rpc/Switch.Set");
    assert_eq!(seen[2].json(), json!({"id": 2, "on": true, "toggle_after": 4}));

    // Each opening is a decision by the admin and a door.opened event with what happened.
    let events = s.events().await;
    let decisions: Vec<_> =
        of_kind(&events, "decision").into_iter().filter(|e| e["door"] == "front").collect::<Vec<_>>();
    assert_eq!(decisions.len(), 2, "{events:?}");
    assert!(decisions.iter().all(|e| e["allowed"] == true && e["reason"] == "granted"));
    assert!(decisions[0]["data"]["by"].as_str().is_some_and(|by| by.contains("environment")), "{decisions:?}");
    assert_eq!(decisions[1]["data"]["note"], "delivery");
    let opened_events = of_kind(&events, "door.opened");
    assert_eq!(opened_events.len(), 3, "{events:?}");
    assert_eq!(opened_events[0]["door"], "front");
    assert_eq!(opened_events[0]["data"]["driver"], "shelly");
    assert_eq!(opened_events[0]["data"]["seconds"], 7);
    assert_eq!(opened_events[0]["data"]["confirmed"], true);
    assert_eq!(opened_events[1]["data"]["seconds"], 3);
    assert!(of_kind(&events, "door.driver_failed").is_empty());

    let door = s.get("/api/v1/doors/front").await.1;
    assert_eq!(door["state"]["online"], true, "{door}");
    assert!(door["state"]["last_opened"].is_string(), "{door}");
    assert!(door["state"]["last_seen"].is_string(), "{door}");
    assert!(door["state"]["last_error"].is_null(), "{door}");

    // A relay that answers 200 without reporting its state is not a confirmation.
    let mute = FakeDevice::start(|_, _| json_answer(StatusCode::OK, json!({}))).await;
    create_door(&s, "mute", json!({"kind": "shelly", "url": mute.url}), 5).await;
    let opened = admin_open(&s, "mute", None).await;
    assert_eq!(opened.status, 200, "{:?}", opened.body);
    assert_eq!(opened.body["opened"], true);
    assert_eq!(opened.body["confirmed"], false, "{:?}", opened.body);
    assert_eq!(mute.seen().len(), 1);
}

const REALM: &str = "shellyplus1-abc";
const NONCE: &str = "6d2f0c8a";

/// The fields of an `Authorization: Digest ...` header.
fn digest_fields(value: &str) -> Option<HashMap<String, String>> {
    let rest = value.strip_prefix("Digest ")?;
    let mut fields = HashMap::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in rest.chars().chain([',']) {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                if let Some((k, v)) = current.trim().split_once('=') {
                    fields.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                }
                current.clear();
            }
            _ => current.push(c),
        }
    }
    Some(fields)
}

fn sha256_hex(text: &str) -> String {
    hex::encode(lintel_core::credential::sha256(text.as_bytes()))
}

/// Checks an RFC 7616 digest response (SHA-256, qop=auth) the way a Shelly does.
fn digest_is_valid(fields: &HashMap<String, String>, method: &str, password: &str) -> bool {
    let get = |k: &str| fields.get(k).map(String::as_str).unwrap_or_default();
    let ha1 = sha256_hex(&format!("{}:{}:{password}", get("username"), get("realm")));
    let ha2 = sha256_hex(&format!("{method}:{}", get("uri")));
    let expected = sha256_hex(&format!("{ha1}:{}:{}:{}:{}:{ha2}", get("nonce"), get("nc"), get("cnonce"), get("qop")));
    get("response") == expected
}

/// A Gen2 relay protected by `password`: a challenge first, then `Switch.Set` once the
/// digest is right.
async fn shelly_with_password(password: &'static str) -> FakeDevice {
    FakeDevice::start(move |seen, _| {
        let valid = seen
            .header("authorization")
            .and_then(digest_fields)
            .is_some_and(|f| f.get("nonce").is_some_and(|n| n == NONCE) && digest_is_valid(&f, &seen.method, password));
        if valid {
            json_answer(StatusCode::OK, json!({"was_on": false}))
        } else {
            let challenge = format!("Digest realm=\"{REALM}\", qop=\"auth\", nonce=\"{NONCE}\", algorithm=SHA-256");
            (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, challenge)], "401 Unauthorized").into_response()
        }
    })
    .await
}

async fn shelly_gen2_digest_auth(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    let relay = shelly_with_password("relay-pass-1").await;
    create_door(&s, "front", json!({"kind": "shelly", "url": relay.url, "password": "relay-pass-1"}), 6).await;

    let opened = admin_open(&s, "front", None).await;
    assert_eq!(opened.status, 200, "{:?}", opened.body);
    assert_eq!(opened.body["confirmed"], true);
    let seen = relay.seen();
    assert_eq!(seen.len(), 2, "a challenge, then the authenticated retry: {seen:?}");
    assert!(seen[0].header("authorization").is_none());
    let auth = seen[1].header("authorization").expect("the retry is authenticated");
    assert!(auth.starts_with("Digest "), "{auth}");
    let fields = digest_fields(auth).expect("digest fields");
    assert_eq!(fields.get("username").map(String::as_str), Some("admin"), "{auth}");
    assert_eq!(fields.get("realm").map(String::as_str), Some(REALM), "{auth}");
    assert_eq!(fields.get("nonce").map(String::as_str), Some(NONCE), "{auth}");
    assert_eq!(fields.get("uri").map(String::as_str), Some("/rpc/Switch.Set"), "{auth}");
    assert_eq!(fields.get("qop").map(String::as_str), Some("auth"), "{auth}");
    assert!(fields.get("algorithm").is_some_and(|a| a.eq_ignore_ascii_case("SHA-256")), "{auth}");
    assert!(fields.get("response").is_some_and(|r| r.len() == 64), "{auth}");
    assert!(digest_is_valid(&fields, "POST", "relay-pass-1"), "the digest does not verify: {auth}");
    assert!(!auth.contains("relay-pass-1"), "the password itself is never sent");
    assert_eq!(seen[0].body, seen[1].body);
    assert_eq!(seen[1].json(), json!({"id": 0, "on": true, "toggle_after": 6}));

    // A wrong password: the relay keeps refusing, and the door reports it.
    let strict = shelly_with_password("the-right-one").await;
    create_door(&s, "side", json!({"kind": "shelly", "url": strict.url, "password": "a-wrong-one"}), 5).await;
    let failed = admin_open(&s, "side", None).await;
    assert_problem(&failed, 502, "wrong relay password");
    assert_eq!(failed.body["allowed"], true);
    assert_eq!(failed.body["confirmed"], false);
    assert!(failed.body["driver_error"].as_str().is_some_and(|e| e.contains("401")), "{:?}", failed.body);
    assert_eq!(strict.seen().len(), 2, "one challenge, one retry, no loop");

    // A relay that asks for a password when none is configured.
    create_door(&s, "back", json!({"kind": "shelly", "url": strict.url}), 5).await;
    let failed = admin_open(&s, "back", None).await;
    assert_problem(&failed, 502, "no relay password configured");
    assert!(failed.body["driver_error"].as_str().is_some_and(|e| e.contains("password")), "{:?}", failed.body);
}

async fn shelly_gen1_relay_with_basic_auth(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    let relay = FakeDevice::start(|seen, _| {
        if seen.method == "GET" && seen.uri.starts_with("/relay/") {
            json_answer(StatusCode::OK, json!({"ison": true, "has_timer": true}))
        } else {
            json_answer(StatusCode::NOT_FOUND, json!({}))
        }
    })
    .await;
    create_door(
        &s,
        "front",
        json!({"kind": "shelly", "generation": 1, "url": relay.url, "channel": 1, "username": "admin", "password": "pw-gen1"}),
        12,
    )
    .await;
    let opened = admin_open(&s, "front", None).await;
    assert_eq!(opened.status, 200, "{:?}", opened.body);
    assert_eq!(opened.body["opened"], true);
    assert_eq!(opened.body["confirmed"], true);
    let seen = relay.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].uri, "/relay/1?turn=on&timer=12");
    // base64("admin:pw-gen1")
    assert_eq!(seen[0].header("authorization"), Some("Basic YWRtaW46cHctZ2VuMQ=="));

    // A relay that reports it is off did not confirm the opening.
    let off = FakeDevice::start(|_, _| json_answer(StatusCode::OK, json!({"ison": false}))).await;
    create_door(&s, "side", json!({"kind": "shelly", "generation": 1, "url": off.url}), 5).await;
    let opened = admin_open(&s, "side", None).await;
    assert_eq!(opened.status, 200, "{:?}", opened.body);
    assert_eq!(opened.body["confirmed"], false);
    assert_eq!(off.seen()[0].uri, "/relay/0?turn=on&timer=5");
    assert!(off.seen()[0].header("authorization").is_none());
}

async fn http_driver_sends_the_configured_call(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    let api = FakeDevice::start(|seen, _| {
        if seen.header("x-api-key") == Some("key-abc123") {
            StatusCode::NO_CONTENT.into_response()
        } else {
            json_answer(StatusCode::FORBIDDEN, json!({"error": "bad key"}))
        }
    })
    .await;
    let driver = json!({
        "kind": "http",
        "url": format!("{}/v1/locks/7/unlock?for={{seconds}}", api.url),
        "method": "PUT",
        "headers": {"X-Api-Key": "key-abc123", "X-Tenant": "t-42"},
        "body": {"action": "unlock", "duration": "{seconds}", "nested": ["{seconds}s"]}
    });
    let created = create_door(&s, "front", driver, 9).await;
    assert_eq!(created["driver"]["headers"]["X-Api-Key"], "********", "{created}");

    let opened = admin_open(&s, "front", None).await;
    assert_eq!(opened.status, 200, "{:?}", opened.body);
    assert_eq!(opened.body["opened"], true);
    assert_eq!(opened.body["confirmed"], true, "a 2xx confirms");
    let seen = api.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "PUT");
    assert_eq!(seen[0].uri, "/v1/locks/7/unlock?for=9");
    assert_eq!(seen[0].header("x-api-key"), Some("key-abc123"));
    assert_eq!(seen[0].header("x-tenant"), Some("t-42"));
    assert!(seen[0].header("content-type").is_some_and(|v| v.starts_with("application/json")));
    assert_eq!(seen[0].json(), json!({"action": "unlock", "duration": "9", "nested": ["9s"]}));

    // Reads never show the header values, and changing something else keeps them working.
    for door in [s.get("/api/v1/doors/front").await.1, s.get("/api/v1/doors").await.1[0].clone()] {
        assert_eq!(door["driver"]["kind"], "http");
        assert_eq!(door["driver"]["method"], "PUT");
        assert_eq!(door["driver"]["headers"]["X-Api-Key"], "********", "{door}");
        assert_eq!(door["driver"]["headers"]["X-Tenant"], "********", "{door}");
        assert!(!door.to_string().contains("key-abc123"), "{door}");
    }
    let (status, patched) = s.patch("/api/v1/doors/front", json!({"name": "Front door", "open_seconds": 2})).await;
    assert_eq!(status, 200, "{patched}");
    assert!(!patched.to_string().contains("key-abc123"), "{patched}");
    let opened = admin_open(&s, "front", None).await;
    assert_eq!(opened.status, 200, "{:?}", opened.body);
    let seen = api.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].header("x-api-key"), Some("key-abc123"), "the stored key is the real one");
    assert_eq!(seen[1].uri, "/v1/locks/7/unlock?for=2");

    // Without a body the call has none; the method defaults to POST.
    create_door(
        &s,
        "plain",
        json!({"kind": "http", "url": format!("{}/open", api.url), "headers": {"X-Api-Key": "key-abc123"}}),
        5,
    )
    .await;
    let opened = admin_open(&s, "plain", None).await;
    assert_eq!(opened.status, 200, "{:?}", opened.body);
    let seen = api.seen();
    assert_eq!(seen[2].method, "POST");
    assert_eq!(seen[2].uri, "/open");
    assert_eq!(seen[2].body, "");

    // An API that refuses: 502 with the status it gave.
    create_door(&s, "nokey", json!({"kind": "http", "url": format!("{}/open", api.url)}), 5).await;
    let failed = admin_open(&s, "nokey", None).await;
    assert_problem(&failed, 502, "API refuses");
    assert!(failed.body["driver_error"].as_str().is_some_and(|e| e.contains("403")), "{:?}", failed.body);
}

async fn failing_relays_answer_502_and_are_recorded(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    let broken = FakeDevice::start(|_, _| json_answer(StatusCode::INTERNAL_SERVER_ERROR, json!({"code": -1}))).await;
    create_door(&s, "front", json!({"kind": "shelly", "url": broken.url}), 5).await;
    create_door(&s, "back", json!({"kind": "shelly", "url": dead_url()}), 5).await;
    let (_, secret) = person_with_secret(&s, "alice").await;
    s.ok("/api/v1/grants", json!({"person_id": "alice", "doors": ["front", "back"]}), 201).await;

    // Relay answers 500, asked by an admin.
    let failed = admin_open(&s, "front", None).await;
    assert_problem(&failed, 502, "relay answers 500");
    assert_eq!(failed.body["allowed"], true, "{:?}", failed.body);
    assert_eq!(failed.body["reason"], "granted");
    assert_eq!(failed.body["opened"], false);
    assert_eq!(failed.body["confirmed"], false);
    assert_eq!(failed.body["door"], "front");
    assert!(failed.body["driver_error"].as_str().is_some_and(|e| e.contains("500")), "{:?}", failed.body);
    assert!(failed.body["event_id"].is_string(), "the decision is on record: {:?}", failed.body);
    assert_eq!(broken.seen().len(), 1);

    // Relay not listening, asked with a personal secret.
    let failed = open_with_secret(&s, "back", &secret).await;
    assert_problem(&failed, 502, "relay not listening");
    assert_eq!(failed.body["allowed"], true, "{:?}", failed.body);
    assert_eq!(failed.body["confirmed"], false);
    assert_eq!(failed.body["person_id"], "alice");
    assert!(failed.body["driver_error"].as_str().is_some_and(|e| e.contains("unreachable")), "{:?}", failed.body);

    let events = s.events().await;
    let failures = of_kind(&events, "door.driver_failed");
    assert_eq!(failures.len(), 2, "{events:?}");
    assert_eq!(failures[0]["door"], "front");
    assert_eq!(failures[0]["data"]["driver"], "shelly");
    assert!(failures[0]["data"]["error"].as_str().is_some_and(|e| e.contains("500")), "{failures:?}");
    assert_eq!(failures[1]["door"], "back");
    assert_eq!(failures[1]["person_id"], "alice");
    assert!(failures[1]["data"]["error"].is_string());
    assert!(of_kind(&events, "door.opened").is_empty(), "{events:?}");
    let decisions = of_kind(&events, "decision");
    assert_eq!(decisions.len(), 2, "{events:?}");
    assert!(decisions.iter().all(|d| d["allowed"] == true));

    for id in ["front", "back"] {
        let door = s.get(&format!("/api/v1/doors/{id}")).await.1;
        assert_eq!(door["state"]["online"], false, "{door}");
        assert!(door["state"]["last_error"].as_str().is_some_and(|e| !e.is_empty()), "{door}");
        assert!(door["state"]["last_opened"].is_null(), "it never opened: {door}");
    }

    // Once the relay works again, the error clears.
    let relay = FakeDevice::shelly_gen2().await;
    let (status, _) = s.patch("/api/v1/doors/back", json!({"driver": {"kind": "shelly", "url": relay.url}})).await;
    assert_eq!(status, 200);
    let opened = open_with_secret(&s, "back", &secret).await;
    assert_eq!(opened.status, 200, "{:?}", opened.body);
    assert_eq!(opened.body["confirmed"], true);
    let door = s.get("/api/v1/doors/back").await.1;
    assert_eq!(door["state"]["online"], true, "{door}");
    assert!(door["state"]["last_error"].is_null(), "{door}");
    assert!(door["state"]["last_opened"].is_string(), "{door}");
}

/// Shelly Cloud's Control API: `POST /device/relay/control` with a form (`id`,
/// `auth_key`, `channel`, `turn`, `timer`), `{"isok": true, "data": ...}` or `{"isok":
/// false, "errors": {...}}`; a wrong key is a 401.
async fn shelly_cloud() -> FakeDevice {
    FakeDevice::start(|seen, _| {
        if seen.method != "POST" || seen.uri != "/device/relay/control" {
            return json_answer(StatusCode::NOT_FOUND, json!({"isok": false, "errors": {"not_found": "no such call"}}));
        }
        let form: HashMap<String, String> = serde_urlencoded::from_str(&seen.body).unwrap_or_default();
        if form.get("auth_key").map(String::as_str) != Some("cloud-key-1") {
            return json_answer(
                StatusCode::UNAUTHORIZED,
                json!({"isok": false, "errors": {"wrong_auth_key": "invalid key"}}),
            );
        }
        match form.get("id").map(String::as_str) {
            Some("a1b2c3d4e5f6") => {
                json_answer(StatusCode::OK, json!({"isok": true, "data": {"device_id": "a1b2c3d4e5f6"}}))
            }
            _ => json_answer(StatusCode::OK, json!({"isok": false, "errors": {"device_offline": "device is offline"}})),
        }
    })
    .await
}

/// A server that accepts connections and never answers.
async fn black_hole() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (url, task)
}

async fn shelly_cloud_relays(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    let cloud = shelly_cloud().await;
    let cloud_door = |key: &str, device: &str| json!({"kind": "shelly_cloud", "server": cloud.url, "auth_key": key, "device_id": device, "channel": 1});
    create_door(&s, "ok", cloud_door("cloud-key-1", "a1b2c3d4e5f6"), 7).await;
    create_door(&s, "offline", cloud_door("cloud-key-1", "ffff00000000"), 7).await;
    create_door(&s, "badkey", cloud_door("cloud-key-2", "a1b2c3d4e5f6"), 7).await;
    // The key is a secret: never read back.
    let shown = s.get("/api/v1/doors/ok").await.1;
    assert_eq!(shown["driver"]["auth_key"], "********", "{shown}");
    assert_eq!(shown["driver"]["kind"], "shelly_cloud");

    let opened = admin_open(&s, "ok", None).await;
    assert_eq!(opened.status, 200, "{:?}", opened.body);
    assert_eq!((opened.body["opened"].as_bool(), opened.body["confirmed"].as_bool()), (Some(true), Some(true)));
    let call = &cloud.seen()[0];
    assert_eq!(call.header("content-type"), Some("application/x-www-form-urlencoded"));
    let form: HashMap<String, String> = serde_urlencoded::from_str(&call.body).unwrap();
    assert_eq!(form["id"], "a1b2c3d4e5f6");
    assert_eq!((form["channel"].as_str(), form["turn"].as_str(), form["timer"].as_str()), ("1", "on", "7"));

    // `isok: false` is no opening, even with a 200.
    let refused = admin_open(&s, "offline", None).await;
    assert_problem(&refused, 502, "isok false");
    assert_eq!(refused.body["confirmed"], false);
    assert!(refused.body["driver_error"].as_str().is_some_and(|e| e.contains("device_offline")), "{:?}", refused.body);
    // A wrong key: the cloud's 401, and the key is not in the answer.
    let refused = admin_open(&s, "badkey", None).await;
    assert_problem(&refused, 502, "wrong auth key");
    assert!(refused.body["driver_error"].as_str().is_some_and(|e| e.contains("401")), "{:?}", refused.body);
    assert!(!refused.text.contains("cloud-key-2"), "{}", refused.text);
    // One call per second per account: two openings in a row are spaced.
    let started = std::time::Instant::now();
    for _ in 0..2 {
        assert_eq!(admin_open(&s, "ok", None).await.status, 200);
    }
    assert!(started.elapsed() >= std::time::Duration::from_millis(900), "{:?}", started.elapsed());
    assert_eq!(cloud.seen().len(), 5);

    // A cloud that never answers: a timeout, within the driver's bound.
    let (hole, _task) = black_hole().await;
    let slow = json!({"kind": "shelly_cloud", "server": hole, "auth_key": "k", "device_id": "a1b2c3d4e5f6"});
    create_door(&s, "slow", slow, 5).await;
    let started = std::time::Instant::now();
    let timed_out = admin_open(&s, "slow", None).await;
    assert_problem(&timed_out, 502, "the cloud does not answer");
    assert!(timed_out.body["driver_error"].as_str().is_some_and(|e| e.contains("timed out")), "{:?}", timed_out.body);
    assert!(started.elapsed() < std::time::Duration::from_secs(12), "{:?}", started.elapsed());

    // Bad configurations are refused before they are stored.
    for bad in [
        json!({"kind": "shelly_cloud", "server": "ftp://x", "auth_key": "k", "device_id": "a1"}),
        json!({"kind": "shelly_cloud", "server": cloud.url, "auth_key": "", "device_id": "a1"}),
        json!({"kind": "shelly_cloud", "server": cloud.url, "auth_key": "k", "device_id": "../x"}),
    ] {
        let (status, body) = s.post("/api/v1/doors", json!({"id": "bad", "name": "Bad", "driver": bad})).await;
        assert_eq!(status, 422, "{body}");
    }
}

/// The `http` driver's success rule: a status set and a JSON field's value, so that a 200
/// carrying an error is not reported as an opening.
async fn http_driver_success_rule(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    let lock = FakeDevice::start(|seen, _| match seen.uri.as_str() {
        "/ok" => json_answer(StatusCode::OK, json!({"result": {"status": "unlocked"}})),
        "/error" => json_answer(StatusCode::OK, json!({"result": {"status": "error", "message": "battery low"}})),
        _ => json_answer(StatusCode::ACCEPTED, json!({})),
    })
    .await;
    let rule = json!({"status": [200], "field": "/result/status", "value": "unlocked"});
    let door = |path: &str| json!({"kind": "http", "url": format!("{}{path}", lock.url), "success": rule});
    create_door(&s, "ok", door("/ok"), 5).await;
    create_door(&s, "error", door("/error"), 5).await;
    create_door(&s, "accepted", door("/accepted"), 5).await;
    create_door(&s, "plain", json!({"kind": "http", "url": format!("{}/error", lock.url)}), 5).await;
    assert_eq!(s.get("/api/v1/doors/ok").await.1["driver"]["success"], rule, "the rule is read back");

    let ok = admin_open(&s, "ok", None).await;
    assert_eq!((ok.status, ok.body["confirmed"].as_bool()), (200, Some(true)), "{:?}", ok.body);
    let error = admin_open(&s, "error", None).await;
    assert_problem(&error, 502, "a 200 carrying an error");
    assert_eq!(error.body["confirmed"], false);
    assert!(error.body["driver_error"].as_str().is_some_and(|e| e.contains("battery low")), "{:?}", error.body);
    let accepted = admin_open(&s, "accepted", None).await;
    assert_problem(&accepted, 502, "202 is not in the status set");
    // Without a rule, as before: any 2xx.
    assert_eq!(admin_open(&s, "plain", None).await.body["confirmed"], true);

    for bad in [json!({"status": []}), json!({"field": "result"}), json!({"value": 1}), json!({"status": [42]})] {
        let driver = json!({"kind": "http", "url": lock.url, "success": bad});
        let (status, body) = s.post("/api/v1/doors", json!({"id": "bad", "name": "Bad", "driver": driver})).await;
        assert_eq!(status, 422, "{body}");
    }
}

/// A relay lintel has never reached has not been seen: `last_seen` stays empty.
async fn an_unreachable_relay_is_never_seen(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    create_door(&s, "back", json!({"kind": "shelly", "url": dead_url()}), 5).await;
    let failed = admin_open(&s, "back", None).await;
    assert_problem(&failed, 502, "relay not listening");
    let door = s.get("/api/v1/doors/back").await.1;
    assert_eq!(door["state"]["online"], false, "{door}");
    assert!(door["state"]["last_seen"].is_null(), "lintel never heard from this relay, yet last_seen is set: {door}");
}

async fn driver_none_opens_nothing(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    s.ok("/api/v1/doors", json!({"id": "front", "name": "Front"}), 201).await;
    let door = s.get("/api/v1/doors/front").await.1;
    assert_eq!(door["driver"], json!({"kind": "none"}));
    assert_eq!(door["open_seconds"], 5, "the default");
    let opened = admin_open(&s, "front", None).await;
    assert_eq!(opened.status, 200, "{:?}", opened.body);
    assert_eq!(opened.body["allowed"], true);
    assert_eq!(opened.body["opened"], false, "{:?}", opened.body);
    assert_eq!(opened.body["confirmed"], false);
    let events = s.events().await;
    let opened_events = of_kind(&events, "door.opened");
    assert_eq!(opened_events.len(), 1, "{events:?}");
    assert_eq!(opened_events[0]["data"]["driver"], "none");
    assert_eq!(opened_events[0]["data"]["confirmed"], false);
    let door = s.get("/api/v1/doors/front").await.1;
    assert!(door["state"]["online"].is_null(), "there is no device to be online: {door}");
    assert!(door["state"]["last_error"].is_null());

    // Admin opening checks what it is given, before anything is recorded.
    let before = s.events().await.len();
    assert_problem(&admin_open(&s, "nowhere", None).await, 404, "unknown door");
    assert_problem(&admin_open(&s, "front", Some(json!({"seconds": 0}))).await, 422, "seconds 0");
    assert_problem(&admin_open(&s, "front", Some(json!({"seconds": 3601}))).await, 422, "seconds 3601");
    assert_problem(&admin_open(&s, "front", Some(json!({"sekonds": 3}))).await, 422, "typo");
    assert_eq!(s.events().await.len(), before);
}

async fn open_with_a_personal_secret(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    let relay = FakeDevice::shelly_gen2().await;
    create_door(&s, "front", json!({"kind": "shelly", "url": relay.url}), 8).await;
    let (credential, secret) = person_with_secret(&s, "alice").await;
    assert_eq!(credential["kind"], "secret");
    assert_eq!(credential["status"], "active");
    assert_eq!(credential["person_id"], "alice");
    assert!(secret.len() >= 32, "a personal secret is long: {secret}");

    // The secret is shown once: never again on reads.
    let id = credential["id"].as_str().unwrap();
    let read = s.get(&format!("/api/v1/credentials/{id}")).await.1;
    assert_eq!(read["id"], id);
    assert!(read.get("secret").is_none_or(Value::is_null), "{read}");
    assert!(!read.to_string().contains(&secret));
    let listed = s.get("/api/v1/people/alice/credentials").await.1;
    assert!(!listed.to_string().contains(&secret), "{listed}");
    // A second secret is a different one.
    let other = s.ok("/api/v1/people/alice/credentials", json!({"kind": "secret"}), 201).await;
    assert_ne!(other["secret"], secret);

    // No grant yet: 403 with the reason, and the relay hears nothing.
    let denied = open_with_secret(&s, "front", &secret).await;
    assert_problem(&denied, 403, "no grant");
    assert_eq!(denied.body["allowed"], false);
    assert_eq!(denied.body["reason"], "no_grant", "{:?}", denied.body);
    assert_eq!(denied.body["person_id"], "alice");
    assert_eq!(denied.body["opened"], false);
    assert!(relay.seen().is_empty());

    s.ok("/api/v1/grants", json!({"person_id": "alice", "doors": ["front"]}), 201).await;
    let opened = open_with_secret(&s, "front", &secret).await;
    assert_eq!(opened.status, 200, "{:?}", opened.body);
    assert_eq!(opened.body["allowed"], true);
    assert_eq!(opened.body["reason"], "granted");
    assert_eq!(opened.body["person_id"], "alice");
    assert_eq!(opened.body["door"], "front");
    assert_eq!(opened.body["opened"], true);
    assert_eq!(opened.body["confirmed"], true);
    let seen = relay.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].json(), json!({"id": 0, "on": true, "toggle_after": 8}));

    let events = s.events().await;
    let decisions = of_kind(&events, "decision");
    assert_eq!(decisions.len(), 2, "{events:?}");
    assert_eq!(decisions[0]["reason"], "no_grant");
    assert_eq!(decisions[1]["reason"], "granted");
    assert_eq!(decisions[1]["person_id"], "alice");
    assert_eq!(decisions[1]["credential_id"], id);
    assert_eq!(decisions[1]["data"]["credential_kind"], "secret");
    assert_eq!(decisions[1]["id"], opened.body["event_id"]);
    let opened_events = of_kind(&events, "door.opened");
    assert_eq!(opened_events.len(), 1);
    assert_eq!(opened_events[0]["person_id"], "alice");
    assert!(!serde_json::to_string(&events).unwrap().contains(&secret), "the secret is in the event log");

    // No secret, an unknown door, a wrong secret, a revoked secret: the relay stays quiet.
    let anonymous = send(s.client.post(format!("{}/open/front", s.base))).await;
    assert_problem(&anonymous, 401, "no secret");
    assert!(anonymous.headers.get("www-authenticate").is_some());
    let basic = send(s.client.post(format!("{}/open/front", s.base)).basic_auth("alice", Some(&secret))).await;
    assert_problem(&basic, 401, "basic instead of bearer");
    let unknown_door = open_with_secret(&s, "cellar", &secret).await;
    // An anonymous caller cannot tell an unknown door from a wrong secret.
    assert_problem(&unknown_door, 403, "unknown door");
    assert_eq!(unknown_door.body["reason"], "unknown_credential");
    let wrong = open_with_secret(&s, "front", "lsk_not-the-secret").await;
    assert_problem(&wrong, 403, "wrong secret");
    assert_eq!(wrong.body["reason"], "unknown_credential");
    assert!(wrong.body["person_id"].is_null());
    let (status, _) = s.delete(&format!("/api/v1/credentials/{id}")).await;
    assert_eq!(status, 200);
    let revoked = open_with_secret(&s, "front", &secret).await;
    assert_problem(&revoked, 403, "revoked secret");
    assert_eq!(revoked.body["reason"], "credential_revoked");
    assert_eq!(relay.seen().len(), 1, "only the allowed opening reached the relay");
}

async fn door_reads_redact_driver_secrets(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    let created = create_door(
        &s,
        "front",
        json!({"kind": "shelly", "url": "http://192.0.2.40", "username": "admin", "password": "shelly-secret-9"}),
        5,
    )
    .await;
    create_door(
        &s,
        "lock",
        json!({"kind": "http", "url": "https://locks.example/api/unlock", "headers": {"Authorization": "Bearer cloud-token-7"}}),
        5,
    )
    .await;
    create_door(&s, "plain", json!({"kind": "shelly", "url": "http://192.0.2.41"}), 5).await;
    assert_eq!(created["driver"]["password"], "********", "{created}");
    assert_eq!(created["driver"]["username"], "admin");
    let front = s.get("/api/v1/doors/front").await.1;
    assert_eq!(front["driver"]["password"], "********", "{front}");
    assert_eq!(front["driver"]["url"], "http://192.0.2.40");
    let lock = s.get("/api/v1/doors/lock").await.1;
    assert_eq!(lock["driver"]["headers"]["Authorization"], "********", "{lock}");
    let plain = s.get("/api/v1/doors/plain").await.1;
    assert!(plain["driver"]["password"].is_null(), "no password, nothing to hide: {plain}");
    let all = s.get("/api/v1/doors").await.1.to_string();
    let events = serde_json::to_string(&s.events().await).unwrap();
    for secret in ["shelly-secret-9", "cloud-token-7"] {
        assert!(!all.contains(secret), "{all}");
        assert!(!events.contains(secret), "{events}");
    }
}

/// A password in the driver URL's user info is a driver password too.
async fn door_reads_redact_passwords_in_driver_urls(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    let created = create_door(
        &s,
        "front",
        json!({"kind": "shelly", "generation": 1, "url": "http://admin:url-secret-3@192.0.2.40"}),
        5,
    )
    .await;
    let read = s.get("/api/v1/doors/front").await.1;
    let all = s.get("/api/v1/doors").await.1;
    for shown in [&created, &read, &all] {
        assert!(!shown.to_string().contains("url-secret-3"), "the URL's password is echoed: {shown}");
    }
}

/// Writing back a door as it was read (a UI editing the name, say) must not replace the
/// relay's password with the placeholder it was shown.
async fn a_door_written_back_as_read_keeps_its_password(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    let relay = shelly_with_password("keep-me-7").await;
    create_door(&s, "front", json!({"kind": "shelly", "url": relay.url, "password": "keep-me-7"}), 5).await;
    let read = s.get("/api/v1/doors/front").await.1;
    assert_eq!(read["driver"]["password"], "********");
    let (status, patched) =
        s.patch("/api/v1/doors/front", json!({"name": "Front door", "driver": read["driver"].clone()})).await;
    assert_eq!(status, 200, "{patched}");
    let opened = admin_open(&s, "front", None).await;
    assert_eq!(
        opened.status, 200,
        "after writing back the door as read, the relay refuses the stored password: {:?}",
        opened.body
    );
    assert_eq!(opened.body["confirmed"], true);
}

crate::on_both_backends!(
    shelly_cloud_relays,
    http_driver_success_rule,
    shelly_gen2_switch_set_confirms,
    shelly_gen2_digest_auth,
    shelly_gen1_relay_with_basic_auth,
    http_driver_sends_the_configured_call,
    failing_relays_answer_502_and_are_recorded,
    an_unreachable_relay_is_never_seen,
    driver_none_opens_nothing,
    open_with_a_personal_secret,
    door_reads_redact_driver_secrets,
    door_reads_redact_passwords_in_driver_urls,
    a_door_written_back_as_read_keeps_its_password,
);
