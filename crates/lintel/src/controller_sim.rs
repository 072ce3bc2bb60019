//! `lintel controller-sim`: a reference MQTT door controller, behaving as docs/mqtt.md asks
//! of a real one. It announces itself (retained status, Last Will), sends taps and waits
//! for lintel's decision, installs only allow-lists signed with lintel's key (for itself,
//! never older than the one it has), decides from that list while it cannot reach lintel,
//! keeps those decisions on disk, and uploads them when it is back until lintel confirms.
//!
//! At its keypad it takes PINs and backup codes: lintel decides both while it answers;
//! offline, only backup codes (listed as salted hashes), each once at this controller.
//!
//! It reads commands on standard input (`tap DOOR UID [REVOCATION_CODE]`, `key DOOR
//! DIGITS`, `quit`) and writes what happens as JSON lines on standard output, so tests and
//! people can drive it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use ed25519_dalek::VerifyingKey;
use lintel_core::offline::{InstalledList, OfflineVerdict};
use lintel_proto::PresentedCredential;
use lintel_proto::controller::{
    Ack, Command, DecisionMessage, MAX_UPLOAD_BATCH, OfflineDecision, Status, Tap, Upload, UploadAck, valid_id,
};
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use serde_json::json;
use tokio::io::AsyncBufReadExt;
use tokio::sync::oneshot;

#[derive(clap::Args)]
pub struct Args {
    /// The broker: mqtt://[user:password@]host[:port].
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    broker: String,
    /// This controller's id (doors name it in their driver).
    #[arg(long)]
    id: String,
    #[arg(long, default_value = "lintel")]
    topic_prefix: String,
    /// lintel's public key in hex (`lintel controller-key` prints it): the only signer of
    /// allow-lists this controller accepts.
    #[arg(long)]
    lintel_key: String,
    /// Where the installed list and the offline decisions are kept across restarts.
    #[arg(long)]
    state_dir: PathBuf,
    /// How long a tap waits for lintel's answer before the controller decides offline.
    #[arg(long, default_value_t = 2000)]
    answer_timeout_ms: u64,
    /// Instead of reading commands: tap this many times (at --door with --uid), one after
    /// the other, and print the tap-to-decision latency.
    #[arg(long)]
    bench: Option<usize>,
    #[arg(long, requires = "bench")]
    door: Option<String>,
    #[arg(long, requires = "bench")]
    uid: Option<String>,
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Persisted {
    /// The signed list as received (verified again at start-up).
    list_jws: Option<String>,
    /// Offline decisions lintel has not confirmed yet.
    pending: Vec<OfflineDecision>,
    next_offline_id: u64,
    /// Backup codes (credential ids) this controller let in offline: refused from then on,
    /// until a list no longer holds them (lintel has the use).
    #[serde(default)]
    used_codes: Vec<String>,
    /// (zone, card UID) of those this controller saw enter an anti-passback zone and not
    /// leave: offline, a second entry is let through and marked (soft anti-passback).
    #[serde(default)]
    inside: Vec<(String, String)>,
}

/// What someone presented at a door: a card, or digits typed at the keypad.
#[derive(Clone, Copy)]
enum Input<'a> {
    Card { uid: &'a str, code: Option<&'a str> },
    Keypad { digits: &'a str },
}

impl Input<'_> {
    /// As lintel is asked: typed digits go as a `pin`, which lintel takes for a backup code
    /// when they are one.
    fn credential(self) -> PresentedCredential {
        match self {
            Self::Card { uid, code } => {
                PresentedCredential::Card { uid: uid.to_owned(), revocation_code: code.map(str::to_owned) }
            }
            Self::Keypad { digits } => PresentedCredential::Pin { pin: digits.to_owned() },
        }
    }

    /// What the controller's output names: the UID, never typed digits.
    fn shown(self) -> serde_json::Value {
        match self {
            Self::Card { uid, .. } => json!({"uid": uid}),
            Self::Keypad { .. } => json!({"keypad": true}),
        }
    }
}

struct Sim {
    id: String,
    prefix: String,
    key: VerifyingKey,
    state_file: PathBuf,
    persisted: Persisted,
    list: Option<InstalledList>,
    connected: bool,
    /// lintel's own retained status (and Last Will): while it is down, taps are decided
    /// at once from the list.
    lintel_online: Option<bool>,
    waiting: HashMap<String, oneshot::Sender<DecisionMessage>>,
    seen_commands: Vec<String>,
}

fn say(line: serde_json::Value) {
    println!("{line}");
}

impl Sim {
    fn topic(&self, name: &str) -> String {
        format!("{}/c/{}/{name}", self.prefix, self.id)
    }

    fn list_version(&self) -> u64 {
        self.list.as_ref().map_or(0, |l| l.list.version)
    }

    fn save(&self) -> anyhow::Result<()> {
        let tmp = self.state_file.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(&self.persisted)?)?;
        std::fs::rename(&tmp, &self.state_file)?;
        Ok(())
    }

    /// Verifies and installs a list; the answer for `list/ack`.
    fn install(&mut self, jws: &[u8]) -> serde_json::Value {
        match lintel_signed::verify_allow_list(&self.key, jws, &self.id) {
            Ok(list) if list.version < self.list_version() => {
                let why = format!("version {} is older than the installed {}", list.version, self.list_version());
                say(json!({"event": "list_refused", "reason": why}));
                json!({"version": self.list_version(), "refused": why})
            }
            Ok(list) => {
                let version = list.version;
                say(json!({"event": "list", "version": version, "cards": list.cards.len(), "codes": list.codes.len()}));
                // A code no longer listed is one lintel knows is used (or revoked).
                self.persisted.used_codes.retain(|used| list.codes.iter().any(|c| &c.credential == used));
                self.list = Some(InstalledList::new(list));
                self.persisted.list_jws = Some(String::from_utf8_lossy(jws).into_owned());
                if let Err(e) = self.save() {
                    say(json!({"event": "error", "detail": format!("could not keep the list: {e}")}));
                }
                json!({"version": version})
            }
            Err(e) => {
                say(json!({"event": "list_refused", "reason": e.to_string()}));
                json!({"version": self.list_version(), "refused": e.to_string()})
            }
        }
    }

    /// Keeps who this controller saw pass through its zones' doors; whether this is an
    /// entry of someone it saw enter and not leave.
    fn pass_zone(&mut self, door: &str, input: Input<'_>) -> bool {
        let zone = self.list.as_ref().and_then(|l| l.list.doors.get(door)).and_then(|d| d.zone.clone());
        let (Some(zone), Input::Card { uid, .. }) = (zone, input) else {
            return false;
        };
        let key = (zone.id, lintel_core::credential::normalize_uid(uid).unwrap_or_default());
        let inside = self.persisted.inside.contains(&key);
        if zone.exit {
            self.persisted.inside.retain(|k| *k != key);
        } else if !inside {
            self.persisted.inside.push(key);
        }
        inside && !zone.exit
    }

    fn decide_offline(&mut self, door: &str, input: Input<'_>) -> anyhow::Result<OfflineDecision> {
        let now = Utc::now();
        // No list at all: nobody is known, whatever the door.
        let unknown =
            OfflineVerdict { allowed: false, reason: lintel_proto::Reason::UnknownCredential, fail_safe: false };
        let (verdict, backup_code, credential) = match input {
            Input::Card { uid, code } => {
                let bytes = hex::decode(lintel_core::credential::normalize_uid(uid)?)?;
                let verdict = self.list.as_ref().map_or(unknown, |l| l.decide(door, &bytes, code, now.timestamp()));
                (verdict, None, Some(input.credential()))
            }
            // Typed digits are never uploaded: they may be a PIN or a code.
            Input::Keypad { digits } => match &self.list {
                Some(list) => {
                    let v = list.decide_keypad(door, digits, &self.persisted.used_codes, now.timestamp());
                    (v.verdict, v.backup_code, None)
                }
                None => (unknown, None, None),
            },
        };
        if let (true, Some(code)) = (verdict.allowed, &backup_code) {
            self.persisted.used_codes.push(code.clone());
        }
        let anti_passback = verdict.allowed && self.pass_zone(door, input);
        self.persisted.next_offline_id += 1;
        let decision = OfflineDecision {
            // The topic names the controller; the id only needs to be unique for it.
            id: format!("off-{}-{}", now.timestamp_micros(), self.persisted.next_offline_id),
            door: door.to_owned(),
            at: now,
            credential,
            allowed: verdict.allowed,
            reason: verdict.reason,
            list_version: self.list_version(),
            fail_safe: verdict.fail_safe,
            backup_code,
            anti_passback,
        };
        self.persisted.pending.push(decision.clone());
        self.save()?;
        Ok(decision)
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    if !valid_id(&args.id) {
        bail!("--id {:?}: 1 to 64 of A-Z a-z 0-9 . _ -", args.id);
    }
    let key_bytes: [u8; 32] = hex::decode(args.lintel_key.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .context("--lintel-key: 64 hex digits (lintel controller-key prints them)")?;
    let key = VerifyingKey::from_bytes(&key_bytes).context("--lintel-key is not an Ed25519 public key")?;
    std::fs::create_dir_all(&args.state_dir)?;
    let state_file = args.state_dir.join(format!("{}.json", args.id));
    let persisted: Persisted = match std::fs::read(&state_file) {
        Ok(bytes) => serde_json::from_slice(&bytes).context("reading the controller's state")?,
        Err(_) => Persisted::default(),
    };
    let mut sim = Sim {
        id: args.id.clone(),
        prefix: args.topic_prefix.trim_end_matches('/').to_owned(),
        key,
        state_file,
        persisted,
        list: None,
        connected: false,
        lintel_online: None,
        waiting: HashMap::new(),
        seen_commands: Vec::new(),
    };
    if let Some(jws) = sim.persisted.list_jws.clone() {
        sim.install(jws.as_bytes());
    }
    let url = reqwest::Url::parse(&args.broker).context("--broker")?;
    let host = url.host_str().context("--broker needs a host")?;
    let mut options = MqttOptions::new(args.id.clone(), host, url.port().unwrap_or(1883));
    options.set_keep_alive(Duration::from_secs(5));
    options.set_max_packet_size(16 * 1024 * 1024, 1024 * 1024);
    if !url.username().is_empty() {
        options.set_credentials(url.username(), url.password().unwrap_or_default());
    }
    let offline = serde_json::to_vec(&Status { online: false, list_version: 0, firmware: None })?;
    options.set_last_will(LastWill::new(sim.topic("status"), offline, QoS::AtLeastOnce, true));
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    let mut network = eventloop.network_options();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    let sim = Arc::new(Mutex::new(sim));

    let events_sim = sim.clone();
    let events_client = client.clone();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => on_connect(&events_sim, &events_client).await,
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    on_message(&events_sim, &events_client, &p.topic, &p.payload).await
                }
                Ok(_) => {}
                Err(e) => {
                    let was = std::mem::replace(&mut lock(&events_sim).connected, false);
                    if was {
                        say(json!({"event": "disconnected", "detail": e.to_string()}));
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
        }
    });

    let retry_sim = sim.clone();
    let retry_client = client.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upload_pending(&retry_sim, &retry_client).await;
        }
    });

    let timeout = Duration::from_millis(args.answer_timeout_ms);
    if let Some(count) = args.bench {
        let door = args.door.context("--bench needs --door")?;
        let uid = args.uid.context("--bench needs --uid")?;
        return bench(&sim, &client, count, &door, &uid, timeout).await;
    }
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["tap", door, uid, rest @ ..] if rest.len() <= 1 => {
                let input = Input::Card { uid, code: rest.first().copied() };
                if let Err(e) = tap(&sim, &client, door, input, timeout).await {
                    say(json!({"event": "error", "detail": e.to_string()}));
                }
            }
            ["key", door, digits] if digits.bytes().all(|b| b.is_ascii_digit()) => {
                if let Err(e) = tap(&sim, &client, door, Input::Keypad { digits }, timeout).await {
                    say(json!({"event": "error", "detail": e.to_string()}));
                }
            }
            ["input", door, input, state] => {
                // The wire format (docs/mqtt.md), so a typo is published as typed and lintel refuses it.
                let message = json!({"door": door, "input": input, "state": state});
                let topic = lock(&sim).topic("input");
                let _ = client.publish(topic, QoS::AtLeastOnce, false, message.to_string()).await;
                say(json!({"event": "input", "door": door, "input": input, "state": state}));
            }
            ["quit"] => break,
            [] => {}
            _ => say(
                json!({"event": "error", "detail": "commands: tap DOOR UID [REVOCATION_CODE] | key DOOR DIGITS | input DOOR INPUT STATE | quit"}),
            ),
        }
    }
    // A clean goodbye: the retained status says offline (the Last Will is only for drops).
    let status_topic = lock(&sim).topic("status");
    let goodbye = serde_json::to_vec(&Status { online: false, list_version: 0, firmware: None })?;
    let _ = client.publish(status_topic, QoS::AtLeastOnce, true, goodbye).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = client.disconnect().await;
    Ok(())
}

fn lock(sim: &Mutex<Sim>) -> std::sync::MutexGuard<'_, Sim> {
    sim.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn on_connect(sim: &Mutex<Sim>, client: &AsyncClient) {
    let (topics, status) = {
        let mut s = lock(sim);
        s.connected = true;
        let mut topics: Vec<String> =
            ["decision", "command", "list", "upload/ack"].iter().map(|t| s.topic(t)).collect();
        topics.push(format!("{}/lintel/status", s.prefix));
        let status =
            Status { online: true, list_version: s.list_version(), firmware: Some("lintel-controller-sim".into()) };
        (topics, (s.topic("status"), status))
    };
    say(json!({"event": "connected", "pending": lock(sim).persisted.pending.len()}));
    for topic in topics {
        let _ = client.subscribe(topic, QoS::AtLeastOnce).await;
    }
    let _ = client.publish(status.0, QoS::AtLeastOnce, true, serde_json::to_vec(&status.1).expect("serializes")).await;
    upload_pending(sim, client).await;
}

/// Sends the offline decisions lintel has not confirmed, in batches; again and again
/// until lintel answers on `upload/ack` (it records each id once).
async fn upload_pending(sim: &Mutex<Sim>, client: &AsyncClient) {
    let (topic, uploads) = {
        let s = lock(sim);
        if !s.connected || s.lintel_online == Some(false) {
            return;
        }
        let uploads: Vec<Vec<u8>> = s
            .persisted
            .pending
            .chunks(MAX_UPLOAD_BATCH)
            .map(|batch| serde_json::to_vec(&Upload { decisions: batch.to_vec() }).expect("serializes"))
            .collect();
        (s.topic("upload"), uploads)
    };
    for payload in uploads {
        let _ = client.publish(topic.clone(), QoS::AtLeastOnce, false, payload).await;
    }
}

async fn on_message(sim: &Mutex<Sim>, client: &AsyncClient, topic: &str, payload: &[u8]) {
    let (name, lintel_status) = {
        let s = lock(sim);
        (
            topic.strip_prefix(&format!("{}/c/{}/", s.prefix, s.id)).map(str::to_owned),
            format!("{}/lintel/status", s.prefix),
        )
    };
    if topic == lintel_status {
        let online = Status::parse(payload).is_ok_and(|s| s.online);
        lock(sim).lintel_online = Some(online);
        say(json!({"event": "lintel", "online": online}));
        if online {
            upload_pending(sim, client).await;
        }
        return;
    }
    match name.as_deref() {
        Some("decision") => match DecisionMessage::parse(payload) {
            Ok(d) => {
                if let Some(tx) = lock(sim).waiting.remove(&d.id) {
                    let _ = tx.send(d);
                }
            }
            Err(e) => say(json!({"event": "error", "detail": format!("bad decision: {e}")})),
        },
        Some("command") => match Command::parse(payload) {
            Ok(c) => {
                let fresh = {
                    let mut s = lock(sim);
                    let fresh = !s.seen_commands.contains(&c.id);
                    s.seen_commands.push(c.id.clone());
                    fresh
                };
                if fresh {
                    say(json!({"event": "command", "door": c.door, "action": c.action}));
                }
                let ack = Ack { id: c.id, ok: true, error: None };
                let topic = lock(sim).topic("ack");
                let _ =
                    client.publish(topic, QoS::AtLeastOnce, false, serde_json::to_vec(&ack).expect("serializes")).await;
            }
            Err(e) => say(json!({"event": "error", "detail": format!("bad command: {e}")})),
        },
        // An empty retained message only clears the topic.
        Some("list") if payload.is_empty() => {}
        Some("list") => {
            let (ack, topic) = {
                let mut s = lock(sim);
                (s.install(payload), s.topic("list/ack"))
            };
            let _ = client.publish(topic, QoS::AtLeastOnce, false, ack.to_string()).await;
        }
        Some("upload/ack") => match UploadAck::parse(payload) {
            Ok(ack) => {
                let mut s = lock(sim);
                s.persisted.pending.retain(|d| !ack.ids.contains(&d.id));
                let _ = s.save();
                say(json!({"event": "uploaded", "ids": ack.ids, "pending": s.persisted.pending.len()}));
            }
            Err(e) => say(json!({"event": "error", "detail": format!("bad upload ack: {e}")})),
        },
        _ => {}
    }
}

/// A card or a keypad entry: lintel decides while it answers in time; otherwise the list does.
async fn tap(
    sim: &Mutex<Sim>,
    client: &AsyncClient,
    door: &str,
    input: Input<'_>,
    timeout: Duration,
) -> anyhow::Result<DecisionMessage> {
    let ask_lintel = {
        let s = lock(sim);
        s.connected && s.lintel_online != Some(false)
    };
    if ask_lintel {
        let id = format!("t-{}", hex::encode(rand_bytes()));
        let (tx, rx) = oneshot::channel();
        let topic = {
            let mut s = lock(sim);
            s.waiting.insert(id.clone(), tx);
            s.topic("tap")
        };
        let message = Tap {
            id: id.clone(),
            door: door.to_owned(),
            credential: input.credential(),
            deadline: Utc::now() + timeout,
        };
        client.publish(topic, QoS::AtLeastOnce, false, serde_json::to_vec(&message)?).await?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(decision)) => {
                if decision.allowed {
                    let mut s = lock(sim);
                    s.pass_zone(door, input);
                    s.save()?;
                }
                say(json!({"event": "decision", "source": "lintel", "door": door, "presented": input.shown(),
                    "allowed": decision.allowed, "reason": decision.reason, "actions": decision.actions}));
                return Ok(decision);
            }
            _ => {
                lock(sim).waiting.remove(&id);
            }
        }
    }
    let decision = lock(sim).decide_offline(door, input)?;
    let open = lock(sim).list.as_ref().and_then(|l| l.list.doors.get(door).map(|d| d.open_seconds)).unwrap_or(5);
    let actions = lintel_proto::controller::actions_for(decision.allowed, open);
    say(json!({"event": "decision", "source": "offline", "door": door, "presented": input.shown(),
        "allowed": decision.allowed, "reason": decision.reason, "fail_safe": decision.fail_safe,
        "backup_code": decision.backup_code, "list_version": decision.list_version, "id": decision.id,
        "anti_passback": decision.anti_passback,
        "actions": &actions}));
    Ok(DecisionMessage {
        id: decision.id,
        door: door.to_owned(),
        allowed: decision.allowed,
        reason: decision.reason,
        person_id: None,
        actions,
    })
}

fn rand_bytes() -> [u8; 8] {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the OS has randomness");
    b
}

/// Taps one after the other and prints the tap-to-decision latency over MQTT.
async fn bench(
    sim: &Mutex<Sim>,
    client: &AsyncClient,
    count: usize,
    door: &str,
    uid: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let ready = Instant::now();
    while !lock(sim).connected {
        if ready.elapsed() > Duration::from_secs(10) {
            bail!("not connected to the broker after 10 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the subscriptions settle before the first tap.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut took = Vec::with_capacity(count);
    let mut offline = 0;
    for _ in 0..count {
        let started = Instant::now();
        let decision = tap(sim, client, door, Input::Card { uid, code: None }, timeout).await?;
        took.push(started.elapsed());
        if decision.id.starts_with("off-") {
            offline += 1;
        }
    }
    took.sort();
    let at = |q: f64| took[((took.len() as f64 * q) as usize).min(took.len() - 1)];
    eprintln!(
        "tap -> decision over MQTT, {count} taps: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({offline} decided offline)",
        at(0.50).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        took.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
    );
    Ok(())
}
