//! The Slack app against a fake Slack Web API on loopback: slash commands hand out
//! personal secrets, leaving the workspace revokes them, and every request's signature,
//! age and freshness is checked (signed by our code and by Slack's own Python SDK).

use std::process::Command;

use axum::extract::Query;
use axum::routing::get;
use serde_json::{Value, json};

use crate::harness::{Backend, Database, Server};

pub const SECRET: &str = "slack-signing-secret-for-tests-0123456789";

/// What the fake's response URLs (`/respond/{id}`) received, by id.
static RESPONSES: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<String, Value>>> =
    std::sync::LazyLock::new(Default::default);

/// A fake Slack Web API: `users.info` for three users (a member, a guest, a bot).
async fn fake_slack() -> String {
    async fn users_info(Query(q): Query<std::collections::HashMap<String, String>>) -> axum::Json<Value> {
        let user = |id: &str, extra: Value| {
            let mut u = json!({"id": id, "name": id.to_lowercase(), "real_name": format!("User {id}"), "profile": {"email": format!("{}@example.org", id.to_lowercase())}});
            u.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            u
        };
        let body = match q.get("user").map(String::as_str) {
            Some("U1") => json!({"ok": true, "user": user("U1", json!({}))}),
            Some("U7") => {
                // Slower than the 3 seconds Slack gives a slash command.
                tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
                json!({"ok": true, "user": user("U7", json!({}))})
            }
            Some("U2") => json!({"ok": true, "user": user("U2", json!({"is_restricted": true}))}),
            Some("U3") => json!({"ok": true, "user": user("U3", json!({"is_bot": true}))}),
            _ => json!({"ok": false, "error": "user_not_found"}),
        };
        axum::Json(body)
    }
    // Two pages; U1 is not in the workspace any more, U5 left (deleted).
    async fn users_list(Query(q): Query<std::collections::HashMap<String, String>>) -> axum::Json<Value> {
        let body = match q.get("cursor").map(String::as_str) {
            None | Some("") => {
                json!({"ok": true, "members": [{"id": "U2", "is_restricted": true}, {"id": "U3", "is_bot": true}],
                                      "response_metadata": {"next_cursor": "page2"}})
            }
            Some("page2") => json!({"ok": true, "members": [{"id": "U4"}, {"id": "U5", "deleted": true}],
                                    "response_metadata": {"next_cursor": ""}}),
            Some(_) => json!({"ok": false, "error": "invalid_cursor"}),
        };
        axum::Json(body)
    }
    async fn respond(axum::extract::Path(id): axum::extract::Path<String>, axum::Json(body): axum::Json<Value>) {
        RESPONSES.lock().unwrap().insert(id, body);
    }
    let app = axum::Router::new()
        .route("/users.info", get(users_info))
        .route("/users.list", get(users_list))
        .route("/respond/{id}", axum::routing::post(respond));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

pub fn now() -> String {
    chrono::Utc::now().timestamp().to_string()
}

pub async fn post_signed(
    s: &Server,
    path: &str,
    body: &str,
    ts: &str,
    signature: &str,
    content_type: &str,
) -> (u16, Value) {
    let resp = s
        .client
        .post(format!("{}{path}", s.base))
        .header("content-type", content_type)
        .header("x-slack-request-timestamp", ts)
        .header("x-slack-signature", signature)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn command(s: &Server, user: &str, name: &str) -> (u16, Value) {
    command_answering_at(s, user, name, "http://127.0.0.1/r").await
}

async fn command_answering_at(s: &Server, user: &str, name: &str, response_url: &str) -> (u16, Value) {
    // Every real request carries its own trigger id, so no two are byte-for-byte equal.
    static TRIGGER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let trigger = TRIGGER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let body = serde_urlencoded::to_string([
        ("command", name),
        ("text", ""),
        ("user_id", user),
        ("user_name", "x"),
        ("team_id", "T1"),
        ("trigger_id", &trigger.to_string()),
        ("response_url", response_url),
    ])
    .unwrap();
    let ts = now();
    let sig = lintel_connectors::slack::sign(SECRET, &ts, body.as_bytes());
    post_signed(s, "/hooks/slack/commands", &body, &ts, &sig, "application/x-www-form-urlencoded").await
}

fn secret_in(answer: &Value) -> String {
    let text = answer["text"].as_str().unwrap_or_default();
    let start = text.find("lsk_").unwrap_or_else(|| panic!("no secret in {answer}"));
    text[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').collect()
}

async fn open(s: &Server, secret: &str) -> u16 {
    s.client.post(format!("{}/open/front", s.base)).bearer_auth(secret).send().await.unwrap().status().as_u16()
}

async fn slack_server(b: Backend) -> (Database, Server) {
    let (db, s, _) = slack_server_and_fake(b).await;
    (db, s)
}

async fn slack_server_and_fake(b: Backend) -> (Database, Server, String) {
    let db = Database::new(b);
    let api = fake_slack().await;
    let s = Server::start_with(
        &db,
        &[
            ("LINTEL_SLACK_SIGNING_SECRET", SECRET),
            ("LINTEL_SLACK_BOT_TOKEN", "xoxb-test"),
            ("LINTEL_SLACK_API_BASE_URL", &api),
            ("LINTEL_SLACK_GROUP", "members"),
            ("LINTEL_PUBLIC_URL", "https://doors.example.org/"),
        ],
    );
    s.ok("/api/v1/doors", json!({"id": "front", "name": "Front"}), 201).await;
    s.ok("/api/v1/groups", json!({"id": "members", "name": "Members", "doors": ["front"]}), 201).await;
    s.ok("/api/v1/grants", json!({"group_id": "members"}), 201).await;
    (db, s, api)
}

/// A look-up slower than Slack's 3 seconds: "one moment" at once, then the secret through
/// the response_url (and only a response_url of Slack's).
async fn slow_lookups_answer_through_the_response_url(b: Backend) {
    let (_db, s, api) = slack_server_and_fake(b).await;
    // One key per test run: the SQLite and PostgreSQL runs share this process.
    static RUN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let id = format!("slow-{}", RUN.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
    let (status, first) = command_answering_at(&s, "U7", "/door-secret", &format!("{api}/respond/{id}")).await;
    assert_eq!(status, 200, "{first}");
    assert!(first["text"].as_str().unwrap().contains("One moment"), "{first}");
    assert!(!first["text"].as_str().unwrap().contains("lsk_"));
    let mut later = None;
    for _ in 0..200 {
        later = RESPONSES.lock().unwrap().remove(&id);
        if later.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let later = later.expect("the answer arrived through the response_url");
    assert_eq!(later["response_type"], "ephemeral");
    assert_eq!(open(&s, &secret_in(&later)).await, 200, "the secret delivered later works");
}

async fn door_secrets_from_slash_commands(b: Backend) {
    let (_db, s) = slack_server(b).await;
    let (status, first) = command(&s, "U1", "/door-secret").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["response_type"], "ephemeral", "only the caller sees the secret");
    let secret = secret_in(&first);
    assert_eq!(secret.len(), 4 + 43, "256 bits");
    let hint = first["text"].as_str().unwrap_or_default();
    assert!(hint.contains("https://doors.example.org/open/<door>"), "the hint names lintel's public URL: {hint}");
    assert_eq!(open(&s, &secret).await, 200);
    let person = s.get("/api/v1/people/slack-U1").await.1;
    assert_eq!(person["external_ids"]["slack"], "U1");
    assert_eq!(person["groups"], json!(["members"]));

    let (_, again) = command(&s, "U1", "/door-secret").await;
    assert!(again["text"].as_str().unwrap().contains("already have"), "{again}");
    assert!(!again["text"].as_str().unwrap().contains("lsk_"), "a secret is shown only once");

    let (_, regenerated) = command(&s, "U1", "/regenerate-door-secret").await;
    let new_secret = secret_in(&regenerated);
    assert_ne!(new_secret, secret);
    assert_eq!(open(&s, &secret).await, 403, "the old secret stops at once");
    assert_eq!(open(&s, &new_secret).await, 200);

    for (user, why) in [("U2", "Guests"), ("U3", "members of this workspace"), ("U9", "could not look you up")] {
        let (status, refused) = command(&s, user, "/door-secret").await;
        assert_eq!(status, 200);
        assert!(refused["text"].as_str().unwrap().contains(why), "{user}: {refused}");
        assert!(!refused["text"].as_str().unwrap().contains("lsk_"));
    }
    assert_eq!(s.get("/api/v1/people?q=slack-U2").await.1["items"], json!([]), "refused users are not created");
}

async fn leaving_the_workspace_revokes_everything(b: Backend) {
    let (_db, s) = slack_server(b).await;
    let secret = secret_in(&command(&s, "U1", "/door-secret").await.1);
    s.ok("/api/v1/people/slack-U1/credentials", json!({"kind": "card", "uid": "51AC0001"}), 201).await;
    let ts = now();
    let challenge =
        r#"{"type":"url_verification","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","token":"x"}"#;
    let sig = lintel_connectors::slack::sign(SECRET, &ts, challenge.as_bytes());
    let (status, answer) = post_signed(&s, "/hooks/slack/events", challenge, &ts, &sig, "application/json").await;
    assert_eq!((status, &answer["challenge"]), (200, &json!("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P")));

    // A key registered with the secret: a signed unlock opens the door while U1 is here.
    let [key]: [crate::signed::Key; 1] = crate::signed::keygen(1).try_into().unwrap();
    let registered = crate::signed::register(&s, &secret, &key).await;
    assert_eq!(registered.status, 201, "{}", registered.text);
    let x5c = registered.body["certificate_chain"].clone();
    let sign = || {
        crate::signed::tokens(vec![crate::signed::eddsa(&key, &x5c, crate::signed::unlock("slack-U1", "front"))])
            .remove(0)
    };
    assert_eq!(crate::signed::post_op(&s, &sign()).await.status, 200, "a signed unlock before leaving");

    let left =
        r#"{"type":"event_callback","team_id":"T1","event":{"type":"user_change","user":{"id":"U1","deleted":true}}}"#;
    let ts = now();
    let sig = lintel_connectors::slack::sign(SECRET, &ts, left.as_bytes());
    assert_eq!(post_signed(&s, "/hooks/slack/events", left, &ts, &sig, "application/json").await.0, 200);
    assert_eq!(open(&s, &secret).await, 403);
    assert_eq!(s.decide("front", json!({"kind": "card", "uid": "51AC0001"})).await["reason"], "credential_revoked");
    let events = s.events().await;
    let revoked: Vec<_> = events.iter().filter(|e| e["kind"] == "credential.revoked").collect();
    assert_eq!(revoked.len(), 2, "{events:?}");
    assert!(revoked.iter().all(|e| e["data"]["reason"] == "left the Slack workspace"));
    // The signed unlock is refused at once, not when the certificate expires.
    let refused = crate::signed::post_op(&s, &sign()).await;
    assert!(refused.status >= 400 && refused.status < 500, "a departed user's signed unlock: {}", refused.text);
    // Out of the workspace's group and, known from nowhere else, suspended.
    let person = s.get("/api/v1/people/slack-U1").await.1;
    assert_eq!((&person["groups"], &person["status"]), (&json!([]), &json!("suspended")), "{person}");
    // One event says what was taken.
    let events = s.events().await;
    let offboarded: Vec<_> = events.iter().filter(|e| e["kind"] == "person.offboarded").collect();
    assert_eq!(offboarded.len(), 1, "{events:?}");
    let data = &offboarded[0]["data"];
    assert_eq!((data["source"].as_str(), data["reason"].as_str()), (Some("slack"), Some("left the Slack workspace")));
    assert_eq!(data["credentials"].as_array().map(Vec::len), Some(2), "{data}");
    assert_eq!(data["keys"], json!([key_id(&registered.body)]), "{data}");
    assert_eq!((&data["groups"], &data["suspended"]), (&json!(["members"]), &json!(true)), "{data}");
}

fn key_id(registered: &Value) -> String {
    registered["id"].as_str().expect("key id").to_owned()
}

/// A user made a guest where guests are not allowed is offboarded like one who left.
async fn a_user_turned_guest_is_offboarded(b: Backend) {
    let (_db, s) = slack_server(b).await;
    let secret = secret_in(&command(&s, "U1", "/door-secret").await.1);
    assert_eq!(open(&s, &secret).await, 200);
    let guest = r#"{"type":"event_callback","team_id":"T1","event":{"type":"user_change","user":{"id":"U1","deleted":false,"is_restricted":true}}}"#;
    let ts = now();
    let sig = lintel_connectors::slack::sign(SECRET, &ts, guest.as_bytes());
    assert_eq!(post_signed(&s, "/hooks/slack/events", guest, &ts, &sig, "application/json").await.0, 200);
    assert_eq!(open(&s, &secret).await, 403);
    let events = s.events().await;
    let offboarded: Vec<_> = events.iter().filter(|e| e["kind"] == "person.offboarded").collect();
    assert_eq!(offboarded.len(), 1, "{events:?}");
    assert_eq!(offboarded[0]["data"]["reason"], "became a Slack guest");
}

async fn reconciliation_with_users_list_catches_missed_events(b: Backend) {
    let (_db, s) = slack_server(b).await;
    let secret = secret_in(&command(&s, "U1", "/door-secret").await.1);
    assert_eq!(open(&s, &secret).await, 200);
    // A person linked to a user who is still there keeps access.
    s.ok("/api/v1/people", json!({"id": "dee", "name": "Dee", "external_ids": {"slack": "U4"}}), 201).await;
    s.ok("/api/v1/people/dee/credentials", json!({"kind": "card", "uid": "0D0D0D0D"}), 201).await;
    s.put("/api/v1/groups/members/members/dee").await;
    let (status, report) = s.post("/api/v1/slack/reconcile", json!({})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report, json!({"members": 3, "departed": 1, "revoked": 1}), "U1 is gone from both pages");
    assert_eq!(open(&s, &secret).await, 403);
    assert_eq!(s.decide("front", json!({"kind": "card", "uid": "0D0D0D0D"})).await["reason"], "granted");
    // Running it again finds nothing more to do.
    assert_eq!(s.post("/api/v1/slack/reconcile", json!({})).await.1["revoked"], 0);
}

async fn forged_stale_replayed_and_malformed_requests_change_nothing(b: Backend) {
    let (_db, s) = slack_server(b).await;
    let before = s.events().await.len();
    let body = "command=%2Fdoor-secret&user_id=U1&text=";
    let ts = now();
    let good = lintel_connectors::slack::sign(SECRET, &ts, body.as_bytes());
    let form = "application/x-www-form-urlencoded";
    let old_ts = (chrono::Utc::now().timestamp() - 301).to_string();
    let old = lintel_connectors::slack::sign(SECRET, &old_ts, body.as_bytes());
    let cases = [
        ("wrong key", ts.clone(), lintel_connectors::slack::sign("not-the-secret", &ts, body.as_bytes())),
        ("empty signature", ts.clone(), "v0=".to_owned()),
        ("truncated", ts.clone(), good[..20].to_owned()),
        ("older than five minutes", old_ts, old),
        ("no timestamp", String::new(), good.clone()),
    ];
    for (what, ts, sig) in cases {
        let (status, problem) = post_signed(&s, "/hooks/slack/commands", body, &ts, &sig, form).await;
        assert_eq!(status, 401, "{what}: {problem}");
        assert_eq!(problem["status"], 401, "{what}: a problem document");
    }
    // Signed, but not a slash command: a 4xx, nothing created.
    let junk = "this is not a form";
    let sig = lintel_connectors::slack::sign(SECRET, &ts, junk.as_bytes());
    assert_eq!(post_signed(&s, "/hooks/slack/commands", junk, &ts, &sig, form).await.0, 400);
    let junk = "{not json";
    let sig = lintel_connectors::slack::sign(SECRET, &ts, junk.as_bytes());
    assert_eq!(post_signed(&s, "/hooks/slack/events", junk, &ts, &sig, "application/json").await.0, 400);
    assert_eq!(s.get("/api/v1/people/slack-U1").await.0, 404);
    assert_eq!(s.events().await.len(), before, "nothing was recorded");

    // The genuine request works once; the same request again is a replay.
    let (status, _) = post_signed(&s, "/hooks/slack/commands", body, &ts, &good, form).await;
    assert_eq!(status, 200);
    let (status, _) = post_signed(&s, "/hooks/slack/commands", body, &ts, &good, form).await;
    assert_eq!(status, 401, "replayed");
    // The same MAC spelled in other cases is the same request, not a new one.
    let hex = good.strip_prefix("v0=").unwrap();
    let first_letter = hex.find(|c: char| c.is_ascii_alphabetic()).expect("a MAC with a letter in it");
    let mut one_upper = hex.to_owned();
    one_upper[first_letter..=first_letter].make_ascii_uppercase();
    for recased in [format!("v0={}", hex.to_ascii_uppercase()), format!("v0={one_upper}"), format!("V0={hex}")] {
        let (status, problem) = post_signed(&s, "/hooks/slack/commands", body, &ts, &recased, form).await;
        assert_eq!(status, 401, "{recased} is the replayed request re-cased: {problem}");
    }
}

/// Slack's official Python SDK signs; lintel accepts. (Needs `pip install slack_sdk`.)
async fn requests_signed_by_slacks_own_sdk_are_accepted(b: Backend) {
    let (_db, s) = slack_server(b).await;
    let body = "command=%2Fdoor-secret&user_id=U1&text=&team_id=T1";
    let ts = now();
    let script = "import sys\nfrom slack_sdk.signature import SignatureVerifier\n\
                  print(SignatureVerifier(sys.argv[1]).generate_signature(timestamp=sys.argv[2], body=sys.argv[3]))";
    let out = Command::new("python3").args(["-c", script, SECRET, &ts, body]).output().expect("python3 runs");
    assert!(
        out.status.success(),
        "slack_sdk is needed for this test (pip install slack_sdk): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sig = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(sig, lintel_connectors::slack::sign(SECRET, &ts, body.as_bytes()), "both implementations agree");
    let (status, answer) =
        post_signed(&s, "/hooks/slack/commands", body, &ts, &sig, "application/x-www-form-urlencoded").await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["text"].as_str().unwrap().contains("lsk_"));
    // And the SDK's verifier accepts what our code signs.
    let ours = lintel_connectors::slack::sign(SECRET, &ts, body.as_bytes());
    let check = "import sys\nfrom slack_sdk.signature import SignatureVerifier\n\
                 v = SignatureVerifier(sys.argv[1])\nsys.exit(0 if v.is_valid(body=sys.argv[3], timestamp=sys.argv[2], signature=sys.argv[4]) else 1)";
    let ok = Command::new("python3").args(["-c", check, SECRET, &ts, body, &ours]).status().unwrap();
    assert!(ok.success(), "slack_sdk's verifier accepts lintel's signature");
}

crate::on_both_backends!(
    a_user_turned_guest_is_offboarded,
    door_secrets_from_slash_commands,
    slow_lookups_answer_through_the_response_url,
    leaving_the_workspace_revokes_everything,
    reconciliation_with_users_list_catches_missed_events,
    forged_stale_replayed_and_malformed_requests_change_nothing,
    requests_signed_by_slacks_own_sdk_are_accepted,
);
