//! OSDP readers against the reference implementation: libosdp's peripheral device (PyPI
//! `libosdp`, driven by `osdp_pd.py`) on the far end of a pseudo-terminal that `lintel
//! serve` opens as its serial port. Cards read there are decided at the reader's door and
//! answered with LED, buzzer and output commands, which the reader prints as it gets them.
//! Needs python3 with `libosdp` (`pip install libosdp`; scripts/test installs it).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::harness::{Backend, Database, Server, write_file};

const PD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/osdp_pd.py");
const KEY: &str = "4F1A9C22D07B3E58A16C0B9D72E4F385";
const OTHER_KEY: &str = "9B03E7D15A2C48F6B0E91D3C7A58F264";

/// libosdp's OSDP command codes and LED colours as the Python package reports them.
const OUTPUT: u64 = 1;
const LED: u64 = 2;
const BUZZER: u64 = 3;
const KEYSET: u64 = 5;
const RED: u64 = 1;
const GREEN: u64 = 2;

/// A reader: libosdp's peripheral device on a pseudo-terminal.
struct Reader {
    child: Child,
    stdin: ChildStdin,
    lines: UnboundedReceiver<String>,
    port: String,
}

impl Reader {
    async fn start(args: &[&str]) -> Self {
        let mut child = Command::new("python3")
            .arg(PD)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("python3 is needed for the OSDP tests (pip install libosdp): {e}"));
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = tokio::time::timeout(Duration::from_secs(20), lines.recv()).await.ok().flatten();
        let port = match first.as_deref().and_then(|l| l.strip_prefix("PORT ")) {
            Some(port) => port.to_owned(),
            None => panic!(
                "osdp_pd.py did not start (said {first:?}); it needs python3 with libosdp \
                 (pip install libosdp; scripts/test installs it)"
            ),
        };
        Self { child, stdin, lines, port }
    }

    fn tell(&mut self, request: &str) {
        writeln!(self.stdin, "{request}").and_then(|_| self.stdin.flush()).expect("the reader takes requests");
    }

    /// The next command lintel sent, if one comes within `wait`.
    async fn command(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.recv()).await.ok()??;
            if let Some(json) = line.strip_prefix("COMMAND ") {
                return Some(serde_json::from_str(json).expect("commands are JSON"));
            }
        }
    }

    /// The commands lintel sends after a card: LED and buzzer, maybe an output.
    async fn answer(&mut self) -> (Value, Value) {
        let led = self.command(Duration::from_secs(10)).await.expect("lintel lights the reader's LED");
        assert_eq!(led["command"], LED, "{led}");
        let buzzer = self.command(Duration::from_secs(5)).await.expect("lintel sounds the reader's buzzer");
        assert_eq!(buzzer["command"], BUZZER, "{buzzer}");
        (led, buzzer)
    }

    /// The line goes dead; the reader goes on at a new pseudo-terminal, whose path it returns.
    async fn hang_up(&mut self) -> String {
        self.tell("hangup");
        loop {
            let line = tokio::time::timeout(Duration::from_secs(10), self.lines.recv())
                .await
                .ok()
                .flatten()
                .expect("the reader hangs up");
            if let Some(port) = line.strip_prefix("PORT ") {
                return port.to_owned();
            }
        }
    }

    /// Whether the reader itself sees a Secure Channel session.
    async fn secure(&mut self) -> bool {
        self.tell("status");
        loop {
            let line = tokio::time::timeout(Duration::from_secs(10), self.lines.recv())
                .await
                .ok()
                .flatten()
                .expect("the reader answers status");
            if let Some(status) = line.strip_prefix("STATUS ") {
                return status.contains("secure=1");
            }
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `[[osdp.readers]]` table.
fn reader_table(name: &str, port: &str, extra: &str) -> String {
    format!("[[osdp.readers]]\nname = \"{name}\"\ndoor = \"front\"\nport = \"{port}\"\naddress = 1\n{extra}\n")
}

async fn serve(db: &Database, tables: &[String]) -> Server {
    let config = write_file(&db.dir, "lintel.toml", &tables.concat());
    Server::start_with(db, &[("LINTEL_CONFIG", config.to_str().unwrap()), ("RUST_LOG", "warn,lintel_doors=info")])
}

/// The front door, Bob with card 04A1B2C3 (no revocation code: readers send none), a grant.
async fn world(s: &Server) {
    s.ok("/api/v1/doors", json!({"id": "front", "name": "Front door", "open_seconds": 4}), 201).await;
    s.ok("/api/v1/people", json!({"id": "bob", "name": "Bob", "email": "bob@example.org"}), 201).await;
    s.ok("/api/v1/people/bob/credentials", json!({"kind": "card", "uid": "04A1B2C3"}), 201).await;
    s.ok("/api/v1/grants", json!({"person_id": "bob", "doors": ["front"]}), 201).await;
}

/// Waits until lintel reports the reader online (its metric), or panics.
async fn wait_online(s: &Server, reader: &str) {
    let want = format!("lintel_osdp_reader_online{{reader=\"{reader}\"}} 1");
    for _ in 0..100 {
        let (_, metrics) = s.get("/metrics").await;
        if metrics.as_str().is_some_and(|m| m.contains(&want)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("reader {reader} did not come online in lintel within 10 s");
}

fn osdp_decisions(events: &[Value]) -> Vec<Value> {
    events.iter().filter(|e| e["kind"] == "decision" && e["data"]["via"] == "osdp").cloned().collect()
}

/// Plain text: an allowed card gets green, a beep and the output; an unknown one red and
/// two beeps; both are decisions at the reader's door from `osdp`.
async fn plain_reader_allows_and_denies(b: Backend) {
    let db = Database::new(b);
    let mut reader = Reader::start(&["--address", "1"]).await;
    let s = serve(&db, &[reader_table("front-in", &reader.port, "output = 0")]).await;
    world(&s).await;
    wait_online(&s, "front-in").await;

    let read_at = Instant::now();
    reader.tell("card 04A1B2C3 32");
    let (led, buzzer) = reader.answer().await;
    let answered = read_at.elapsed();
    assert_eq!(led["on_color"], GREEN, "{led}");
    assert_eq!(buzzer["rep_count"], 1, "{buzzer}");
    let out = reader.command(Duration::from_secs(5)).await.expect("lintel releases the door through the output");
    assert_eq!((out["command"].clone(), out["output_no"].clone()), (json!(OUTPUT), json!(0)), "{out}");
    assert_eq!(out["timer_count"], 40, "the door's 4 s in 100 ms units: {out}");
    eprintln!("OSDP card read to LED command at the reader (plain, {b:?}): {} ms", answered.as_millis());

    // 26 bits (an H10301 frame, facility 1, card 1) left-justified in 4 bytes.
    reader.tell("card 80800080 26");
    let (led, buzzer) = reader.answer().await;
    assert_eq!(led["on_color"], RED, "{led}");
    assert_eq!(buzzer["rep_count"], 2, "{buzzer}");
    assert_eq!(reader.command(Duration::from_millis(500)).await, None, "no output for a denied card");

    let decisions = osdp_decisions(&s.events().await);
    assert_eq!(decisions.len(), 2, "{decisions:?}");
    let (allowed, denied) = (&decisions[0], &decisions[1]);
    assert_eq!(allowed["allowed"], true, "{allowed}");
    assert_eq!(allowed["door"], "front", "{allowed}");
    assert_eq!(allowed["person_id"], "bob", "{allowed}");
    assert_eq!(allowed["data"]["credential_kind"], "card", "{allowed}");
    assert_eq!(allowed["data"]["reader"], "front-in", "{allowed}");
    assert_eq!(denied["allowed"], false, "{denied}");
    assert_eq!(denied["reason"], "unknown_credential", "{denied}");
    assert_eq!(denied["data"]["uid"], "02020002", "the 26 bits right-justified: {denied}");
}

/// Secure Channel with the configured key on both sides.
async fn secure_channel_with_the_key(b: Backend) {
    let db = Database::new(b);
    let mut reader = Reader::start(&["--address", "1", "--scbk", KEY]).await;
    let s = serve(&db, &[reader_table("front-in", &reader.port, &format!("scbk = \"{KEY}\""))]).await;
    world(&s).await;
    wait_online(&s, "front-in").await;
    assert!(reader.secure().await, "the reader sees a Secure Channel session");

    reader.tell("card 04A1B2C3 32");
    let (led, _) = reader.answer().await;
    assert_eq!(led["on_color"], GREEN, "{led}");
    let decisions = osdp_decisions(&s.events().await);
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    assert_eq!(decisions[0]["allowed"], true, "{decisions:?}");
}

/// A reader with another key, and one with only the default key, get no session: their
/// cards are never decided and they get no commands.
async fn readers_without_the_key_get_nothing(b: Backend) {
    let db = Database::new(b);
    let mut other = Reader::start(&["--address", "1", "--scbk", OTHER_KEY]).await;
    let mut blank = Reader::start(&["--address", "1", "--install-mode"]).await;
    let key = format!("scbk = \"{KEY}\"");
    let s = serve(&db, &[reader_table("other-key", &other.port, &key), reader_table("blank", &blank.port, &key)]).await;
    world(&s).await;
    // Time for the handshakes to fail (libosdp answers within 200 ms a step).
    tokio::time::sleep(Duration::from_secs(2)).await;
    for reader in [&mut other, &mut blank] {
        assert!(!reader.secure().await, "no Secure Channel session");
        reader.tell("card 04A1B2C3 32");
    }
    for reader in [&mut other, &mut blank] {
        assert_eq!(reader.command(Duration::from_secs(2)).await, None, "no commands for a reader without the key");
    }
    let (_, metrics) = s.get("/metrics").await;
    assert!(!metrics.as_str().unwrap_or_default().contains("lintel_osdp_reader_online{reader=\"other-key\"} 1"));
    let decisions = osdp_decisions(&s.events().await);
    assert!(decisions.is_empty(), "nothing decided: {decisions:?}");
}

/// Install mode: a reader with only the default key takes the configured key (KEYSET over
/// a session with SCBK-D), then works over Secure Channel with it; install mode is over
/// for that reader, also after a restart.
async fn install_mode_hands_the_key_over_once(b: Backend) {
    let db = Database::new(b);
    let mut reader = Reader::start(&["--address", "1", "--install-mode"]).await;
    let table = reader_table("front-in", &reader.port, &format!("scbk = \"{KEY}\"\ninstall_mode = true"));
    let s = serve(&db, &[table]).await;
    world(&s).await;
    let keyset = reader.command(Duration::from_secs(10)).await.expect("lintel sets the reader's key");
    assert_eq!((keyset["command"].clone(), keyset["data"].clone()), (json!(KEYSET), json!(KEY)), "{keyset}");
    wait_online(&s, "front-in").await;
    assert!(reader.secure().await, "the reader sees a Secure Channel session with its new key");
    reader.tell("card 04A1B2C3 32");
    let (led, _) = reader.answer().await;
    assert_eq!(led["on_color"], GREEN, "{led}");
    let events = s.events().await;
    let key_set: Vec<_> = events.iter().filter(|e| e["kind"] == "osdp.key_set").collect();
    assert_eq!(key_set.len(), 1, "{key_set:?}");
    assert_eq!(key_set[0]["data"]["reader"], "front-in", "{key_set:?}");

    // Install mode is over for good: started again with install_mode still set, lintel
    // offers the key to no device that answers with the default key.
    s.kill();
    drop(reader);
    let mut impostor = Reader::start(&["--address", "1", "--install-mode"]).await;
    let table = reader_table("front-in", &impostor.port, &format!("scbk = \"{KEY}\"\ninstall_mode = true"));
    let s = serve(&db, &[table]).await;
    assert_eq!(impostor.command(Duration::from_secs(3)).await, None, "no KEYSET for a device with the default key");
    assert!(!impostor.secure().await, "no Secure Channel session");
    impostor.tell("card 04A1B2C3 32");
    assert_eq!(impostor.command(Duration::from_secs(2)).await, None, "its cards are not answered");
    assert_eq!(osdp_decisions(&s.events().await).len(), 1, "only the card read before the restart");
}

/// The `osdp` door driver: opening a door from the API switches the reader's output on
/// for the given seconds; a driver naming no configured reader fails as a driver does.
async fn door_driver_switches_the_readers_output(b: Backend) {
    let db = Database::new(b);
    let mut reader = Reader::start(&["--address", "1"]).await;
    let s = serve(&db, &[reader_table("front-in", &reader.port, "")]).await;
    world(&s).await;
    let driver = json!({"kind": "osdp", "reader": "front-in", "output": 0});
    s.ok("/api/v1/doors", json!({"id": "gate", "name": "Gate", "driver": driver, "open_seconds": 6}), 201).await;
    let nowhere = json!({"kind": "osdp", "reader": "nowhere"});
    s.ok("/api/v1/doors", json!({"id": "shed", "name": "Shed", "driver": nowhere}), 201).await;
    wait_online(&s, "front-in").await;

    let opened = s.ok("/api/v1/doors/gate/open", json!({"seconds": 3}), 200).await;
    assert_eq!(opened["opened"], true, "{opened}");
    let out = reader.command(Duration::from_secs(10)).await.expect("the reader's output is switched");
    assert_eq!((out["command"].clone(), out["output_no"].clone()), (json!(OUTPUT), json!(0)), "{out}");
    assert_eq!(out["control_code"], 5, "temporarily on: {out}");
    assert_eq!(out["timer_count"], 30, "3 s in 100 ms units: {out}");

    let (status, failed) = s.post("/api/v1/doors/shed/open", json!({})).await;
    assert_eq!(status, 502, "{failed}");
    assert!(failed["detail"].as_str().is_some_and(|d| d.contains("nowhere")), "{failed}");
}

/// A port that fails (a USB adapter unplugged and plugged in again, its udev name now
/// pointing at the new device) is opened again, and the reader works as before.
async fn a_failed_port_is_opened_again(b: Backend) {
    let db = Database::new(b);
    let mut reader = Reader::start(&["--address", "1"]).await;
    let link = db.dir.join("ttyOSDP");
    std::os::unix::fs::symlink(&reader.port, &link).expect("symlink");
    let s = serve(&db, &[reader_table("front-in", link.to_str().unwrap(), "")]).await;
    world(&s).await;
    wait_online(&s, "front-in").await;

    let port = reader.hang_up().await;
    let moved = db.dir.join("ttyOSDP.new");
    std::os::unix::fs::symlink(&port, &moved).expect("symlink");
    std::fs::rename(&moved, &link).expect("the link points at the new device");
    // lintel notices the dead line, reports the reader offline, and opens the port again.
    let offline = "lintel_osdp_reader_online{reader=\"front-in\"} 0";
    let mut seen_offline = false;
    for _ in 0..50 {
        let (_, metrics) = s.get("/metrics").await;
        if metrics.as_str().is_some_and(|m| m.contains(offline)) {
            seen_offline = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen_offline, "lintel reports the reader offline when its port fails");
    wait_online(&s, "front-in").await;
    reader.tell("card 04A1B2C3 32");
    let (led, _) = reader.answer().await;
    assert_eq!(led["on_color"], GREEN, "{led}");
}

/// Keys typed at the reader and ended with `#` are decided at its door: 4 to 12 digits as
/// a PIN, 20 as a backup code (which opens once); `*` clears what was typed.
async fn keypad_entries_are_pins_or_backup_codes(b: Backend) {
    let db = Database::new(b);
    let mut reader = Reader::start(&["--address", "1"]).await;
    let s = serve(&db, &[reader_table("front-in", &reader.port, "")]).await;
    world(&s).await;
    s.ok("/api/v1/people/bob/credentials", json!({"kind": "pin", "pin": "4711"}), 201).await;
    let issued = s.ok("/api/v1/people/bob/credentials", json!({"kind": "backup_code"}), 201).await;
    let code = issued["secret"].as_str().unwrap().replace('-', "");
    wait_online(&s, "front-in").await;

    let mut colors = Vec::new();
    for typed in ["47", "11#", &format!("{code}#"), &format!("{code}#"), "99*4712#"] {
        reader.tell(&format!("keys {typed}"));
        if typed.ends_with('#') {
            colors.push(reader.answer().await.0["on_color"].clone());
        }
    }
    assert_eq!(colors, [GREEN, GREEN, RED, RED], "PIN, code, code again, a wrong PIN");

    let decisions = osdp_decisions(&s.events().await);
    let seen: Vec<(&str, &str)> = decisions
        .iter()
        .map(|d| (d["data"]["credential_kind"].as_str().unwrap(), d["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        seen,
        [
            ("pin", "granted"),
            ("backup_code", "granted"),
            ("backup_code", "credential_revoked"),
            ("pin", "unknown_credential")
        ]
    );
    assert!(decisions[..3].iter().all(|d| d["person_id"] == "bob" && d["door"] == "front"), "{decisions:?}");
}

/// The reader's input status: its door position switch and exit button (as configured)
/// and its tamper switch are the door's inputs: a forced door, an exit request, tamper.
async fn a_readers_inputs_are_the_doors(b: Backend) {
    let db = Database::new(b);
    let mut reader = Reader::start(&["--address", "1"]).await;
    let wired = "door_position_input = 0\nexit_input = 1";
    let s = serve(&db, &[reader_table("front-in", &reader.port, wired)]).await;
    world(&s).await;
    wait_online(&s, "front-in").await;
    let until = async |what: &str, check: &dyn Fn(&[Value]) -> bool| {
        for _ in 0..100 {
            let events = s.all_events("door=front").await;
            if check(&events) {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("never: {what}");
    };
    // Opened with no entry, exit request or release before it: forced.
    reader.tell("inputs 1000");
    until("a forced-open alarm", &|e| {
        e.iter().any(|e| e["kind"] == "alarm.raised" && e["data"]["kind"] == "forced_open")
    })
    .await;
    reader.tell("inputs 0000");
    until("the door closed", &|e| e.iter().any(|e| e["kind"] == "alarm.cleared")).await;
    // The exit button, then the door: no alarm.
    reader.tell("inputs 0100");
    until("an exit request", &|e| e.iter().any(|e| e["kind"] == "door.exit_requested")).await;
    reader.tell("inputs 1000");
    reader.tell("inputs 0000");
    let events = until("the second opening", &|e| {
        e.iter().filter(|e| e["kind"] == "door.input" && e["data"]["state"] == "open").count() == 2
    })
    .await;
    let raised = events.iter().filter(|e| e["kind"] == "alarm.raised").count();
    assert_eq!(raised, 1, "an opening after an exit request is no alarm: {events:#?}");
    assert!(events.iter().filter(|e| e["kind"] == "door.input").all(|e| e["actor"] == "osdp:front-in"), "{events:#?}");
    // Its tamper switch.
    reader.tell("tamper 1");
    until("a tamper alarm", &|e| e.iter().any(|e| e["kind"] == "alarm.raised" && e["data"]["kind"] == "tamper")).await;
    let (_, open) = s.get("/api/v1/alarms").await;
    let kinds: Vec<&str> = open.as_array().unwrap().iter().map(|a| a["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.len(), 2, "{open}");
    assert!(kinds.contains(&"tamper") && kinds.contains(&"forced_open"), "{open}");
}

crate::on_both_backends!(
    a_readers_inputs_are_the_doors,
    keypad_entries_are_pins_or_backup_codes,
    a_failed_port_is_opened_again,
    plain_reader_allows_and_denies,
    door_driver_switches_the_readers_output,
    secure_channel_with_the_key,
    readers_without_the_key_get_nothing,
    install_mode_hands_the_key_over_once,
);
