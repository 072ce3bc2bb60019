//! The makerspace CRM against a fake of it on loopback: an OAuth2 token endpoint (password
//! grant, short-lived tokens, counted), people with memberships, checkoffs and revocation
//! codes, photos, and switches that revoke the tokens, take it down or make it slow. Cards
//! carry the CRM id; lintel looks the member up when a card is new or its data stale,
//! decides on what it has when the CRM fails, and issues cards from the CLI and the API.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::harness::{ADMIN, Backend, Database, Server, lintel};

const USERNAME: &str = "lintel@space.example";
/// Spaces, `&` and `=` must survive the form encoding.
const PASSWORD: &str = "s3cret & pass=word";
/// A JPEG as far as anyone checks: its magic number, then anything.
const JPEG: &[u8] = b"\xFF\xD8\xFF\xE0\x00\x10JFIF\x00ann's face";

/// The CRM's state, as the fake keeps it.
#[derive(Default)]
struct Crm {
    persons: HashMap<String, Value>,
    /// Ids the CRM answers about the older way: `200` with an error object.
    legacy_missing: HashSet<String>,
    photos: HashMap<String, Vec<u8>>,
    /// Lifetime of the tokens it issues, in seconds.
    expires_in: u64,
    /// Issued token -> until when it is valid.
    tokens: HashMap<String, Instant>,
    token_requests: u32,
    person_requests: u32,
    /// Requests refused with 401 because their token was unknown (revoked) or expired.
    refused: u32,
    refused_expired: u32,
    /// Everything answers 503.
    down: bool,
    /// People are answered after 5 s.
    slow: bool,
}

type Shared = Arc<Mutex<Crm>>;

pub struct FakeCrm {
    pub url: String,
    state: Shared,
}

impl FakeCrm {
    fn with<R>(&self, f: impl FnOnce(&mut Crm) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    fn person_requests(&self) -> u32 {
        self.with(|c| c.person_requests)
    }

    fn token_requests(&self) -> u32 {
        self.with(|c| c.token_requests)
    }

    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LINTEL_CRM_BASE_URL", format!("{}/api", self.url)),
            ("LINTEL_CRM_TOKEN_URL", format!("{}/oauth/token", self.url)),
            ("LINTEL_CRM_USERNAME", USERNAME.to_owned()),
            ("LINTEL_CRM_PASSWORD", PASSWORD.to_owned()),
            ("LINTEL_CRM_MEMBERSHIP", "Maker".to_owned()),
            ("LINTEL_CRM_GROUP", "makers".to_owned()),
        ]
    }
}

/// Whether a request carries a valid token (counting the refusals).
fn authorized(c: &mut Crm, headers: &HeaderMap) -> bool {
    let token = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match token.and_then(|t| c.tokens.get(t)) {
        Some(until) if Instant::now() < *until => true,
        Some(_) => {
            c.refused += 1;
            c.refused_expired += 1;
            false
        }
        None => {
            c.refused += 1;
            false
        }
    }
}

fn unauthorized() -> Response {
    (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_token"}))).into_response()
}

pub async fn fake_crm() -> FakeCrm {
    async fn token(State(c): State<Shared>, Form(form): Form<HashMap<String, String>>) -> Response {
        let mut c = c.lock().unwrap();
        c.token_requests += 1;
        if c.down {
            return (StatusCode::SERVICE_UNAVAILABLE, "maintenance").into_response();
        }
        let field = |k: &str| form.get(k).map(String::as_str);
        if field("grant_type") != Some("password") || field("username") != Some(USERNAME) {
            return (StatusCode::BAD_REQUEST, Json(json!({"error": "unsupported_grant_type"}))).into_response();
        }
        if field("password") != Some(PASSWORD) {
            return (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_grant"}))).into_response();
        }
        let token = format!("tok-{}", c.token_requests);
        let lifetime = c.expires_in;
        c.tokens.insert(token.clone(), Instant::now() + Duration::from_secs(lifetime));
        Json(json!({"access_token": token, "token_type": "bearer", "expires_in": lifetime})).into_response()
    }
    async fn person(State(c): State<Shared>, Path(id): Path<String>, headers: HeaderMap) -> Response {
        let slow = {
            let mut c = c.lock().unwrap();
            c.person_requests += 1;
            c.slow
        };
        if slow {
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        let mut c = c.lock().unwrap();
        if c.down {
            return (StatusCode::SERVICE_UNAVAILABLE, "maintenance").into_response();
        }
        if !authorized(&mut c, &headers) {
            return unauthorized();
        }
        if c.legacy_missing.contains(&id) {
            return Json(json!({"error": "Person not found"})).into_response();
        }
        match c.persons.get(&id) {
            Some(p) => Json(p.clone()).into_response(),
            None => (StatusCode::NOT_FOUND, Json(json!({"error": "not found"}))).into_response(),
        }
    }
    async fn photo(State(c): State<Shared>, Path(id): Path<String>, headers: HeaderMap) -> Response {
        let mut c = c.lock().unwrap();
        if !authorized(&mut c, &headers) {
            return unauthorized();
        }
        match c.photos.get(&id) {
            Some(jpeg) => ([(header::CONTENT_TYPE, "image/jpeg")], jpeg.clone()).into_response(),
            None => (StatusCode::NOT_FOUND, Json(json!({"error": "no photo"}))).into_response(),
        }
    }
    let state: Shared = Arc::new(Mutex::new(Crm { expires_in: 3600, ..Default::default() }));
    let app = Router::new()
        .route("/oauth/token", post(token))
        .route("/api/persons/{id}", get(person))
        .route("/api/persons/{id}/photo", get(photo))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let crm = FakeCrm { url, state };
    seed(&crm);
    crm
}

/// Ann (a Maker with the laser checkoff, code R1, a photo); Bob (a Visitor only: not in
/// good standing, a numeric code); Cy (in the lower camelCase spelling); Dee (member
/// 12345, whose card UID needs a leading 0); 888888 answered the older 200-with-error way.
fn seed(crm: &FakeCrm) {
    crm.with(|c| {
        c.persons.insert("1001".into(), ann("R1", &["laser"], true));
        c.persons.insert(
            "1002".into(),
            json!({"Id": 1002, "FirstName": "Bob", "LastName": "Visitor", "Email": "bob@example.org",
                   "ExternalId": 2, "Memberships": [{"Id": 9, "Name": "Visitor"}], "Skills": []}),
        );
        c.persons.insert(
            "1003".into(),
            json!({"id": "1003", "firstName": "Cy", "lastName": "Borg", "email": "cy@example.org",
                   "externalId": "C3", "memberships": [{"id": 7, "name": "maker"}], "skills": ["bandsaw"]}),
        );
        c.persons.insert(
            "12345".into(),
            json!({"Id": 12345, "FirstName": "Dee", "LastName": "Five", "ExternalId": "R5",
                   "Memberships": [{"Id": 7, "Name": "Maker"}]}),
        );
        c.legacy_missing.insert("888888".into());
        c.photos.insert("1001".into(), JPEG.to_vec());
    });
}

fn ann(code: &str, skills: &[&str], maker: bool) -> Value {
    let memberships = if maker { json!([{"Id": 7, "Name": "Maker"}]) } else { json!([]) };
    let skills: Vec<Value> = skills.iter().map(|s| json!({"Name": s})).collect();
    json!({"Id": 1001, "FirstName": "Ann", "LastName": "Lovelace", "Email": "ann@example.org",
           "ExternalId": code, "Memberships": memberships, "Skills": skills})
}

struct Setup {
    db: Database,
    s: Server,
    crm: FakeCrm,
}

async fn setup(b: Backend, extra: &[(&'static str, &str)]) -> Setup {
    let db = Database::new(b);
    let crm = fake_crm().await;
    let mut env: Vec<(&str, String)> = crm.env();
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s = Server::start_with(&db, &env);
    s.ok("/api/v1/doors", json!({"id": "front", "name": "Front"}), 201).await;
    s.ok("/api/v1/doors", json!({"id": "laser", "name": "Laser cutter", "required_skill": "laser"}), 201).await;
    s.ok("/api/v1/groups", json!({"id": "makers", "name": "Makers", "doors": ["front", "laser"]}), 201).await;
    s.ok("/api/v1/grants", json!({"group_id": "makers"}), 201).await;
    Setup { db, s, crm }
}

fn card(uid: &str, code: &str) -> Value {
    json!({"kind": "card", "uid": uid, "revocation_code": code})
}

/// A recorded decision and its event.
async fn decide(s: &Server, door: &str, uid: &str, code: &str) -> (Value, Value) {
    let answer = s.decide(door, card(uid, code)).await;
    let id = answer["event_id"].clone();
    let event = s.events().await.into_iter().find(|e| e["id"] == id).unwrap_or_else(|| panic!("no event {id}"));
    (answer, event)
}

async fn reason(s: &Server, door: &str, uid: &str, code: &str) -> String {
    decide(s, door, uid, code).await.0["reason"].as_str().unwrap().to_owned()
}

async fn unknown_cards_are_looked_up_in_the_crm(b: Backend) {
    let Setup { db, s, crm } = setup(b, &[]).await;
    let (answer, event) = decide(&s, "front", "1001", "R1").await;
    assert_eq!((&answer["reason"], &answer["person_id"]), (&json!("granted"), &json!("crm-1001")), "{answer}");
    assert_eq!(event["data"]["crm"], "fetched", "{event}");
    assert_eq!(event.get("stale"), None);
    let ann = s.get("/api/v1/people/crm-1001").await.1;
    assert_eq!(
        (&ann["name"], &ann["email"], &ann["status"]),
        (&json!("Ann Lovelace"), &json!("ann@example.org"), &json!("active"))
    );
    assert_eq!((&ann["skills"], &ann["groups"]), (&json!(["laser"]), &json!(["makers"])), "{ann}");
    assert_eq!(ann["external_ids"], json!({"crm": "1001"}));
    let cards = s.get("/api/v1/people/crm-1001/credentials").await.1;
    let cards = cards.as_array().cloned().expect("a list");
    assert_eq!(cards.len(), 1, "{cards:?}");
    assert_eq!((&cards[0]["uid"], &cards[0]["revocation_code"]), (&json!("1001"), &json!("R1")));
    assert_eq!(crm.person_requests(), 1);

    // Known and fresh: decided on the index, the CRM is not asked.
    assert_eq!(reason(&s, "laser", "1001", "R1").await, "granted", "the laser checkoff is a skill");
    for _ in 0..3 {
        assert_eq!(reason(&s, "front", "1001", "R1").await, "granted");
    }
    assert_eq!(reason(&s, "front", "1001", "R0").await, "revoked_card", "an older card of hers");
    assert_eq!(crm.person_requests(), 1, "a known fresh card makes no CRM call");

    // The lower camelCase spelling; no laser checkoff.
    assert_eq!(reason(&s, "front", "1003", "C3").await, "granted");
    assert_eq!(reason(&s, "laser", "1003", "C3").await, "missing_skill");
    assert_eq!(s.get("/api/v1/people/crm-1003").await.1["skills"], json!(["bandsaw"]));
    // Not in good standing: a Visitor membership is not the configured one.
    assert_eq!(reason(&s, "front", "1002", "2").await, "person_suspended");
    assert_eq!(s.get("/api/v1/people/crm-1002").await.1["status"], "suspended");

    // Not found, both ways: a reason of its own, nobody created.
    for uid in ["777777", "888888"] {
        let before = crm.person_requests();
        let (answer, event) = decide(&s, "front", uid, "x").await;
        assert_eq!((&answer["reason"], &answer["person_id"]), (&json!("unknown_member"), &Value::Null), "{answer}");
        assert_eq!(crm.person_requests(), before + 1);
        assert_eq!((&event["reason"], &event["data"]["uid"]), (&json!("unknown_member"), &json!(uid)), "{event}");
        assert_eq!(event["data"]["crm"], "not_found");
        assert_eq!(s.get(&format!("/api/v1/people/crm-{uid}")).await.0, 404, "no person for {uid}");
    }
    // A factory serial carries no member id, and a dry run asks nobody.
    let before = crm.person_requests();
    assert_eq!(reason(&s, "front", "04A1B2C3", "x").await, "unknown_credential");
    let dry = s
        .ok("/api/v1/decisions", json!({"door": "front", "credential": card("012345", "R5"), "dry_run": true}), 200)
        .await;
    assert_eq!(dry["reason"], "unknown_credential", "{dry}");
    assert_eq!(crm.person_requests(), before);
    assert_eq!(crm.token_requests(), 1, "one token for all of it");

    // Ann's photo was fetched beside the database and is served to admins.
    let photo = |id: &str| s.client.get(format!("{}/api/v1/people/{id}/photo", s.base)).bearer_auth(ADMIN).send();
    let mut served = None;
    for _ in 0..50 {
        let answer = photo("crm-1001").await.unwrap();
        if answer.status() == 200 {
            served = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let served = served.expect("Ann's photo is served");
    assert_eq!(served.headers()["content-type"], "image/jpeg");
    assert_eq!(served.bytes().await.unwrap().as_ref(), JPEG);
    assert_eq!(std::fs::read(db.dir.join("photos").join("crm-1001.jpg")).unwrap(), JPEG);
    assert_eq!(photo("crm-1003").await.unwrap().status(), 404, "Cy has no photo");
    assert_eq!(photo("nobody").await.unwrap().status(), 404);
    let anonymous = s.client.get(format!("{}/api/v1/people/crm-1001/photo", s.base)).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
}

async fn stale_members_are_looked_up_again(b: Backend) {
    let Setup { db: _db, s, crm } = setup(b, &[("LINTEL_CRM_STALE_AFTER", "1")]).await;
    assert_eq!(reason(&s, "laser", "1001", "R1").await, "granted");
    // A new card for Ann (code R2), and she lost her laser checkoff.
    crm.with(|c| c.persons.insert("1001".into(), ann("R2", &[], true)));
    assert_eq!(reason(&s, "front", "1001", "R2").await, "revoked_card", "still fresh: not asked");
    assert_eq!(crm.person_requests(), 1);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (answer, event) = decide(&s, "front", "1001", "R2").await;
    assert_eq!(answer["reason"], "granted", "stale: looked up again, the new card replaced the old");
    assert_eq!((event["data"]["crm"].as_str(), crm.person_requests()), (Some("fetched"), 2));
    assert_eq!(reason(&s, "front", "1001", "R1").await, "revoked_card");
    assert_eq!(reason(&s, "laser", "1001", "R2").await, "missing_skill");
    let cards = s.get("/api/v1/people/crm-1001/credentials").await.1;
    let cards = cards.as_array().cloned().expect("a list");
    let summary: Vec<(Value, Value, Value)> =
        cards.iter().map(|c| (c["revocation_code"].clone(), c["status"].clone(), c["status_reason"].clone())).collect();
    assert_eq!(
        summary,
        vec![(json!("R1"), json!("revoked"), json!("replaced")), (json!("R2"), json!("active"), Value::Null)]
    );

    // Out of good standing, then gone from the CRM, then back.
    crm.with(|c| c.persons.insert("1001".into(), ann("R2", &[], false)));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(reason(&s, "front", "1001", "R2").await, "person_suspended");
    crm.with(|c| c.persons.remove("1001"));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (answer, _) = decide(&s, "front", "1001", "R2").await;
    assert_eq!((&answer["reason"], &answer["person_id"]), (&json!("unknown_member"), &json!("crm-1001")));
    assert_eq!(s.get("/api/v1/people/crm-1001").await.1["status"], "suspended");
    // Offboarded: the card is revoked, and one event says so.
    assert_eq!(reason(&s, "front", "1001", "R2").await, "credential_revoked", "fresh again: decided on the copy");
    let offboarded = s.all_events("kind=person.offboarded").await;
    assert_eq!((offboarded.len(), &offboarded[0]["data"]["source"]), (1, &json!("crm")), "{offboarded:?}");
    crm.with(|c| c.persons.insert("1001".into(), ann("R2", &["laser"], true)));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(reason(&s, "laser", "1001", "R2").await, "granted", "back in good standing");
}

async fn tokens_are_renewed_before_expiry_and_after_a_401(b: Backend) {
    let db = Database::new(b);
    let crm = fake_crm().await;
    crm.with(|c| c.expires_in = 2);
    let env: Vec<(&str, String)> = crm.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s = Server::start_with(&db, &env);
    let issue = || s.post("/api/v1/crm/cards", json!({"member": "1001"}));
    let (status, card) = issue().await;
    assert_eq!(status, 200, "{card}");
    assert_eq!(
        card,
        json!({"member": "1001", "uid": "1001", "revocation_code": "R1", "person_id": "crm-1001", "in_good_standing": true})
    );
    assert_eq!(crm.token_requests(), 1);
    assert_eq!(issue().await.0, 200);
    assert_eq!(crm.token_requests(), 1, "the token is kept");
    // Past half of its 2 s, before its end: renewed, and no expired token is ever sent.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(issue().await.0, 200);
    assert_eq!(crm.token_requests(), 2, "renewed before expiry");
    assert_eq!(crm.with(|c| (c.refused, c.refused_expired)), (0, 0));
    // The CRM revokes every token: one 401, a new token, the same request again.
    crm.with(|c| c.tokens.clear());
    let (status, card) = issue().await;
    assert_eq!((status, &card["uid"]), (200, &json!("1001")), "{card}");
    assert_eq!((crm.token_requests(), crm.with(|c| c.refused)), (3, 1));
}

async fn a_crm_outage_is_decided_on_cached_data(b: Backend) {
    let extra = [("LINTEL_CRM_STALE_AFTER", "1"), ("LINTEL_CRM_TIMEOUT_MS", "700")];
    let Setup { db: _db, s, crm } = setup(b, &extra).await;
    assert_eq!(reason(&s, "front", "1001", "R1").await, "granted");

    crm.with(|c| c.down = true);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (answer, event) = decide(&s, "front", "1001", "R1").await;
    assert_eq!(answer["reason"], "granted", "decided on the cached data");
    assert_eq!((&event["data"]["stale"], &event["data"]["crm"]), (&json!(true), &json!("failed")), "{event}");
    assert!(event["data"]["crm_error"].as_str().unwrap().contains("503"), "{event}");
    assert_eq!(crm.person_requests(), 2, "it was asked");
    let (answer, event) = decide(&s, "front", "1003", "C3").await;
    assert_eq!(answer["reason"], "unknown_credential", "nothing cached about Cy");
    assert_eq!(event["data"]["stale"], true, "{event}");
    assert_eq!(s.get("/api/v1/people/crm-1003").await.0, 404);

    // Slow instead of down: the door waits for the timeout only, then not at all.
    crm.with(|c| {
        c.down = false;
        c.slow = true;
    });
    let started = Instant::now();
    let (answer, event) = decide(&s, "front", "1001", "R1").await;
    assert!(started.elapsed() < Duration::from_millis(2500), "waited {:?}", started.elapsed());
    assert_eq!(answer["reason"], "granted");
    assert!(event["data"]["crm_error"].as_str().unwrap().contains("in time"), "{event}");
    let asked = crm.person_requests();
    let started = Instant::now();
    let (answer, event) = decide(&s, "front", "1001", "R1").await;
    assert!(started.elapsed() < Duration::from_millis(500), "waited {:?}", started.elapsed());
    assert_eq!((&answer["reason"], &event["data"]["stale"]), (&json!("granted"), &json!(true)));
    assert!(event["data"]["crm_error"].as_str().unwrap().contains("not asked again"), "{event}");
    assert_eq!(crm.person_requests(), asked, "paused after a timeout");

    // Back: an operator's lookup gets through (it does not honour the pause) and ends it.
    crm.with(|c| c.slow = false);
    assert_eq!(s.post("/api/v1/crm/cards", json!({"member": "1001"})).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (_, event) = decide(&s, "front", "1001", "R1").await;
    assert_eq!((event["data"]["crm"].as_str(), event["data"].get("stale")), (Some("fetched"), None), "{event}");
}

/// Cached good standing has an age limit: past `max_stale`, a CRM that is down no longer
/// vouches for the member (`crm_unavailable`); once it answers, the member is let in again.
async fn cached_standing_expires_at_max_stale(b: Backend) {
    let extra = [("LINTEL_CRM_STALE_AFTER", "1"), ("LINTEL_CRM_MAX_STALE", "3"), ("LINTEL_CRM_TIMEOUT_MS", "700")];
    let Setup { db: _db, s, crm } = setup(b, &extra).await;
    assert_eq!(reason(&s, "front", "1001", "R1").await, "granted");
    crm.with(|c| c.down = true);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(reason(&s, "front", "1001", "R1").await, "granted", "stale, within max_stale");
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let (answer, event) = decide(&s, "front", "1001", "R1").await;
    assert_eq!(
        (answer["allowed"].as_bool(), answer["reason"].as_str()),
        (Some(false), Some("crm_unavailable")),
        "{answer}"
    );
    assert_eq!((&event["data"]["stale"], &event["data"]["crm"]), (&json!(true), &json!("failed")), "{event}");
    // A denial stays what it was: a card that is not the current one.
    assert_eq!(reason(&s, "front", "1001", "R0").await, "revoked_card");
    crm.with(|c| c.down = false);
    assert_eq!(reason(&s, "front", "1001", "R1").await, "granted", "the CRM answers again");
}

async fn cards_are_issued_by_the_cli_and_the_api(b: Backend) {
    let Setup { db, s, crm } = setup(b, &[]).await;
    let (status, dee) = s.post("/api/v1/crm/cards", json!({"member": 12345})).await;
    assert_eq!(status, 200, "{dee}");
    assert_eq!(
        dee,
        json!({"member": "12345", "uid": "012345", "revocation_code": "R5", "person_id": "crm-12345", "in_good_standing": true})
    );
    let asked = crm.person_requests();
    let (answer, event) = decide(&s, "front", "012345", "R5").await;
    assert_eq!((&answer["reason"], &answer["person_id"]), (&json!("granted"), &json!("crm-12345")));
    assert_eq!((crm.person_requests(), event["data"].get("crm")), (asked, None), "issued just now: not asked");
    let (status, bob) = s.post("/api/v1/crm/cards", json!({"member": "1002"})).await;
    assert_eq!((status, &bob["revocation_code"], &bob["in_good_standing"]), (200, &json!("2"), &json!(false)));

    let (status, problem) = s.post("/api/v1/crm/cards", json!({"member": "777777"})).await;
    assert_eq!(status, 404, "{problem}");
    assert_eq!(problem["type"], "urn:lintel:problem:unknown-member");
    assert_eq!(s.get("/api/v1/people/crm-777777").await.0, 404);
    for body in [json!({"member": "12a"}), json!({"member": ""}), json!({"member": "1", "uid": "x"}), json!({})] {
        assert_eq!(s.post("/api/v1/crm/cards", body.clone()).await.0, 422, "{body}");
    }

    // The command line, on the same database: the running server sees the card at once
    // and, the member being fetched just now, does not ask the CRM again.
    let run = |member: &str| {
        let mut cmd = lintel();
        cmd.args(["card", "issue", "--member", member, "--database-url", &db.url]).current_dir(&db.dir);
        for (k, v) in crm.env() {
            cmd.env(k, v);
        }
        cmd.output().expect("lintel runs")
    };
    let out = tokio::task::block_in_place(|| run("1003"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(
        (&printed["member"], &printed["uid"], &printed["revocation_code"]),
        (&json!("1003"), &json!("1003"), &json!("C3"))
    );
    let asked = crm.person_requests();
    let mut last = Value::Null;
    for _ in 0..50 {
        last = s.decide("front", card("1003", "C3")).await;
        if last["reason"] == "granted" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last["reason"], "granted", "{last}");
    assert_eq!(crm.person_requests(), asked, "fetched by the CLI just now: the server does not ask");
    let out = tokio::task::block_in_place(|| run("777777"));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no member 777777"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Without [crm], the route says so.
    let other = Database::new(b);
    let plain = Server::start(&other);
    let (status, problem) = plain.post("/api/v1/crm/cards", json!({"member": "1001"})).await;
    assert_eq!((status, &problem["type"]), (404, &json!("urn:lintel:problem:not-configured")), "{problem}");
}

fn member(person_id: &str, code: &str) -> Value {
    json!({"kind": "member", "person_id": person_id, "revocation_code": code})
}

/// A makerspace station names the member by their CRM number (what it wrote on the card)
/// and gets the same answers as a card would, with the member's name.
async fn stations_name_crm_members_by_number(b: Backend) {
    let Setup { db: _db, s, crm } = setup(b, &[("LINTEL_CRM_STALE_AFTER", "1")]).await;
    // Ann's first tap: looked up, created, checked in, named.
    let answer = s.decide("front", member("1001", "R1")).await;
    assert_eq!(
        (&answer["reason"], &answer["person_id"], &answer["name"]),
        (&json!("granted"), &json!("crm-1001"), &json!("Ann Lovelace")),
        "{answer}"
    );
    assert_eq!(crm.person_requests(), 1);
    // Her laser checkoff counts at the tool; her lintel id works as well as her number.
    assert_eq!(s.decide("laser", member("1001", "R1")).await["reason"], "granted");
    assert_eq!(s.decide("front", member("crm-1001", "R1")).await["reason"], "granted");
    assert_eq!(crm.person_requests(), 1, "fresh: not asked again");
    // Bob holds no Maker membership; Dee lacks the laser checkoff.
    assert_eq!(s.decide("front", member("1002", "2")).await["reason"], "person_suspended");
    assert_eq!(s.decide("laser", member("12345", "R5")).await["reason"], "missing_skill");
    // A number the CRM does not know: its own answer, and nobody is created.
    let unknown = s.decide("front", member("4242", "X")).await;
    assert_eq!((&unknown["reason"], unknown.get("name")), (&json!("unknown_member"), None), "{unknown}");
    assert_eq!(s.get("/api/v1/people/crm-4242").await.0, 404);
    // A new card in the CRM: once stale, the old code stops working at stations.
    crm.with(|c| c.persons.insert("1001".into(), ann("R2", &["laser"], true)));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(s.decide("front", member("1001", "R2")).await["reason"], "granted");
    assert_eq!(s.decide("front", member("1001", "R1")).await["reason"], "revoked_card");
}

crate::on_both_backends!(
    stations_name_crm_members_by_number,
    unknown_cards_are_looked_up_in_the_crm,
    stale_members_are_looked_up_again,
    tokens_are_renewed_before_expiry_and_after_a_401,
    a_crm_outage_is_decided_on_cached_data,
    cached_standing_expires_at_max_stale,
    cards_are_issued_by_the_cli_and_the_api,
);
