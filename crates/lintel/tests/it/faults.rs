//! The fault harness: a bad day, one fault at a time, then healed, while operators open
//! doors and taps are decided. A fake Shelly relay and the reference MQTT controller
//! (`lintel controller-sim`) record every drive; the oracle asks of each that an allowed
//! decision was on record before it (the relay asks lintel's log the moment it is
//! switched), that it was a timed opening (Shelly's `toggle_after`, the controller's
//! `seconds`: nothing is left held), and that lintel works again once the fault is gone,
//! without a restart.
//!
//! Faults: the MQTT broker killed and started again on its port; the CRM and the
//! coworking platform down (connections closed) or hanging (accepted, never answered);
//! a relay that hangs; the SQLite database full (the server's file-size limit lowered
//! with `prlimit`); the clock an hour ahead and an hour behind (libfaketime). The
//! upstreams run on both backends; the broker, the relay, the clock and the full
//! database on SQLite only (the first three would only repeat themselves on PostgreSQL,
//! and a full PostgreSQL is the database server's file system, not lintel's).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::bad_input::{Answer, send};
use crate::doors::json_answer;
use crate::harness::{ADMIN, Backend, Database, FakeClock, Server, all_events};
use crate::mqtt::{Broker, Controller, lintel_key};

// --- a connection that fails on demand ---------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Bytes pass both ways.
    Up,
    /// Connections are closed as soon as they are accepted (a service that is down).
    Down,
    /// Connections are accepted and then nothing is ever answered (a service that hangs).
    Hang,
}

/// A TCP proxy on loopback in front of a fake: what lintel is configured to call, so that
/// the fake can go down or hang without lintel knowing. Changing the mode also ends the
/// connections lintel holds open (or leaves them hanging), as a real outage would.
struct Proxy {
    url: String,
    mode: watch::Sender<Mode>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(target_url: &str) -> Self {
        let target = target_url.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("the proxy binds");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let (mode, watching) = watch::channel(Mode::Up);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(pass(client, target.clone(), watching.clone()));
            }
        });
        Self { url, mode, task }
    }

    fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pass(mut client: TcpStream, target: String, mut mode: watch::Receiver<Mode>) {
    let now = *mode.borrow_and_update();
    if now == Mode::Up
        && let Ok(mut upstream) = TcpStream::connect(&target).await
    {
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => return,
            _ = mode.changed() => {}
        }
    }
    // Down: closed at once. Hang: held, unread and unanswered, until the mode changes.
    if *mode.borrow_and_update() == Mode::Hang {
        let _ = mode.changed().await;
    }
}

// --- a relay that checks lintel's log when it is switched --------------------------------

/// One `Switch.Set` as the relay received it, and what the oracle found at that moment.
#[derive(Debug, Clone)]
struct Drive {
    body: Value,
    /// Why this drive had no allowed decision on record before it (`None`: it had).
    unexplained: Option<String>,
}

#[derive(Clone)]
struct RelayState {
    lintel: String,
    door: String,
    client: reqwest::Client,
    drives: Arc<Mutex<Vec<Drive>>>,
}

/// A Shelly Gen2 relay for one door that, each time it is switched, reads lintel's event
/// log: the n-th drive needs n allowed decisions at its door already recorded, and one of
/// them still waiting for its outcome (`door.opened` or `door.driver_failed`).
struct Relay {
    url: String,
    drives: Arc<Mutex<Vec<Drive>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(s: &Server, door: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("the relay binds");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let drives = Arc::new(Mutex::new(Vec::new()));
        let state = RelayState {
            lintel: s.base.clone(),
            door: door.to_owned(),
            client: s.client.clone(),
            drives: drives.clone(),
        };
        let app = axum::Router::new().route("/rpc/Switch.Set", axum::routing::post(switch_set)).with_state(state);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, drives, task }
    }

    fn drives(&self) -> Vec<Drive> {
        self.drives.lock().expect("drives").clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn switch_set(State(relay): State<RelayState>, body: String) -> Response {
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    let unexplained = match all_events(&relay.client, &relay.lintel, &format!("door={}", relay.door)).await {
        Ok(events) => {
            let count = |f: &dyn Fn(&Value) -> bool| events.iter().filter(|e| f(e)).count();
            let allowed = count(&|e| e["kind"] == "decision" && e["allowed"] == true);
            // An opening is in progress from its decision until its outcome is recorded.
            let outcomes = count(&|e| e["kind"] == "door.opened" || e["kind"] == "door.driver_failed");
            let before = relay.drives.lock().expect("drives").len();
            if allowed <= before {
                Some(format!("drive {} with {allowed} allowed decisions on record", before + 1))
            } else if allowed <= outcomes {
                Some(format!("every one of the {allowed} allowed decisions had its outcome recorded already"))
            } else {
                None
            }
        }
        Err(e) => Some(format!("lintel's log could not be read while it drove the relay: {e}")),
    };
    relay.drives.lock().expect("drives").push(Drive { body, unexplained });
    json_answer(StatusCode::OK, json!({"was_on": false}))
}

// --- the oracle ---------------------------------------------------------------------------

/// Whether an open action or a relay switching is timed (1 s to an hour).
fn timed(seconds: &Value) -> bool {
    seconds.as_u64().is_some_and(|s| (1..=3600).contains(&s))
}

/// What the relay saw that the oracle refuses.
fn relay_findings(relay: &Relay) -> Vec<String> {
    let mut wrong = Vec::new();
    for (n, d) in relay.drives().iter().enumerate() {
        if let Some(why) = &d.unexplained {
            wrong.push(format!("relay drive {}: {why}: {}", n + 1, d.body));
        }
        if d.body["on"] == true && !timed(&d.body["toggle_after"]) {
            wrong.push(format!("relay drive {}: switched on without a timed off: {}", n + 1, d.body));
        }
    }
    wrong
}

/// What the controller did that the oracle refuses: every open it performed (lintel's
/// command, lintel's answer to a tap, its own offline decision) is timed and matched by
/// an allowed decision of that kind at that door in lintel's log.
async fn controller_findings(s: &Server, ctl: &Controller, door: &str) -> Vec<String> {
    let printed = ctl.printed();
    let opens = |action: &Value| action["action"] == "open";
    let mut wrong = Vec::new();
    let mut commands = 0;
    let mut online = 0;
    let mut offline = 0;
    for line in &printed {
        let actions: Vec<&Value> = match line["event"].as_str() {
            Some("command") => vec![&line["action"]],
            Some("decision") => line["actions"].as_array().map(|a| a.iter().collect()).unwrap_or_default(),
            _ => continue,
        };
        for action in actions.into_iter().filter(|a| opens(a)) {
            if !timed(&action["seconds"]) {
                wrong.push(format!("the controller opened without a timed close: {line}"));
            }
            match (line["event"].as_str(), line["source"].as_str()) {
                (Some("command"), _) => commands += 1,
                (_, Some("lintel")) => online += 1,
                _ => offline += 1,
            }
            if line["event"] == "decision" && line["allowed"] != true {
                wrong.push(format!("the controller opened on a refusal: {line}"));
            }
        }
    }
    let decisions = s.all_events(&format!("kind=decision&door={door}")).await;
    let allowed = |f: &dyn Fn(&Value) -> bool| decisions.iter().filter(|e| e["allowed"] == true && f(e)).count();
    let by_admin = allowed(&|e| e["data"]["by"].is_string());
    let taps = allowed(&|e| e["data"]["by"].is_null() && e["data"]["offline"] != true);
    let uploaded = allowed(&|e| e["data"]["offline"] == true);
    for (what, drives, recorded) in
        [("commanded", commands, by_admin), ("answered", online, taps), ("offline", offline, uploaded)]
    {
        if drives > recorded {
            wrong.push(format!("{drives} {what} openings at {door}, {recorded} allowed decisions for them on record"));
        }
    }
    wrong
}

/// Fails with everything that went wrong, once the scenario has run to its end.
fn assert_none(what: &str, findings: &[String]) {
    assert!(findings.is_empty(), "{what}:\n{}", findings.join("\n"));
}

// --- asking -------------------------------------------------------------------------------

async fn admin_open(s: &Server, door: &str) -> Answer {
    send(s.client.post(format!("{}/api/v1/doors/{door}/open", s.base)).bearer_auth(ADMIN)).await
}

async fn decide(s: &Server, door: &str, uid: &str) -> Answer {
    let body = json!({"door": door, "credential": {"kind": "card", "uid": uid}});
    send(s.client.post(format!("{}/api/v1/decisions", s.base)).bearer_auth(ADMIN).json(&body)).await
}

/// What went wrong in a scenario, kept until its end so that one run shows all of it.
#[derive(Default)]
struct Log {
    findings: Vec<String>,
}

impl Log {
    /// Whether the answer has the status wanted (if not, that is a finding).
    fn expect(&mut self, what: &str, answer: &Answer, want: u16) -> bool {
        let ok = answer.status == want;
        if !ok {
            self.findings.push(format!(
                "{what}: {} {}",
                answer.status,
                answer.text.chars().take(300).collect::<String>()
            ));
        }
        ok
    }

    fn check(&mut self, what: &str, ok: bool, detail: impl std::fmt::Display) {
        if !ok {
            self.findings.push(format!("{what}: {detail}"));
        }
    }
}

/// Asks `f` until it says yes (up to `seconds`); false if it never did.
async fn eventually<F: std::future::Future<Output = bool>>(seconds: u64, mut f: impl FnMut() -> F) -> bool {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if f().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A door `relay` driven by a watched relay behind a proxy, a door `desk` with no driver
/// for taps, and Ann with a card and a personal secret who may open both.
struct Doors {
    relay: Relay,
    proxy: Proxy,
    secret: String,
}

async fn doors(s: &Server, more_doors: &[&str]) -> Doors {
    let relay = Relay::start(s, "relay").await;
    let proxy = Proxy::start(&relay.url).await;
    let driver = json!({"kind": "shelly", "url": proxy.url, "generation": 2});
    s.ok("/api/v1/doors", json!({"id": "relay", "name": "Relay door", "driver": driver, "open_seconds": 3}), 201).await;
    s.ok("/api/v1/doors", json!({"id": "desk", "name": "Desk"}), 201).await;
    s.ok("/api/v1/people", json!({"id": "ann", "name": "Ann"}), 201).await;
    s.ok("/api/v1/people/ann/credentials", json!({"kind": "card", "uid": "A1A1A1A1"}), 201).await;
    let secret = s.ok("/api/v1/people/ann/credentials", json!({"kind": "secret"}), 201).await["secret"]
        .as_str()
        .expect("a secret")
        .to_owned();
    let mut all = vec!["relay", "desk"];
    all.extend_from_slice(more_doors);
    s.ok("/api/v1/grants", json!({"person_id": "ann", "doors": all}), 201).await;
    Doors { relay, proxy, secret }
}

/// The everyday traffic of a phase: an operator opens the relay door, Ann taps at the desk.
async fn traffic(s: &Server, log: &mut Log, phase: &str) {
    let opened = admin_open(s, "relay").await;
    log.expect(&format!("{phase}: an operator opens the relay door"), &opened, 200);
    let tapped = decide(s, "desk", "A1A1A1A1").await;
    if log.expect(&format!("{phase}: a tap at the desk"), &tapped, 200) {
        log.check(
            &format!("{phase}: the tap is allowed and recorded"),
            tapped.body["event_id"].is_string(),
            &tapped.text,
        );
    }
}

// --- the broker --------------------------------------------------------------------------

/// The broker dies while taps come in and operators open doors, then comes back on its
/// port: the controller decides alone meanwhile, uploads what it decided, and lintel's
/// list is acknowledged again; doors on other drivers never notice.
async fn a_broker_outage_heals(b: Backend) {
    let db = Database::new(b);
    let mut broker = Broker::start(&db.dir);
    let s = Server::start_with(&db, &[("LINTEL_MQTT_URL", &broker.url()), ("LINTEL_MQTT_CLIENT_ID", "lintel-faults")]);
    let door = json!({"id": "ctl", "name": "Controller door", "open_seconds": 4, "driver": {"kind": "mqtt", "controller": "ctl-1"}});
    s.ok("/api/v1/doors", door, 201).await;
    let doors = doors(&s, &["ctl"]).await;
    let mut ctl = Controller::start(&broker, &lintel_key(&db), &db.dir.join("ctl"));
    let mut log = Log::default();
    tokio::task::block_in_place(|| ctl.list_version(1));
    crate::mqtt::eventually(&s, "ctl-1 online with its list", |c| {
        c["online"] == true && c["acknowledged_version"] == c["list_version"]
    })
    .await;

    traffic(&s, &mut log, "before").await;
    let opened = admin_open(&s, "ctl").await;
    log.expect("before: an operator opens the controller's door", &opened, 200);
    let tap = tokio::task::block_in_place(|| ctl.tap("ctl", "A1A1A1A1"));
    log.check(
        "before: a tap at the controller is decided by lintel",
        tap["source"] == "lintel" && tap["allowed"] == true,
        &tap,
    );

    broker.kill();
    tokio::task::block_in_place(|| ctl.event("disconnected"));
    traffic(&s, &mut log, "broker gone").await;
    let opened = admin_open(&s, "ctl").await;
    log.expect("broker gone: opening the controller's door fails", &opened, 502);
    log.check("broker gone: the failed opening is on record", opened.body["event_id"].is_string(), &opened.text);
    let offline = tokio::task::block_in_place(|| ctl.tap("ctl", "A1A1A1A1"));
    log.check(
        "broker gone: the controller decides alone",
        offline["source"] == "offline" && offline["allowed"] == true,
        &offline,
    );

    broker.restart();
    tokio::task::block_in_place(|| {
        ctl.event("connected");
        ctl.wait_for("the offline decision uploaded", |l| l["event"] == "uploaded" && l["pending"] == 0)
    });
    crate::mqtt::eventually(&s, "ctl-1 online again with its list acknowledged", |c| {
        c["online"] == true && c["acknowledged_version"] == c["list_version"]
    })
    .await;
    let healed = eventually(10, || async { admin_open(&s, "ctl").await.status == 200 }).await;
    log.check("healed: the controller's door opens again", healed, "never 200 within 10 s");
    let tap = tokio::task::block_in_place(|| ctl.tap("ctl", "A1A1A1A1"));
    log.check("healed: lintel decides taps again", tap["source"] == "lintel" && tap["allowed"] == true, &tap);
    traffic(&s, &mut log, "healed").await;

    log.findings.extend(relay_findings(&doors.relay));
    log.findings.extend(controller_findings(&s, &ctl, "ctl").await);
    eprintln!("faults, broker: {} relay drives, {} controller lines", doors.relay.drives().len(), ctl.printed().len());
    assert_none("a broker outage", &log.findings);
}

// --- the relay ---------------------------------------------------------------------------

/// A relay that accepts and never answers: the opening fails within lintel's deadline
/// (a 502 problem), on record as failed; a relay that is down fails at once; once it
/// answers again, doors open.
async fn a_hanging_relay_heals(b: Backend) {
    let db = Database::new(b);
    let s = Server::start(&db);
    let doors = doors(&s, &[]).await;
    let mut log = Log::default();
    traffic(&s, &mut log, "before").await;

    doors.proxy.set(Mode::Hang);
    let started = Instant::now();
    let hung = admin_open(&s, "relay").await;
    let waited = started.elapsed();
    log.expect("relay hangs: the operator's opening fails", &hung, 502);
    log.check("relay hangs: the failure is on record", hung.body["event_id"].is_string(), &hung.text);
    let secret = send(s.client.post(format!("{}/open/relay", s.base)).bearer_auth(&doors.secret)).await;
    log.expect("relay hangs: opening with a secret fails", &secret, 502);
    let tapped = decide(&s, "desk", "A1A1A1A1").await;
    log.expect("relay hangs: taps elsewhere are decided", &tapped, 200);

    doors.proxy.set(Mode::Down);
    let down = admin_open(&s, "relay").await;
    log.expect("relay down: the opening fails", &down, 502);

    doors.proxy.set(Mode::Up);
    traffic(&s, &mut log, "healed").await;
    let events = s.events().await;
    let failed = events.iter().filter(|e| e["kind"] == "door.driver_failed" && e["door"] == "relay").count();
    log.check("every failed opening is recorded as failed", failed == 3, format!("{failed} door.driver_failed events"));
    let state = s.get("/api/v1/doors/relay").await.1;
    log.check("healed: the door is online again", state["state"]["online"] == true, &state);

    log.findings.extend(relay_findings(&doors.relay));
    eprintln!("faults, relay: a hanging relay answered in {waited:?}; {} relay drives", doors.relay.drives().len());
    assert_none("a hanging relay", &log.findings);
}

// --- the upstreams -----------------------------------------------------------------------

/// The makerspace CRM down, then hanging: decisions are made on what lintel has, within
/// the CRM's timeout; once it answers, members are looked up again.
async fn a_crm_outage_heals(b: Backend) {
    let db = Database::new(b);
    let mut crm = crate::crm::fake_crm().await;
    let proxy = Proxy::start(&crm.url).await;
    crm.url = proxy.url.clone();
    let mut env = crm.env();
    env.extend([("LINTEL_CRM_STALE_AFTER", "1".to_owned()), ("LINTEL_CRM_TIMEOUT_MS", "700".to_owned())]);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s = Server::start_with(&db, &env);
    s.ok("/api/v1/groups", json!({"id": "makers", "name": "Makers"}), 201).await;
    let doors = doors(&s, &[]).await;
    s.ok("/api/v1/grants", json!({"group_id": "makers", "doors": ["desk"]}), 201).await;
    let mut log = Log::default();
    let member = |uid: &str, code: &str| json!({"door": "desk", "credential": {"kind": "card", "uid": uid, "revocation_code": code}});
    let ask = |uid: &'static str, code: &'static str| {
        let request = s.client.post(format!("{}/api/v1/decisions", s.base)).bearer_auth(ADMIN).json(&member(uid, code));
        async move {
            let started = Instant::now();
            let answer = send(request).await;
            (answer, started.elapsed())
        }
    };
    let (first, _) = ask("1001", "R1").await;
    log.check("before: Ann is looked up and let in", first.body["reason"] == "granted", &first.text);
    traffic(&s, &mut log, "before").await;

    let mut waits = Vec::new();
    for (mode, phase) in [(Mode::Down, "CRM down"), (Mode::Hang, "CRM hangs")] {
        proxy.set(mode);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let (stale, waited) = ask("1001", "R1").await;
        waits.push(waited);
        log.expect(&format!("{phase}: Ann's card"), &stale, 200);
        log.check(&format!("{phase}: decided on what lintel has"), stale.body["reason"] == "granted", &stale.text);
        let (unknown, waited) = ask("1003", "C3").await;
        waits.push(waited);
        log.expect(&format!("{phase}: a member lintel has never seen"), &unknown, 200);
        traffic(&s, &mut log, phase).await;
    }

    proxy.set(Mode::Up);
    // A timeout pauses lookups for 30 s; an operator's lookup is let through and ends it.
    let (status, card) = s.post("/api/v1/crm/cards", json!({"member": "1003"})).await;
    log.check("healed: an operator's lookup gets through", status == 200, &card);
    let healed = eventually(10, || async { ask("1003", "C3").await.0.body["reason"] == "granted" }).await;
    log.check("healed: a new member is looked up and let in", healed, "never granted within 10 s");
    traffic(&s, &mut log, "healed").await;

    log.findings.extend(relay_findings(&doors.relay));
    eprintln!("faults, CRM on {b:?}: decisions waited {waits:?} while it was down, then hanging");
    assert_none("a CRM outage", &log.findings);
}

/// How many calls of this kind the outbox has done.
async fn outbox_done(s: &Server, kind: &str) -> usize {
    let outbox = s.get("/api/v1/outbox?state=done&limit=1000").await.1;
    outbox["items"].as_array().map_or(0, |items| items.iter().filter(|e| e["kind"] == kind).count())
}

/// The coworking platform down, then hanging: entries are decided at once and their
/// check-ins wait in the outbox, deliveries are stored; once it answers, every check-in
/// arrives and the deliveries are processed.
async fn a_platform_outage_heals(b: Backend) {
    let db = Database::new(b);
    let mut platform = crate::cobot::fake_platform().await;
    crate::cobot::seed(&platform);
    let proxy = Proxy::start(&platform.url).await;
    platform.url = proxy.url.clone();
    let env = crate::cobot::cobot_env(&platform);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s = Server::start_with(&db, &env);
    s.ok("/api/v1/doors", json!({"id": "front", "name": "Front", "attendance": true}), 201).await;
    s.ok("/api/v1/doors", json!({"id": "studio", "name": "Studio"}), 201).await;
    s.ok("/api/v1/groups", json!({"id": "members", "name": "Members", "doors": ["front"]}), 201).await;
    s.ok("/api/v1/groups", json!({"id": "studio", "name": "Studio", "doors": ["front", "studio"]}), 201).await;
    s.ok("/api/v1/grants", json!({"group_id": "members"}), 201).await;
    s.ok("/api/v1/grants", json!({"group_id": "studio"}), 201).await;
    let doors = doors(&s, &[]).await;
    let mut log = Log::default();
    let (status, report) = s.post("/api/v1/cobot/sync", json!({})).await;
    assert_eq!(status, 200, "{report}");
    s.ok("/api/v1/people/cobot-1/credentials", json!({"kind": "card", "uid": "C0B01001"}), 201).await;
    let registered = eventually(15, || async { outbox_done(&s, "check_in_token").await >= 1 }).await;
    assert!(registered, "the member's check-in token never reached the platform");
    traffic(&s, &mut log, "before").await;

    let mut entries = 0;
    let mut waits = Vec::new();
    for (mode, phase) in [(Mode::Down, "platform down"), (Mode::Hang, "platform hangs")] {
        proxy.set(mode);
        let started = Instant::now();
        let entry = decide(&s, "front", "C0B01001").await;
        waits.push(started.elapsed());
        log.expect(&format!("{phase}: an entry"), &entry, 200);
        log.check(&format!("{phase}: the member gets in"), entry.body["reason"] == "granted", &entry.text);
        entries += 1;
        let delivery = s.post("/hooks/cobot/confirmed_membership", json!({"url": platform.membership_url("2")})).await;
        log.check(&format!("{phase}: a delivery is stored"), delivery.0 == 202, &delivery.1);
        if mode == Mode::Down {
            let (status, problem) = s.post("/api/v1/cobot/sync", json!({})).await;
            log.check(&format!("{phase}: a sync fails as a 502"), status == 502, &problem);
        }
        traffic(&s, &mut log, phase).await;
    }
    // Entries are queued as check-ins by a worker, each second.
    let queued = eventually(10, || async {
        let pending = s.get("/api/v1/outbox?state=pending").await.1;
        pending["items"].as_array().is_some_and(|i| i.iter().any(|e| e["kind"] == "check_in"))
    })
    .await;
    log.check("the check-ins wait in the outbox", queued, s.get("/api/v1/outbox").await.1);

    proxy.set(Mode::Up);
    let arrived = eventually(40, || async { outbox_done(&s, "check_in").await >= entries }).await;
    log.check("healed: every entry became a check-in", arrived, s.get("/api/v1/outbox").await.1);
    let processed = eventually(30, || async {
        let inbox = s.get("/api/v1/inbox").await.1;
        inbox["items"].as_array().is_some_and(|i| !i.is_empty() && i.iter().all(|d| d["state"] == "done"))
    })
    .await;
    log.check("healed: the deliveries are processed", processed, s.get("/api/v1/inbox").await.1);
    let (status, report) = s.post("/api/v1/cobot/sync", json!({})).await;
    log.check("healed: a sync works", status == 200, &report);
    traffic(&s, &mut log, "healed").await;

    log.findings.extend(relay_findings(&doors.relay));
    eprintln!("faults, platform on {b:?}: entries waited {waits:?} while it was down, then hanging");
    assert_none("a platform outage", &log.findings);
}

// --- the database ------------------------------------------------------------------------

/// Sets the soft file-size limit of a running process (`unlimited` or bytes).
fn prlimit_fsize(pid: u32, limit: &str) {
    let out = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--fsize={limit}:")])
        .output()
        .expect("prlimit (util-linux) runs");
    assert!(out.status.success(), "prlimit failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// The database cannot grow (the server's file-size limit below its files' size):
/// lintel stays up, refuses writes and decisions with a 5xx problem, drives no door, says
/// it is not ready; once the limit is raised it works again, without a restart.
async fn a_full_database_heals(b: Backend) {
    let db = Database::new(b);
    let mut s = Server::start(&db);
    let doors = doors(&s, &[]).await;
    let mut log = Log::default();
    traffic(&s, &mut log, "before").await;
    let drives_before = doors.relay.drives().len();
    let decisions_before = s.all_events("kind=decision").await.len();

    // Every page lintel writes lies beyond 4 KiB: each write fails with EFBIG.
    prlimit_fsize(s.pid(), "4096");
    let mut full = Vec::new();
    for n in 0..3 {
        let body = json!({"id": format!("full-{n}"), "name": "Full"});
        let asks = [
            ("a write", s.client.post(format!("{}/api/v1/people", s.base)).bearer_auth(ADMIN).json(&body)),
            (
                "a decision",
                s.client
                    .post(format!("{}/api/v1/decisions", s.base))
                    .bearer_auth(ADMIN)
                    .json(&json!({"door": "desk", "credential": {"kind": "card", "uid": "A1A1A1A1"}})),
            ),
            ("an opening", s.client.post(format!("{}/api/v1/doors/relay/open", s.base)).bearer_auth(ADMIN)),
            ("/readyz", s.client.get(format!("{}/readyz", s.base))),
        ];
        for (what, request) in asks {
            match request.send().await {
                Ok(r) if what == "/readyz" && r.status() != 503 => {
                    full.push(format!("full: /readyz answered {} (not ready is 503)", r.status()))
                }
                Ok(r) if what != "/readyz" && !r.status().is_server_error() => {
                    full.push(format!("full: {what} answered {}", r.status()))
                }
                Ok(r)
                    if !r
                        .headers()
                        .get("content-type")
                        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json")) =>
                {
                    full.push(format!("full: {what} answered {} without a problem document", r.status()))
                }
                Ok(_) => {}
                Err(e) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let died =
                        s.exited().map_or("it still runs".to_owned(), |status| format!("the server died: {status}"));
                    panic!("a full database: {what} got no answer ({e}); {died}; findings so far: {full:?}");
                }
            }
        }
    }
    if let Some(status) = s.exited() {
        panic!("the server died while the database was full ({status}); findings so far: {full:?}");
    }
    log.check("full: no door was driven", doors.relay.drives().len() == drives_before, "the relay was switched");
    log.findings.extend(full);

    prlimit_fsize(s.pid(), "unlimited");
    let written = eventually(10, || async {
        let person = s
            .client
            .post(format!("{}/api/v1/people", s.base))
            .bearer_auth(ADMIN)
            .json(&json!({"id": "after-full", "name": "After"}));
        send(person).await.status == 201
    })
    .await;
    log.check("healed: writes work again", written, "no 201 within 10 s");
    // What was refused left nothing behind: no person, no decision.
    for n in 0..3 {
        let (status, _) = s.get(&format!("/api/v1/people/full-{n}")).await;
        log.check("healed: a refused write left nothing", status == 404, format!("full-{n}: {status}"));
    }
    let decisions = s.all_events("kind=decision").await.len();
    log.check(
        "healed: refused decisions left nothing",
        decisions == decisions_before,
        format!("{decisions_before} decisions before, {decisions} after"),
    );
    let ready = send(s.client.get(format!("{}/readyz", s.base))).await;
    log.expect("healed: /readyz", &ready, 200);
    traffic(&s, &mut log, "healed").await;
    log.check("healed: the relay door was driven", doors.relay.drives().len() > drives_before, "the relay never heard");

    log.findings.extend(relay_findings(&doors.relay));
    assert_none("a full database", &log.findings);
}

// --- the clock ---------------------------------------------------------------------------

/// The clock jumps an hour ahead, then an hour behind, then back: schedules follow the
/// server's clock, openings still need an allowed decision, nothing answers 5xx.
async fn clock_jumps_are_followed(b: Backend) {
    let db = Database::new(b);
    let clock = FakeClock::new(&db);
    let s = Server::start_with(&db, &clock.env());
    let doors = doors(&s, &[]).await;
    // Bob may open the relay door for 40 minutes around now (UTC), and only then.
    let now = chrono::Utc::now();
    let (from, to) = (now - chrono::Duration::minutes(20), now + chrono::Duration::minutes(20));
    let weekday = from.format("%a").to_string().to_lowercase();
    s.ok("/api/v1/people", json!({"id": "bob", "name": "Bob"}), 201).await;
    let bob = s.ok("/api/v1/people/bob/credentials", json!({"kind": "secret"}), 201).await["secret"]
        .as_str()
        .expect("a secret")
        .to_owned();
    let rule =
        json!({"weekdays": [weekday], "from": from.format("%H:%M").to_string(), "to": to.format("%H:%M").to_string()});
    s.ok(
        "/api/v1/grants",
        json!({"person_id": "bob", "doors": ["relay", "desk"], "schedule": {"tz": "UTC", "rules": [rule]}}),
        201,
    )
    .await;
    let mut log = Log::default();
    let open_as = |secret: &str| send(s.client.post(format!("{}/open/relay", s.base)).bearer_auth(secret));

    let mut offsets = Vec::new();
    for (offset, shift, bob_in) in [("+1h", 3600, false), ("-1h", -3600, false), ("+0", 0, true)] {
        clock.set(offset);
        // Ann's taps are recorded at the server's time: wait until it has moved.
        let moved = eventually(10, || async {
            let tap = decide(&s, "desk", "A1A1A1A1").await;
            let Some(id) = tap.body["event_id"].as_str() else { return false };
            let after = id.parse::<i64>().expect("event id") - 1;
            let event = s.get(&format!("/api/v1/events?after={after}&limit=1")).await.1;
            let at: Option<chrono::DateTime<chrono::Utc>> =
                event["items"][0]["at"].as_str().and_then(|t| t.parse().ok());
            at.is_some_and(|at| ((at - chrono::Utc::now()).num_seconds() - shift).abs() < 120)
        })
        .await;
        assert!(moved, "the server's clock never moved to {offset}");
        offsets.push(offset);
        let phase = format!("clock {offset}");
        let ann = open_as(&doors.secret).await;
        log.expect(&format!("{phase}: Ann (no schedule) opens"), &ann, 200);
        let bob_opened = open_as(&bob).await;
        log.expect(&format!("{phase}: Bob (40 minutes around now)"), &bob_opened, if bob_in { 200 } else { 403 });
        if !bob_in {
            log.check(
                &format!("{phase}: Bob is outside his schedule"),
                bob_opened.body["reason"] == "outside_schedule",
                &bob_opened.text,
            );
        }
        traffic(&s, &mut log, &phase).await;
    }
    let ready = send(s.client.get(format!("{}/readyz", s.base))).await;
    log.expect("after the jumps: /readyz", &ready, 200);

    log.findings.extend(relay_findings(&doors.relay));
    eprintln!("faults, clock: jumped to {offsets:?}; {} relay drives", doors.relay.drives().len());
    assert_none("clock jumps", &log.findings);
}

crate::on_both_backends!(
    a_crm_outage_heals,
    a_platform_outage_heals;
    sqlite only: a_broker_outage_heals, a_hanging_relay_heals, a_full_database_heals, clock_jumps_are_followed,
);
