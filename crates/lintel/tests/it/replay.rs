//! The replay and forgery corpus as properties, over every inbound route that checks a
//! signature or a token: Slack's commands, interactions and events (HMAC over timestamp
//! and body), the doorbell and the lock cloud (tokens), signed operations (JWS), and the
//! coworking platform's webhooks (unauthenticated: only URLs on the configured space are
//! taken). Each case makes a genuine request of its own, first sends mutations of it
//! (re-cased, truncated and extended signatures, other keys, flipped body bytes, stale and
//! future timestamps, duplicated headers, tampered tokens), then the genuine one (which
//! must pass: otherwise the refusals prove nothing), then replays of it. Nothing forged or
//! replayed may be accepted or change anything: no event, no person or credential, no
//! door driven. One server per property (per backend); proptest drives the cases.

use std::fmt::Debug;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signer, SigningKey};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};

use crate::bad_input::{Answer, send};
use crate::doors::{FakeDevice, create_door, json_answer};
use crate::harness::{Backend, Database, Server};
use crate::slack::SECRET;

/// Cases per property: each costs a handful of requests.
const CASES: u32 = 64;

/// Runs a property whose cases talk to a server: proptest generates and shrinks, the
/// test's runtime answers.
fn property<S, F, Fut>(what: &str, strategy: S, case: F)
where
    S: Strategy,
    S::Value: Debug,
    F: Fn(S::Value) -> Fut,
    Fut: Future<Output = Result<(), TestCaseError>>,
{
    let handle = tokio::runtime::Handle::current();
    let mut runner = TestRunner::new(Config { cases: CASES, failure_persistence: None, ..Config::default() });
    let outcome = tokio::task::block_in_place(|| runner.run(&strategy, |value| handle.block_on(case(value))));
    if let Err(e) = outcome {
        panic!("{what}: {e}");
    }
}

/// A number no other request of this test run has used.
fn unique() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64;
    nanos.wrapping_add(N.fetch_add(1, Ordering::SeqCst))
}

/// The id of the newest event (the cursor after which nothing may appear).
async fn newest_event(s: &Server) -> String {
    let mut after = "0".to_owned();
    loop {
        let (_, page) = s.get(&format!("/api/v1/events?after={after}&limit=1000")).await;
        match page["items"].as_array().and_then(|i| i.last()).and_then(|e| e["id"].as_str()) {
            Some(id) => after = id.to_owned(),
            None => return after,
        }
    }
}

async fn events_after(s: &Server, cursor: &str) -> Vec<Value> {
    s.get(&format!("/api/v1/events?after={cursor}&limit=1000")).await.1["items"].as_array().cloned().unwrap_or_default()
}

/// Upper-cases the hex letters `mask` picks (all of them when it picks none).
fn recase(hex: &str, mask: u64) -> String {
    let picked: String = hex
        .chars()
        .enumerate()
        .map(|(i, c)| if mask >> (i % 64) & 1 == 1 { c.to_ascii_uppercase() } else { c })
        .collect();
    if picked == hex { hex.to_ascii_uppercase() } else { picked }
}

// --- Slack -------------------------------------------------------------------------------

/// A way to forge a Slack request from a genuine one.
#[derive(Debug, Clone)]
enum SlackForgery {
    /// The MAC's hex with some letters upper-cased.
    Recased(u64),
    /// `V0=` for `v0=`.
    UpperPrefix,
    /// The first n characters of the signature.
    Truncated(usize),
    /// Hex digits appended.
    Extended(String),
    /// Signed with another secret.
    WrongKey(String),
    /// A body byte changed after signing.
    FlippedBody(Index, u8),
    /// Signed with the right secret, this many seconds too old.
    Stale(i64),
    /// Signed with the right secret, this many seconds in the future.
    Future(i64),
    /// The signature of the genuine request with another (fresh) timestamp.
    OtherTimestamp(i64),
    /// A forged signature header before the genuine one.
    ForgedFirst(u64),
    NoSignature,
    NoTimestamp,
}

fn slack_forgery() -> impl Strategy<Value = SlackForgery> {
    prop_oneof![
        any::<u64>().prop_map(SlackForgery::Recased),
        Just(SlackForgery::UpperPrefix),
        (0usize..67).prop_map(SlackForgery::Truncated),
        "[0-9a-f]{1,8}".prop_map(SlackForgery::Extended),
        "[ -~]{0,48}".prop_filter("another secret", |k| k != SECRET).prop_map(SlackForgery::WrongKey),
        (any::<Index>(), 1u8..=255).prop_map(|(i, x)| SlackForgery::FlippedBody(i, x)),
        (301i64..200_000).prop_map(SlackForgery::Stale),
        // Well past the 300 s Slack allows, so that a second passing changes nothing.
        (310i64..200_000).prop_map(SlackForgery::Future),
        (-290i64..290).prop_filter("another moment", |d| *d != 0).prop_map(SlackForgery::OtherTimestamp),
        any::<u64>().prop_map(SlackForgery::ForgedFirst),
        Just(SlackForgery::NoSignature),
        Just(SlackForgery::NoTimestamp),
    ]
}

/// A way to send a genuine Slack request again.
#[derive(Debug, Clone)]
enum SlackReplay {
    Same,
    Recased(u64),
    UpperPrefix,
    /// The timestamp with spaces around it.
    PaddedTimestamp,
    /// The genuine signature, then another signature header.
    GenuineFirst,
    /// The same headers in another order.
    Reordered,
}

fn slack_replay() -> impl Strategy<Value = SlackReplay> {
    prop_oneof![
        Just(SlackReplay::Same),
        any::<u64>().prop_map(SlackReplay::Recased),
        Just(SlackReplay::UpperPrefix),
        Just(SlackReplay::PaddedTimestamp),
        Just(SlackReplay::GenuineFirst),
        Just(SlackReplay::Reordered),
    ]
}

/// A request as sent: its headers in order (names may repeat) and its body.
struct Wire {
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

fn sign(secret: &str, ts: &str, body: &[u8]) -> String {
    lintel_connectors::slack::sign(secret, ts, body)
}

fn slack_wire(ts: String, sig: String, body: Vec<u8>) -> Wire {
    Wire { headers: vec![("x-slack-request-timestamp", ts), ("x-slack-signature", sig)], body }
}

fn forge_slack(ts: &str, body: &[u8], forgery: &SlackForgery) -> Wire {
    let genuine = sign(SECRET, ts, body);
    let hex = &genuine[3..];
    let now = chrono::Utc::now().timestamp();
    let w = |sig: String| slack_wire(ts.to_owned(), sig, body.to_vec());
    match forgery {
        SlackForgery::Recased(mask) => w(format!("v0={}", recase(hex, *mask))),
        SlackForgery::UpperPrefix => w(format!("V0={hex}")),
        SlackForgery::Truncated(n) => w(genuine[..*n].to_owned()),
        SlackForgery::Extended(more) => w(format!("{genuine}{more}")),
        SlackForgery::WrongKey(key) => w(sign(key, ts, body)),
        SlackForgery::FlippedBody(i, x) => {
            let mut body = body.to_vec();
            let at = i.index(body.len());
            body[at] ^= x;
            slack_wire(ts.to_owned(), genuine, body)
        }
        SlackForgery::Stale(age) => {
            let old = (now - age).to_string();
            slack_wire(old.clone(), sign(SECRET, &old, body), body.to_vec())
        }
        SlackForgery::Future(ahead) => {
            let later = (now + ahead).to_string();
            slack_wire(later.clone(), sign(SECRET, &later, body), body.to_vec())
        }
        SlackForgery::OtherTimestamp(delta) => {
            let other = (ts.parse::<i64>().expect("a timestamp") + delta).to_string();
            slack_wire(other, genuine, body.to_vec())
        }
        SlackForgery::ForgedFirst(mask) => {
            let mut wire = w(format!("v0={}", recase(hex, *mask)));
            wire.headers.push(("x-slack-signature", genuine));
            wire
        }
        SlackForgery::NoSignature => {
            Wire { headers: vec![("x-slack-request-timestamp", ts.to_owned())], body: body.to_vec() }
        }
        SlackForgery::NoTimestamp => Wire { headers: vec![("x-slack-signature", genuine)], body: body.to_vec() },
    }
}

fn replay_slack(ts: &str, body: &[u8], replay: &SlackReplay) -> Wire {
    let genuine = sign(SECRET, ts, body);
    let hex = &genuine[3..];
    let w = |sig: String| slack_wire(ts.to_owned(), sig, body.to_vec());
    match replay {
        SlackReplay::Same => w(genuine.clone()),
        SlackReplay::Recased(mask) => w(format!("v0={}", recase(hex, *mask))),
        SlackReplay::UpperPrefix => w(format!("V0={hex}")),
        SlackReplay::PaddedTimestamp => slack_wire(format!("  {ts} "), genuine.clone(), body.to_vec()),
        SlackReplay::GenuineFirst => {
            let mut wire = w(genuine.clone());
            wire.headers.push(("x-slack-signature", sign("not-the-secret", ts, body)));
            wire
        }
        SlackReplay::Reordered => {
            let mut wire = w(genuine.clone());
            wire.headers.reverse();
            wire
        }
    }
}

async fn post_wire(s: &Server, path: &str, content_type: &str, wire: &Wire) -> Answer {
    let mut request = s.client.post(format!("{}{path}", s.base)).header("content-type", content_type);
    for (name, value) in &wire.headers {
        request = request.header(*name, value.as_str());
    }
    send(request.body(wire.body.clone())).await
}

/// The three Slack routes, each with a genuine request that is new every time.
#[derive(Debug, Clone, Copy)]
enum SlackRoute {
    /// `/regenerate-door-secret`: a new secret for slack-U1 (a credential, events).
    Command,
    /// A click on Open door: a decision, the relay driven.
    Click,
    /// `url_verification`: answered with its challenge.
    Event,
}

fn slack_route() -> impl Strategy<Value = SlackRoute> {
    prop_oneof![Just(SlackRoute::Command), Just(SlackRoute::Click), Just(SlackRoute::Event)]
}

fn slack_request(route: SlackRoute, slack_url: &str) -> (&'static str, &'static str, Vec<u8>) {
    let n = unique();
    let form = "application/x-www-form-urlencoded";
    match route {
        SlackRoute::Command => {
            let body = serde_urlencoded::to_string([
                ("command", "/regenerate-door-secret"),
                ("text", ""),
                ("user_id", "U1"),
                ("team_id", "T1"),
                ("trigger_id", &n.to_string()),
                ("response_url", &format!("{slack_url}/respond/{n}")),
            ])
            .expect("a form");
            ("/hooks/slack/commands", form, body.into_bytes())
        }
        SlackRoute::Click => {
            let payload = json!({"type": "block_actions", "user": {"id": "U1"}, "trigger_id": n.to_string(),
                "response_url": format!("{slack_url}/respond/{n}"),
                "actions": [{"action_id": "open_door", "value": "front", "action_ts": n.to_string()}]});
            let body = serde_urlencoded::to_string([("payload", payload.to_string())]).expect("a form");
            ("/hooks/slack/interactions", form, body.into_bytes())
        }
        SlackRoute::Event => {
            let body = json!({"type": "url_verification", "challenge": format!("challenge-{n}"), "token": "x"});
            ("/hooks/slack/events", "application/json", body.to_string().into_bytes())
        }
    }
}

/// Waits until a click has opened the door: the relay switched and the opening on record
/// (a click is answered first, the door opened after).
async fn opened_after(s: &Server, relay: &FakeDevice, drives: usize, cursor: &str) -> bool {
    for _ in 0..200 {
        let recorded = events_after(s, cursor).await.iter().any(|e| e["kind"] == "door.opened");
        if recorded && relay.seen().len() > drives {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

async fn slack_requests_are_never_forged_or_replayed(b: Backend) {
    let db = Database::new(b);
    let slack = FakeDevice::start(|_, _| json_answer(axum::http::StatusCode::OK, json!({"ok": true}))).await;
    let relay = FakeDevice::shelly_gen2().await;
    let s = Server::start_with(
        &db,
        &[
            ("LINTEL_SLACK_SIGNING_SECRET", SECRET),
            ("LINTEL_SLACK_BOT_TOKEN", "xoxb-test"),
            ("LINTEL_SLACK_API_BASE_URL", &slack.url),
        ],
    );
    create_door(&s, "front", json!({"kind": "shelly", "url": relay.url}), 3).await;
    s.ok("/api/v1/people", json!({"id": "slack-U1", "name": "U1", "external_ids": {"slack": "U1"}}), 201).await;
    s.ok("/api/v1/grants", json!({"person_id": "slack-U1", "doors": ["front"]}), 201).await;
    let clicks = AtomicU64::new(0);
    let strategy =
        (slack_route(), prop::collection::vec(slack_forgery(), 1..6), prop::collection::vec(slack_replay(), 1..4));
    property("Slack", strategy, |(route, forgeries, replays)| {
        let (s, slack, relay, clicks) = (&s, &slack, &relay, &clicks);
        async move {
            let (path, content_type, body) = slack_request(route, &slack.url);
            let ts = chrono::Utc::now().timestamp().to_string();
            let cursor = newest_event(s).await;
            let drives = relay.seen().len();
            for forgery in &forgeries {
                let answer = post_wire(s, path, content_type, &forge_slack(&ts, &body, forgery)).await;
                prop_assert_eq!(answer.status, 401, "{:?} {:?} was not refused: {}", route, forgery, answer.text);
            }
            let changed = events_after(s, &cursor).await;
            prop_assert!(changed.is_empty(), "{:?}: forgeries changed something: {:?}", route, changed);
            let genuine = post_wire(s, path, content_type, &replay_slack(&ts, &body, &SlackReplay::Same)).await;
            prop_assert_eq!(genuine.status, 200, "{:?}: the genuine request was refused: {}", route, genuine.text);
            if let SlackRoute::Click = route {
                let n = clicks.fetch_add(1, Ordering::SeqCst) as usize + 1;
                prop_assert!(
                    opened_after(s, relay, drives, &cursor).await,
                    "{:?}: the genuine click opened nothing ({})",
                    route,
                    n
                );
            }
            let cursor = newest_event(s).await;
            let drives = relay.seen().len();
            for replay in &replays {
                let answer = post_wire(s, path, content_type, &replay_slack(&ts, &body, replay)).await;
                prop_assert_eq!(answer.status, 401, "{:?} {:?} was taken again: {}", route, replay, answer.text);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            let changed = events_after(s, &cursor).await;
            prop_assert!(changed.is_empty(), "{:?}: replays changed something: {:?}", route, changed);
            prop_assert_eq!(relay.seen().len(), drives, "{:?}: a replay drove the door", route);
            Ok(())
        }
    });
    eprintln!(
        "replay, Slack on {b:?}: {CASES} cases; {} genuine clicks drove the relay",
        clicks.load(Ordering::SeqCst)
    );
}

// --- tokens ------------------------------------------------------------------------------

/// A way to present a wrong token.
#[derive(Debug, Clone)]
enum TokenForgery {
    Recased(u64),
    /// The first n characters.
    Truncated(Index),
    Extended(String),
    Other(String),
    Empty,
    /// A space inside the token.
    Split(Index),
    /// A wrong token in the query, the right one in the header.
    WrongQueryRightHeader(String),
    /// Two headers: a wrong one first.
    WrongHeaderFirst(String),
}

fn token_forgery() -> impl Strategy<Value = TokenForgery> {
    prop_oneof![
        any::<u64>().prop_map(TokenForgery::Recased),
        any::<Index>().prop_map(TokenForgery::Truncated),
        "[!-~]{1,8}".prop_map(TokenForgery::Extended),
        "[!-~]{1,64}".prop_map(TokenForgery::Other),
        Just(TokenForgery::Empty),
        any::<Index>().prop_map(TokenForgery::Split),
        "[!-~]{1,32}".prop_map(TokenForgery::WrongQueryRightHeader),
        "[!-~]{1,32}".prop_map(TokenForgery::WrongHeaderFirst),
    ]
}

/// `(query token, header tokens)` for a forgery of `token`, sent with header `header`.
fn forge_token(token: &str, forgery: &TokenForgery) -> (Option<String>, Vec<String>) {
    let other = |t: &str| if t == token { format!("{t}x") } else { t.to_owned() };
    match forgery {
        TokenForgery::Recased(mask) => (Some(recase(token, *mask)), vec![]),
        TokenForgery::Truncated(i) => (Some(token[..i.index(token.len())].to_owned()), vec![]),
        TokenForgery::Extended(more) => (Some(format!("{token}{more}")), vec![]),
        TokenForgery::Other(t) => (Some(other(t)), vec![]),
        TokenForgery::Empty => (Some(String::new()), vec![]),
        TokenForgery::Split(i) => {
            let at = i.index(token.len() - 1) + 1;
            (None, vec![format!("{} {}", &token[..at], &token[at..])])
        }
        TokenForgery::WrongQueryRightHeader(t) => (Some(other(t)), vec![token.to_owned()]),
        TokenForgery::WrongHeaderFirst(t) => (None, vec![other(t), token.to_owned()]),
    }
}

async fn post_with_token(
    s: &Server,
    path: &str,
    header: &str,
    (query, headers): &(Option<String>, Vec<String>),
    body: &Value,
) -> Answer {
    let mut request = s.client.post(format!("{}{path}", s.base)).json(body);
    if let Some(token) = query {
        request = request.query(&[("token", token)]);
    }
    for value in headers {
        request = request.header(header, value.as_str());
    }
    send(request).await
}

const DOORBELL_TOKEN: &str = "doorbell-token-0123456789abcdef";
const CLOUD_TOKEN: &str = "cloud-webhook-token-0123456789";

/// The doorbell (its rings post to Slack) and the lock cloud (its openings are entries):
/// no wrong token rings or enters, a lock cloud event recorded once is not recorded again.
async fn tokens_are_never_forged_and_cloud_events_count_once(b: Backend) {
    let db = Database::new(b);
    let slack =
        FakeDevice::start(|_, _| json_answer(axum::http::StatusCode::OK, json!({"ok": true, "ts": "1.2"}))).await;
    let cloud = FakeDevice::start(|_, _| json_answer(axum::http::StatusCode::OK, json!({}))).await;
    let s = Server::start_with(
        &db,
        &[
            ("LINTEL_SLACK_SIGNING_SECRET", SECRET),
            ("LINTEL_SLACK_BOT_TOKEN", "xoxb-test"),
            ("LINTEL_SLACK_API_BASE_URL", &slack.url),
            ("LINTEL_SLACK_DOORBELL_CHANNEL", "C0DOORBELL"),
            ("LINTEL_DOORBELL_TOKEN", DOORBELL_TOKEN),
            ("LINTEL_DOORBELL_DOOR", "front"),
            ("LINTEL_LOCKCLOUD_BASE_URL", &cloud.url),
            ("LINTEL_LOCKCLOUD_TOKEN_HEADER", "X-Api-Key"),
            ("LINTEL_LOCKCLOUD_TOKEN", "cloud-api-key"),
            ("LINTEL_LOCKCLOUD_WEBHOOK_TOKEN", CLOUD_TOKEN),
            ("LINTEL_LOCKCLOUD_DOOR_LOCKS", "front=L-FRONT"),
        ],
    );
    s.ok("/api/v1/doors", json!({"id": "front", "name": "Front"}), 201).await;
    let ring =
        json!({"push_type": "NDB-incoming_call", "event_type": "incoming_call", "device_id": "70:ee:50:00:00:01"});
    let not_a_ring = json!({"push_type": "NDB-connection", "event_type": "connection"});
    let strategy = (prop::collection::vec(token_forgery(), 1..6), 0usize..3);
    property("doorbell and lock cloud tokens", strategy, |(forgeries, replays)| {
        let (s, slack, ring, not_a_ring) = (&s, &slack, &ring, &not_a_ring);
        async move {
            let opened = json!({"id": format!("evt-{}", unique()), "event": "lock.opened", "lock_id": "L-FRONT"});
            let cursor = newest_event(s).await;
            let posts = slack.seen().len();
            for forgery in &forgeries {
                let rang = post_with_token(
                    s,
                    "/hooks/doorbell",
                    "x-doorbell-token",
                    &forge_token(DOORBELL_TOKEN, forgery),
                    ring,
                )
                .await;
                prop_assert!(
                    matches!(rang.status, 400 | 401),
                    "doorbell {:?} was not refused: {} {}",
                    forgery,
                    rang.status,
                    rang.text
                );
                let entered = post_with_token(
                    s,
                    "/hooks/lockcloud",
                    "x-webhook-token",
                    &forge_token(CLOUD_TOKEN, forgery),
                    &opened,
                )
                .await;
                prop_assert!(
                    matches!(entered.status, 400 | 401),
                    "lock cloud {:?} was not refused: {} {}",
                    forgery,
                    entered.status,
                    entered.text
                );
            }
            let changed = events_after(s, &cursor).await;
            prop_assert!(changed.is_empty(), "forged tokens changed something: {:?}", changed);
            prop_assert_eq!(slack.seen().len(), posts, "a forged ring reached Slack");

            // The right tokens pass (so the refusals above were the tokens').
            let right = |t: &str| (Some(t.to_owned()), Vec::new());
            let ignored =
                post_with_token(s, "/hooks/doorbell", "x-doorbell-token", &right(DOORBELL_TOKEN), not_a_ring).await;
            prop_assert_eq!(ignored.status, 202, "the doorbell's own token: {}", ignored.text);
            let entered = post_with_token(s, "/hooks/lockcloud", "x-webhook-token", &right(CLOUD_TOKEN), &opened).await;
            prop_assert_eq!(entered.status, 200, "the cloud's own token: {}", entered.text);
            let cursor = newest_event(s).await;
            for _ in 0..replays {
                let again =
                    post_with_token(s, "/hooks/lockcloud", "x-webhook-token", &right(CLOUD_TOKEN), &opened).await;
                prop_assert_eq!(again.status, 200, "a repeated cloud event: {}", again.text);
                prop_assert_eq!(&again.body["recorded"], &json!("before"), "a repeated cloud event was recorded again");
            }
            let changed = events_after(s, &cursor).await;
            prop_assert!(changed.is_empty(), "a repeated cloud event changed something: {:?}", changed);
            Ok(())
        }
    });
}

// --- the coworking platform ---------------------------------------------------------------

/// A URL that is not on the space at `space` (`http://127.0.0.1:<port>`).
#[derive(Debug, Clone)]
enum Foreign {
    Host(String),
    Port(u16),
    Scheme(&'static str),
    /// The space as user info of another host.
    UserInfo(String),
    /// The space's URL in the path or query of another host's.
    Inside(String, bool),
    /// No scheme, or only a path.
    Relative(bool),
}

fn foreign() -> impl Strategy<Value = Foreign> {
    let host = prop_oneof![
        "[a-z]{1,12}\\.example",
        Just("localhost".to_owned()),
        Just("169.254.169.254".to_owned()),
        Just("127.0.0.2".to_owned()),
        Just("[::1]".to_owned()),
    ];
    prop_oneof![
        host.clone().prop_map(Foreign::Host),
        (1u16..1000).prop_map(Foreign::Port),
        prop_oneof![Just("https"), Just("ftp"), Just("file"), Just("gopher")].prop_map(Foreign::Scheme),
        host.clone().prop_map(Foreign::UserInfo),
        (host, any::<bool>()).prop_map(|(h, q)| Foreign::Inside(h, q)),
        any::<bool>().prop_map(Foreign::Relative),
    ]
}

fn foreign_url(space: &str, path: &str, f: &Foreign) -> String {
    let hostport = space.trim_start_matches("http://");
    let (host, port) = hostport.rsplit_once(':').expect("host:port");
    let port: u16 = port.parse().expect("port");
    match f {
        Foreign::Host(h) => format!("http://{h}:{port}{path}"),
        Foreign::Port(d) => format!("http://{host}:{}{path}", port.wrapping_add(*d).max(1)),
        Foreign::Scheme(scheme) => format!("{scheme}://{hostport}{path}"),
        Foreign::UserInfo(h) => format!("http://{hostport}@{h}{path}"),
        Foreign::Inside(h, false) => format!("http://{h}/{hostport}{path}"),
        Foreign::Inside(h, true) => format!("http://{h}{path}?next={space}{path}"),
        Foreign::Relative(false) => format!("//{h}{path}", h = "evil.example"),
        Foreign::Relative(true) => path.to_owned(),
    }
}

/// Unauthenticated deliveries are taken only for URLs on the configured space: any other
/// is refused before it is stored, and changes nothing.
async fn platform_deliveries_only_name_the_space(b: Backend) {
    let db = Database::new(b);
    let space = crate::doors::dead_url();
    let s = Server::start_with(
        &db,
        &[
            ("LINTEL_COBOT_BASE_URL", &space),
            ("LINTEL_COBOT_TOKEN", "cobot-oauth-token"),
            ("LINTEL_PUBLIC_URL", "https://doors.example.org"),
        ],
    );
    let inbox = || async { s.get("/api/v1/inbox?limit=1000").await.1["items"].as_array().map_or(0, Vec::len) };
    let strategy = (foreign(), "/api/memberships/[0-9]{1,4}");
    property("platform deliveries", strategy, |(f, path)| {
        let (s, space, inbox) = (&s, &space, &inbox);
        async move {
            let url = foreign_url(space, &path, &f);
            let cursor = newest_event(s).await;
            let stored = inbox().await;
            let delivery =
                send(s.client.post(format!("{}/hooks/cobot/confirmed_membership", s.base)).json(&json!({"url": url})))
                    .await;
            prop_assert_eq!(delivery.status, 422, "{:?}: {} was taken: {}", f, url, delivery.text);
            prop_assert_eq!(inbox().await, stored, "{} was stored", url);
            prop_assert!(events_after(s, &cursor).await.is_empty(), "{} changed something", url);
            Ok(())
        }
    });
    // A URL on the space is taken (so the refusals were the URLs').
    let (status, answer) =
        s.post("/hooks/cobot/confirmed_membership", json!({"url": format!("{space}/api/memberships/1")})).await;
    assert_eq!(status, 202, "{answer}");
}

// --- signed operations -------------------------------------------------------------------

fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn jws(header: &Value, claims: &Value, key: &SigningKey) -> String {
    let message = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
    format!("{message}.{}", b64url(&key.sign(message.as_bytes()).to_bytes()))
}

fn new_key() -> SigningKey {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("randomness");
    SigningKey::from_bytes(&seed)
}

/// A person with a personal secret and a registered key; returns the chain lintel gave.
async fn user_with_key(s: &Server, id: &str, key: &SigningKey) -> Value {
    s.ok("/api/v1/people", json!({"id": id, "name": id}), 201).await;
    let secret = s.ok(&format!("/api/v1/people/{id}/credentials"), json!({"kind": "secret"}), 201).await["secret"]
        .as_str()
        .expect("a secret")
        .to_owned();
    let public = STANDARD.encode(key.verifying_key().as_bytes());
    let registered = send(
        s.client.post(format!("{}/api/v1/keys", s.base)).bearer_auth(&secret).json(&json!({"public_key": public})),
    )
    .await;
    assert_eq!(registered.status, 201, "{}", registered.text);
    registered.body["certificate_chain"].clone()
}

/// A way to forge an operation from a genuine one.
#[derive(Debug, Clone)]
enum JwsForgery {
    /// One character of one of the three parts replaced by another base64url character.
    Char(usize, Index, Index),
    Truncated(Index),
    Extended(String),
    /// `=` padding on one part.
    Padded(usize),
    /// The same bytes spelled another way: a part's last character with its unused low
    /// bits changed (base64url's own re-casing).
    NonCanonical(usize, u8),
    /// Signed by a key nobody registered, with the signer's chain.
    StrangerKey,
    /// Signed by another user's registered key, with that user's chain, as the signer.
    OtherUser,
    /// The signer's key, another user's chain.
    OtherChain,
    AlgNone,
    Alg(&'static str),
    /// Correctly signed, expired this many seconds ago.
    Expired(i64),
    /// Correctly signed, valid only this many seconds from now.
    NotYetValid(i64),
    /// Correctly signed, issued this many seconds in the future.
    IssuedLater(i64),
    /// Correctly signed, valid for longer than an unlock may be.
    LongWindow(i64),
    ExtraClaim(String),
    NoChain,
}

fn jws_forgery() -> impl Strategy<Value = JwsForgery> {
    prop_oneof![
        (0usize..3, any::<Index>(), any::<Index>()).prop_map(|(p, i, c)| JwsForgery::Char(p, i, c)),
        any::<Index>().prop_map(JwsForgery::Truncated),
        "[A-Za-z0-9_.=-]{1,8}".prop_map(JwsForgery::Extended),
        (0usize..3).prop_map(JwsForgery::Padded),
        (0usize..3, 1u8..16).prop_map(|(p, k)| JwsForgery::NonCanonical(p, k)),
        Just(JwsForgery::StrangerKey),
        Just(JwsForgery::OtherUser),
        Just(JwsForgery::OtherChain),
        Just(JwsForgery::AlgNone),
        prop_oneof![Just("HS256"), Just("RS256"), Just("ES256"), Just("eddsa"), Just("Ed25519")]
            .prop_map(JwsForgery::Alg),
        // Well past the 30 s of clock skew allowed, so that a second passing changes nothing.
        (40i64..200_000).prop_map(JwsForgery::Expired),
        (40i64..200_000).prop_map(JwsForgery::NotYetValid),
        (40i64..200_000).prop_map(JwsForgery::IssuedLater),
        (61i64..200_000).prop_map(JwsForgery::LongWindow),
        "[a-z]{1,8}"
            .prop_filter("not a claim of the operation", |c| {
                !["iss", "sub", "iat", "nbf", "exp", "jti", "operation"].contains(&c.as_str())
            })
            .prop_map(JwsForgery::ExtraClaim),
        Just(JwsForgery::NoChain),
    ]
}

const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

struct Signers {
    alice: SigningKey,
    alice_chain: Value,
    bob: SigningKey,
    bob_chain: Value,
    stranger: SigningKey,
}

fn unlock_claims(jti: &str) -> Value {
    let t = chrono::Utc::now().timestamp();
    json!({"iss": "alice", "sub": "front", "iat": t, "nbf": t, "exp": t + 30, "jti": jti, "operation": {"type": "unlock"}})
}

fn forge_jws(k: &Signers, jti: &str, forgery: &JwsForgery) -> String {
    let header = |chain: &Value| json!({"alg": "EdDSA", "typ": "JWT", "x5c": chain});
    let claims = unlock_claims(jti);
    let genuine = jws(&header(&k.alice_chain), &claims, &k.alice);
    let t = chrono::Utc::now().timestamp();
    let with = |change: &dyn Fn(&mut Value)| {
        let mut c = claims.clone();
        change(&mut c);
        jws(&header(&k.alice_chain), &c, &k.alice)
    };
    match forgery {
        JwsForgery::Char(part, i, c) => {
            let mut parts: Vec<String> = genuine.split('.').map(str::to_owned).collect();
            let bytes = parts[*part].as_bytes().to_vec();
            let at = i.index(bytes.len());
            let mut replacement = B64URL[c.index(B64URL.len())];
            if replacement == bytes[at] {
                replacement = if replacement == b'A' { b'B' } else { b'A' };
            }
            let mut changed = bytes;
            changed[at] = replacement;
            parts[*part] = String::from_utf8(changed).expect("ASCII");
            parts.join(".")
        }
        JwsForgery::Truncated(i) => genuine[..i.index(genuine.len())].to_owned(),
        JwsForgery::Extended(more) => format!("{genuine}{more}"),
        JwsForgery::Padded(part) => {
            let mut parts: Vec<String> = genuine.split('.').map(str::to_owned).collect();
            parts[*part].push('=');
            parts.join(".")
        }
        JwsForgery::NonCanonical(part, k) => {
            let mut parts: Vec<String> = genuine.split('.').map(str::to_owned).collect();
            let unused = |len: usize| match len % 4 {
                2 => 4,
                3 => 2,
                _ => 0,
            };
            // A part without spare bits: the signature (86 characters) always has four.
            let part = if unused(parts[*part].len()) == 0 { 2 } else { *part };
            let bits = unused(parts[part].len());
            let last = parts[part].pop().expect("a part");
            let value = B64URL.iter().position(|c| *c == last as u8).expect("base64url") as u8;
            let spelled = value ^ (1 + (k - 1) % ((1 << bits) - 1));
            parts[part].push(B64URL[usize::from(spelled)] as char);
            parts.join(".")
        }
        JwsForgery::StrangerKey => jws(&header(&k.alice_chain), &claims, &k.stranger),
        JwsForgery::OtherUser => jws(&header(&k.bob_chain), &claims, &k.bob),
        JwsForgery::OtherChain => jws(&header(&k.bob_chain), &claims, &k.alice),
        JwsForgery::AlgNone => {
            let h = json!({"alg": "none", "typ": "JWT", "x5c": k.alice_chain});
            format!("{}.{}.", b64url(h.to_string().as_bytes()), b64url(claims.to_string().as_bytes()))
        }
        JwsForgery::Alg(alg) => jws(&json!({"alg": alg, "typ": "JWT", "x5c": k.alice_chain}), &claims, &k.alice),
        JwsForgery::Expired(ago) => with(&|c| {
            c["iat"] = json!(t - ago - 30);
            c["nbf"] = json!(t - ago - 30);
            c["exp"] = json!(t - ago);
        }),
        JwsForgery::NotYetValid(ahead) => with(&|c| {
            c["nbf"] = json!(t + ahead);
            c["exp"] = json!(t + ahead + 30);
        }),
        JwsForgery::IssuedLater(ahead) => with(&|c| c["iat"] = json!(t + ahead)),
        JwsForgery::LongWindow(window) => with(&|c| c["exp"] = json!(t + window)),
        JwsForgery::ExtraClaim(name) => with(&|c| c[name.as_str()] = json!("restricts nothing")),
        JwsForgery::NoChain => jws(&json!({"alg": "EdDSA", "typ": "JWT"}), &claims, &k.alice),
    }
}

/// A way to submit a genuine operation again.
#[derive(Debug, Clone)]
enum JwsReplay {
    Same,
    /// As `{"jws": ...}` instead of `application/jose`.
    AsJson,
    /// With white space around it.
    Padded,
    /// The same jti, signed again with a later expiry.
    Resigned,
}

fn jws_replay() -> impl Strategy<Value = JwsReplay> {
    prop_oneof![Just(JwsReplay::Same), Just(JwsReplay::AsJson), Just(JwsReplay::Padded), Just(JwsReplay::Resigned)]
}

async fn submit(s: &Server, token: &str, as_json: bool) -> Answer {
    let request = s.client.post(format!("{}/api/v1/operations", s.base));
    let request = if as_json {
        request.json(&json!({"jws": token}))
    } else {
        request.header("content-type", "application/jose").body(token.to_owned())
    };
    send(request).await
}

/// Operations are posted without any Authorization: only a signature by a registered key
/// of a user certified by lintel, in its window, never seen before, opens the door.
async fn operations_are_never_forged_or_replayed(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    let relay = FakeDevice::shelly_gen2().await;
    create_door(&s, "front", json!({"kind": "shelly", "url": relay.url}), 3).await;
    let (alice, bob) = (new_key(), new_key());
    let signers = Signers {
        alice_chain: user_with_key(&s, "alice", &alice).await,
        alice,
        bob_chain: user_with_key(&s, "bob", &bob).await,
        bob,
        stranger: new_key(),
    };
    s.ok("/api/v1/grants", json!({"person_id": "alice", "doors": ["front"]}), 201).await;
    let world = crate::signed::state(&s).await;
    let strategy = (prop::collection::vec(jws_forgery(), 1..6), prop::collection::vec(jws_replay(), 1..4));
    property("signed operations", strategy, |(forgeries, replays)| {
        let (s, relay, k, world) = (&s, &relay, &signers, &world);
        async move {
            let jti = format!("prop-{}", unique());
            let cursor = newest_event(s).await;
            let drives = relay.seen().len();
            for forgery in &forgeries {
                let answer = submit(s, &forge_jws(k, &jti, forgery), false).await;
                prop_assert!(
                    (400..500).contains(&answer.status),
                    "{:?} was not refused: {} {}",
                    forgery,
                    answer.status,
                    answer.text
                );
            }
            let effects: Vec<Value> =
                events_after(s, &cursor).await.into_iter().filter(crate::signed::is_effect).collect();
            prop_assert!(effects.is_empty(), "forged operations had effects: {:?}", effects);
            prop_assert_eq!(relay.seen().len(), drives, "a forged operation drove the door");
            prop_assert_eq!(&crate::signed::state(s).await, world, "a forged operation changed grants or lock admins");

            let genuine =
                jws(&json!({"alg": "EdDSA", "typ": "JWT", "x5c": k.alice_chain}), &unlock_claims(&jti), &k.alice);
            let opened = submit(s, &genuine, false).await;
            prop_assert_eq!(opened.status, 200, "the genuine operation was refused: {}", opened.text);
            prop_assert_eq!(relay.seen().len(), drives + 1, "the genuine operation did not drive the door once");
            let cursor = newest_event(s).await;
            for replay in &replays {
                let answer = match replay {
                    JwsReplay::Same => submit(s, &genuine, false).await,
                    JwsReplay::AsJson => submit(s, &genuine, true).await,
                    JwsReplay::Padded => submit(s, &format!("\n {genuine} \n"), false).await,
                    JwsReplay::Resigned => {
                        let mut claims = unlock_claims(&jti);
                        claims["exp"] = json!(claims["exp"].as_i64().unwrap_or_default() + 10);
                        let header = json!({"alg": "EdDSA", "typ": "JWT", "x5c": k.alice_chain});
                        submit(s, &jws(&header, &claims, &k.alice), false).await
                    }
                };
                prop_assert_eq!(answer.status, 403, "{:?} was taken again: {}", replay, answer.text);
                prop_assert_eq!(&answer.body["reason"], &json!("replayed"), "{:?}: {}", replay, answer.text);
            }
            let effects: Vec<Value> =
                events_after(s, &cursor).await.into_iter().filter(crate::signed::is_effect).collect();
            prop_assert!(effects.is_empty(), "replayed operations had effects: {:?}", effects);
            prop_assert_eq!(relay.seen().len(), drives + 1, "a replayed operation drove the door");
            Ok(())
        }
    });
}

crate::on_both_backends!(
    slack_requests_are_never_forged_or_replayed,
    tokens_are_never_forged_and_cloud_events_count_once,
    platform_deliveries_only_name_the_space,
    operations_are_never_forged_or_replayed,
);
