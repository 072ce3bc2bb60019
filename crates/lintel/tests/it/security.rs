//! Guessable credentials and secrets: PINs, guessing protection per keypad and per client,
//! single-use backup codes, secrets kept out of the event log and the server's logs, and
//! admin tokens made with the CLI coming and going while the server runs.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::bad_input::{Answer, assert_problem, send};
use crate::doors::{FakeDevice, create_door, open_with_secret, person_with_secret};
use crate::events::Stream;
use crate::harness::{ADMIN, Backend, Database, Server, card, lintel};

fn pin(p: &str) -> Value {
    json!({"kind": "pin", "pin": p})
}

/// Doors front and side, alice with PIN 4711 and a card, allowed at both.
async fn keypad_world(s: &Server) {
    s.ok("/api/v1/doors", json!({"id": "front", "name": "Front"}), 201).await;
    s.ok("/api/v1/doors", json!({"id": "side", "name": "Side"}), 201).await;
    s.ok("/api/v1/people", json!({"id": "alice", "name": "Alice"}), 201).await;
    s.ok("/api/v1/people/alice/credentials", card("04A1B2C3", None), 201).await;
    let issued = s.ok("/api/v1/people/alice/credentials", pin("4711"), 201).await;
    assert_eq!(issued["kind"], "pin");
    assert!(!issued.to_string().contains("4711"), "the PIN is not echoed: {issued}");
    s.ok("/api/v1/grants", json!({"person_id": "alice", "doors": ["front", "side"]}), 201).await;
}

async fn pins_open_doors(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    keypad_world(&s).await;
    let ok = s.decide("front", pin("4711")).await;
    assert_eq!(ok["allowed"], true, "{ok}");
    assert_eq!(ok["reason"], "granted");
    assert_eq!(ok["person_id"], "alice");
    let wrong = s.decide("front", pin("4712")).await;
    assert_eq!(wrong["reason"], "unknown_credential");
    assert!(wrong["person_id"].is_null());
    let listed = s.get("/api/v1/people/alice/credentials").await.1;
    assert!(!listed.to_string().contains("4711"), "{listed}");
    let events = s.events().await;
    let decision = events.iter().find(|e| e["id"] == ok["event_id"]).expect("the decision is recorded");
    assert_eq!(decision["data"]["credential_kind"], "pin");
    let log = serde_json::to_string(&events).unwrap();
    assert!(!log.contains("4711") && !log.contains("4712"), "a PIN is in the event log: {log}");
    // The same PIN is not given to two people: it would say whose it is.
    s.ok("/api/v1/people", json!({"id": "bob", "name": "Bob"}), 201).await;
    assert_eq!(s.post("/api/v1/people/bob/credentials", pin("4711")).await.0, 409);
    // A revoked PIN is known as revoked.
    let id = listed.as_array().unwrap().iter().find(|c| c["kind"] == "pin").unwrap()["id"].as_str().unwrap().to_owned();
    assert_eq!(s.delete(&format!("/api/v1/credentials/{id}")).await.0, 200);
    assert_eq!(s.decide("front", pin("4711")).await["reason"], "credential_revoked");
}

/// The guessing limit as configured (`free_failures = 5`): five wrong PINs at a keypad,
/// and the next attempt there, even with the right PIN, is refused.
async fn a_keypad_locks_after_five_wrong_pins(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    keypad_world(&s).await;
    for guess in ["0000", "1111", "2222", "3333", "4444"] {
        assert_eq!(s.decide("front", pin(guess)).await["reason"], "unknown_credential", "{guess}");
    }
    let locked = s.decide("front", pin("4711")).await;
    assert_eq!(locked["reason"], "rate_limited", "the sixth attempt after five wrong PINs is let through: {locked}");
    assert_eq!(locked["allowed"], false);
}

async fn a_locked_keypad_refuses_even_the_right_pin_and_only_there(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    keypad_world(&s).await;
    for guess in ["0000", "1111", "2222", "3333", "4444"] {
        assert_eq!(s.decide("front", pin(guess)).await["reason"], "unknown_credential");
    }
    let first = s.decide("front", pin("5555")).await;
    assert_eq!(first["reason"], "rate_limited", "the attempt after five wrong ones is refused: {first}");
    assert!(first["event_id"].is_string(), "the first refusal under a lock is recorded: {first}");
    assert!(first["retry_after"].as_u64().is_some_and(|s| (1..=30).contains(&s)), "says when to try again: {first}");
    let locked = s.decide("front", pin("4711")).await;
    assert_eq!(locked["allowed"], false, "{locked}");
    assert_eq!(locked["reason"], "rate_limited");
    assert!(locked["person_id"].is_null(), "a refused guess does not tell whose PIN it was: {locked}");
    assert!(locked["detail"].as_str().is_some_and(|d| d.contains("try again")), "{locked}");
    assert!(
        locked["event_id"].is_null(),
        "later refusals under the same lock are only counted, not recorded: {locked}"
    );
    // Another keypad is not affected; cards are not guesses.
    assert_eq!(s.decide("side", pin("4711")).await["reason"], "granted");
    assert_eq!(s.decide("front", card("04A1B2C3", None)).await["reason"], "granted");
    // A dry run does not get around the lock.
    let (_, dry) =
        s.post("/api/v1/decisions", json!({"door": "front", "credential": pin("4711"), "dry_run": true})).await;
    assert_eq!(dry["reason"], "rate_limited", "{dry}");
    let events = s.events().await;
    let limited: Vec<_> = events.iter().filter(|e| e["reason"] == "rate_limited").collect();
    assert!(!limited.is_empty(), "{events:?}");
    assert!(limited.iter().all(|e| e["door"] == "front" && e["allowed"] == false && e["person_id"].is_null()));
}

/// A lock ends: with `first_lock_seconds = 1`, the right PIN works again a moment later.
async fn a_keypad_lock_ends(b: Backend) {
    let db = Database::new(b);
    let s = Server::start_with(&db, &[("LINTEL_LIMITS_FREE_FAILURES", "2"), ("LINTEL_LIMITS_FIRST_LOCK_SECONDS", "1")]);
    keypad_world(&s).await;
    for guess in ["0000", "1111"] {
        assert_eq!(s.decide("front", pin(guess)).await["reason"], "unknown_credential");
    }
    assert_eq!(s.decide("front", pin("4711")).await["reason"], "rate_limited");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(
        s.decide("front", pin("4711")).await["reason"],
        "granted",
        "the legitimate user is not locked out for good"
    );
}

/// A keypad's lock is capped (`[limits] keypad_max_lock_seconds`): whoever stands at a
/// keypad can lock it, and then every PIN user of that door waits. The lock is recorded
/// once, as `keypad.locked`, in the log and on the live stream. A client on the network
/// keeps the long lock.
async fn a_keypad_lock_is_capped_and_recorded_once(b: Backend) {
    let db = Database::new(b);
    let s = Server::start_with(
        &db,
        &[
            ("LINTEL_LIMITS_FREE_FAILURES", "2"),
            ("LINTEL_LIMITS_FIRST_LOCK_SECONDS", "60"),
            ("LINTEL_LIMITS_KEYPAD_MAX_LOCK_SECONDS", "1"),
        ],
    );
    keypad_world(&s).await;
    let mut stream = Stream::open(&s, "?kind=keypad.locked", None).await;
    for guess in ["0000", "1111"] {
        assert_eq!(s.decide("front", pin(guess)).await["reason"], "unknown_credential", "{guess}");
    }
    let locked = s.decide("front", pin("4711")).await;
    assert_eq!(locked["reason"], "rate_limited", "{locked}");
    assert_eq!(locked["retry_after"], 1, "the keypad's lock is capped at 1 s, not the first lock's 60 s: {locked}");
    for guess in ["2222", "3333"] {
        assert_eq!(s.decide("front", pin(guess)).await["reason"], "rate_limited", "{guess}");
    }
    let live = stream.expect("the keypad's lock, live").await.json();
    assert_eq!(live["kind"], "keypad.locked", "{live}");
    assert_eq!(live["door"], "front", "{live}");
    assert_eq!(live["data"]["failures"], 2, "{live}");
    assert_eq!(live["data"]["lock_seconds"], 1, "{live}");
    assert!(stream.next(Duration::from_millis(500)).await.is_none(), "refusals under the lock do not lock it again");
    let logged: Vec<Value> = s.events().await.into_iter().filter(|e| e["kind"] == "keypad.locked").collect();
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(logged[0]["id"], live["id"]);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(s.decide("front", pin("4711")).await["reason"], "granted", "the lock lasted at most the cap");

    // A client guessing secrets over the network is locked for the first lock's 60 s.
    for i in 0..2 {
        assert_problem(&open_with_secret(&s, "side", &format!("lsk_guess-{i}")).await, 403, "a wrong secret");
    }
    let limited = open_with_secret(&s, "side", "lsk_guess-2").await;
    assert_problem(&limited, 429, "the attempt after two wrong secrets");
    let wait: u64 = limited.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((2..=60).contains(&wait), "Retry-After: {wait}");
    let kinds: Vec<Value> = s.events().await.into_iter().map(|e| e["kind"].clone()).collect();
    assert_eq!(kinds.iter().filter(|k| *k == "keypad.locked").count(), 1, "a client is no keypad: {kinds:?}");
}

/// Five wrong personal secrets from one client, and the next request is a 429.
async fn open_locks_after_five_wrong_secrets(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    let relay = FakeDevice::shelly_gen2().await;
    create_door(&s, "front", json!({"kind": "shelly", "url": relay.url}), 5).await;
    let (_, secret) = person_with_secret(&s, "alice").await;
    s.ok("/api/v1/grants", json!({"person_id": "alice", "doors": ["front"]}), 201).await;
    for i in 0..5 {
        let denied = open_with_secret(&s, "front", &format!("lsk_guess-{i}")).await;
        assert_problem(&denied, 403, "a wrong secret");
        assert_eq!(denied.body["reason"], "unknown_credential");
    }
    let limited = open_with_secret(&s, "front", &secret).await;
    assert_problem(&limited, 429, "the sixth request after five wrong secrets");
    assert_eq!(limited.body["reason"], "rate_limited");
    let wait: u64 = limited.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&wait), "Retry-After: {wait}");
    assert!(relay.seen().is_empty());
}

/// Behind a trusted reverse proxy (the tests' loopback client plays it), each forwarded
/// client is limited alone; a client's own claims to the left of what the proxy appended
/// change nothing, and a client that is no trusted proxy cannot name another address.
async fn trusted_proxies_limit_each_forwarded_client_alone(b: Backend) {
    let db = Database::new(b);
    let s = Server::start_with(&db, &[("LINTEL_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8")]);
    let relay = FakeDevice::shelly_gen2().await;
    create_door(&s, "front", json!({"kind": "shelly", "url": relay.url}), 5).await;
    let (_, secret) = person_with_secret(&s, "alice").await;
    s.ok("/api/v1/grants", json!({"person_id": "alice", "doors": ["front"]}), 201).await;
    let open_from = |xff: String, secret: String| {
        send(s.client.post(format!("{}/open/front", s.base)).bearer_auth(secret).header("x-forwarded-for", xff))
    };
    // The guesser spoofs a different address each time, left of the proxy's entry.
    for i in 0..5 {
        let denied = open_from(format!("198.51.100.{i}, 203.0.113.66"), format!("lsk_guess-{i}")).await;
        assert_problem(&denied, 403, "a wrong secret");
    }
    let limited = open_from("203.0.113.66".into(), secret.clone()).await;
    assert_problem(&limited, 429, "the guesser behind the proxy is locked");
    // Everyone else behind the same proxy is not, through the RFC 7239 header as well.
    assert_eq!(open_from("203.0.113.7".into(), secret.clone()).await.status, 200);
    let forwarded = send(
        s.client
            .post(format!("{}/open/front", s.base))
            .bearer_auth(&secret)
            .header("forwarded", "for=\"[2001:db8::7]:4711\""),
    )
    .await;
    assert_eq!(forwarded.status, 200, "{:?}", forwarded.body);
    drop(s);

    // Not a trusted proxy: the forwarded address is ignored, the peer's own is counted.
    let db = Database::new(b);
    let s = Server::start_with(&db, &[("LINTEL_TRUSTED_PROXIES", "10.0.0.0/8")]);
    create_door(&s, "front", json!({"kind": "shelly", "url": relay.url}), 5).await;
    let (_, secret) = person_with_secret(&s, "alice").await;
    s.ok("/api/v1/grants", json!({"person_id": "alice", "doors": ["front"]}), 201).await;
    let open_from = |xff: String, secret: String| {
        send(s.client.post(format!("{}/open/front", s.base)).bearer_auth(secret).header("x-forwarded-for", xff))
    };
    for i in 0..5 {
        assert_problem(&open_from(format!("203.0.113.{i}"), format!("lsk_guess-{i}")).await, 403, "a wrong secret");
    }
    let spoofed = open_from("203.0.113.200".into(), secret).await;
    assert_problem(&spoofed, 429, "a spoofed X-Forwarded-For does not escape the lock");
}

/// Signing in to the user API with wrong secrets locks the client out the same way, and
/// the 429 says when to come back in its header too.
async fn wrong_user_secrets_are_limited_with_retry_after(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    let me = |secret: String| send(s.client.get(format!("{}/api/v1/me", s.base)).bearer_auth(secret));
    for i in 0..5 {
        assert_problem(&me(format!("lsk_guess-{i}")).await, 401, "a wrong secret");
    }
    let limited = me("lsk_guess-5".into()).await;
    assert_problem(&limited, 429, "the sixth attempt");
    let wait: u64 = limited.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&wait), "Retry-After: {wait}");
    assert_eq!(limited.body["retry_after"], wait, "the body and the header agree");
}

async fn wrong_secrets_lock_out_the_client_not_the_door(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    let relay = FakeDevice::shelly_gen2().await;
    create_door(&s, "front", json!({"kind": "shelly", "url": relay.url}), 5).await;
    let (_, secret) = person_with_secret(&s, "alice").await;
    s.ok("/api/v1/grants", json!({"person_id": "alice", "doors": ["front"]}), 201).await;
    let mut statuses = Vec::new();
    for i in 0..6 {
        let denied = open_with_secret(&s, "front", &format!("lsk_guess-{i}")).await;
        statuses.push(denied.status);
        assert!(matches!(denied.body["reason"].as_str(), Some("unknown_credential" | "rate_limited")), "{denied:?}");
    }
    assert!(statuses[..5].iter().all(|s| *s == 403), "{statuses:?}");
    let limited = open_with_secret(&s, "front", &secret).await;
    assert_problem(&limited, 429, "the right secret from a locked-out client");
    assert_eq!(limited.body["reason"], "rate_limited");
    assert_eq!(limited.body["allowed"], false);
    assert_eq!(limited.body["opened"], false);
    assert!(limited.body["person_id"].is_null(), "{:?}", limited.body);
    assert!(relay.seen().is_empty(), "a locked-out client never reaches the relay");
    // Decisions asked by a reader at that door are a different source.
    s.ok("/api/v1/people/alice/credentials", card("04A1B2C3", None), 201).await;
    assert_eq!(s.decide("front", card("04A1B2C3", None)).await["reason"], "granted");
    let log = serde_json::to_string(&s.events().await).unwrap();
    assert!(!log.contains("lsk_guess") && !log.contains(&secret), "presented secrets are in the event log");
}

async fn backup_codes_work_once(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    keypad_world(&s).await;
    let mut codes = Vec::new();
    for _ in 0..3 {
        let issued = s.ok("/api/v1/people/alice/credentials", json!({"kind": "backup_code"}), 201).await;
        assert_eq!(issued["kind"], "backup_code");
        let code = issued["secret"].as_str().unwrap_or_else(|| panic!("no code in {issued}")).to_owned();
        assert_eq!(code.len(), 23, "{code}");
        assert_eq!(code.matches('-').count(), 3, "{code}");
        codes.push((issued["id"].as_str().unwrap().to_owned(), code));
    }
    let backup = |code: &str| json!({"kind": "backup_code", "code": code});

    let (id, code) = &codes[0];
    let first = s.decide("front", backup(code)).await;
    assert_eq!(first["reason"], "granted", "{first}");
    assert_eq!(first["person_id"], "alice");
    let again = s.decide("front", backup(code)).await;
    assert_eq!(again["allowed"], false);
    assert_eq!(again["reason"], "credential_revoked", "{again}");
    assert_eq!(s.decide("side", backup(code)).await["reason"], "credential_revoked", "used up everywhere");
    let stored = s.get(&format!("/api/v1/credentials/{id}")).await.1;
    assert_eq!(stored["status"], "used", "{stored}");
    assert!(stored.get("secret").is_none_or(Value::is_null));

    // Typed loosely (lower case, spaces for dashes), a code still works, once.
    let (_, code) = &codes[1];
    let typed = code.to_lowercase().replace('-', " ");
    assert_eq!(s.decide("front", backup(&typed)).await["reason"], "granted");
    assert_eq!(s.decide("front", backup(code)).await["reason"], "credential_revoked");

    // Presented many times at once, a code opens exactly once.
    let (_, code) = &codes[2];
    let taps = futures::future::join_all((0..8).map(|_| s.decide("front", backup(code)))).await;
    assert_eq!(taps.iter().filter(|a| a["allowed"] == true).count(), 1, "{taps:?}");
    assert!(taps.iter().filter(|a| a["allowed"] == false).all(|a| a["reason"] == "credential_revoked"), "{taps:?}");

    // A dry run does not use a code up.
    let fresh = s.ok("/api/v1/people/alice/credentials", json!({"kind": "backup_code"}), 201).await;
    let fresh = fresh["secret"].as_str().unwrap().to_owned();
    let (_, dry) =
        s.post("/api/v1/decisions", json!({"door": "front", "credential": backup(&fresh), "dry_run": true})).await;
    assert_eq!(dry["reason"], "granted");
    assert_eq!(s.decide("front", backup(&fresh)).await["reason"], "granted");

    let log = serde_json::to_string(&s.events().await).unwrap();
    for (_, code) in &codes {
        assert!(!log.contains(code.as_str()), "a backup code is in the event log");
        assert!(!log.contains(&code.replace('-', "")), "a backup code is in the event log");
    }
}

/// `lintel serve` with debug logging captured in a file.
struct LoggedServer {
    base: String,
    child: Child,
    log: PathBuf,
    client: reqwest::Client,
}

impl LoggedServer {
    fn start(db: &Database) -> Self {
        let log = db.dir.join("serve-stderr.log");
        let file = std::fs::File::create(&log).expect("log file");
        let mut child = lintel()
            .args(["serve", "--listen", "127.0.0.1:0", "--database-url", &db.url])
            .current_dir(&db.dir)
            .env("LINTEL_ADMIN_TOKEN", ADMIN)
            .env("LINTEL_FOLLOW_INTERVAL_MS", "200")
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(file)
            .spawn()
            .expect("lintel starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("address");
        let base = line.trim().strip_prefix("lintel listening on ").expect("address line").to_owned();
        Self { base, child, log, client: reqwest::Client::new() }
    }

    async fn call(&self, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> Answer {
        let mut request = self.client.request(method, format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        send(request).await
    }

    async fn post(&self, path: &str, body: Value, status: u16) -> Value {
        let answer = self.call(reqwest::Method::POST, path, ADMIN, Some(body)).await;
        assert_eq!(answer.status, status, "POST {path}: {}", answer.text);
        answer.body
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).expect("log")
    }
}

impl Drop for LoggedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn create_cli_token(db: &Database, name: &str) -> String {
    let out = lintel()
        .args(["token", "create", "--name", name, "--database-url", &db.url])
        .current_dir(&db.dir)
        .output()
        .expect("lintel token create runs");
    assert!(out.status.success(), "token create: {}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).expect("UTF-8").trim().to_owned();
    assert!(token.len() >= 32 && !token.contains(char::is_whitespace), "{token:?}");
    token
}

async fn secrets_stay_out_of_events_and_logs(b: Backend) {
    let db = Database::new(b);
    let s = LoggedServer::start(&db);
    let relay = FakeDevice::shelly_gen2().await;
    let cli_token = create_cli_token(&db, "ci");
    s.post("/api/v1/doors", json!({"id": "front", "name": "Front", "driver": {"kind": "shelly", "url": relay.url, "password": "relay-pw-5"}}), 201)
        .await;
    s.post("/api/v1/people", json!({"id": "alice", "name": "Alice"}), 201).await;
    s.post("/api/v1/people/alice/credentials", pin("90210734"), 201).await;
    let secret = s.post("/api/v1/people/alice/credentials", json!({"kind": "secret"}), 201).await["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let code = s.post("/api/v1/people/alice/credentials", json!({"kind": "backup_code"}), 201).await["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    s.post("/api/v1/grants", json!({"person_id": "alice", "doors": ["front"]}), 201).await;
    for credential in [
        pin("90210734"),
        pin("90210735"),
        json!({"kind": "secret", "secret": secret}),
        json!({"kind": "secret", "secret": "lsk_wrong-secret-8"}),
        json!({"kind": "backup_code", "code": code}),
    ] {
        s.post("/api/v1/decisions", json!({"door": "front", "credential": credential}), 200).await;
    }
    let opened = s.call(reqwest::Method::POST, "/open/front", &secret, None).await;
    assert_eq!(opened.status, 200, "{}", opened.text);
    // The CLI token is taken up within a moment; use it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.call(reqwest::Method::GET, "/api/v1/doors", &cli_token, None).await.status != 200 {
        assert!(Instant::now() < deadline, "the CLI token is never accepted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s.call(reqwest::Method::POST, "/api/v1/doors/front/open", &cli_token, None).await.status, 200);
    assert_eq!(s.call(reqwest::Method::GET, "/api/v1/doors", "lat_wrong-token-4", None).await.status, 401);
    // A webhook's token in the query; a wrong token at the web UI's sign-in.
    let hook = send(s.client.post(format!("{}/hooks/lockcloud?token=hook-secret-6", s.base)).json(&json!({}))).await;
    assert!((400..500).contains(&hook.status), "{}", hook.text);
    let login = s
        .client
        .post(format!("{}/ui/login", s.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=lat_ui-wrong-7");
    assert_eq!(send(login).await.status, 200);

    let events = s.call(reqwest::Method::GET, "/api/v1/events?limit=1000", ADMIN, None).await;
    assert_eq!(events.status, 200);
    let by_cli = events.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .any(|e| e["kind"] == "decision" && e["data"]["by"].as_str().is_some_and(|by| by.contains("\"ci\"")));
    assert!(by_cli, "the CLI token's opening is recorded under its name: {}", events.text);
    let events = events.text;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stderr = s.stderr();
    assert!(stderr.contains("lintel is ready"), "the server's log is captured: {stderr}");
    for (what, value) in [
        ("PIN", "90210734"),
        ("wrong PIN", "90210735"),
        ("personal secret", secret.as_str()),
        ("wrong secret", "lsk_wrong-secret-8"),
        ("backup code", code.as_str()),
        ("admin token", ADMIN),
        ("CLI token", cli_token.as_str()),
        ("wrong token", "lat_wrong-token-4"),
        ("relay password", "relay-pw-5"),
        ("webhook token", "hook-secret-6"),
        ("wrong token at the web UI", "lat_ui-wrong-7"),
    ] {
        assert!(!events.contains(value), "the {what} is in the event log");
        assert!(!stderr.contains(value), "the {what} is in the server's log");
    }
    // The access log: a line per request (method, path, status, duration, client), the
    // refused ones as warnings; a wrong token at the web UI's sign-in is one too.
    let line = |needle: &str| {
        stderr.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("no log line with {needle:?}: {stderr}"))
    };
    let refused = line("method=GET path=/api/v1/doors status=401");
    assert!(refused.contains("WARN") && refused.contains("client=127.0.0.1") && refused.contains(" ms="), "{refused}");
    let opened = line("method=POST path=/open/front status=200");
    assert!(opened.contains("INFO") && opened.contains("client=127.0.0.1"), "{opened}");
    line("method=POST path=/hooks/lockcloud status=");
    assert!(line("a sign-in to the web UI with a wrong token").contains("WARN"));
    assert!(!stderr.contains('\u{1b}'), "no terminal colours in a log file");
    let relayed = relay.seen();
    assert_eq!(relayed.len(), 2, "{relayed:?}");
}

async fn cli_tokens_are_accepted_then_refused(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    let people = |token: String| {
        let request = s.client.get(format!("{}/api/v1/people", s.base)).bearer_auth(token);
        async move { send(request).await }
    };
    let token = create_cli_token(&db, "ci");
    let started = Instant::now();
    loop {
        let answer = people(token.clone()).await;
        if answer.status == 200 {
            break;
        }
        assert_problem(&answer, 401, "a token the server has not loaded yet");
        assert!(started.elapsed() < Duration::from_secs(3), "a new CLI token is not accepted within 3 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // It works for writes too, and the record names it.
    let opened = send(s.client.post(format!("{}/api/v1/decisions", s.base)).bearer_auth(&token).json(&json!({
        "door": "front", "credential": card("04A1B2C3", None), "dry_run": true
    })))
    .await;
    assert_eq!(opened.status, 200, "{}", opened.text);
    let listed = lintel().args(["token", "list", "--database-url", &db.url]).current_dir(&db.dir).output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed.contains("ci"), "{listed}");
    assert!(!listed.contains(&token), "token list shows the token: {listed}");
    // Tokens are looked up whole: a prefix or a changed character is not one.
    assert_eq!(people(token[..token.len() - 1].to_owned()).await.status, 401);
    assert_eq!(people(format!("{token}x")).await.status, 401);

    let out = lintel()
        .args(["token", "revoke", "--name", "ci", "--database-url", &db.url])
        .current_dir(&db.dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let revoked = Instant::now();
    loop {
        let answer = people(token.clone()).await;
        if answer.status == 401 {
            assert_problem(&answer, 401, "a revoked token");
            break;
        }
        assert_eq!(answer.status, 200);
        assert!(revoked.elapsed() < Duration::from_secs(3), "a revoked CLI token is still accepted after 3 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The environment's token is unaffected; the log has both changes, without the token.
    assert_eq!(s.get("/api/v1/people").await.0, 200);
    let events = s.events().await;
    let kinds: Vec<_> = events.iter().filter_map(|e| e["kind"].as_str()).filter(|k| k.starts_with("token.")).collect();
    assert_eq!(kinds, ["token.created", "token.revoked"], "{events:?}");
    assert!(
        events
            .iter()
            .filter(|e| e["kind"].as_str().is_some_and(|k| k.starts_with("token.")))
            .all(|e| e["data"]["name"] == "ci")
    );
    assert!(!serde_json::to_string(&events).unwrap().contains(&token));
    // Revoking again, or a bad name, fails loudly.
    let again = lintel()
        .args(["token", "revoke", "--name", "ci", "--database-url", &db.url])
        .current_dir(&db.dir)
        .output()
        .unwrap();
    assert!(!again.status.success());
    let bad = lintel()
        .args(["token", "create", "--name", "no spaces please", "--database-url", &db.url])
        .current_dir(&db.dir)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(bad.stdout.is_empty(), "no token is printed for a refused name");
}

crate::on_both_backends!(
    pins_open_doors,
    a_keypad_locks_after_five_wrong_pins,
    a_locked_keypad_refuses_even_the_right_pin_and_only_there,
    a_keypad_lock_ends,
    a_keypad_lock_is_capped_and_recorded_once,
    open_locks_after_five_wrong_secrets,
    trusted_proxies_limit_each_forwarded_client_alone,
    wrong_secrets_lock_out_the_client_not_the_door,
    wrong_user_secrets_are_limited_with_retry_after,
    backup_codes_work_once,
    secrets_stay_out_of_events_and_logs,
    cli_tokens_are_accepted_then_refused,
);
