//! The coworking membership platform against a fake of its API v1 on loopback: members
//! follow their memberships (plans to groups, cancellation, reactivation, time passes),
//! webhooks are stored before they are acknowledged and only ever make lintel fetch from
//! the configured space, and entries become check-ins exactly once, also across an outage.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::harness::{Backend, Database, FakeClock, Server, first_mail, lintel, smtp_sink};

/// The platform's state, as the fake keeps it.
#[derive(Default)]
struct Platform {
    memberships: HashMap<String, Value>,
    plans: Vec<Value>,
    /// Membership id -> unused passes.
    unused: HashMap<String, Vec<Value>>,
    check_in_tokens: HashMap<String, String>,
    /// Tokens checked in, in order.
    check_ins: Vec<String>,
    subscriptions: Vec<Value>,
    bookings: HashMap<String, Value>,
    /// API 2: booking id -> its external booking's attributes (`name`, `email`, `phone`).
    external_bookings: HashMap<String, Value>,
    /// API 2 requests for external bookings.
    external_requests: usize,
    /// Membership id -> custom fields (`[{"label", "value"}]`).
    custom_fields: HashMap<String, Vec<Value>>,
    /// While true, check-ins answer 503 (the platform is down).
    down: bool,
    /// While true, memberships answer 503.
    memberships_down: bool,
    /// Bearer tokens seen.
    bearer_ok: bool,
}

type Shared = Arc<Mutex<Platform>>;

pub struct FakePlatform {
    pub url: String,
    state: Shared,
}

impl FakePlatform {
    fn with<R>(&self, f: impl FnOnce(&mut Platform) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    pub fn membership_url(&self, id: &str) -> String {
        format!("{}/api/memberships/{id}", self.url)
    }
}

const TOKEN: &str = "cobot-oauth-token";

fn authorized(headers: &axum::http::HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
}

pub async fn fake_platform() -> FakePlatform {
    async fn memberships(State(p): State<Shared>, headers: axum::http::HeaderMap) -> Response {
        if !authorized(&headers) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        let mut p = p.lock().unwrap();
        p.bearer_ok = true;
        let mut all: Vec<Value> = p.memberships.values().cloned().collect();
        all.sort_by_key(|m| m["id"].to_string());
        Json(all).into_response()
    }
    async fn membership(State(p): State<Shared>, Path(id): Path<String>, headers: axum::http::HeaderMap) -> Response {
        if !authorized(&headers) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        let mut p = p.lock().unwrap();
        if p.memberships_down {
            return (StatusCode::SERVICE_UNAVAILABLE, "maintenance").into_response();
        }
        p.bearer_ok = true;
        match p.memberships.get(&id) {
            Some(m) => Json(m.clone()).into_response(),
            None => (StatusCode::NOT_FOUND, Json(json!({"error": "not found"}))).into_response(),
        }
    }
    async fn custom_fields(
        State(p): State<Shared>,
        Path(id): Path<String>,
        headers: axum::http::HeaderMap,
    ) -> Response {
        if !authorized(&headers) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        let fields = p.lock().unwrap().custom_fields.get(&id).cloned().unwrap_or_default();
        Json(json!({"id": id, "fields": fields})).into_response()
    }
    async fn unused(State(p): State<Shared>, Path(id): Path<String>) -> Json<Value> {
        Json(Value::Array(p.lock().unwrap().unused.get(&id).cloned().unwrap_or_default()))
    }
    async fn plans(State(p): State<Shared>) -> Json<Value> {
        Json(Value::Array(p.lock().unwrap().plans.clone()))
    }
    async fn check_in_tokens(State(p): State<Shared>, Json(body): Json<Value>) -> Response {
        let mut p = p.lock().unwrap();
        let membership = body["membership_id"].as_str().unwrap_or_default().to_owned();
        p.check_in_tokens.insert(body["token"].as_str().unwrap_or_default().to_owned(), membership);
        (StatusCode::CREATED, Json(json!({"ok": true}))).into_response()
    }
    async fn check_ins(State(p): State<Shared>, Json(body): Json<Value>) -> Response {
        let mut p = p.lock().unwrap();
        if p.down {
            return (StatusCode::SERVICE_UNAVAILABLE, "maintenance").into_response();
        }
        let token = body["token"].as_str().unwrap_or_default().to_owned();
        let Some(membership) = p.check_in_tokens.get(&token).cloned() else {
            return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"error": "unknown token"}))).into_response();
        };
        // A plan with passes uses one up; none left is a refusal.
        if let Some(passes) = p.unused.get_mut(&membership) {
            if passes.is_empty() {
                return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"error": "no time passes left"})))
                    .into_response();
            }
            passes.pop();
        }
        p.check_ins.push(token);
        (StatusCode::CREATED, Json(json!({"membership_id": membership}))).into_response()
    }
    async fn check_in(Path(id): Path<String>) -> Json<Value> {
        // The fake's check-in n belongs to membership n.
        Json(json!({"id": id, "membership_id": id}))
    }
    async fn booking(State(p): State<Shared>, Path(id): Path<String>) -> Response {
        match p.lock().unwrap().bookings.get(&id) {
            Some(b) => Json(b.clone()).into_response(),
            None => (StatusCode::NOT_FOUND, Json(json!({"error": "not found"}))).into_response(),
        }
    }
    async fn bookings(State(p): State<Shared>) -> Json<Value> {
        Json(Value::Array(p.lock().unwrap().bookings.values().cloned().collect()))
    }
    // API 2 (JSON:API): a booking's relationships, and an external booking's attributes.
    fn json_api(headers: &axum::http::HeaderMap) -> bool {
        authorized(headers)
            && headers
                .get("accept")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.contains("application/vnd.api+json"))
    }
    fn api2_not_found() -> Response {
        (StatusCode::NOT_FOUND, Json(json!({"errors": [{"title": "Not Found", "detail": "no such resource"}]})))
            .into_response()
    }
    async fn api2_booking(State(p): State<Shared>, Path(id): Path<String>, headers: axum::http::HeaderMap) -> Response {
        if !json_api(&headers) {
            return (StatusCode::NOT_ACCEPTABLE, Json(json!({"errors": [{"detail": "JSON:API only"}]})))
                .into_response();
        }
        let p = p.lock().unwrap();
        let Some(b) = p.bookings.get(&id) else { return api2_not_found() };
        let external = p
            .external_bookings
            .contains_key(&id)
            .then(|| json!({"id": format!("ext-{id}"), "type": "externalBookings"}));
        let body = json!({"data": {"id": id, "type": "bookings",
            "attributes": {"from": b["from"], "to": b["to"], "title": "Booking"},
            "relationships": {"resource": {"data": {"id": b["resource"]["id"].to_string(), "type": "resources"}},
                              "membership": {"data": b["membership"].as_object().map(|m| json!({"id": m["id"], "type": "memberships"}))},
                              "externalBooking": {"data": external}}}});
        ([(axum::http::header::CONTENT_TYPE, "application/vnd.api+json")], body.to_string()).into_response()
    }
    async fn api2_external(
        State(p): State<Shared>,
        Path(id): Path<String>,
        headers: axum::http::HeaderMap,
    ) -> Response {
        if !json_api(&headers) {
            return (StatusCode::NOT_ACCEPTABLE, Json(json!({"errors": [{"detail": "JSON:API only"}]})))
                .into_response();
        }
        let mut p = p.lock().unwrap();
        p.external_requests += 1;
        let Some(attributes) = id.strip_prefix("ext-").and_then(|b| p.external_bookings.get(b)) else {
            return api2_not_found();
        };
        let body = json!({"data": {"id": id, "type": "externalBookings", "attributes": attributes}});
        ([(axum::http::header::CONTENT_TYPE, "application/vnd.api+json")], body.to_string()).into_response()
    }
    async fn subscriptions(State(p): State<Shared>, Json(body): Json<Value>) -> Response {
        p.lock().unwrap().subscriptions.push(body.clone());
        (StatusCode::CREATED, Json(body)).into_response()
    }
    let state: Shared = Arc::default();
    let app = axum::Router::new()
        .route("/api/memberships", get(memberships))
        .route("/api/memberships/{id}", get(membership))
        .route("/api/memberships/{id}/time_passes/unused", get(unused))
        .route("/api/memberships/{id}/custom_fields", get(custom_fields))
        .route("/api/plans", get(plans))
        .route("/api/check_in_tokens", post(check_in_tokens))
        .route("/api/check_ins", post(check_ins))
        .route("/api/check_ins/{id}", get(check_in))
        .route("/api/subscriptions", post(subscriptions))
        .route("/api/bookings", get(bookings))
        .route("/api/bookings/{id}", get(booking))
        .route("/bookings/{id}", get(api2_booking))
        .route("/external_bookings/{id}", get(api2_external))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    FakePlatform { url, state }
}

fn membership(id: &str, name: &str, plan: Value, canceled_to: Option<&str>) -> Value {
    json!({"id": id, "name": name, "email": format!("{}@example.org", name.to_lowercase()), "plan": plan,
           "starts_at": "2020/01/01", "canceled_to": canceled_to})
}

/// Ann on a copy of plan 42 "Full time" (mapped to the studio); Bob on plan 43 "Flex"
/// with one unused pass, usable any day.
pub fn seed(p: &FakePlatform) {
    p.with(|p| {
        p.plans = vec![
            json!({"id": 42, "name": "Full time", "time_passes": []}),
            json!({"id": 43, "name": "Flex", "time_passes": [{"id": 7, "name": "Day pass", "parsed_timespans": [
                {"weekdays": ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"],
                 "from_hour": 0, "from_minute": 0, "to_hour": 24, "to_minute": 0}]}]}),
            json!({"id": 44, "name": "Weekend", "time_passes": []}),
        ];
        let copy_of_42 = json!({"id": "c-1", "name": "Full time (Ann's)", "parent_plan": {"id": 42}});
        p.memberships.insert("1".into(), membership("1", "Ann", copy_of_42, None));
        p.memberships.insert("2".into(), membership("2", "Bob", json!({"id": 43, "name": "Flex"}), None));
        p.unused.insert("2".into(), vec![json!({"id": 900, "time_pass_id": 7})]);
    });
}

struct Setup {
    _db: Database,
    s: Server,
    platform: FakePlatform,
}

pub fn cobot_env(platform: &FakePlatform) -> Vec<(&'static str, String)> {
    vec![
        ("LINTEL_COBOT_BASE_URL", platform.url.clone()),
        ("LINTEL_COBOT_API2_URL", platform.url.clone()),
        ("LINTEL_COBOT_TOKEN", TOKEN.to_owned()),
        ("LINTEL_COBOT_DEFAULT_GROUP", "members".to_owned()),
        ("LINTEL_COBOT_PLAN_GROUPS", "42=studio".to_owned()),
        ("LINTEL_PUBLIC_URL", "https://doors.example.org".to_owned()),
        ("LINTEL_TIMEZONE", "Europe/Berlin".to_owned()),
        ("LINTEL_COBOT_RESOURCE_DOORS", "7=studio;front".to_owned()),
    ]
}

async fn setup(b: Backend) -> Setup {
    setup_with(b, &[]).await
}

async fn setup_with(b: Backend, extra: &[(&'static str, String)]) -> Setup {
    let db = Database::new(b);
    let platform = fake_platform().await;
    seed(&platform);
    let mut env = cobot_env(&platform);
    env.extend(extra.iter().cloned());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s = Server::start_with(&db, &env);
    space(&s).await;
    Setup { _db: db, s, platform }
}

/// The space's doors, groups and grants: `front` counts attendance, `studio` does not.
async fn space(s: &Server) {
    s.ok("/api/v1/doors", json!({"id": "front", "name": "Front", "attendance": true}), 201).await;
    s.ok("/api/v1/doors", json!({"id": "studio", "name": "Studio", "attendance": false}), 201).await;
    s.ok("/api/v1/groups", json!({"id": "members", "name": "Members", "doors": ["front"]}), 201).await;
    s.ok("/api/v1/groups", json!({"id": "studio", "name": "Studio", "doors": ["front", "studio"]}), 201).await;
    s.ok("/api/v1/grants", json!({"group_id": "members"}), 201).await;
    s.ok("/api/v1/grants", json!({"group_id": "studio"}), 201).await;
}

async fn sync(s: &Server) -> Value {
    let (status, report) = s.post("/api/v1/cobot/sync", json!({})).await;
    assert_eq!(status, 200, "{report}");
    report
}

/// Gives a member a card (operators hand out cards; the membership gives the access).
async fn card_for(s: &Server, person: &str, uid: &str) {
    s.ok(&format!("/api/v1/people/{person}/credentials"), json!({"kind": "card", "uid": uid}), 201).await;
}

fn card(uid: &str) -> Value {
    json!({"kind": "card", "uid": uid})
}

async fn deliver(s: &Server, event: &str, body: Value) -> (u16, Value) {
    s.post(&format!("/hooks/cobot/{event}"), body).await
}

/// Waits until every stored delivery was processed (done or failed), so that what is
/// asserted next is the outcome, not the state before it.
async fn inbox_settled(s: &Server) {
    for _ in 0..100 {
        let inbox = s.get("/api/v1/inbox").await.1;
        if inbox["items"].as_array().unwrap().iter().all(|i| i["state"] != "pending") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("deliveries still pending: {}", s.get("/api/v1/inbox").await.1);
}

/// Asks until the decision's reason is `want` (webhooks are processed after the answer).
async fn eventually_reason(s: &Server, door: &str, uid: &str, want: &str) {
    let mut last = Value::Null;
    for _ in 0..100 {
        last = s
            .client
            .post(format!("{}/api/v1/decisions", s.base))
            .bearer_auth(crate::harness::ADMIN)
            .json(&json!({"door": door, "credential": card(uid), "dry_run": true}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if last["reason"] == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{uid} at {door}: wanted {want}, last {last}");
}

async fn members_follow_their_memberships(b: Backend) {
    let Setup { _db, s, platform } = setup(b).await;
    let report = sync(&s).await;
    assert_eq!(report["memberships"], 2, "{report}");
    assert_eq!((&report["created"], &report["with_passes"]), (&json!(2), &json!(1)), "{report}");
    let ann = s.get("/api/v1/people/cobot-1").await.1;
    assert_eq!((&ann["name"], &ann["email"]), (&json!("Ann"), &json!("ann@example.org")));
    assert_eq!(ann["external_ids"]["cobot"], "1");
    assert_eq!(ann["groups"], json!(["members", "studio"]), "the parent plan 42 maps to the studio");
    card_for(&s, "cobot-1", "A1A1A1A1").await;
    card_for(&s, "cobot-2", "B2B2B2B2").await;
    eventually_reason(&s, "studio", "A1A1A1A1", "granted").await;
    assert_eq!(s.get("/api/v1/people/cobot-2").await.1["groups"], json!([]), "passes, not groups");

    // A plan change moves her: plan 44 maps to no group, so only the default group stays.
    platform.with(|p| p.memberships.get_mut("1").unwrap()["plan"] = json!({"id": 44, "name": "Weekend"}));
    let (status, _) = deliver(&s, "changed_membership_plan", json!({"url": platform.membership_url("1")})).await;
    assert_eq!(status, 202);
    eventually_reason(&s, "studio", "A1A1A1A1", "no_grant").await;
    eventually_reason(&s, "front", "A1A1A1A1", "granted").await;

    // The cancellation date passed: access ends at once, and no personal secret stays
    // active; a reactivation restores the card (the secret is enrolled again).
    let secret = s.ok("/api/v1/people/cobot-1/credentials", json!({"kind": "secret"}), 201).await;
    platform.with(|p| p.memberships.get_mut("1").unwrap()["canceled_to"] = json!("2021/12/31"));
    deliver(&s, "membership_cancellation_date_reached", json!({"url": platform.membership_url("1")})).await;
    eventually_reason(&s, "front", "A1A1A1A1", "person_suspended").await;
    inbox_settled(&s).await;
    let held = s.get("/api/v1/people/cobot-1/credentials").await.1;
    let status_of = |id: &Value| held.as_array().unwrap().iter().find(|c| &c["id"] == id).unwrap()["status"].clone();
    assert_eq!(status_of(&secret["id"]), "revoked", "{held}");
    let lapsed = s.all_events("kind=person.offboarded&person_id=cobot-1").await;
    assert_eq!((lapsed.len(), &lapsed[0]["data"]["suspended"]), (1, &json!(false)), "{lapsed:?}");
    platform.with(|p| p.memberships.get_mut("1").unwrap()["canceled_to"] = Value::Null);
    deliver(&s, "reactivated_membership", json!({"url": platform.membership_url("1")})).await;
    eventually_reason(&s, "front", "A1A1A1A1", "granted").await;

    // A canceled membership keeps access through its last day (tomorrow here).
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1)).format("%Y/%m/%d").to_string();
    platform.with(|p| p.memberships.get_mut("1").unwrap()["canceled_to"] = json!(tomorrow));
    deliver(&s, "canceled_membership", json!({"url": platform.membership_url("1")})).await;
    inbox_settled(&s).await;
    assert_eq!(s.decide("front", card("A1A1A1A1")).await["reason"], "granted", "the last day still counts");

    // Gone from the platform altogether: the next sync takes access away.
    platform.with(|p| p.memberships.remove("2"));
    let report = sync(&s).await;
    assert_eq!(report["gone"], 1, "{report}");
    // Offboarded: the card is revoked, the person suspended, one event says what was taken.
    eventually_reason(&s, "front", "B2B2B2B2", "credential_revoked").await;
    assert_eq!(s.get("/api/v1/people/cobot-2").await.1["status"], "suspended");
    let events = s.all_events("kind=person.offboarded&person_id=cobot-2").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (events[0]["person_id"].as_str(), events[0]["data"]["source"].as_str()),
        (Some("cobot-2"), Some("cobot"))
    );
}

/// `[cobot] custom_field_groups`: a member whose field has the value joins the group; a
/// change of the field (its `updated_custom_field` delivery) moves them.
async fn custom_fields_map_to_groups(b: Backend) {
    let extra = [("LINTEL_COBOT_CUSTOM_FIELD_GROUPS", "Locker:yes=lockers,Team:Robotics=robotics".to_owned())];
    let Setup { _db, s, platform } = setup_with(b, &extra).await;
    s.ok("/api/v1/doors", json!({"id": "lockers", "name": "Locker room"}), 201).await;
    s.ok("/api/v1/groups", json!({"id": "lockers", "name": "Lockers", "doors": ["lockers"]}), 201).await;
    s.ok("/api/v1/groups", json!({"id": "robotics", "name": "Robotics", "doors": []}), 201).await;
    s.ok("/api/v1/grants", json!({"group_id": "lockers"}), 201).await;
    platform.with(|p| {
        p.custom_fields.insert(
            "1".into(),
            vec![json!({"label": "Locker", "value": "yes"}), json!({"label": "Team", "value": null})],
        );
    });
    sync(&s).await;
    assert_eq!(s.get("/api/v1/people/cobot-1").await.1["groups"], json!(["lockers", "members", "studio"]));
    card_for(&s, "cobot-1", "A1A1A1A1").await;
    eventually_reason(&s, "lockers", "A1A1A1A1", "granted").await;

    // The field changes: she moves from the locker room to the robotics team.
    platform.with(|p| {
        p.custom_fields.insert(
            "1".into(),
            vec![json!({"label": "Locker", "value": "no"}), json!({"label": "Team", "value": "Robotics"})],
        );
    });
    let url = format!("{}/custom_fields", platform.membership_url("1"));
    let (status, body) = deliver(&s, "updated_custom_field", json!({"url": url})).await;
    assert_eq!(status, 202, "{body}");
    eventually_reason(&s, "lockers", "A1A1A1A1", "no_grant").await;
    inbox_settled(&s).await;
    assert_eq!(s.get("/api/v1/people/cobot-1").await.1["groups"], json!(["members", "robotics", "studio"]));
    // Bob's fields map to nothing: his groups stay as his plan says.
    assert_eq!(s.get("/api/v1/people/cobot-2").await.1["groups"], json!([]));
}

async fn time_passes_limit_entry_and_follow_the_platform(b: Backend) {
    let Setup { _db, s, platform } = setup(b).await;
    sync(&s).await;
    card_for(&s, "cobot-2", "B2B2B2B2").await;
    let grants = s.get("/api/v1/grants?person_id=cobot-2").await.1;
    let grant = &grants[0];
    assert_eq!((&grant["passes"], &grant["doors"]), (&json!(1), &json!(["front"])), "{grants}");
    assert_eq!(grant["schedule"]["tz"], "Europe/Berlin", "{grants}");
    // The pass is usable around the clock: it checks him in for a day.
    assert_eq!(s.decide("front", card("B2B2B2B2")).await["reason"], "granted");
    assert_eq!(s.decide("front", card("B2B2B2B2")).await["reason"], "granted", "checked in: no second pass");

    // The first entry becomes a check-in that uses the pass on the platform too; its
    // created_checkin delivery refreshes the count (zero), and the check-in still runs.
    wait_for_check_ins(&platform, 1).await;
    deliver(&s, "created_checkin", json!({"url": format!("{}/api/check_ins/2", platform.url)})).await;
    inbox_settled(&s).await;
    let grants = s.get("/api/v1/grants?person_id=cobot-2").await.1;
    assert_eq!((&grants[0]["passes"], &grants[0]["passes_used"]), (&json!(0), &json!(0)), "{grants}");
    assert!(grants[0]["checked_in_until"].is_string(), "{grants}");
    assert_eq!(s.decide("front", card("B2B2B2B2")).await["reason"], "granted");
    assert_eq!(platform.with(|p| p.check_ins.len()), 1, "re-entries post no check-in");

    // Passes bought: the count follows within seconds of the webhook.
    platform.with(|p| p.unused.insert("2".into(), vec![json!({"time_pass_id": 7}), json!({"time_pass_id": 7})]));
    deliver(&s, "membership_added_time_passes", json!({"url": platform.membership_url("2")})).await;
    inbox_settled(&s).await;
    let grants = s.get("/api/v1/grants?person_id=cobot-2").await.1;
    assert_eq!(grants[0]["passes"], 2, "{grants}");
}

/// Waits until the platform has `n` check-ins, then a little longer to see no more come.
async fn wait_for_check_ins(platform: &FakePlatform, n: usize) {
    for _ in 0..300 {
        if platform.with(|p| p.check_ins.len()) >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(platform.with(|p| p.check_ins.len()), n, "check-ins on the platform");
}

/// A server on a clock the test moves, with the space set up and plan 43's pass type
/// replaced by `pass`.
async fn setup_on_a_clock(b: Backend, pass: Value, unused: usize) -> (Setup, FakeClock) {
    let db = Database::new(b);
    let clock = FakeClock::new(&db);
    let platform = fake_platform().await;
    seed(&platform);
    platform.with(|p| {
        p.plans[1]["time_passes"] = json!([pass]);
        p.unused.insert("2".into(), vec![json!({"time_pass_id": 7}); unused]);
    });
    let mut env: Vec<(&str, String)> = cobot_env(&platform);
    env.extend(clock.env().iter().map(|(k, v)| (*k, v.to_string())));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s = Server::start_with(&db, &env);
    space(&s).await;
    (Setup { _db: db, s, platform }, clock)
}

/// A moment on the space's clock (Europe/Berlin), on 1 December 2026 plus `day` days.
fn berlin(day: u32, hour: u32, minute: u32) -> chrono::DateTime<chrono::Utc> {
    use chrono::TimeZone;
    chrono_tz::Europe::Berlin.with_ymd_and_hms(2026, 12, 1 + day, hour, minute, 0).unwrap().with_timezone(&chrono::Utc)
}

const EVERY_DAY: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];

/// A day pass (04:00 to 03:59:59 the next morning): the member enters, steps out and
/// comes back three times on one pass and one check-in, through the night until the
/// space's day ends, and is refused the next day with no pass left.
async fn a_day_pass_covers_the_day_not_one_entry(b: Backend) {
    let day_pass = json!({"id": 7, "name": "Day pass", "parsed_timespans": [
        {"weekdays": EVERY_DAY, "from_hour": 4, "from_minute": 0, "to_hour": 3, "to_minute": 59}]});
    let (Setup { _db, s, platform }, clock) = setup_on_a_clock(b, day_pass, 1).await;
    clock.set_to(berlin(1, 8, 0)).await;
    sync(&s).await;
    card_for(&s, "cobot-2", "B2B2B2B2").await;
    for (hour, minute) in [(9, 0), (12, 30), (13, 45), (18, 10)] {
        clock.set_to(berlin(1, hour, minute)).await;
        let answer = s.decide("front", card("B2B2B2B2")).await;
        assert_eq!(answer["reason"], "granted", "{hour}:{minute}: {answer}");
    }
    wait_for_check_ins(&platform, 1).await;
    // The platform counts the pass (its created_checkin delivery): none left there.
    deliver(&s, "created_checkin", json!({"url": format!("{}/api/check_ins/2", platform.url)})).await;
    inbox_settled(&s).await;
    let grants = s.get("/api/v1/grants?person_id=cobot-2").await.1;
    let until = berlin(2, 3, 59).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    assert_eq!((&grants[0]["passes"], &grants[0]["checked_in_until"]), (&json!(0), &json!(until)), "{grants}");

    let events = s.all_events("kind=decision&person_id=cobot-2").await;
    let through_pass: Vec<_> = events.iter().filter(|e| e["data"]["checked_in_until"].is_string()).collect();
    assert_eq!(through_pass.len(), 4, "every entry shows the check-in: {events:?}");

    clock.set_to(berlin(2, 3, 50)).await;
    assert_eq!(s.decide("front", card("B2B2B2B2")).await["reason"], "granted", "the night is the day's");
    clock.set_to(berlin(2, 4, 30)).await;
    assert_eq!(s.decide("front", card("B2B2B2B2")).await["reason"], "no_passes_left", "a new day");
    assert_eq!(platform.with(|p| p.check_ins.len()), 1, "one pass, one check-in");
}

/// A duration pass (2 h) checks in for two hours from the entry, not to the end of a span.
async fn a_duration_pass_ends_on_time(b: Backend) {
    let two_hours = json!({"id": 7, "name": "2 hours", "duration_in_minutes": 120, "parsed_timespans": [
        {"weekdays": EVERY_DAY, "from_hour": 0, "from_minute": 0, "to_hour": 24, "to_minute": 0}]});
    let (Setup { _db, s, platform: _platform }, clock) = setup_on_a_clock(b, two_hours, 1).await;
    clock.set_to(berlin(1, 10, 0)).await;
    sync(&s).await;
    card_for(&s, "cobot-2", "B2B2B2B2").await;
    assert_eq!(s.decide("front", card("B2B2B2B2")).await["reason"], "granted");
    clock.set_to(berlin(1, 11, 58)).await;
    assert_eq!(s.decide("front", card("B2B2B2B2")).await["reason"], "granted", "inside the two hours");
    clock.set_to(berlin(1, 12, 1)).await;
    assert_eq!(s.decide("front", card("B2B2B2B2")).await["reason"], "no_passes_left", "the two hours are over");
}

/// The platform counts a pass only when lintel's check-in arrives: refreshes in between
/// (two at once here) must not give back a pass used here, so the member never gets in
/// more often than the platform has passes.
async fn refreshes_never_admit_more_entries_than_passes(b: Backend) {
    let minute = json!({"id": 7, "name": "Minute", "duration_in_minutes": 1, "parsed_timespans": []});
    let (Setup { _db, s, platform }, clock) = setup_on_a_clock(b, minute, 2).await;
    clock.set_to(berlin(1, 10, 0)).await;
    sync(&s).await;
    card_for(&s, "cobot-2", "B2B2B2B2").await;
    platform.with(|p| p.down = true);
    assert_eq!(s.decide("front", card("B2B2B2B2")).await["reason"], "granted");

    // Two refreshes at once while the check-in waits: the platform still says two.
    let url = json!({"url": platform.membership_url("2")});
    let (a, b2) = tokio::join!(
        deliver(&s, "membership_added_time_passes", url.clone()),
        deliver(&s, "membership_removed_time_passes", url.clone())
    );
    assert_eq!((a.0, b2.0), (202, 202));
    inbox_settled(&s).await;
    sync(&s).await;
    let grants = s.get("/api/v1/grants?person_id=cobot-2").await.1;
    assert_eq!((&grants[0]["passes"], &grants[0]["passes_used"]), (&json!(2), &json!(1)), "{grants}");

    clock.set_to(berlin(1, 10, 5)).await;
    assert_eq!(s.decide("front", card("B2B2B2B2")).await["reason"], "granted", "the second pass");
    clock.set_to(berlin(1, 10, 10)).await;
    sync(&s).await;
    assert_eq!(s.decide("front", card("B2B2B2B2")).await["reason"], "no_passes_left", "two passes, two entries");

    // The platform comes back: both check-ins arrive and use both passes there; a refresh
    // agrees. A pass bought is one more entry, no more.
    platform.with(|p| p.down = false);
    wait_for_check_ins(&platform, 2).await;
    sync(&s).await;
    assert_eq!(s.decide("front", card("B2B2B2B2")).await["reason"], "no_passes_left");
    platform.with(|p| p.unused.insert("2".into(), vec![json!({"time_pass_id": 7})]));
    deliver(&s, "membership_added_time_passes", url).await;
    eventually_reason(&s, "front", "B2B2B2B2", "granted").await;
    assert_eq!(s.decide("front", card("B2B2B2B2")).await["reason"], "granted");
    clock.set_to(berlin(1, 10, 15)).await;
    assert_eq!(s.decide("front", card("B2B2B2B2")).await["reason"], "no_passes_left");
}

async fn check_ins_arrive_exactly_once_across_an_outage(b: Backend) {
    let Setup { _db, s, platform } = setup(b).await;
    sync(&s).await;
    card_for(&s, "cobot-1", "A1A1A1A1").await;
    // The platform learns Ann's check-in token first.
    for _ in 0..100 {
        if platform.with(|p| p.check_in_tokens.values().any(|m| m == "1")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(platform.with(|p| p.check_in_tokens.values().any(|m| m == "1")), "token registered");

    platform.with(|p| p.down = true);
    for _ in 0..3 {
        assert_eq!(s.decide("front", card("A1A1A1A1")).await["reason"], "granted");
    }
    // The studio does not count attendance: no check-in for it.
    assert_eq!(s.decide("studio", card("A1A1A1A1")).await["reason"], "granted");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pending = s.get("/api/v1/outbox?state=pending").await.1;
    let waiting: Vec<&Value> =
        pending["items"].as_array().unwrap().iter().filter(|e| e["kind"] == "check_in").collect();
    assert_eq!(waiting.len(), 3, "{pending}");
    assert!(waiting.iter().all(|e| e["last_error"].as_str().unwrap_or_default().contains("503")), "{pending}");
    assert_eq!(platform.with(|p| p.check_ins.len()), 0);

    platform.with(|p| p.down = false);
    for _ in 0..300 {
        if platform.with(|p| p.check_ins.len()) >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let check_ins = platform.with(|p| p.check_ins.clone());
    assert_eq!(check_ins.len(), 3, "each entry exactly once: {check_ins:?}");
    let done = s.get("/api/v1/outbox?state=done").await.1;
    assert_eq!(done["items"].as_array().unwrap().iter().filter(|e| e["kind"] == "check_in").count(), 3, "{done}");
}

async fn deliveries_are_checked_stored_and_idempotent(b: Backend) {
    let Setup { _db, s, platform } = setup(b).await;
    let events_before = s.events().await.len();
    let foreign = deliver(&s, "confirmed_membership", json!({"url": "http://169.254.169.254/api/memberships/1"})).await;
    assert_eq!(foreign.0, 422, "{}", foreign.1);
    let other_port =
        platform.url.rsplit_once(':').map(|(h, p)| format!("{h}:{}", p.parse::<u16>().unwrap() + 1)).unwrap();
    assert_eq!(
        deliver(&s, "confirmed_membership", json!({"url": format!("{other_port}/api/memberships/1")})).await.0,
        422
    );
    // Only what the processor would act on is stored: a URL exactly
    // `<base_url>/api/<memberships|bookings|check_ins>/<id>`, or a whole object with a
    // usable id.
    let base = &platform.url;
    for body in [
        json!([1, 2]),
        json!({"url": 7}),
        json!({}),
        json!({"id": "../../admin"}),
        json!({"id": "a".repeat(65)}),
        json!({"id": ""}),
        json!({"id": {"n": 1}}),
        json!({"id": true}),
        json!({"url": format!("{base}/nope/memberships/2")}),
        json!({"url": format!("{base}/api/plans/42")}),
        json!({"url": format!("{base}/api/memberships/1/extra")}),
        json!({"url": format!("{base}/api/memberships/")}),
        json!({"url": format!("{base}/api/memberships/%2E%2E")}),
        json!({"url": "not a URL"}),
    ] {
        let (status, answer) = deliver(&s, "confirmed_membership", body.clone()).await;
        assert_eq!(status, 422, "{body}: {answer}");
        assert_eq!(answer["type"], "urn:lintel:problem:validation", "{answer}");
    }
    let raw = s.client.post(format!("{}/hooks/cobot/confirmed_membership", s.base)).body("{nope").send().await.unwrap();
    assert_eq!(raw.status(), 400);
    for event in ["Bad-Event", "deleted_everything"] {
        assert_eq!(deliver(&s, event, json!({"url": platform.membership_url("1")})).await.0, 422, "{event}");
    }
    assert_eq!(s.get("/api/v1/inbox").await.1["items"], json!([]), "nothing refused was stored");
    assert_eq!(s.events().await.len(), events_before);

    // The same delivery twice: one person, one creation.
    for _ in 0..2 {
        let (status, answer) = deliver(&s, "confirmed_membership", json!({"url": platform.membership_url("1")})).await;
        assert_eq!(status, 202, "{answer}");
    }
    for _ in 0..100 {
        let inbox = s.get("/api/v1/inbox?state=done").await.1;
        if inbox["items"].as_array().unwrap().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s.get("/api/v1/inbox?state=done").await.1["items"].as_array().unwrap().len(), 2);
    let created: Vec<Value> =
        s.events().await.into_iter().filter(|e| e["kind"] == "person.created" && e["person_id"] == "cobot-1").collect();
    assert_eq!(created.len(), 1, "{created:?}");
    assert!(platform.with(|p| p.bearer_ok), "fetched with the configured token");

    // A delivery's body is never trusted: a forged "confirmed" body for a canceled member
    // only makes lintel fetch the membership, which says canceled.
    card_for(&s, "cobot-1", "A1A1A1A1").await;
    eventually_reason(&s, "front", "A1A1A1A1", "granted").await;
    platform.with(|p| p.memberships.get_mut("1").unwrap()["canceled_to"] = json!("2021/12/31"));
    deliver(&s, "canceled_membership", json!({"url": platform.membership_url("1")})).await;
    eventually_reason(&s, "front", "A1A1A1A1", "person_suspended").await;
    let forged = membership("1", "Ann", json!({"id": 42}), None);
    assert_eq!(deliver(&s, "confirmed_membership", forged).await.0, 202);
    inbox_settled(&s).await;
    assert_eq!(s.decide("front", card("A1A1A1A1")).await["reason"], "person_suspended", "the forgery changed nothing");
    let failed = s.get("/api/v1/inbox?state=failed").await.1;
    assert_eq!(failed["items"], json!([]), "what was stored, the processor took: {failed}");
    assert_eq!(s.get("/api/v1/people/cobot-2").await.0, 404);

    // A deleted membership arrives whole: its id is looked up, the platform says 404, and
    // the member loses access.
    sync(&s).await;
    assert_eq!(s.get("/api/v1/people/cobot-2").await.1["status"], "active");
    let whole = platform.with(|p| p.memberships.remove("2")).unwrap();
    assert_eq!(deliver(&s, "canceled_membership", whole).await.0, 202);
    let stored = s.get("/api/v1/inbox?limit=1").await.1;
    assert_eq!(stored["items"][0]["payload"], json!({"id": "2"}), "only the id is kept of it: {stored}");
    for _ in 0..100 {
        if s.get("/api/v1/people/cobot-2").await.1["status"] == "suspended" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s.get("/api/v1/people/cobot-2").await.1["status"], "suspended");
}

/// The inbox holds at most `[limits] max_pending_deliveries` waiting deliveries of a
/// source: beyond that a delivery gets a 503 with `Retry-After` (the platform retries;
/// never a 410, which would end the subscription), and nothing is stored.
async fn the_inbox_is_bounded(b: Backend) {
    let Setup { _db, s, platform } = setup_with(b, &[("LINTEL_LIMITS_MAX_PENDING_DELIVERIES", "3".into())]).await;
    platform.with(|p| p.memberships_down = true);
    for id in ["1", "2", "3"] {
        let (status, answer) = deliver(&s, "confirmed_membership", json!({"url": platform.membership_url(id)})).await;
        assert_eq!(status, 202, "{answer}");
    }
    let full = crate::bad_input::send(
        s.client
            .post(format!("{}/hooks/cobot/confirmed_membership", s.base))
            .json(&json!({"url": platform.membership_url("4")})),
    )
    .await;
    crate::bad_input::assert_problem(&full, 503, "a delivery beyond the bound");
    let wait: u64 = full.headers.get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(0);
    assert!(wait >= 1, "a 503 that says when to retry: {:?}", full.headers);
    let inbox = s.get("/api/v1/inbox").await.1;
    assert_eq!(inbox["items"].as_array().unwrap().len(), 3, "nothing beyond the bound was stored: {inbox}");
    // Once the waiting deliveries are processed, the inbox takes deliveries again.
    platform.with(|p| p.memberships_down = false);
    for _ in 0..300 {
        if s.get("/api/v1/inbox?state=pending").await.1["items"] == json!([]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s.get("/api/v1/inbox?state=done").await.1["items"].as_array().unwrap().len(), 3);
    assert_eq!(deliver(&s, "confirmed_membership", json!({"url": platform.membership_url("4")})).await.0, 202);
}

/// Without `[cobot]`, a delivery gets a 503 (the platform retries later), never a 410
/// (which would end the subscription).
async fn an_unconfigured_platform_is_told_to_retry(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    let (status, problem) =
        deliver(&s, "confirmed_membership", json!({"url": "https://x.cobot.me/api/memberships/1"})).await;
    assert_eq!(status, 503, "{problem}");
}

/// `lintel cobot subscribe` and `lintel cobot sync` work from the command line.
async fn the_cli_subscribes_and_syncs(b: Backend) {
    let db = Database::new(b);
    let platform = fake_platform().await;
    seed(&platform);
    let s = Server::start(&db);
    s.ok("/api/v1/groups", json!({"id": "members", "name": "Members", "doors": []}), 201).await;
    s.ok("/api/v1/groups", json!({"id": "studio", "name": "Studio", "doors": []}), 201).await;
    let run = |args: &'static [&'static str]| {
        let mut cmd = lintel();
        cmd.args(args).args(["--database-url", &db.url]).current_dir(&db.dir);
        for (k, v) in cobot_env(&platform) {
            cmd.env(k, v);
        }
        cmd.output().expect("lintel runs")
    };
    let out = tokio::task::block_in_place(|| run(&["cobot", "subscribe"]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let subscriptions = platform.with(|p| p.subscriptions.clone());
    assert!(subscriptions.len() >= 8, "{subscriptions:?}");
    assert!(subscriptions.iter().any(|s| s["event"] == "created_checkin"
        && s["callback_url"] == "https://doors.example.org/hooks/cobot/created_checkin"));
    let out = tokio::task::block_in_place(|| run(&["cobot", "sync", "--quiet"]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("2 memberships: 2 new"), "{printed}");
    // The running server sees the people the CLI created.
    for _ in 0..50 {
        if s.get("/api/v1/people/cobot-1").await.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s.get("/api/v1/people/cobot-1").await.1["groups"], json!(["members", "studio"]));
    let out = tokio::task::block_in_place(|| run(&["outbox"]));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("check_in_token"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn booking(id: &str, membership: Option<&str>, from: chrono::DateTime<chrono::Utc>, minutes: i64) -> Value {
    let to = from + chrono::Duration::minutes(minutes);
    json!({"id": id, "from": from.to_rfc3339(), "to": to.to_rfc3339(), "resource": {"id": 7, "name": "Studio"},
           "membership": membership.map(|m| json!({"id": m}))})
}

async fn a_booking_opens_its_room_around_its_time(b: Backend) {
    let Setup { _db, s, platform } = setup(b).await;
    platform.with(|p| {
        p.memberships.insert("3".into(), membership("3", "Carol", json!({"id": 44, "name": "Weekend"}), None));
    });
    sync(&s).await;
    card_for(&s, "cobot-3", "C3C3C3C3").await;
    eventually_reason(&s, "studio", "C3C3C3C3", "no_grant").await;
    let now = chrono::Utc::now();
    // Starts in 5 minutes: with the 10-minute buffer, the studio is open to her now.
    platform
        .with(|p| p.bookings.insert("500".into(), booking("500", Some("3"), now + chrono::Duration::minutes(5), 60)));
    let url = format!("{}/api/bookings/500", platform.url);
    assert_eq!(deliver(&s, "created_booking", json!({"url": url})).await.0, 202);
    eventually_reason(&s, "studio", "C3C3C3C3", "granted").await;
    let grants = s.get("/api/v1/grants?person_id=cobot-3").await.1;
    let grant = grants.as_array().unwrap().iter().find(|g| g["source"] == "cobot-booking:500").unwrap().clone();
    assert_eq!(grant["doors"], json!(["front", "studio"]), "the room and the way to it");
    let from = chrono::DateTime::parse_from_rfc3339(grant["valid_from"].as_str().unwrap()).unwrap();
    assert_eq!((now + chrono::Duration::minutes(5) - from.with_timezone(&chrono::Utc)).num_minutes(), 10);

    // Moved to start in half an hour: not yet.
    platform
        .with(|p| p.bookings.insert("500".into(), booking("500", Some("3"), now + chrono::Duration::minutes(30), 60)));
    deliver(&s, "updated_booking", json!({"url": url})).await;
    eventually_reason(&s, "studio", "C3C3C3C3", "not_yet_valid").await;
    // Deleted (it arrives whole): the grant goes.
    let whole = platform.with(|p| p.bookings.remove("500")).unwrap();
    deliver(&s, "deleted_booking", whole).await;
    eventually_reason(&s, "studio", "C3C3C3C3", "no_grant").await;
    let left = s.get("/api/v1/grants?person_id=cobot-3").await.1;
    assert!(left.as_array().unwrap().iter().all(|g| g["source"] != "cobot-booking:500"), "{left}");
}

async fn a_visitor_is_invited_and_disappears_after_the_booking(b: Backend) {
    let (smtp, mail) = smtp_sink().await;
    let sms = crate::doors::FakeDevice::start(|_, _| StatusCode::ACCEPTED.into_response()).await;
    let extra = [
        ("LINTEL_SMTP_URL", smtp),
        ("LINTEL_SMTP_FROM", "lintel <doors@example.org>".to_owned()),
        ("LINTEL_SMS_WEBHOOK_URL", format!("{}/send", sms.url)),
        ("LINTEL_COBOT_BUFFER_MINUTES", "0".to_owned()),
    ];
    let Setup { _db, s, platform } = setup_with(b, &extra).await;
    let now = chrono::Utc::now();
    let mut external = booking("600", None, now - chrono::Duration::minutes(1), 0);
    external["to"] = json!((now + chrono::Duration::seconds(20)).to_rfc3339());
    // The visitor's details are not on the v1 booking: API 2's external booking has them.
    let contact = json!({"from": external["from"], "to": external["to"], "name": "Vera Visitor",
                         "email": "vera@example.org", "phone": "+49 170 1234567", "company": "", "status": "approved"});
    platform.with(|p| {
        p.bookings.insert("600".into(), external);
        p.external_bookings.insert("600".into(), contact);
    });
    let url = format!("{}/api/bookings/600", platform.url);
    assert_eq!(deliver(&s, "approved_external_booking", json!({"url": url})).await.0, 202);

    let message = first_mail(&mail).await;
    assert!(message.contains("vera@example.org") && message.contains("Studio"), "{message}");
    let link_at =
        message.find("https://doors.example.org/visit#doors=studio,front&secret=").expect("the personal link");
    let secret: String = message[link_at..]
        .split("secret=")
        .nth(1)
        .unwrap()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    assert!(secret.starts_with("lsk_"), "{secret}");
    let open = |door: &'static str| s.client.post(format!("{}/open/{door}", s.base)).bearer_auth(secret.clone()).send();
    assert_eq!(open("studio").await.unwrap().status(), 200, "the link's secret opens the room");
    assert_eq!(s.get("/api/v1/people/cobot-visitor-600").await.1["name"], "Vera Visitor", "named as API 2 says");

    // An external booking with neither email nor phone: refused for good, once.
    let mut silent = booking("601", None, now - chrono::Duration::minutes(1), 0);
    silent["to"] = json!((now + chrono::Duration::hours(1)).to_rfc3339());
    platform.with(|p| {
        p.bookings.insert("601".into(), silent);
        p.external_bookings.insert("601".into(), json!({"name": "Nemo", "email": null, "phone": ""}));
    });
    let asked = platform.with(|p| p.external_requests);
    let url = format!("{}/api/bookings/601", platform.url);
    assert_eq!(deliver(&s, "approved_external_booking", json!({"url": url})).await.0, 202);
    inbox_settled(&s).await;
    let failed = s.get("/api/v1/inbox?state=failed").await.1;
    let failed = failed["items"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].to_string().contains("email address or a phone number"), "{failed:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(platform.with(|p| p.external_requests), asked + 1, "asked once, not retried");
    assert_eq!(s.get("/api/v1/people/cobot-visitor-601").await.0, 404);
    let texted = sms.seen();
    assert_eq!(texted.len(), 1, "{texted:?}");
    assert_eq!(texted[0].json()["to"], "+491701234567");
    assert!(texted[0].json()["text"].as_str().unwrap().contains(&secret));
    let outbox = s.get("/api/v1/outbox").await.1.to_string();
    assert!(!outbox.contains(&secret), "a sent invitation's secret is scrubbed from the outbox: {outbox}");
    let page = s.client.get(format!("{}/visit", s.base)).send().await.unwrap();
    assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("script-src 'self'"));
    assert!(page.text().await.unwrap().contains("/visit.js"));

    // The booking ends (no buffer here): the visitor and their secret are gone.
    for _ in 0..300 {
        if s.get("/api/v1/people/cobot-visitor-600").await.0 == 404 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s.get("/api/v1/people/cobot-visitor-600").await.0, 404, "the visitor disappears after the booking");
    assert_eq!(open("studio").await.unwrap().status(), 403);
}

/// Waits (up to 10 s) until `device` saw a request matching `what`.
async fn seen_request(
    device: &crate::doors::FakeDevice,
    what: impl Fn(&crate::doors::Seen) -> bool,
) -> crate::doors::Seen {
    for _ in 0..100 {
        if let Some(seen) = device.seen().into_iter().find(|r| what(r)) {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "not seen; the cloud got {:?}",
        device.seen().iter().map(|r| format!("{} {} {}", r.method, r.uri, r.body)).collect::<Vec<_>>()
    );
}

async fn a_lock_cloud_mirrors_people_and_bookings_and_reports_entries(b: Backend) {
    let cloud = crate::doors::FakeDevice::start(|_, _| StatusCode::NO_CONTENT.into_response()).await;
    let hook_token = "cloud-webhook-token-0123456789";
    let extra = [
        ("LINTEL_LOCKCLOUD_BASE_URL", cloud.url.clone()),
        ("LINTEL_LOCKCLOUD_TOKEN_HEADER", "X-Api-Key".to_owned()),
        ("LINTEL_LOCKCLOUD_TOKEN", "cloud-api-key".to_owned()),
        ("LINTEL_LOCKCLOUD_WEBHOOK_TOKEN", hook_token.to_owned()),
        ("LINTEL_LOCKCLOUD_DOOR_LOCKS", "studio=L-STUDIO,front=L-FRONT".to_owned()),
    ];
    let Setup { _db, s, platform } = setup_with(b, &extra).await;
    platform.with(|p| {
        p.memberships.insert("3".into(), membership("3", "Carol", json!({"id": 44, "name": "Weekend"}), None));
    });
    sync(&s).await;
    let ann = seen_request(&cloud, |r| r.method == "PUT" && r.uri == "/users/cobot-1").await;
    assert_eq!(ann.header("x-api-key"), Some("cloud-api-key"), "the token in the configured header");
    assert_eq!(ann.json(), json!({"email": "ann@example.org", "name": "Ann", "active": true}));

    // The cloud reports Ann opening the front door: one entry, one check-in, however often
    // it is delivered.
    let opened = json!({"id": "evt-1", "event": "lock.opened", "lock_id": "L-FRONT", "user_id": "cobot-1"});
    let hook = |token: &'static str, body: Value| {
        s.client.post(format!("{}/hooks/lockcloud", s.base)).query(&[("token", token)]).json(&body).send()
    };
    assert_eq!(hook("wrong-token-0123456789abcdef", opened.clone()).await.unwrap().status(), 401);
    for _ in 0..2 {
        assert_eq!(hook(hook_token, opened.clone()).await.unwrap().status(), 200);
    }
    let unmapped = json!({"id": "evt-2", "event": "lock.opened", "lock_id": "L-ELSEWHERE"});
    assert_eq!(hook(hook_token, unmapped).await.unwrap().status(), 422);
    let entries: Vec<Value> = s
        .events()
        .await
        .into_iter()
        .filter(|e| e["kind"] == "decision" && e["data"]["credential_kind"] == "lockcloud")
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(
        (&entries[0]["door"], &entries[0]["person_id"], &entries[0]["allowed"]),
        (&json!("front"), &json!("cobot-1"), &json!(true))
    );
    for _ in 0..100 {
        if platform.with(|p| p.check_ins.len()) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(platform.with(|p| p.check_ins.len()), 1, "the cloud's entry became one check-in");
    // An entry reported late (two hours ago) still becomes a check-in.
    let two_hours_ago = (chrono::Utc::now() - chrono::Duration::hours(2)).to_rfc3339();
    let late =
        json!({"id": "evt-3", "event": "lock.opened", "lock_id": "L-FRONT", "user_id": "cobot-1", "at": two_hours_ago});
    assert_eq!(hook(hook_token, late).await.unwrap().status(), 200);
    for _ in 0..100 {
        if platform.with(|p| p.check_ins.len()) == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(platform.with(|p| p.check_ins.len()), 2, "the late entry was checked in too");

    // Ann's membership ends: the cloud deactivates her.
    platform.with(|p| p.memberships.get_mut("1").unwrap()["canceled_to"] = json!("2021/12/31"));
    deliver(&s, "membership_cancellation_date_reached", json!({"url": platform.membership_url("1")})).await;
    let off = seen_request(&cloud, |r| r.uri == "/users/cobot-1" && r.json()["active"] == false).await;
    assert_eq!(off.method, "PUT");

    // Carol books the studio: a temporary access group for its cloud locks; deleted, it goes.
    let now = chrono::Utc::now();
    platform
        .with(|p| p.bookings.insert("500".into(), booking("500", Some("3"), now + chrono::Duration::minutes(5), 60)));
    deliver(&s, "created_booking", json!({"url": format!("{}/api/bookings/500", platform.url)})).await;
    let group = seen_request(&cloud, |r| r.method == "PUT" && r.uri == "/access-groups/booking-500").await.json();
    assert_eq!((&group["locks"], &group["users"]), (&json!(["L-STUDIO", "L-FRONT"]), &json!(["cobot-3"])), "{group}");
    let starts = chrono::DateTime::parse_from_rfc3339(group["starts_at"].as_str().unwrap()).unwrap();
    assert_eq!(
        (now + chrono::Duration::minutes(5) - starts.with_timezone(&chrono::Utc)).num_minutes(),
        10,
        "with the buffer"
    );
    let whole = platform.with(|p| p.bookings.remove("500")).unwrap();
    deliver(&s, "deleted_booking", whole).await;
    seen_request(&cloud, |r| r.method == "DELETE" && r.uri == "/access-groups/booking-500").await;
}

crate::on_both_backends!(
    custom_fields_map_to_groups,
    a_lock_cloud_mirrors_people_and_bookings_and_reports_entries,
    a_booking_opens_its_room_around_its_time,
    a_visitor_is_invited_and_disappears_after_the_booking,
    members_follow_their_memberships,
    time_passes_limit_entry_and_follow_the_platform,
    a_day_pass_covers_the_day_not_one_entry,
    a_duration_pass_ends_on_time,
    refreshes_never_admit_more_entries_than_passes,
    check_ins_arrive_exactly_once_across_an_outage,
    deliveries_are_checked_stored_and_idempotent,
    the_inbox_is_bounded,
    an_unconfigured_platform_is_told_to_retry,
    the_cli_subscribes_and_syncs,
);
