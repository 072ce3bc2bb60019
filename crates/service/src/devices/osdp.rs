//! OSDP readers at doors: each card a reader reads is decided like any card at its door
//! (recorded with `via: osdp` and the reader's name), and the reader shows the answer:
//! green and a short beep, or red and two long beeps. An allowed card also opens the door
//! through its driver, and through the reader's output when one is configured. What is
//! typed at a reader's keypad and ended with `#` is decided the same way, as a PIN or (20
//! digits) a backup code (see [`super::keypad`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use lintel_doors::osdp::{Answer, ReaderConfig, ReaderEvent, Readers, Release};
use lintel_proto::{DoorInput, InputKind, InputState, PresentedCredential};
use lintel_store::{EventFilter, NewEvent};

use super::keypad::Keypads;
use crate::decide::{Ask, Decider, Source};
use crate::directory::Directory;
use crate::doors::Doors;
use crate::error::{Result, ServiceError};
use crate::workers::Workers;

/// The readers, when `[osdp]` is configured.
#[derive(Debug, Clone)]
pub struct OsdpConfig {
    pub readers: Vec<ReaderAtDoor>,
}

/// A reader and the door it stands at.
#[derive(Debug, Clone)]
pub struct ReaderAtDoor {
    pub reader: ReaderConfig,
    pub door: String,
    /// The reader's output wired to the door's strike, switched on when a card is allowed.
    pub output: Option<u8>,
    /// The reader's inputs wired at the door.
    pub inputs: ReaderInputs,
}

/// Which of a reader's inputs (numbered from 0) are wired to what at its door. Each
/// change is reported like any device's input (`crate::alarms::report`): forced and
/// held-open doors, exit requests. The reader's tamper switch is always reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReaderInputs {
    /// The door position switch: active while the door stands open.
    pub door_position: Option<u8>,
    /// The exit button: active while pressed.
    pub exit_request: Option<u8>,
}

/// The event that ends a reader's install mode for good (kept across restarts).
const KEY_SET: &str = "osdp.key_set";

/// The readers' cards are decided at their doors, answered, and allowed ones open the door.
struct AtDoors {
    directory: Arc<Directory>,
    decider: Arc<Decider>,
    doors: Arc<Doors>,
    readers: Readers,
    /// Reader -> the door it stands at, and its output wired to the strike.
    at: HashMap<String, (String, Option<u8>)>,
    inputs: HashMap<String, ReaderInputs>,
    /// Reader -> its inputs as last reported (a reader reports them all at each change;
    /// the readers are polled by this node alone, which holds their port).
    last_inputs: Mutex<HashMap<String, Vec<bool>>>,
    keypads: Mutex<Keypads>,
}

/// Starts polling the readers and deciding their cards.
pub async fn start(
    mut config: OsdpConfig,
    directory: Arc<Directory>,
    decider: Arc<Decider>,
    doors: Arc<Doors>,
    workers: &Workers,
) -> Result<()> {
    // Install mode offers the key to whatever answers with the default key: once a reader
    // took its key, a start with install_mode still set must not offer it again.
    let filter = EventFilter { kind: Some(KEY_SET.into()), limit: 1000, ..EventFilter::default() };
    let keys_set = directory.store.events(&filter).await?;
    for r in config.readers.iter_mut().filter(|r| r.reader.install_mode) {
        if keys_set.iter().any(|e| e.data["reader"] == r.reader.name.as_str()) {
            tracing::warn!(
                reader = r.reader.name,
                "install mode was used before: the reader has its key; install_mode is ignored \
                 (a replacement reader needs a new name)"
            );
            r.reader.install_mode = false;
        }
    }
    let index = directory.index();
    for r in &config.readers {
        if r.reader.scbk.is_none() {
            tracing::warn!(reader = r.reader.name, "OSDP reader without scbk: its link is not encrypted");
        }
        if r.reader.install_mode {
            tracing::warn!(reader = r.reader.name, "OSDP reader in install mode: it may take its key once");
        }
        if index.door(&r.door).is_none() {
            tracing::warn!(reader = r.reader.name, door = r.door, "OSDP reader at a door that does not exist (yet)");
        }
    }
    drop(index);
    let at = config.readers.iter().map(|r| (r.reader.name.clone(), (r.door.clone(), r.output))).collect();
    let inputs = config.readers.iter().map(|r| (r.reader.name.clone(), r.inputs)).collect();
    let (readers, mut events) = Readers::start(config.readers.into_iter().map(|r| r.reader).collect())
        .map_err(|e| ServiceError::invalid(format!("[osdp] is not usable: {e}")))?;
    let osdp = Arc::new(AtDoors {
        directory,
        decider,
        doors,
        readers,
        at,
        inputs,
        last_inputs: Mutex::default(),
        keypads: Mutex::default(),
    });
    let worker = workers.clone();
    workers.spawn(async move {
        while let Some(Some(event)) = worker.unless_stopping(events.recv()).await {
            match event {
                ReaderEvent::Card { reader, uid, bits } => {
                    if !osdp.at.contains_key(&reader) {
                        continue;
                    }
                    tracing::debug!(reader, bits, "card read");
                    let card = PresentedCredential::Card { uid, revocation_code: None };
                    worker.spawn(osdp.clone().decide(reader, card));
                }
                ReaderEvent::Keys { reader, keys } => {
                    if !osdp.at.contains_key(&reader) {
                        continue;
                    }
                    let entries = osdp.keypads.lock().unwrap_or_else(PoisonError::into_inner).keys(
                        &reader,
                        &keys,
                        Instant::now(),
                    );
                    for pin in entries {
                        // A backup code's 20 digits are taken for that code by the decider.
                        worker.spawn(osdp.clone().decide(reader.clone(), PresentedCredential::Pin { pin }));
                    }
                }
                ReaderEvent::Status { reader, online, secure } => {
                    let door = osdp.door_of(&reader);
                    if online {
                        tracing::info!(reader, door, secure, "OSDP reader online");
                    } else {
                        tracing::warn!(reader, door, "OSDP reader offline (not answering polls)");
                    }
                    metrics::gauge!("lintel_osdp_reader_online", "reader" => reader).set(f64::from(u8::from(online)));
                }
                // In order, here: a door opened and closed must not be reported closed first.
                ReaderEvent::Inputs { reader, active } => osdp.inputs(&reader, active).await,
                ReaderEvent::Tamper { reader, active } => {
                    let state = if active { InputState::Active } else { InputState::Inactive };
                    osdp.report(&reader, DoorInput { input: InputKind::Tamper, state }).await;
                }
                ReaderEvent::KeySet { reader } => {
                    let event = NewEvent::new(KEY_SET).with("reader", &reader).with("door", osdp.door_of(&reader));
                    if let Err(e) = osdp.directory.record(event).await {
                        tracing::error!(reader, error = %e, "the end of install mode was not recorded");
                    }
                }
            }
        }
        osdp.readers.stop();
    });
    Ok(())
}

impl AtDoors {
    fn door_of(&self, reader: &str) -> &str {
        self.at.get(reader).map(|(door, _)| door.as_str()).unwrap_or_default()
    }

    /// Reports the wired inputs that changed since the reader's last report (all of them
    /// at its first).
    async fn inputs(&self, reader: &str, active: Vec<bool>) {
        let wired = self.inputs.get(reader).copied().unwrap_or_default();
        let before =
            self.last_inputs.lock().unwrap_or_else(PoisonError::into_inner).insert(reader.to_owned(), active.clone());
        let changed = |n: u8| {
            let now = *active.get(usize::from(n))?;
            let was = before.as_ref().and_then(|b| b.get(usize::from(n)).copied());
            (was != Some(now)).then_some(now)
        };
        if let Some(open) = wired.door_position.and_then(changed) {
            let state = if open { InputState::Open } else { InputState::Closed };
            self.report(reader, DoorInput { input: InputKind::Door, state }).await;
        }
        if let Some(true) = wired.exit_request.and_then(changed) {
            self.report(reader, DoorInput { input: InputKind::Exit, state: InputState::Active }).await;
        }
    }

    async fn report(&self, reader: &str, input: DoorInput) {
        let Some((door, _)) = self.at.get(reader) else { return };
        let by = crate::Actor::device(&format!("osdp:{reader}"));
        if let Err(e) = crate::alarms::report(&self.directory, &by, door, input).await {
            tracing::warn!(reader, door, error = %e, "reader's input not recorded");
        }
    }

    /// Decides a card or a keypad entry at the reader's door and answers the reader.
    async fn decide(self: Arc<Self>, reader: String, credential: PresentedCredential) {
        let Some((door, output)) = self.at.get(&reader).cloned() else { return };
        let started = Instant::now();
        let ask = Ask {
            door: &door,
            credential: &credential,
            at: None,
            dry_run: false,
            source: Source::Keypad(format!("osdp:{reader}")),
        };
        let note =
            serde_json::Map::from_iter([("via".into(), "osdp".into()), ("reader".into(), reader.clone().into())]);
        let decision = match self.decider.decide_noting(ask, note).await {
            Ok(decision) => Some(decision),
            Err(e) => {
                // Not decided (not recorded; a PIN too short): the door stays shut and the reader says no.
                tracing::warn!(reader, door, error = %e, "card or keys at an OSDP reader not decided");
                None
            }
        };
        let allowed = decision.as_ref().is_some_and(|d| d.allowed);
        let answer = if allowed {
            let release = match output {
                Some(output) => match self.directory.store.door(&door).await {
                    Ok(d) => Some(Release { output, seconds: d.open_seconds }),
                    Err(e) => {
                        tracing::warn!(reader, door, error = %e, "door not found; the reader's output stays off");
                        None
                    }
                },
                None => None,
            };
            Answer::Allowed { release }
        } else {
            Answer::Denied
        };
        if let Err(e) = self.readers.answer(&reader, answer) {
            tracing::warn!(reader, error = %e, "answer not sent to the reader");
        }
        metrics::histogram!("lintel_osdp_answer_seconds").record(started.elapsed().as_secs_f64());
        // The reader answers first: the person at the door should not wait for the strike's driver.
        if let Some(decision) = decision.filter(|d| d.allowed)
            && let Err(e) = self.doors.drive(&door, None, decision.person_id.as_deref()).await
        {
            tracing::warn!(reader, door, error = %e, "door not driven");
        }
    }
}
