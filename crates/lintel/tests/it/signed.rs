//! Signed operations (issue 6): users register Ed25519 keys and get a certificate chain;
//! operations are compact JWS signed by an implementation lintel did not write (PyJWT with
//! `cryptography`, through `signed_ops.py`) and posted without any Authorization. Each
//! refusal has its own reason and changes nothing (the fake relay stays quiet). Sharing
//! (add_user / remove_user) by lock administrators, the user directory, OpenID Connect
//! identities from a fake issuer on loopback, and doors that are offline.
//!
//! Needs python3 with PyJWT and cryptography (`pip install PyJWT cryptography`).

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::bad_input::{Answer, assert_problem, send};
use crate::doors::{FakeDevice, create_door, dead_url};
use crate::harness::{ADMIN, Backend, Database, Server};

const HELPER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/signed_ops.py");
const PIP: &str = "pip install PyJWT cryptography";

// --- the Python side --------------------------------------------------------------------

/// Runs `signed_ops.py batch`: one answer per request, in order.
fn python(requests: Vec<Value>) -> Vec<Value> {
    let count = requests.len();
    tokio::task::block_in_place(move || {
        let mut child = Command::new("python3")
            .args([HELPER, "batch"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("python3 is needed for the signed-operation tests ({PIP}): {e}"));
        let input = Value::Array(requests).to_string();
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("python3 reads its requests");
        let out = child.wait_with_output().expect("python3 runs");
        assert!(
            out.status.success(),
            "signed_ops.py failed; it needs python3 with PyJWT and cryptography ({PIP}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let answers: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("signed_ops.py answered no JSON list ({e}): {:?}", String::from_utf8_lossy(&out.stdout))
        });
        assert_eq!(answers.len(), count, "one answer per request");
        answers
    })
}

fn python_one(request: Value) -> Value {
    python(vec![request]).remove(0)
}

/// Compact tokens for a batch of `sign`, `sign-raw`, `tamper` or `id-token` requests.
pub(crate) fn tokens(requests: Vec<Value>) -> Vec<String> {
    python(requests)
        .into_iter()
        .map(|a| a["token"].as_str().unwrap_or_else(|| panic!("no token in {a}")).to_owned())
        .collect()
}

fn token(request: Value) -> String {
    tokens(vec![request]).remove(0)
}

/// An Ed25519 key pair made by `cryptography`.
#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub(crate) pem: String,
    /// Standard base64 of the 32 raw public key bytes, as the API takes it.
    pub(crate) b64: String,
    hex: String,
}

impl Key {
    /// What lintel calls the key: hex SHA-256 of the raw public key.
    fn id(&self) -> String {
        hex::encode(lintel_core::credential::sha256(&hex::decode(&self.hex).expect("hex")))
    }
}

pub(crate) fn keygen(n: usize) -> Vec<Key> {
    python((0..n).map(|_| json!({"cmd": "keygen"})).collect())
        .into_iter()
        .map(|k| Key {
            pem: k["private_pem"].as_str().expect("pem").to_owned(),
            b64: k["public_b64"].as_str().expect("b64").to_owned(),
            hex: k["public_hex"].as_str().expect("hex").to_owned(),
        })
        .collect()
}

/// A `sign` request: EdDSA by PyJWT with this chain in `x5c` (`Value::Null`: no x5c).
pub(crate) fn eddsa(key: &Key, x5c: &Value, claims: Value) -> Value {
    json!({"cmd": "sign", "key": key.pem, "x5c": x5c, "claims": claims})
}

// --- claims -----------------------------------------------------------------------------

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn jti() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = chrono::Utc::now().timestamp_subsec_nanos();
    format!("it-{}-{nanos}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}

/// Claims by `iss` on `lock`, valid from now+`from` to now+`to` seconds.
fn claims(iss: &str, lock: &str, from: i64, to: i64, operation: Value) -> Value {
    let t = now();
    json!({"iss": iss, "sub": lock, "iat": t + from.min(0), "nbf": t + from, "exp": t + to, "jti": jti(),
           "operation": operation})
}

/// An unlock valid for the next 30 seconds.
pub(crate) fn unlock(iss: &str, lock: &str) -> Value {
    claims(iss, lock, 0, 30, json!({"type": "unlock"}))
}

fn add_user(target: &str, public_key: &str, role: &str) -> Value {
    json!({"type": "add_user", "user_id": target, "public_key": public_key, "role": role})
}

// --- users and HTTP ---------------------------------------------------------------------

/// A person with a personal secret and a registered key.
#[derive(Debug, Clone)]
struct User {
    id: String,
    secret: String,
    key: Key,
    /// The certificate chain lintel returned, as `x5c`.
    x5c: Value,
    key_id: String,
}

impl User {
    fn sign(&self, claims: Value) -> Value {
        eddsa(&self.key, &self.x5c, claims)
    }
}

/// Creates a person (`extra` merged into the body) with a personal secret; returns it.
async fn person(s: &Server, id: &str, extra: Value) -> String {
    let mut body = json!({"id": id, "name": format!("Person {id}")});
    body.as_object_mut().unwrap().extend(extra.as_object().expect("an object").clone());
    s.ok("/api/v1/people", body, 201).await;
    let credential = s.ok(&format!("/api/v1/people/{id}/credentials"), json!({"kind": "secret"}), 201).await;
    credential["secret"].as_str().unwrap_or_else(|| panic!("no secret in {credential}")).to_owned()
}

/// A person with a secret and `key` registered through the API.
async fn user_with_key(s: &Server, id: &str, extra: Value, key: &Key) -> User {
    let secret = person(s, id, extra).await;
    let registered = register(s, &secret, key).await;
    assert_eq!(registered.status, 201, "{id} registers a key: {}", registered.text);
    User {
        id: id.to_owned(),
        secret,
        key: key.clone(),
        x5c: registered.body["certificate_chain"].clone(),
        key_id: registered.body["id"].as_str().expect("key id").to_owned(),
    }
}

pub(crate) async fn register(s: &Server, bearer: &str, key: &Key) -> Answer {
    as_user(s, reqwest::Method::POST, "/api/v1/keys", bearer, Some(json!({"public_key": key.b64}))).await
}

/// A request with `bearer` (a personal secret, an ID token or the admin token).
async fn as_user(s: &Server, method: reqwest::Method, path: &str, bearer: &str, body: Option<Value>) -> Answer {
    let mut request = s.client.request(method, format!("{}{path}", s.base)).bearer_auth(bearer);
    if let Some(body) = body {
        request = request.json(&body);
    }
    send(request).await
}

async fn user_get(s: &Server, path: &str, bearer: &str) -> Answer {
    as_user(s, reqwest::Method::GET, path, bearer, None).await
}

/// `GET /api/v1/users/lookup` with one query parameter, properly encoded.
async fn lookup(s: &Server, bearer: &str, by: &str, value: &str) -> Answer {
    send(s.client.get(format!("{}/api/v1/users/lookup", s.base)).query(&[(by, value)]).bearer_auth(bearer)).await
}

/// Posts an operation as `application/jose`, without any Authorization.
pub(crate) async fn post_op(s: &Server, token: &str) -> Answer {
    post_op_as(s, token, "application/jose").await
}

async fn post_op_as(s: &Server, body: &str, content_type: &str) -> Answer {
    send(
        s.client
            .post(format!("{}/api/v1/operations", s.base))
            .header("content-type", content_type)
            .body(body.to_owned()),
    )
    .await
}

async fn post_op_json(s: &Server, token: &str) -> Answer {
    send(s.client.post(format!("{}/api/v1/operations", s.base)).json(&json!({"jws": token}))).await
}

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["kind"] == kind).collect()
}

/// Whether an event names this lock (as its `door`, in `data.lock` or elsewhere).
fn about(event: &Value, lock: &str) -> bool {
    event["door"] == lock || event["data"]["lock"] == lock || event.to_string().contains(&format!("\"{lock}\""))
}

fn timestamp(value: &Value) -> i64 {
    let text = value.as_str().unwrap_or_else(|| panic!("not a timestamp: {value}"));
    chrono::DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text:?} is not RFC 3339: {e}")).timestamp()
}

/// Kinds of events that mean something happened (rather than was refused).
pub fn is_effect(event: &Value) -> bool {
    let kind = event["kind"].as_str().unwrap_or_default();
    matches!(kind, "decision" | "door.opened" | "door.driver_failed" | "operation.applied" | "operation.queued")
        || kind.starts_with("grant.")
        || kind.starts_with("person.")
        || kind.starts_with("key.")
}

/// Everything a refusal must leave alone.
pub async fn state(s: &Server) -> Value {
    let mut all = serde_json::Map::new();
    for path in ["/api/v1/grants", "/api/v1/doors/front/admins"] {
        let (status, body) = s.get(path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        all.insert(path.to_owned(), body);
    }
    Value::Object(all)
}

/// Posts `token`, expects a problem with this status and `reason`, exactly one
/// `operation.refused` event with that reason, and no effect at all.
async fn refused(s: &Server, relay: &FakeDevice, token: &str, status: u16, reason: &str, what: &str) -> Answer {
    refused_as(s, relay, token, status, reason, what, status == 403).await
}

/// [`refused`] for what the token itself fails (no proven signer, or not claimed): answered,
/// and no event at all, so that neither forgeries nor replays can fill the log.
async fn answered_only(s: &Server, relay: &FakeDevice, token: &str, reason: &str, what: &str) -> Answer {
    refused_as(s, relay, token, 403, reason, what, false).await
}

async fn refused_as(
    s: &Server,
    relay: &FakeDevice,
    token: &str,
    status: u16,
    reason: &str,
    what: &str,
    recorded: bool,
) -> Answer {
    let before = s.events().await.len();
    let seen = relay.seen().len();
    let world = state(s).await;
    let answer = post_op(s, token).await;
    assert_problem(&answer, status, what);
    assert_eq!(answer.body["reason"], reason, "{what}: {}", answer.text);
    assert_eq!(relay.seen().len(), seen, "{what}: the relay was driven by a refused operation");
    let events = s.events().await;
    let new = &events[before..];
    assert!(!new.iter().any(is_effect), "{what}: a refused operation had effects: {new:?}");
    let refusals = of_kind(new, "operation.refused");
    if recorded {
        assert_eq!(refusals.len(), 1, "{what}: one operation.refused event: {new:?}");
    } else {
        assert!(refusals.is_empty(), "{what}: answered, not recorded: {new:?}");
    }
    for refusal in refusals {
        assert_eq!(refusal["data"]["reason"], reason, "{what}: {refusal}");
    }
    assert_eq!(state(s).await, world, "{what}: grants or lock admins changed");
    answer
}

/// Polls the event log until an event matches, for up to `seconds`.
async fn wait_for_event(s: &Server, seconds: u64, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        let events = s.events().await;
        if let Some(found) = events.iter().find(|e| matches(e)) {
            return found.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no {what} within {seconds} s; events: {events:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

// --- tests ------------------------------------------------------------------------------

/// Keys: registering returns a chain that certifies the key for the user (read back with
/// `cryptography`), listing, conflicts, bad input, revocation.
async fn keys_are_certified_listed_and_revoked(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    let alice = person(&s, "alice", json!({})).await;
    let bob = person(&s, "bob", json!({})).await;
    let [k1, k2, k3]: [Key; 3] = keygen(3).try_into().unwrap();

    let me = user_get(&s, "/api/v1/me", &alice).await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.body["id"], "alice");
    assert_eq!(me.body["name"], "Person alice");

    let t = now();
    let created = register(&s, &alice, &k1).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let key = &created.body;
    assert_eq!(key["id"].as_str().map(str::to_lowercase), Some(k1.id()), "the id is hex SHA-256 of the key: {key}");
    assert_eq!(key["user_id"], "alice");
    assert_eq!(key["public_key"], k1.b64.as_str());
    let not_after = timestamp(&key["not_after"]);
    assert!((not_after - (t + 30 * 86400)).abs() <= 120, "30 days by default: {key}");
    timestamp(&key["created_at"]);
    let chain = key["certificate_chain"].as_array().unwrap_or_else(|| panic!("no chain: {key}"));
    assert_eq!(chain.len(), 2, "leaf and root: {key}");

    // The chain, read by cryptography's X.509 parser: the leaf certifies exactly this key
    // for alice until not_after, and the root signed it.
    let info = python_one(json!({"cmd": "chain-info", "x5c": chain}));
    assert_eq!(info["leaf_public_b64"], k1.b64.as_str(), "{info}");
    assert!(info["leaf_uris"].as_array().unwrap().contains(&json!("urn:lintel:user:alice")), "{info}");
    assert_eq!(info["leaf_signed_by_root"], true, "{info}");
    assert_eq!(info["root_self_signed"], true, "{info}");
    assert_eq!(info["leaf_signature_is_ed25519"], true, "{info}");
    assert_ne!(info["leaf_is_ca"], true, "{info}");
    assert!((info["leaf_not_after"].as_i64().unwrap() - not_after).abs() <= 1, "{info} vs {key}");

    let week = as_user(
        &s,
        reqwest::Method::POST,
        "/api/v1/keys",
        &alice,
        Some(json!({"public_key": k2.b64, "valid_days": 7})),
    )
    .await;
    assert_eq!(week.status, 201, "{}", week.text);
    assert!((timestamp(&week.body["not_after"]) - (now() + 7 * 86400)).abs() <= 120, "{}", week.text);
    // The same server's chains share their root.
    assert_eq!(week.body["certificate_chain"][1], chain[1]);

    // Bad input: 422 problems, nothing registered.
    let short = format!("{}AA==", "A".repeat(40)); // 31 bytes
    let long = "A".repeat(44); // 33 bytes
    for (what, body) in [
        ("not base64", json!({"public_key": "not base64!"})),
        ("31 bytes", json!({"public_key": short})),
        ("33 bytes", json!({"public_key": long})),
        ("valid_days 0", json!({"public_key": k3.b64, "valid_days": 0})),
        ("valid_days 91", json!({"public_key": k3.b64, "valid_days": 91})),
    ] {
        let answer = as_user(&s, reqwest::Method::POST, "/api/v1/keys", &alice, Some(body)).await;
        assert_problem(&answer, 422, what);
    }
    // Someone else's key: 409.
    let taken = register(&s, &bob, &k1).await;
    assert_problem(&taken, 409, "a key registered by another user");
    // Without a user: 401.
    let anonymous = send(s.client.post(format!("{}/api/v1/keys", s.base)).json(&json!({"public_key": k3.b64}))).await;
    assert_problem(&anonymous, 401, "no Authorization");
    assert_problem(&register(&s, "lsk_not-a-secret", &k3).await, 401, "a wrong secret");
    assert_problem(&send(s.client.get(format!("{}/api/v1/keys", s.base))).await, 401, "listing without a user");
    assert_problem(&user_get(&s, "/api/v1/me", "lsk_not-a-secret").await, 401, "/me with a wrong secret");

    let bobs = register(&s, &bob, &k3).await;
    assert_eq!(bobs.status, 201, "{}", bobs.text);

    // Lists: one's own as a user; everyone's (or one user's) as the admin.
    let listed = user_get(&s, "/api/v1/keys", &alice).await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let items = listed.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{}", listed.text);
    for item in items {
        assert_eq!(item["user_id"], "alice");
        for field in ["id", "public_key", "not_after", "created_at"] {
            assert!(item[field].is_string(), "{field}: {item}");
        }
        assert!(item["revoked_at"].is_null(), "{item}");
        assert!(item.get("private_key").is_none());
    }
    let mut ids: Vec<String> = items.iter().map(|i| i["id"].as_str().unwrap().to_lowercase()).collect();
    ids.sort();
    let mut expected = vec![k1.id(), k2.id()];
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(user_get(&s, "/api/v1/keys", &bob).await.body["items"].as_array().map(Vec::len), Some(1));
    let (status, all) = s.get("/api/v1/keys").await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["items"].as_array().map(Vec::len), Some(3), "{all}");
    let (_, only_bob) = s.get("/api/v1/keys?user_id=bob").await;
    let only_bob = only_bob["items"].as_array().unwrap().clone();
    assert_eq!(only_bob.len(), 1, "{only_bob:?}");
    assert_eq!(only_bob[0]["public_key"], k3.b64.as_str());

    // Revoking: not someone else's (404), one's own (204), then the admin any.
    let k1_id = key["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/keys/{k1_id}");
    assert_problem(&as_user(&s, reqwest::Method::DELETE, &path, &bob, None).await, 404, "bob revokes alice's key");
    let revoked = as_user(&s, reqwest::Method::DELETE, &path, &alice, None).await;
    assert_eq!(revoked.status, 204, "{}", revoked.text);
    let listed = user_get(&s, "/api/v1/keys", &alice).await.body;
    let k1_listed = listed["items"].as_array().unwrap().iter().find(|i| i["id"] == k1_id.as_str()).cloned();
    let k1_listed = k1_listed.unwrap_or_else(|| panic!("a revoked key is still listed: {listed}"));
    timestamp(&k1_listed["revoked_at"]);
    assert_problem(&register(&s, &alice, &k1).await, 409, "a revoked key registered again");
    let bobs_id = bobs.body["id"].as_str().unwrap();
    let (status, body) = s.delete(&format!("/api/v1/keys/{bobs_id}")).await;
    assert_eq!(status, 204, "the admin revokes any key: {body}");
}

/// A JWS made by PyJWT opens the door, in each of the three ways to post it; the relay is
/// driven and the decision is on record as a signed operation.
async fn pyjwt_signed_unlock_opens_the_door(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    let relay = FakeDevice::shelly_gen2().await;
    create_door(&s, "front", json!({"kind": "shelly", "url": relay.url}), 6).await;
    let [key]: [Key; 1] = keygen(1).try_into().unwrap();
    let alice = user_with_key(&s, "alice", json!({}), &key).await;
    s.ok("/api/v1/grants", json!({"person_id": "alice", "doors": ["front"]}), 201).await;

    let signed = tokens(vec![
        alice.sign(unlock("alice", "front")),
        alice.sign(unlock("alice", "front")),
        alice.sign(unlock("alice", "front")),
    ]);
    let header = python_one(json!({"cmd": "decode", "token": signed[0]}))["header"].clone();
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["x5c"], alice.x5c, "PyJWT carries the chain unchanged");

    let opened = post_op(&s, &signed[0]).await;
    assert_eq!(opened.status, 200, "{}", opened.text);
    let body = &opened.body;
    assert_eq!(body["applied"], true, "{body}");
    assert_eq!(body["operation"], "unlock", "{body}");
    assert_eq!(body["lock"], "front", "{body}");
    assert_eq!(body["user_id"], "alice", "{body}");
    assert_eq!(body["opened"], true, "{body}");
    assert_eq!(body["confirmed"], true, "{body}");
    let event_id = body["event_id"].as_str().unwrap_or_else(|| panic!("no event_id: {body}")).to_owned();

    let seen = relay.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].uri, "/rpc/Switch.Set");
    assert_eq!(seen[0].json(), json!({"id": 0, "on": true, "toggle_after": 6}));

    // The same, as text/plain and as JSON {"jws": ...}.
    let as_text = post_op_as(&s, &signed[1], "text/plain").await;
    assert_eq!(as_text.status, 200, "text/plain: {}", as_text.text);
    let as_json = post_op_json(&s, &signed[2]).await;
    assert_eq!(as_json.status, 200, "JSON: {}", as_json.text);
    assert_eq!(as_json.body["applied"], true);
    assert_eq!(relay.seen().len(), 3);

    let events = s.events().await;
    assert!(events.iter().any(|e| e["id"] == event_id.as_str()), "event_id {event_id} is not in the log: {events:?}");
    let decisions = of_kind(&events, "decision");
    assert_eq!(decisions.len(), 3, "{events:?}");
    for decision in &decisions {
        assert_eq!(decision["allowed"], true, "{decision}");
        assert_eq!(decision["door"], "front", "{decision}");
        assert_eq!(decision["person_id"], "alice", "{decision}");
        assert_eq!(decision["data"]["credential_kind"], "signed_operation", "{decision}");
    }
    let opened_events = of_kind(&events, "door.opened");
    assert_eq!(opened_events.len(), 3, "{events:?}");
    assert!(opened_events.iter().all(|e| e["door"] == "front"));
    let applied = of_kind(&events, "operation.applied");
    assert_eq!(applied.len(), 3, "{events:?}");
    assert!(applied.iter().all(|e| about(e, "front")), "{applied:?}");
    assert!(of_kind(&events, "operation.refused").is_empty(), "{events:?}");
    let log = serde_json::to_string(&events).unwrap();
    assert!(!log.contains(&alice.secret), "the secret is in the event log");
}

/// Every way an operation can be wrong: the right reason, and nothing happens.
async fn forged_and_invalid_operations_are_refused(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    let relay = FakeDevice::shelly_gen2().await;
    create_door(&s, "front", json!({"kind": "shelly", "url": relay.url}), 5).await;
    let [k_alice, k_ann, k_bob, k_stranger]: [Key; 4] = keygen(4).try_into().unwrap();
    let alice = user_with_key(&s, "alice", json!({}), &k_alice).await;
    let ann = user_with_key(&s, "ann", json!({}), &k_ann).await;
    let bob = user_with_key(&s, "bob", json!({}), &k_bob).await;
    s.ok("/api/v1/grants", json!({"person_id": "alice", "doors": ["front"]}), 201).await;
    let (status, body) = s.put("/api/v1/doors/front/admins/ann").await;
    assert_eq!(status, 204, "{body}");

    let fortnight = 14 * 86400;
    let share_bob = |from: i64, to: i64| claims("ann", "front", from, to, add_user("bob", &bob.key.b64, "user"));
    let signed = tokens(vec![
        // 0: signed by a key that is not the certified one
        eddsa(&k_stranger, &alice.x5c, unlock("alice", "front")),
        // 1: a valid token, to be tampered with below
        alice.sign(unlock("alice", "front")),
        // 2: alice's chain, bob's name
        alice.sign(unlock("bob", "front")),
        // 3: no x5c
        eddsa(&alice.key, &Value::Null, unlock("alice", "front")),
        // 4: expired a minute ago
        alice.sign(claims("alice", "front", -120, -60, json!({"type": "unlock"}))),
        // 5: valid in five minutes
        alice.sign(claims("alice", "front", 300, 330, json!({"type": "unlock"}))),
        // 6: an unlock window of 61 s
        alice.sign(claims("alice", "front", 0, 61, json!({"type": "unlock"}))),
        // 7: a share window of 14 days and a second, by a lock admin
        ann.sign(share_bob(0, fortnight + 1)),
        // 8: a share by someone who does not administer the lock
        alice.sign(claims("alice", "front", 0, 600, add_user("bob", &bob.key.b64, "user"))),
        // 9: a removal by someone who does not administer the lock
        alice.sign(claims("alice", "front", 0, 600, json!({"type": "remove_user", "user_id": "bob"}))),
        // 10: alg none, with alice's chain
        json!({"cmd": "sign", "alg": "none", "x5c": alice.x5c, "claims": unlock("alice", "front")}),
        // 11: HS256 keyed with alice's public key (what a confused verifier would use)
        json!({"cmd": "sign", "alg": "HS256", "hmac_key_b64": alice.key.b64, "x5c": alice.x5c,
               "claims": unlock("alice", "front")}),
        // 12: an operation that does not exist
        alice.sign(claims("alice", "front", 0, 30, json!({"type": "explode"}))),
        // 13: a lock that does not exist
        alice.sign(unlock("alice", "cellar")),
        // 14: properly signed, but the payload is not JSON
        json!({"cmd": "sign-raw", "key": alice.key.pem, "header": {"alg": "EdDSA", "x5c": alice.x5c},
               "payload_text": "{\"iss\": \"alice\", \"sub\": "}),
        // 15: a share window of exactly 14 days is fine as a window (sanity for 7)
        ann.sign(share_bob(0, fortnight)),
        // 16: properly signed, but the payload segment is not base64url
        json!({"cmd": "sign-raw", "key": alice.key.pem, "header": {"alg": "EdDSA", "x5c": alice.x5c},
               "payload_segment": "!!!not*base64!!!"}),
    ]);
    let tampered = tokens(vec![
        json!({"cmd": "tamper", "token": signed[1], "set": {"exp": now() + 50}}),
        json!({"cmd": "tamper", "token": signed[1], "set": {"iss": "ann"}}),
    ]);

    answered_only(&s, &relay, &signed[0], "bad_signature", "signed by another key").await;
    answered_only(&s, &relay, &tampered[0], "bad_signature", "exp changed after signing").await;
    answered_only(&s, &relay, &tampered[1], "bad_signature", "iss changed after signing").await;
    answered_only(&s, &relay, &signed[2], "issuer_mismatch", "iss is not the certified user").await;
    answered_only(&s, &relay, &signed[3], "missing_chain", "no x5c").await;
    answered_only(&s, &relay, &signed[4], "expired", "expired window").await;
    answered_only(&s, &relay, &signed[5], "not_yet_valid", "not yet valid").await;
    answered_only(&s, &relay, &signed[6], "window_too_long", "unlock window of 61 s").await;
    answered_only(&s, &relay, &signed[7], "window_too_long", "share window of 14 days and 1 s").await;
    refused(&s, &relay, &signed[8], 403, "not_lock_admin", "sharing without administering the lock").await;
    refused(&s, &relay, &signed[9], 403, "not_lock_admin", "removing without administering the lock").await;
    answered_only(&s, &relay, &signed[10], "unsupported_algorithm", "alg none").await;
    answered_only(&s, &relay, &signed[11], "unsupported_algorithm", "HS256 keyed with the public key").await;
    answered_only(&s, &relay, &signed[12], "bad_operation", "unknown operation type").await;
    refused(&s, &relay, &signed[13], 403, "unknown_lock", "unknown lock").await;

    // Malformed: 400.
    let (head, rest) = signed[1].split_once('.').unwrap();
    let (payload, _) = rest.split_once('.').unwrap();
    let header_not_json = format!("e25vdCBqc29u.{rest}"); // base64url("{not json")
    for (what, text) in [
        ("not base64 at all", "%%%.&&&.***".to_owned()),
        ("header not base64url", format!("!!!.{rest}")),
        ("payload not base64url", signed[16].clone()),
        ("signature not base64url", format!("{head}.{payload}.!!!not*base64!!!")),
        ("header not JSON", header_not_json),
        ("payload not JSON", signed[14].clone()),
        ("two segments", format!("{head}.{payload}")),
        ("four segments", format!("{}.xyz", signed[1])),
        ("one word", "hello".to_owned()),
        ("empty", String::new()),
    ] {
        refused(&s, &relay, &text, 400, "malformed", what).await;
    }
    let bad_json_body = send(
        s.client
            .post(format!("{}/api/v1/operations", s.base))
            .header("content-type", "application/json")
            .body("{\"jws\": "),
    )
    .await;
    assert_problem(&bad_json_body, 400, "a JSON body that is not JSON");
    assert!(relay.seen().is_empty(), "nothing reached the relay");

    // The exact 14-day share is accepted (so 7 was refused for its window alone).
    let shared = post_op(&s, &signed[15]).await;
    assert_eq!(shared.status, 200, "a 14-day share window: {}", shared.text);

    // Replay: a genuine token (signed now: the checks above take time) works once.
    let valid = &token(alice.sign(unlock("alice", "front")));
    let opened = post_op(&s, valid).await;
    assert_eq!(opened.status, 200, "{}", opened.text);
    assert_eq!(relay.seen().len(), 1);
    refused(&s, &relay, valid, 403, "replayed", "the same token again").await;
    // Only the first replay is recorded: replaying a captured token cannot fill the log.
    answered_only(&s, &relay, valid, "replayed", "the same token a third time").await;
    let again_as_json = post_op_json(&s, valid).await;
    assert_problem(&again_as_json, 403, "replayed as JSON");
    assert_eq!(again_as_json.body["reason"], "replayed");

    // A revoked key: the chain still verifies, lintel refuses anyway.
    let path = format!("/api/v1/keys/{}", alice.key_id);
    let revoked = as_user(&s, reqwest::Method::DELETE, &path, &alice.secret, None).await;
    assert_eq!(revoked.status, 204, "{}", revoked.text);
    let after = token(alice.sign(unlock("alice", "front")));
    refused(&s, &relay, &after, 403, "key_revoked", "a revoked key").await;
    assert_eq!(relay.seen().len(), 1, "only the genuine operation reached the relay");
}

/// Chains lintel did not issue: one from another lintel server (its own authority) for the
/// same user and key, and one made in Python with a root named like lintel's.
async fn chains_from_elsewhere_are_refused(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    let other_db = Database::new(b);
    let other = Server::start(&other_db);
    let relay = FakeDevice::shelly_gen2().await;
    create_door(&s, "front", json!({"kind": "shelly", "url": relay.url}), 5).await;
    let [key]: [Key; 1] = keygen(1).try_into().unwrap();
    let alice = user_with_key(&s, "alice", json!({}), &key).await;
    s.ok("/api/v1/grants", json!({"person_id": "alice", "doors": ["front"]}), 201).await;
    // The same user id and key, certified by the other server.
    let elsewhere = user_with_key(&other, "alice", json!({}), &key).await;
    assert_ne!(elsewhere.x5c, alice.x5c, "two servers, two authorities");
    assert_ne!(elsewhere.x5c[1], alice.x5c[1], "two servers, two roots");
    other.kill();

    let fake = python_one(json!({"cmd": "fake-chain", "user_id": "alice", "public_b64": key.b64}))["x5c"].clone();
    let mixed = json!([elsewhere.x5c[0], alice.x5c[1]]);
    let signed = tokens(vec![
        eddsa(&key, &elsewhere.x5c, unlock("alice", "front")),
        eddsa(&key, &fake, unlock("alice", "front")),
        eddsa(&key, &mixed, unlock("alice", "front")),
        eddsa(&key, &json!([]), unlock("alice", "front")),
        alice.sign(unlock("alice", "front")),
    ]);
    answered_only(&s, &relay, &signed[0], "bad_chain", "a chain from another lintel").await;
    answered_only(&s, &relay, &signed[1], "bad_chain", "a self-made chain").await;
    answered_only(&s, &relay, &signed[2], "bad_chain", "another lintel's leaf under this lintel's root").await;
    let empty = post_op(&s, &signed[3]).await;
    assert_problem(&empty, 403, "an empty x5c");
    assert!(
        matches!(empty.body["reason"].as_str(), Some("missing_chain" | "bad_chain")),
        "an empty x5c: {}",
        empty.text
    );
    assert!(relay.seen().is_empty());
    // Its own chain works.
    let opened = post_op(&s, &signed[4]).await;
    assert_eq!(opened.status, 200, "{}", opened.text);
    assert_eq!(relay.seen().len(), 1);
}

/// Sharing end to end: a lock admin finds bob by his verified email, shares the door with
/// him, bob opens it with his own signed unlock; removal takes it back.
async fn sharing_end_to_end(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    let relay = FakeDevice::shelly_gen2().await;
    create_door(&s, "front", json!({"kind": "shelly", "url": relay.url}), 5).await;
    create_door(&s, "back", json!({"kind": "none"}), 5).await;
    let [k_ann, k_bob, k_carl, k_dave, k_stranger]: [Key; 5] = keygen(5).try_into().unwrap();
    let ann = user_with_key(&s, "ann", json!({}), &k_ann).await;
    let bob = user_with_key(&s, "bob", json!({"email": "bob@example.org", "email_verified": true}), &k_bob).await;
    let carl = user_with_key(&s, "carl", json!({}), &k_carl).await;
    let dave = user_with_key(&s, "dave", json!({}), &k_dave).await;

    // Lock administrators, as the admin sees them.
    let (status, body) = s.put("/api/v1/doors/front/admins/ann").await;
    assert_eq!(status, 204, "{body}");
    let (status, admins) = s.get("/api/v1/doors/front/admins").await;
    assert_eq!(status, 200, "{admins}");
    assert_eq!(admins, json!({"items": ["ann"]}));
    assert_eq!(s.get("/api/v1/doors/back/admins").await.1, json!({"items": []}));

    let locks = user_get(&s, "/api/v1/shareable-locks", &ann.secret).await;
    assert_eq!(locks.status, 200, "{}", locks.text);
    let items = locks.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "ann administers front only: {}", locks.text);
    assert_eq!(items[0]["id"], "front");
    assert_eq!(items[0]["name"], "Door front");
    assert_eq!(user_get(&s, "/api/v1/shareable-locks", &bob.secret).await.body["items"], json!([]));

    // Before any share, bob's own unlock is denied.
    let early = token(bob.sign(unlock("bob", "front")));
    let denied = post_op(&s, &early).await;
    assert_problem(&denied, 403, "bob without a grant");
    assert_eq!(denied.body["reason"], "denied", "{}", denied.text);
    assert_eq!(denied.body["decision_reason"], "no_grant", "{}", denied.text);
    assert!(relay.seen().is_empty());

    // ann finds bob by his verified email, with his key.
    let found = lookup(&s, &ann.secret, "email", "bob@example.org").await;
    assert_eq!(found.status, 200, "{}", found.text);
    assert_eq!(found.body["user_id"], "bob");
    let keys = found.body["public_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{}", found.text);
    assert_eq!(keys[0]["public_key"], bob.key.b64.as_str());
    assert_eq!(keys[0]["id"], bob.key_id.as_str());
    let bobs_key = keys[0]["public_key"].as_str().unwrap().to_owned();

    let t = now();
    let (start, end) = (t - 60, t + 3600);
    let mut share = add_user("bob", &bobs_key, "user");
    share["start"] = json!(start);
    share["end"] = json!(end);
    let mut later = add_user("dave", &dave.key.b64, "user");
    later["start"] = json!(t + 3600);
    later["end"] = json!(t + 7200);
    let signed = tokens(vec![
        ann.sign(claims("ann", "front", 0, 600, share)),
        // bob (a user, not an admin) shares on
        bob.sign(claims("bob", "front", 0, 600, add_user("carl", &carl.key.b64, "user"))),
        // the key is not carl's: unregistered, or bob's
        ann.sign(claims("ann", "front", 0, 600, add_user("carl", &k_stranger.b64, "user"))),
        ann.sign(claims("ann", "front", 0, 600, add_user("carl", &bob.key.b64, "user"))),
        // nobody by that id
        ann.sign(claims("ann", "front", 0, 600, add_user("nobody", &k_stranger.b64, "user"))),
        // carl as a second administrator
        ann.sign(claims("ann", "front", 0, 600, add_user("carl", &carl.key.b64, "admin"))),
        // dave, from an hour from now
        ann.sign(claims("ann", "front", 0, 600, later)),
    ]);

    let applied = post_op(&s, &signed[0]).await;
    assert_eq!(applied.status, 200, "{}", applied.text);
    assert_eq!(applied.body["applied"], true, "{}", applied.text);
    assert_eq!(applied.body["operation"], "add_user");
    assert_eq!(applied.body["lock"], "front");
    assert_eq!(applied.body["user_id"], "ann");
    assert!(applied.body["event_id"].is_string(), "{}", applied.text);
    assert!(relay.seen().is_empty(), "sharing opens nothing");

    let share_grants = |grants: &Value| -> Vec<Value> {
        // GET /api/v1/grants answers a plain list.
        grants
            .as_array()
            .or_else(|| grants["items"].as_array())
            .unwrap_or_else(|| panic!("not a list of grants: {grants}"))
            .iter()
            .filter(|g| g["source"].as_str().is_some_and(|s| s.starts_with("share:")))
            .cloned()
            .collect()
    };
    let (status, grants) = s.get("/api/v1/grants?person_id=bob").await;
    assert_eq!(status, 200, "{grants}");
    let shared = share_grants(&grants);
    assert_eq!(shared.len(), 1, "{grants}");
    assert_eq!(shared[0]["person_id"], "bob");
    assert_eq!(shared[0]["doors"], json!(["front"]), "{grants}");
    assert_eq!(timestamp(&shared[0]["valid_from"]), start, "{grants}");
    assert_eq!(timestamp(&shared[0]["valid_until"]), end, "{grants}");

    // bob opens the door with his own signed unlock; he may not share it on.
    let opened = post_op(&s, &token(bob.sign(unlock("bob", "front")))).await;
    assert_eq!(opened.status, 200, "bob after the share: {}", opened.text);
    assert_eq!(opened.body["user_id"], "bob");
    assert_eq!(opened.body["opened"], true);
    assert_eq!(relay.seen().len(), 1);
    assert_eq!(user_get(&s, "/api/v1/shareable-locks", &bob.secret).await.body["items"], json!([]));
    refused(&s, &relay, &signed[1], 403, "not_lock_admin", "bob shares on").await;
    refused(&s, &relay, &signed[2], 403, "target_key_mismatch", "an unregistered key for carl").await;
    refused(&s, &relay, &signed[3], 403, "target_key_mismatch", "bob's key for carl").await;
    refused(&s, &relay, &signed[4], 403, "unknown_user", "nobody").await;

    // carl as an admin: a lock admin with the door to share, and a grant to open it.
    let applied = post_op(&s, &signed[5]).await;
    assert_eq!(applied.status, 200, "{}", applied.text);
    let admins = s.get("/api/v1/doors/front/admins").await.1;
    let mut listed: Vec<&str> = admins["items"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    listed.sort();
    assert_eq!(listed, ["ann", "carl"], "{admins}");
    let carls = user_get(&s, "/api/v1/shareable-locks", &carl.secret).await.body;
    assert_eq!(
        carls["items"].as_array().map(|i| i.iter().map(|l| l["id"].clone()).collect()),
        Some(vec![json!("front")])
    );
    let opened = post_op(&s, &token(carl.sign(unlock("carl", "front")))).await;
    assert_eq!(opened.status, 200, "carl after the share: {}", opened.text);
    assert_eq!(relay.seen().len(), 2);

    // dave's share starts in an hour: not yet.
    let applied = post_op(&s, &signed[6]).await;
    assert_eq!(applied.status, 200, "{}", applied.text);
    let dave_grants = share_grants(&s.get("/api/v1/grants?person_id=dave").await.1);
    assert_eq!(dave_grants.len(), 1, "{dave_grants:?}");
    assert_eq!(timestamp(&dave_grants[0]["valid_from"]), t + 3600);
    let too_early = post_op(&s, &token(dave.sign(unlock("dave", "front")))).await;
    assert_problem(&too_early, 403, "dave before his share starts");
    assert_eq!(too_early.body["reason"], "denied", "{}", too_early.text);

    // ann takes both back.
    let removals = tokens(vec![
        ann.sign(claims("ann", "front", 0, 600, json!({"type": "remove_user", "user_id": "bob"}))),
        ann.sign(claims("ann", "front", 0, 600, json!({"type": "remove_user", "user_id": "carl"}))),
    ]);
    for removal in &removals {
        let removed = post_op(&s, removal).await;
        assert_eq!(removed.status, 200, "{}", removed.text);
        assert_eq!(removed.body["applied"], true);
        assert_eq!(removed.body["operation"], "remove_user");
    }
    assert!(share_grants(&s.get("/api/v1/grants?person_id=bob").await.1).is_empty(), "bob's share is gone");
    assert!(share_grants(&s.get("/api/v1/grants?person_id=carl").await.1).is_empty(), "carl's share is gone");
    assert_eq!(s.get("/api/v1/doors/front/admins").await.1, json!({"items": ["ann"]}));
    assert_eq!(user_get(&s, "/api/v1/shareable-locks", &carl.secret).await.body["items"], json!([]));
    for user in [&bob, &carl] {
        let who = user.id.as_str();
        let after = post_op(&s, &token(user.sign(unlock(who, "front")))).await;
        assert_problem(&after, 403, who);
        assert_eq!(after.body["reason"], "denied", "{who} after removal: {}", after.text);
        assert_eq!(after.body["decision_reason"], "no_grant", "{who} after removal: {}", after.text);
    }
    assert_eq!(relay.seen().len(), 2, "the refused unlocks reached no relay");

    // The admin takes ann's role away.
    let (status, body) = s.delete("/api/v1/doors/front/admins/ann").await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(s.get("/api/v1/doors/front/admins").await.1, json!({"items": []}));
    assert_eq!(user_get(&s, "/api/v1/shareable-locks", &ann.secret).await.body["items"], json!([]));

    let events = s.events().await;
    let applied: Vec<_> = of_kind(&events, "operation.applied").into_iter().map(|e| e["data"].clone()).collect();
    assert_eq!(applied.len(), 7, "3 shares, 2 unlocks, 2 removals: {events:?}");
    let reasons: Vec<_> =
        of_kind(&events, "operation.refused").into_iter().map(|e| e["data"]["reason"].clone()).collect();
    assert_eq!(
        reasons,
        [
            "denied",
            "not_lock_admin",
            "target_key_mismatch",
            "target_key_mismatch",
            "unknown_user",
            "denied",
            "denied",
            "denied"
        ],
        "{events:?}"
    );
}

/// The directory: found by verified email or phone only, by the person's id (foreign key)
/// and by OpenID identity; only unrevoked keys are shown.
async fn directory_finds_only_verified_contacts(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    let [k1, k2, k3, k4]: [Key; 4] = keygen(4).try_into().unwrap();
    let erin = user_with_key(
        &s,
        "erin",
        json!({"email": "erin@example.org", "email_verified": true, "phone": "+49301110000", "phone_verified": true}),
        &k1,
    )
    .await;
    let second = register(&s, &erin.secret, &k2).await;
    assert_eq!(second.status, 201, "{}", second.text);
    let revoked = as_user(&s, reqwest::Method::DELETE, &format!("/api/v1/keys/{}", k2.id()), &erin.secret, None).await;
    assert_eq!(revoked.status, 204, "{}", revoked.text);
    let fay = user_with_key(&s, "fay", json!({"email": "fay@example.org", "phone": "+49302220000"}), &k3).await;
    user_with_key(&s, "gus", json!({"external_ids": {"oidc": "oidc-sub-gus"}}), &k4).await;

    for bearer in [erin.secret.as_str(), ADMIN] {
        let by_email = lookup(&s, bearer, "email", "erin@example.org").await;
        assert_eq!(by_email.status, 200, "{}", by_email.text);
        assert_eq!(by_email.body["user_id"], "erin");
        assert_eq!(
            by_email.body["public_keys"],
            json!([{"id": k1.id(), "public_key": k1.b64}]),
            "only the unrevoked key: {}",
            by_email.text
        );
        let by_phone = lookup(&s, bearer, "phone", "+49301110000").await;
        assert_eq!(by_phone.status, 200, "{}", by_phone.text);
        assert_eq!(by_phone.body["user_id"], "erin");
    }
    // Unverified contacts are not found; nor is what does not exist.
    for (by, value) in [
        ("email", "fay@example.org"),
        ("phone", "+49302220000"),
        ("email", "nobody@example.org"),
        ("phone", "+49309990000"),
        ("foreign_key", "nobody"),
        ("oidc_sub", "oidc-sub-nobody"),
        ("oidc_sub", "gus"),
    ] {
        let answer = lookup(&s, &erin.secret, by, value).await;
        assert_problem(&answer, 404, &format!("{by}={value}"));
        assert!(!answer.text.contains(&k3.b64), "{by}={value}: {}", answer.text);
    }
    // The operator's id needs no verified contact; nor does an OpenID identity.
    let by_id = lookup(&s, &erin.secret, "foreign_key", "fay").await;
    assert_eq!(by_id.status, 200, "{}", by_id.text);
    assert_eq!(by_id.body["user_id"], "fay");
    assert_eq!(by_id.body["public_keys"][0]["public_key"], fay.key.b64.as_str());
    let by_oidc = lookup(&s, &erin.secret, "oidc_sub", "oidc-sub-gus").await;
    assert_eq!(by_oidc.status, 200, "{}", by_oidc.text);
    assert_eq!(by_oidc.body["user_id"], "gus");
    assert_eq!(by_oidc.body["public_keys"], json!([{"id": k4.id(), "public_key": k4.b64}]));

    // Verified later, found then.
    let (status, body) = s.patch("/api/v1/people/fay", json!({"email_verified": true})).await;
    assert_eq!(status, 200, "{body}");
    let found = lookup(&s, &erin.secret, "email", "fay@example.org").await;
    assert_eq!(found.status, 200, "{}", found.text);
    assert_eq!(found.body["user_id"], "fay");
    assert_problem(&lookup(&s, &erin.secret, "phone", "+49302220000").await, 404, "fay's phone is still unverified");

    // Only for users.
    let anonymous =
        send(s.client.get(format!("{}/api/v1/users/lookup", s.base)).query(&[("email", "erin@example.org")])).await;
    assert_problem(&anonymous, 401, "lookup without a user");
    assert_problem(&lookup(&s, "lsk_wrong", "email", "erin@example.org").await, 401, "lookup with a wrong secret");
}

/// A fake OpenID provider on loopback serving its JWKS at `/jwks`; returns the issuer URL.
async fn fake_issuer(jwks: Value) -> (String, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new().route("/jwks", axum::routing::get(move || async move { axum::Json(jwks) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("fake issuer binds");
    let issuer = format!("http://{}", listener.local_addr().expect("address"));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (issuer, task)
}

/// OpenID Connect: an ID token from the (fake) configured issuer is a user's identity:
/// the person is created and updated from its claims; anything not from that issuer for
/// this audience, or expired, or signed by another key, is 401.
async fn oidc_id_tokens_identify_users(b: Backend) {
    let keys = python(vec![json!({"cmd": "rsa-keygen", "kid": "k1"}), json!({"cmd": "rsa-keygen", "kid": "k1"})]);
    let (provider, impostor) = (&keys[0], &keys[1]);
    let (issuer, task) = fake_issuer(json!({"keys": [provider["jwk"]]})).await;
    let db = Database::new(b);
    let jwks_url = format!("{issuer}/jwks");
    let s = Server::start_with(
        &db,
        &[("LINTEL_OIDC_ISSUER", &issuer), ("LINTEL_OIDC_JWKS_URL", &jwks_url), ("LINTEL_OIDC_AUDIENCE", "lintel-app")],
    );
    let relay = FakeDevice::shelly_gen2().await;
    create_door(&s, "front", json!({"kind": "shelly", "url": relay.url}), 5).await;

    let t = now();
    let base = json!({"iss": issuer, "aud": "lintel-app", "sub": "oidc-olga", "iat": t, "exp": t + 600,
                      "name": "Olga", "email": "olga@example.org", "email_verified": true,
                      "phone_number": "+49305550000", "phone_number_verified": false});
    let with = |changes: Value| {
        let mut claims = base.clone();
        claims.as_object_mut().unwrap().extend(changes.as_object().unwrap().clone());
        claims
    };
    let signed_by =
        |k: &Value, kid: &str, c: Value| json!({"cmd": "id-token", "key": k["private_pem"], "kid": kid, "claims": c});
    let mallory = json!({"sub": "oidc-mallory", "name": "Mallory", "email": "mallory@example.org"});
    let mallory_with = |changes: Value| {
        let mut claims = with(mallory.clone());
        claims.as_object_mut().unwrap().extend(changes.as_object().unwrap().clone());
        claims
    };
    let signed = tokens(vec![
        signed_by(provider, "k1", base.clone()),
        signed_by(provider, "k1", with(json!({"name": "Olga Berg", "phone_number_verified": true}))),
        signed_by(provider, "k1", mallory_with(json!({"aud": "another-app"}))),
        signed_by(provider, "k1", mallory_with(json!({"iss": "http://127.0.0.1:9/other-issuer"}))),
        signed_by(provider, "k1", mallory_with(json!({"iat": t - 7200, "exp": t - 3600}))),
        signed_by(impostor, "k1", mallory_with(json!({}))),
        signed_by(provider, "k9", mallory_with(json!({}))),
    ]);

    let me = user_get(&s, "/api/v1/me", &signed[0]).await;
    assert_eq!(me.status, 200, "{}", me.text);
    let person = me.body.clone();
    assert_eq!(person["external_ids"]["oidc"], "oidc-olga", "{person}");
    assert_eq!(person["name"], "Olga");
    assert_eq!(person["email"], "olga@example.org");
    assert_eq!(person["email_verified"], true);
    assert_eq!(person["phone"], "+49305550000");
    assert_eq!(person["phone_verified"], false);
    let id = person["id"].as_str().unwrap_or_else(|| panic!("no id: {person}")).to_owned();
    let (status, stored) = s.get(&format!("/api/v1/people/{id}")).await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["external_ids"]["oidc"], "oidc-olga", "{stored}");
    assert_eq!(stored["email_verified"], true, "{stored}");
    assert_problem(&lookup(&s, ADMIN, "phone", "+49305550000").await, 404, "the phone is not verified yet");
    assert_eq!(lookup(&s, ADMIN, "email", "olga@example.org").await.body["user_id"], id.as_str());

    // The second token updates the same person.
    let again = user_get(&s, "/api/v1/me", &signed[1]).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.body["id"], id.as_str(), "the same person: {}", again.text);
    assert_eq!(again.body["name"], "Olga Berg");
    assert_eq!(again.body["phone_verified"], true);
    let (_, stored) = s.get(&format!("/api/v1/people/{id}")).await;
    assert_eq!(stored["name"], "Olga Berg", "{stored}");
    assert_eq!(stored["phone_verified"], true, "{stored}");
    assert_eq!(lookup(&s, ADMIN, "phone", "+49305550000").await.body["user_id"], id.as_str());
    let (_, people) = s.get("/api/v1/people?limit=500").await;
    let olgas = people["items"].as_array().unwrap().iter().filter(|p| p["external_ids"]["oidc"] == "oidc-olga").count();
    assert_eq!(olgas, 1, "{people}");

    // Not this issuer's, not for us, expired, another key, an unknown kid, or no token.
    let [spare]: [Key; 1] = keygen(1).try_into().unwrap();
    for (what, bad) in [
        ("wrong audience", &signed[2]),
        ("wrong issuer", &signed[3]),
        ("expired", &signed[4]),
        ("signed by another key", &signed[5]),
        ("unknown kid", &signed[6]),
    ] {
        assert_problem(&user_get(&s, "/api/v1/me", bad).await, 401, what);
        assert_problem(&register(&s, bad, &spare).await, 401, what);
    }
    assert_problem(&send(s.client.get(format!("{}/api/v1/me", s.base))).await, 401, "no token");
    let (_, people) = s.get("/api/v1/people?limit=500").await;
    assert!(!people.to_string().contains("oidc-mallory"), "a refused token created a person: {people}");
    assert!(!people.to_string().contains("Mallory"), "{people}");

    // The OIDC user registers a key with the ID token, is found by that identity, and
    // opens a door with a signed unlock.
    let [key]: [Key; 1] = keygen(1).try_into().unwrap();
    let registered = register(&s, &signed[1], &key).await;
    assert_eq!(registered.status, 201, "{}", registered.text);
    assert_eq!(registered.body["user_id"], id.as_str());
    let mine = user_get(&s, "/api/v1/keys", &signed[1]).await;
    assert_eq!(mine.body["items"].as_array().map(Vec::len), Some(1), "{}", mine.text);
    let found = lookup(&s, ADMIN, "oidc_sub", "oidc-olga").await;
    assert_eq!(found.status, 200, "{}", found.text);
    assert_eq!(found.body["user_id"], id.as_str());
    assert_eq!(found.body["public_keys"], json!([{"id": key.id(), "public_key": key.b64}]));
    s.ok("/api/v1/grants", json!({"person_id": id, "doors": ["front"]}), 201).await;
    let olga = eddsa(&key, &registered.body["certificate_chain"], unlock(&id, "front"));
    let opened = post_op(&s, &token(olga)).await;
    assert_eq!(opened.status, 200, "{}", opened.text);
    assert_eq!(opened.body["user_id"], id.as_str());
    assert_eq!(relay.seen().len(), 1);
    task.abort();
}

/// An unlock for a door whose relay does not answer is queued until its `exp`, then
/// dropped with an `operation.expired` event; the relay never opened.
async fn offline_door_queues_then_drops_expired_operations(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    create_door(&s, "cellar", json!({"kind": "shelly", "url": dead_url()}), 5).await;
    let [key]: [Key; 1] = keygen(1).try_into().unwrap();
    let alice = user_with_key(&s, "alice", json!({}), &key).await;
    s.ok("/api/v1/grants", json!({"person_id": "alice", "doors": ["cellar"]}), 201).await;

    let operation = claims("alice", "cellar", 0, 5, json!({"type": "unlock"}));
    let exp = operation["exp"].as_i64().unwrap();
    let signed = token(alice.sign(operation));
    let queued = post_op(&s, &signed).await;
    assert_eq!(queued.status, 202, "{}", queued.text);
    assert_eq!(queued.body["queued"], true, "{}", queued.text);
    assert_eq!(queued.body["operation"], "unlock");
    assert_eq!(queued.body["lock"], "cellar");
    assert_eq!(queued.body["user_id"], "alice");
    assert_eq!(timestamp(&queued.body["expires_at"]), exp, "{}", queued.text);

    // Posting it again does not queue it twice.
    let again = post_op(&s, &signed).await;
    assert_problem(&again, 403, "a queued operation posted again");
    assert_eq!(again.body["reason"], "replayed", "{}", again.text);

    let expired =
        wait_for_event(&s, 20, "operation.expired", |e| e["kind"] == "operation.expired" && about(e, "cellar")).await;
    assert!(timestamp(&expired["at"]) >= exp - 1, "dropped before its exp {exp}: {expired}");
    let events = s.events().await;
    for kind in ["operation.applied", "door.opened"] {
        assert!(
            !events.iter().any(|e| e["kind"] == kind && about(e, "cellar")),
            "an expired operation left a {kind}: {events:?}"
        );
    }
}

/// A relay on a fixed address (so a door can "come back" where it was), recording calls
/// and answering each after `delay`.
async fn relay_at(
    addr: std::net::SocketAddr,
    delay: Duration,
) -> (Arc<Mutex<Vec<(String, String)>>>, tokio::task::JoinHandle<()>) {
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let record = record.clone();
        async move {
            record.lock().unwrap().push((request.method().to_string(), request.uri().to_string()));
            tokio::time::sleep(delay).await;
            axum::Json(json!({"was_on": false}))
        }
    });
    let mut tries = 0;
    let listener = loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => break listener,
            Err(e) if tries < 50 => {
                tries += 1;
                eprintln!("binding {addr} again ({e})");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the relay cannot come back at {addr}: {e}"),
        }
    };
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (seen, task)
}

/// An unlock queued for an offline door is applied when the door comes back within the
/// operation's window.
async fn offline_door_opens_when_it_comes_back(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address")
    };
    create_door(&s, "gate", json!({"kind": "shelly", "url": format!("http://{addr}")}), 5).await;
    let [key]: [Key; 1] = keygen(1).try_into().unwrap();
    let alice = user_with_key(&s, "alice", json!({}), &key).await;
    s.ok("/api/v1/grants", json!({"person_id": "alice", "doors": ["gate"]}), 201).await;

    let operation = claims("alice", "gate", 0, 50, json!({"type": "unlock"}));
    let queued = post_op(&s, &token(alice.sign(operation))).await;
    assert_eq!(queued.status, 202, "{}", queued.text);
    assert_eq!(queued.body["queued"], true, "{}", queued.text);

    tokio::time::sleep(Duration::from_secs(1)).await;
    let (seen, task) = relay_at(addr, Duration::ZERO).await;
    let applied =
        wait_for_event(&s, 45, "operation.applied", |e| e["kind"] == "operation.applied" && about(e, "gate")).await;
    let calls = seen.lock().unwrap().clone();
    assert!(!calls.is_empty(), "applied without reaching the relay: {applied}");
    assert!(calls.iter().all(|(method, uri)| method == "POST" && uri == "/rpc/Switch.Set"), "{calls:?}");
    let events = s.events().await;
    assert!(events.iter().any(|e| e["kind"] == "door.opened" && e["door"] == "gate"), "{events:?}");
    assert!(!events.iter().any(|e| e["kind"] == "operation.expired" && about(e, "gate")), "{events:?}");
    task.abort();
}

/// Three nodes share the queue of signed unlocks: when the door comes back, one of them
/// (the holder of the queue's lease) drives it, once.
async fn a_queued_unlock_is_applied_once_by_one_of_several_nodes(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    let others = [Server::start(&db), Server::start(&db)];
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address")
    };
    create_door(&s, "gate", json!({"kind": "shelly", "url": format!("http://{addr}")}), 5).await;
    let [key]: [Key; 1] = keygen(1).try_into().unwrap();
    let alice = user_with_key(&s, "alice", json!({}), &key).await;
    s.ok("/api/v1/grants", json!({"person_id": "alice", "doors": ["gate"]}), 201).await;
    let operation = claims("alice", "gate", 0, 50, json!({"type": "unlock"}));
    let queued = post_op(&s, &token(alice.sign(operation))).await;
    assert_eq!(queued.status, 202, "{}", queued.text);

    // Slow to answer: a second node ticking meanwhile would drive it again.
    let (seen, task) = relay_at(addr, Duration::from_millis(1500)).await;
    wait_for_event(&s, 45, "operation.applied", |e| e["kind"] == "operation.applied" && about(e, "gate")).await;
    // Every node's queue worker ticks every second: give the others their chances.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let calls = seen.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "the door was driven once: {calls:?}");
    let applied: Vec<Value> =
        s.events().await.into_iter().filter(|e| e["kind"] == "operation.applied" && about(e, "gate")).collect();
    assert_eq!(applied.len(), 1, "{applied:?}");
    drop(others);
    task.abort();
}

/// A token request's form and Authorization header.
type TokenRequest = (std::collections::HashMap<String, String>, Option<String>);

/// A fake OpenID issuer for the web UI's code flow: discovery, JWKS and a token endpoint
/// that answers `id_token` (when set) to every code and keeps each request's form and
/// Authorization header.
struct CodeFlowIssuer {
    url: String,
    id_token: Arc<Mutex<Option<String>>>,
    token_requests: Arc<Mutex<Vec<TokenRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

async fn code_flow_issuer(jwks: Value) -> CodeFlowIssuer {
    use axum::routing::{get, post};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("fake issuer binds");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let id_token: Arc<Mutex<Option<String>>> = Arc::default();
    let token_requests: Arc<Mutex<Vec<_>>> = Arc::default();
    let discovery = json!({
        "issuer": url, "authorization_endpoint": format!("{url}/authorize"), "token_endpoint": format!("{url}/token"),
        "jwks_uri": format!("{url}/jwks"), "response_types_supported": ["code"], "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"], "code_challenge_methods_supported": ["S256"],
    });
    let (answer, seen) = (id_token.clone(), token_requests.clone());
    let token = move |headers: axum::http::HeaderMap, body: String| async move {
        let form: std::collections::HashMap<String, String> = serde_urlencoded::from_str(&body).unwrap_or_default();
        let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
        seen.lock().unwrap().push((form, authorization));
        match answer.lock().unwrap().clone() {
            Some(t) => axum::Json(json!({"access_token": "at", "token_type": "Bearer", "id_token": t})).into_response(),
            None => {
                (axum::http::StatusCode::BAD_REQUEST, axum::Json(json!({"error": "invalid_grant"}))).into_response()
            }
        }
    };
    use axum::response::IntoResponse;
    let app = axum::Router::new()
        .route("/.well-known/openid-configuration", get(move || async move { axum::Json(discovery) }))
        .route("/jwks", get(move || async move { axum::Json(jwks) }))
        .route("/token", post(token));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    CodeFlowIssuer { url, id_token, token_requests, task }
}

/// Starts a web UI sign-in at `s`: the authorization request's query and the state cookie.
async fn begin_ui_sign_in(s: &Server) -> (std::collections::HashMap<String, String>, String) {
    let started = crate::stations::login_client()
        .get(format!("{}/ui/login/oidc?next=/ui/doors", s.base))
        .send()
        .await
        .expect("answers");
    assert_eq!(started.status().as_u16(), 303);
    let location = started.headers()["location"].to_str().expect("text");
    let query = reqwest::Url::parse(location).expect("a URL").query_pairs().into_owned().collect();
    let cookie = started.headers()["set-cookie"].to_str().expect("text").split(';').next().expect("a pair").to_owned();
    (query, cookie)
}

/// The issuer's answer at `s`: status, page, cookies set.
async fn finish_ui_sign_in(s: &Server, params: &str, cookie: &str) -> (u16, String, Vec<String>) {
    let answer = crate::stations::login_client()
        .get(format!("{}/ui/login/oidc?{params}", s.base))
        .header("cookie", cookie)
        .send()
        .await
        .expect("answers");
    let cookies = answer.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap_or("").to_owned()).collect();
    (answer.status().as_u16(), answer.text().await.unwrap_or_default(), cookies)
}

/// The web UI's OpenID sign-in, code flow with PKCE, as a public client (no secret): the
/// sign-in started at one node finishes at another (on SQLite: after a restart), the code
/// is redeemed with the verifier of the challenge sent, a state works once, a token with
/// another nonce is refused, an issuer that went away is a 502 (at the answer and at the
/// start), and neither the code nor
/// the verifier nor the token reaches the log.
async fn oidc_ui_sign_in_with_the_code_flow_and_pkce(b: Backend) {
    use sha2::Digest;
    let key = python_one(json!({"cmd": "rsa-keygen", "kid": "k1"}));
    let issuer = code_flow_issuer(json!({"keys": [key["jwk"]]})).await;
    let db = Database::new(b);
    let jwks_url = format!("{}/jwks", issuer.url);
    let env = [
        ("LINTEL_OIDC_ISSUER", issuer.url.as_str()),
        ("LINTEL_OIDC_JWKS_URL", &jwks_url),
        ("LINTEL_OIDC_AUDIENCE", "lintel-ui"),
    ];
    let log = db.dir.join("oidc.log");
    let stderr = || std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("log file");
    let first = Server::start_with_stderr(&db, &env, stderr());
    let operator = json!({"id": "olga", "name": "Olga", "attributes": {"ui_operator": "front_desk"},
                          "external_ids": {"oidc": "oidc-olga"}});
    first.ok("/api/v1/people", operator, 201).await;

    let (sent, cookie) = begin_ui_sign_in(&first).await;
    assert_eq!(sent["response_type"], "code");
    assert_eq!(sent["code_challenge_method"], "S256");
    assert_eq!(sent["client_id"], "lintel-ui");
    assert_eq!(sent["redirect_uri"], format!("{}/ui/login/oidc", first.base));
    let state = sent["state"].clone();
    assert_eq!(cookie, format!("lintel_oidc={state}"));
    let (first_base, second) = match b {
        Backend::Postgres => (first.base.clone(), Some(first)),
        Backend::Sqlite => (first.base.clone(), {
            drop(first);
            None
        }),
    };
    let other = Server::start_with_stderr(&db, &env, stderr());
    let t = now();
    let claims = |nonce: &str| json!({"iss": issuer.url, "aud": "lintel-ui", "sub": "oidc-olga", "iat": t, "exp": t + 300, "nonce": nonce});
    let signed = |nonce: &str| {
        tokens(vec![json!({"cmd": "id-token", "key": key["private_pem"], "kid": "k1", "claims": claims(nonce)})])
            .remove(0)
    };
    let token = signed(&sent["nonce"]);
    *issuer.id_token.lock().unwrap() = Some(token.clone());
    let code = "code-for-olga-7d1f";
    let (status, page, cookies) = finish_ui_sign_in(&other, &format!("code={code}&state={state}"), &cookie).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("/ui/doors"), "moves on to where the sign-in began: {page}");
    let session =
        cookies.iter().find(|c| c.starts_with("lintel_ui=")).expect("a session").split(';').next().unwrap().to_owned();
    let dashboard = crate::stations::login_client()
        .get(format!("{}/ui/", other.base))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(dashboard.status().as_u16(), 200, "signed in");
    let (form, authorization) = issuer.token_requests.lock().unwrap().last().cloned().expect("the code was redeemed");
    assert_eq!(form["grant_type"], "authorization_code");
    assert_eq!(form["code"], code);
    assert_eq!(form["client_id"], "lintel-ui", "a public client names itself in the form");
    assert_eq!(authorization, None, "no secret configured: no client authentication");
    assert_eq!(form["redirect_uri"], format!("{first_base}/ui/login/oidc"), "the redirect URI of the request");
    let challenge = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        sha2::Sha256::digest(form["code_verifier"].as_bytes()),
    );
    assert_eq!(challenge, sent["code_challenge"], "the verifier of the challenge sent");

    // The same answer again: the state was used.
    let (status, page, _) = finish_ui_sign_in(&other, &format!("code={code}&state={state}"), &cookie).await;
    assert_eq!(status, 400, "{page}");
    // A mangled answer: the UI's page too.
    let (status, page, _) = finish_ui_sign_in(&other, &format!("state={state}&state=x"), &cookie).await;
    assert_eq!((status, page.contains("Sign in again")), (400, true), "{page}");
    // A token with another nonce.
    let (sent, cookie) = begin_ui_sign_in(&other).await;
    *issuer.id_token.lock().unwrap() = Some(signed("not-this-sign-in"));
    let (status, page, cookies) = finish_ui_sign_in(&other, &format!("code=c2&state={}", sent["state"]), &cookie).await;
    assert_eq!(status, 400, "{page}");
    assert!(!cookies.iter().any(|c| c.starts_with("lintel_ui=")), "no session: {cookies:?}");
    // The issuer went away after the sign-in began: its token endpoint does not answer.
    let (sent, cookie) = begin_ui_sign_in(&other).await;
    issuer.task.abort();
    let _ = issuer.task.await;
    let (status, page, _) = finish_ui_sign_in(&other, &format!("code=c3&state={}", sent["state"]), &cookie).await;
    assert_eq!(status, 502, "{page}");
    // A node that never read the discovery document cannot even begin.
    let fresh = Server::start_with_stderr(&db, &env, stderr());
    let started = crate::stations::login_client().get(format!("{}/ui/login/oidc", fresh.base)).send().await.unwrap();
    assert_eq!(started.status().as_u16(), 502);

    drop((second, other, fresh));
    let log = std::fs::read_to_string(&log).expect("the log");
    assert!(log.contains("an OpenID sign-in to the web UI failed"), "failures are logged: {log}");
    for secret in [code, form["code_verifier"].as_str(), token.as_str()] {
        assert!(!log.contains(secret), "{secret} is in the log");
    }
}

/// Several nodes share PostgreSQL only.
mod several {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_queued_unlock_is_applied_once_by_one_of_several_nodes() {
        if crate::harness::postgres_skipped() {
            return;
        }
        super::a_queued_unlock_is_applied_once_by_one_of_several_nodes(crate::harness::Backend::Postgres).await
    }
}

crate::on_both_backends!(
    keys_are_certified_listed_and_revoked,
    pyjwt_signed_unlock_opens_the_door,
    forged_and_invalid_operations_are_refused,
    chains_from_elsewhere_are_refused,
    sharing_end_to_end,
    directory_finds_only_verified_contacts,
    oidc_id_tokens_identify_users,
    oidc_ui_sign_in_with_the_code_flow_and_pkce,
    offline_door_queues_then_drops_expired_operations,
    offline_door_opens_when_it_comes_back,
);
