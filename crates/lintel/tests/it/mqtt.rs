//! MQTT door controllers end to end: a real Mosquitto broker of the test's own (so it can
//! be killed), a real `lintel serve`, and the reference controller `lintel controller-sim`
//! (which installs only lists signed with lintel's key and decides from them offline).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Backend, Database, Server, lintel};

/// A Mosquitto broker on a free loopback port, killed when dropped.
pub struct Broker {
    port: u16,
    conf: PathBuf,
    child: Option<Child>,
}

impl Broker {
    pub fn start(dir: &Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\n"),
        )
        .unwrap();
        let mut broker = Self { port, conf, child: None };
        broker.restart();
        broker
    }

    pub fn restart(&mut self) {
        let mosquitto =
            ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"].into_iter().find(|p| Path::new(p).exists()).unwrap_or_else(
                || panic!("the MQTT tests need Mosquitto (apt-get install mosquitto); scripts/test installs it"),
            );
        let child = Command::new(mosquitto)
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto starts");
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "mosquitto did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `lintel controller-sim`, driven through its standard input and read as JSON lines.
pub struct Controller {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<Value>,
    /// Every line read so far, also those `wait_for` skipped (for the fault harness).
    read: std::sync::Mutex<Vec<Value>>,
}

impl Controller {
    pub fn start(broker: &Broker, key: &str, state_dir: &Path) -> Self {
        Self::start_as("ctl-1", broker, key, state_dir)
    }

    pub fn start_as(id: &str, broker: &Broker, key: &str, state_dir: &Path) -> Self {
        let mut child = lintel()
            .args(["controller-sim", "--broker", &broker.url(), "--id", id, "--lintel-key", key])
            .arg("--state-dir")
            .arg(state_dir)
            .args(["--answer-timeout-ms", "1500"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the controller simulator starts");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        Self { child, stdin, lines, read: Default::default() }
    }

    /// The next line that satisfies `wanted`, skipping others; panics after 15 s.
    pub fn wait_for(&self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.read.lock().unwrap().push(line.clone());
                    if wanted(&line) {
                        return line;
                    }
                }
                Err(_) => panic!("the controller never reported {what}"),
            }
        }
    }

    /// Every line the controller printed so far, in order.
    pub fn printed(&self) -> Vec<Value> {
        let mut read = self.read.lock().unwrap();
        read.extend(self.lines.try_iter());
        read.clone()
    }

    pub fn event(&self, name: &str) -> Value {
        self.wait_for(name, |l| l["event"] == name)
    }

    pub fn list_version(&self, at_least: u64) -> Value {
        self.wait_for(&format!("a list of version {at_least} or later"), |l| {
            l["event"] == "list" && l["version"].as_u64().unwrap_or(0) >= at_least
        })
    }

    /// The first list holding `cards` cards (lists issued while the world was being made
    /// may come first).
    pub fn list_with_cards(&self, cards: u64) -> Value {
        self.wait_for(&format!("a list of {cards} cards"), |l| l["event"] == "list" && l["cards"] == cards)
    }

    pub fn tap(&mut self, door: &str, uid: &str) -> Value {
        writeln!(self.stdin, "tap {door} {uid}").unwrap();
        self.event("decision")
    }

    /// Digits typed at the door's keypad.
    pub fn key(&mut self, door: &str, digits: &str) -> Value {
        writeln!(self.stdin, "key {door} {digits}").unwrap();
        self.event("decision")
    }

    /// One of a door's inputs changed (`input front door open`).
    pub fn input(&mut self, door: &str, input: &str, state: &str) -> Value {
        writeln!(self.stdin, "input {door} {input} {state}").unwrap();
        self.event("input")
    }

    pub fn stop(mut self) {
        let _ = writeln!(self.stdin, "quit");
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn lintel_key(db: &Database) -> String {
    let out = lintel().args(["controller-key", "--database-url", &db.url]).current_dir(&db.dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

pub fn serve(db: &Database, broker: &Broker, client_id: &str) -> Server {
    Server::start_with(
        db,
        &[("LINTEL_MQTT_URL", &broker.url()), ("LINTEL_MQTT_CLIENT_ID", client_id), ("RUST_LOG", "warn")],
    )
}

/// Door `front` on controller ctl-1 (a fail-secure door), Ann's card with a grant, a card
/// nobody granted anything, and door `side` on no controller.
pub async fn world(s: &Server) {
    s.ok(
        "/api/v1/doors",
        json!({"id": "front", "name": "Front", "open_seconds": 4, "driver": {"kind": "mqtt", "controller": "ctl-1"}}),
        201,
    )
    .await;
    s.ok("/api/v1/doors", json!({"id": "side", "name": "Side"}), 201).await;
    s.ok("/api/v1/people", json!({"id": "ann", "name": "Ann"}), 201).await;
    s.ok("/api/v1/people/ann/credentials", json!({"kind": "card", "uid": "04A1B2C3"}), 201).await;
    s.ok("/api/v1/grants", json!({"person_id": "ann", "doors": ["front", "side"]}), 201).await;
    s.ok("/api/v1/people", json!({"id": "bo", "name": "Bo"}), 201).await;
    s.ok("/api/v1/people/bo/credentials", json!({"kind": "card", "uid": "04B0B0B0"}), 201).await;
}

pub async fn controller_row(s: &Server) -> Value {
    let (status, list) = s.get("/api/v1/controllers").await;
    assert_eq!(status, 200, "{list}");
    list.as_array().unwrap().iter().find(|c| c["id"] == "ctl-1").cloned().expect("ctl-1 is listed")
}

/// Waits until `check` holds for the controller's row (lintel records acks and status
/// as they arrive).
pub async fn eventually(s: &Server, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let row = controller_row(s).await;
        if check(&row) {
            return row;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "never: {what}; last {row}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn taps_are_decided_by_lintel_and_doors_open_on_command(backend: Backend) {
    let db = Database::new(backend);
    let broker = Broker::start(&db.dir);
    let s = serve(&db, &broker, "lintel-it");
    world(&s).await;
    let mut ctl = Controller::start(&broker, &lintel_key(&db), &db.dir.join("ctl"));
    ctl.event("connected");
    let list = ctl.list_with_cards(1);
    assert_eq!(list["cards"], 1, "only Ann's card opens a door of ctl-1: {list}");

    let allowed = ctl.tap("front", "04A1B2C3");
    assert_eq!((allowed["source"].as_str(), allowed["allowed"].as_bool()), (Some("lintel"), Some(true)), "{allowed}");
    assert_eq!(allowed["actions"][0], json!({"action": "open", "seconds": 4}));
    let denied = ctl.tap("front", "04B0B0B0");
    assert_eq!((denied["source"].as_str(), denied["reason"].as_str()), (Some("lintel"), Some("no_grant")), "{denied}");
    assert_eq!(denied["actions"][0]["color"], "red");
    // A controller asks only about its own doors: `side` is not on ctl-1.
    let elsewhere = ctl.tap("side", "04A1B2C3");
    assert_eq!(elsewhere["reason"], "unknown_door", "{elsewhere}");

    let events = s.events().await;
    let decisions: Vec<&Value> = events.iter().filter(|e| e["kind"] == "decision").collect();
    assert_eq!(decisions.len(), 2, "the tap at a foreign door is not recorded: {decisions:?}");
    assert_eq!((decisions[0]["person_id"].as_str(), decisions[0]["allowed"].as_bool()), (Some("ann"), Some(true)));

    let opened = s.ok("/api/v1/doors/front/open", json!({"seconds": 3}), 200).await;
    assert_eq!((opened["opened"].as_bool(), opened["confirmed"].as_bool()), (Some(true), Some(true)), "{opened}");
    let command = ctl.event("command");
    assert_eq!(command["action"], json!({"action": "open", "seconds": 3}));

    let row = eventually(&s, "ctl-1 online with its list acknowledged", |c| {
        c["online"] == true && c["drift"] == false && c["acknowledged_version"] == c["list_version"]
    })
    .await;
    assert_eq!(row["doors"], json!(["front"]));
    let (_, door) = s.get("/api/v1/doors/front").await;
    assert_eq!(door["state"]["online"], true, "{door}");

    // A clean goodbye (and the Last Will, for a drop) marks it offline.
    ctl.stop();
    eventually(&s, "ctl-1 offline", |c| c["online"] == false).await;
}

async fn a_revocation_reaches_the_controller_and_holds_offline(backend: Backend) {
    let db = Database::new(backend);
    let mut broker = Broker::start(&db.dir);
    let s = serve(&db, &broker, "lintel-it");
    world(&s).await;
    let mut ctl = Controller::start(&broker, &lintel_key(&db), &db.dir.join("ctl"));
    let first = ctl.list_with_cards(1)["version"].as_u64().unwrap();
    eventually(&s, "the first list acknowledged", |c| c["acknowledged_version"] == first).await;

    let (_, creds) = s.get("/api/v1/people/ann/credentials").await;
    let card = creds.as_array().unwrap()[0]["id"].as_str().unwrap().to_owned();
    let revoked_at = Instant::now();
    assert_eq!(s.delete(&format!("/api/v1/credentials/{card}")).await.0, 200);
    let next = ctl.list_version(first + 1);
    let took = revoked_at.elapsed();
    assert_eq!(next["cards"], 0, "{next}");
    eprintln!("revocation to new list at the controller: {took:?}");
    assert!(took < Duration::from_secs(3), "a revocation took {took:?} to reach the controller");
    eventually(&s, "the new list acknowledged", |c| {
        c["acknowledged_version"] == next["version"] && c["drift"] == false
    })
    .await;

    // With the broker gone the controller decides alone, on the new list.
    broker.kill();
    ctl.event("disconnected");
    let offline = ctl.tap("front", "04A1B2C3");
    assert_eq!(
        (offline["source"].as_str(), offline["allowed"].as_bool(), offline["reason"].as_str()),
        (Some("offline"), Some(false), Some("unknown_credential")),
        "{offline}"
    );
}

async fn offline_decisions_are_uploaded_once(backend: Backend) {
    let db = Database::new(backend);
    let mut broker = Broker::start(&db.dir);
    let s = serve(&db, &broker, "lintel-it");
    world(&s).await;
    let state = db.dir.join("ctl");
    let key = lintel_key(&db);
    let mut ctl = Controller::start(&broker, &key, &state);
    ctl.list_with_cards(1);

    broker.kill();
    ctl.event("disconnected");
    let ann = ctl.tap("front", "04A1B2C3");
    assert_eq!((ann["source"].as_str(), ann["allowed"].as_bool()), (Some("offline"), Some(true)), "{ann}");
    assert_eq!(ann["actions"][0], json!({"action": "open", "seconds": 4}));
    let bo = ctl.tap("front", "04B0B0B0");
    assert_eq!((bo["allowed"].as_bool(), bo["reason"].as_str()), (Some(false), Some("unknown_credential")), "{bo}");
    // What the controller keeps on disk, as a controller that lost lintel's answer would.
    let kept = std::fs::read(state.join("ctl-1.json")).unwrap();

    broker.restart();
    let uploaded = ctl.event("uploaded");
    assert_eq!(uploaded["pending"], 0, "{uploaded}");
    ctl.stop();

    // The same decisions again (a controller that never heard the acknowledgement).
    std::fs::write(state.join("ctl-1.json"), kept).unwrap();
    let ctl = Controller::start(&broker, &key, &state);
    ctl.wait_for("the second upload acknowledged", |l| l["event"] == "uploaded" && l["pending"] == 0);

    let events = s.events().await;
    let offline: Vec<&Value> = events.iter().filter(|e| e["data"]["offline"] == true).collect();
    assert_eq!(offline.len(), 2, "each offline decision once: {offline:#?}");
    let ann_event = offline.iter().find(|e| e["allowed"] == true).unwrap();
    assert_eq!(ann_event["person_id"], "ann");
    assert_eq!(ann_event["door"], "front");
    assert_eq!(ann_event["data"]["controller"], "ctl-1");
    let bo_event = offline.iter().find(|e| e["allowed"] == false).unwrap();
    assert_eq!((bo_event["person_id"].as_str(), bo_event["reason"].as_str()), (Some("bo"), Some("unknown_credential")));
    // The entry counts for attendance like any other.
    let today = chrono::Utc::now().date_naive();
    let (_, attendance) = s.get(&format!("/api/v1/attendance?from={today}&to={today}")).await;
    assert_eq!(attendance["days"][0]["present"], 1, "{attendance}");
    drop(ctl);
}

async fn a_forged_list_is_refused(backend: Backend) {
    let db = Database::new(backend);
    let broker = Broker::start(&db.dir);
    let s = serve(&db, &broker, "lintel-it");
    world(&s).await;
    let mut ctl = Controller::start(&broker, &lintel_key(&db), &db.dir.join("ctl"));
    let genuine = ctl.list_with_cards(1)["version"].as_u64().unwrap();

    // Another lintel (another key) on the same broker hands ctl-1 a list of its own: an
    // always-open door for everyone's cards it knows, Bo's included.
    let other_db = Database::new(Backend::Sqlite);
    let other = serve(&other_db, &broker, "impostor");
    other
        .ok(
            "/api/v1/doors",
            json!({"id": "front", "name": "Front", "driver": {"kind": "mqtt", "controller": "ctl-1"}}),
            201,
        )
        .await;
    other.ok("/api/v1/people", json!({"id": "bo", "name": "Bo"}), 201).await;
    other.ok("/api/v1/people/bo/credentials", json!({"kind": "card", "uid": "04B0B0B0"}), 201).await;
    other.ok("/api/v1/grants", json!({"person_id": "bo", "doors": ["front"]}), 201).await;
    let refused = ctl.event("list_refused");
    assert!(refused["reason"].as_str().unwrap().contains("signature"), "{refused}");
    other.kill();

    // The controller still holds lintel's list: offline, Bo stays out and Ann gets in.
    drop(broker);
    ctl.event("disconnected");
    let bo = ctl.tap("front", "04B0B0B0");
    assert_eq!((bo["source"].as_str(), bo["allowed"].as_bool()), (Some("offline"), Some(false)), "{bo}");
    let ann = ctl.tap("front", "04A1B2C3");
    assert_eq!(ann["allowed"], true, "{ann}");
    assert!(genuine >= 1);
}

/// Enrolling by a tap at the reference controller's reader: the tap lintel decides
/// online is the one that becomes the person's card, and with a grant the card opens
/// the door at the next tap.
async fn a_card_tapped_at_a_controller_is_enrolled(backend: Backend) {
    let db = Database::new(backend);
    let broker = Broker::start(&db.dir);
    let s = serve(&db, &broker, "lintel-it");
    world(&s).await;
    s.ok("/api/v1/people", json!({"id": "dan", "name": "Dan"}), 201).await;
    s.ok("/api/v1/grants", json!({"person_id": "dan", "doors": ["front"]}), 201).await;
    let mut ctl = Controller::start(&broker, &lintel_key(&db), &db.dir.join("ctl"));
    ctl.event("connected");
    let enrolment = s.ok("/api/v1/people/dan/enrolments", json!({"door": "front"}), 201).await;
    let path = format!("/api/v1/enrolments/{}", enrolment["id"].as_str().unwrap());
    let unknown = ctl.tap("front", "0D0D0D0D");
    assert_eq!((unknown["source"].as_str(), unknown["reason"].as_str()), (Some("lintel"), Some("unknown_credential")));
    let enrolled = s.get(&path).await.1;
    assert_eq!(
        (enrolled["state"].as_str(), enrolled["uid"].as_str()),
        (Some("enrolled"), Some("0D0D0D0D")),
        "{enrolled}"
    );
    let allowed = ctl.tap("front", "0D0D0D0D");
    assert_eq!((allowed["allowed"].as_bool(), allowed["reason"].as_str()), (Some(true), Some("granted")), "{allowed}");
    let decided = s.all_events("kind=decision&person_id=dan").await;
    assert_eq!(decided.len(), 1, "the second tap is Dan's: {decided:?}");
    ctl.stop();
}

crate::on_both_backends!(
    a_card_tapped_at_a_controller_is_enrolled,
    taps_are_decided_by_lintel_and_doors_open_on_command,
    a_revocation_reaches_the_controller_and_holds_offline,
    offline_decisions_are_uploaded_once,
    a_forged_list_is_refused,
);
