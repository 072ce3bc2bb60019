//! Opening doors: decide, then drive, then record what the device said. Every front-end
//! (the API, the web UI, Slack, signed operations, OSDP readers) opens through here.
//!
//! Some devices hang off one node: the MQTT link (held by one node at a time) and OSDP
//! readers (on the node with the serial port). Another node that is asked to open such a
//! door hands the command over through the store; the owner takes it (woken by a
//! notification on PostgreSQL), drives the door, records the event, and writes what the
//! device said, which the asking node answers with.

use std::sync::Arc;
use std::time::Duration;

use lintel_core::Pk;
use lintel_doors::{DriverError, Opening};
use lintel_proto::{DecisionResponse, Reason};
use lintel_store::{Channel, CommandState, DoorCommand, NewEvent};
use tokio::time::Instant;

use crate::decide::{Ask, Decider};
use crate::directory::Directory;
use crate::error::{Result, ServiceError};
use crate::workers::Workers;

/// How long a handed-over command may wait to be taken before the asking node gives it
/// up: someone is at the door, and an opening long after they left is worse than none.
const TAKEN_WITHIN: Duration = Duration::from_secs(2);
/// How long the asking node waits for what the device did once the command was taken
/// (the MQTT driver waits up to 3 s for the controller).
const DONE_WITHIN: Duration = Duration::from_secs(8);
/// How often the asking node looks at its command.
const LOOK_EVERY: Duration = Duration::from_millis(20);
/// How often an owner looks for commands: without notifications (SQLite: the CLI beside
/// a server), and as a fallback for a missed one (PostgreSQL).
const TAKE_EVERY_POLLING: Duration = Duration::from_millis(250);
const TAKE_EVERY_NOTIFIED: Duration = Duration::from_secs(2);
/// Commands done are kept this long, then forgotten.
const KEEP_COMMANDS: Duration = Duration::from_secs(3600);

/// Who asks a door to open.
pub enum Opener<'a> {
    /// An operator opening from afar (an admin token, the web UI): recorded as an allowed
    /// decision `by` them, without a person (it is not their own entry).
    /// One limited to a `site` opens only its doors.
    Operator { by: String, site: Option<&'a str>, note: Option<&'a str> },
    /// Someone presenting a credential (a personal secret, a backup code): decided first.
    Credential(Ask<'a>),
    /// A person on their own authority (a button in chat, a signed operation): decided by
    /// their grants; `via` names the channel in the event, `data` is added to it.
    Person { pk: Pk, via: &'a str, data: serde_json::Map<String, serde_json::Value> },
}

/// What the device did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Driven {
    /// The driver was asked (a door with the `none` driver opens nothing).
    pub opened: bool,
    /// The device acknowledged.
    pub confirmed: bool,
    /// Why the device did not open.
    pub error: Option<String>,
}

/// The decision, and what the device did when it was allowed (`None`: not driven).
pub struct Opened {
    pub decision: DecisionResponse,
    pub driven: Option<Driven>,
}

pub struct Doors {
    directory: Arc<Directory>,
    decider: Arc<Decider>,
    links: lintel_doors::Links,
}

impl Doors {
    pub fn new(directory: Arc<Directory>, decider: Arc<Decider>, links: lintel_doors::Links) -> Self {
        Self { directory, decider, links }
    }

    /// The ways to the devices (HTTP, the MQTT link).
    pub fn links(&self) -> &lintel_doors::Links {
        &self.links
    }

    /// Decides for `opener`, and when allowed drives the door for `seconds` (the door's
    /// own `open_seconds` by default).
    pub async fn open(&self, door: &str, opener: Opener<'_>, seconds: Option<u32>) -> Result<Opened> {
        let (decision, person) = match opener {
            Opener::Operator { by, site, note } => {
                // Another site's door: refused before anything is said of it.
                crate::site_limits::doors_within(&self.directory.store, site, [door]).await?;
                match self.directory.index().door(door) {
                    None => return Err(ServiceError::not_found(format!("door {door:?} not found"))),
                    // No unlock action in lockdown, an operator's neither.
                    Some(d) if d.lockdown => {
                        return Err(ServiceError::forbidden("lockdown", "the door is in lockdown; lift it first"));
                    }
                    Some(_) => {}
                }
                (self.operator_opens(door, by, note).await?, None)
            }
            Opener::Credential(ask) => {
                let decision = self.decider.decide(ask).await?;
                let person = decision.person_id.clone();
                (decision, person)
            }
            Opener::Person { pk, via, data } => {
                let decision = self.decider.decide_for_person(door, pk, via, data).await?;
                let person = decision.person_id.clone();
                (decision, person)
            }
        };
        if !decision.allowed {
            return Ok(Opened { decision, driven: None });
        }
        let driven = self.drive(door, seconds, person.as_deref()).await?;
        Ok(Opened { decision, driven: Some(driven) })
    }

    /// An operator's opening, recorded as an allowed decision before the door is driven.
    async fn operator_opens(&self, door: &str, by: String, note: Option<&str>) -> Result<DecisionResponse> {
        let mut event = NewEvent::new("decision").door(door).with("by", &by);
        event.allowed = Some(true);
        event.reason = Some(Reason::Granted);
        if let Some(note) = note {
            event = event.with("note", note);
        }
        let recorded = self.directory.record(event).await?;
        Ok(DecisionResponse {
            allowed: true,
            reason: Reason::Granted,
            detail: format!("opened by {by}"),
            person_id: None,
            grant_id: None,
            event_id: Some(recorded.id),
            retry_after: None,
            name: None,
        })
    }

    /// Drives a door that a recorded decision allowed, and records what the device did.
    pub async fn drive(&self, door_id: &str, seconds: Option<u32>, person_id: Option<&str>) -> Result<Driven> {
        self.drive_with(door_id, seconds, person_id, true).await
    }

    /// [`Doors::drive`], but a failure is only returned, not recorded: for retrying a door
    /// that is known to be offline every second, which would otherwise fill the event log.
    pub async fn drive_quietly(&self, door_id: &str, person_id: Option<&str>) -> Result<Driven> {
        self.drive_with(door_id, None, person_id, false).await
    }

    async fn drive_with(
        &self,
        door_id: &str,
        seconds: Option<u32>,
        person_id: Option<&str>,
        record_failure: bool,
    ) -> Result<Driven> {
        let store = &self.directory.store;
        let door = store.door(door_id).await?;
        let kind = door.driver.kind();
        let outcome = match lintel_doors::attached_device(&door.driver) {
            // Held unlocked already: a timed opening would end the hold when it ran out.
            _ if door.state.hold_open() || store.told_held(door_id).await? => Ok(Opening { confirmed: true }),
            Some(device) if !self.links.drives(&device) => {
                match self.hand_over(device, door_id, seconds, person_id).await? {
                    // The owner recorded it.
                    HandedOver::Done(driven) => return Ok(driven),
                    HandedOver::NotTaken(why) => Err(DriverError::Unreachable(why)),
                }
            }
            _ => {
                let driver = lintel_doors::driver_for(&door.driver, &door.id, &self.links);
                driver.open(seconds.unwrap_or(door.open_seconds)).await
            }
        };
        self.record_drive(door_id, kind, seconds.unwrap_or(door.open_seconds), person_id, outcome, record_failure).await
    }

    async fn record_drive(
        &self,
        door_id: &str,
        kind: &'static str,
        seconds: u32,
        person_id: Option<&str>,
        outcome: std::result::Result<Opening, DriverError>,
        record_failure: bool,
    ) -> Result<Driven> {
        let store = &self.directory.store;
        let mut event = NewEvent::new("door.opened").door(door_id).with("driver", kind).with("seconds", seconds);
        event.person_id = person_id.map(str::to_owned);
        let driven = match outcome {
            Ok(o) => {
                event = event.with("confirmed", o.confirmed);
                Driven { opened: kind != "none", confirmed: o.confirmed, error: None }
            }
            Err(e) => {
                metrics::counter!("lintel_driver_failures_total", "driver" => kind).increment(1);
                tracing::warn!(door = door_id, driver = kind, error = %e, "door driver failed");
                event.kind = "door.driver_failed".into();
                event = event.with("error", e.to_string());
                Driven { opened: false, confirmed: false, error: Some(e.to_string()) }
            }
        };
        if driven.error.is_some() && !record_failure {
            return Ok(driven);
        }
        self.directory.record(event).await?;
        if kind != "none" {
            // Only an answer from the device counts as seeing it.
            let now = chrono::Utc::now().timestamp_micros();
            store.set_door_state(door_id, driven.error.is_none(), now, driven.error.as_deref()).await?;
        }
        Ok(driven)
    }
}

/// What became of a command handed to the node that owns the device.
enum HandedOver {
    Done(Driven),
    /// No node took it in time (given up, so none will).
    NotTaken(String),
}

impl Doors {
    /// Hands the command for a door whose device hangs off another node to that node, and
    /// waits for what the device did.
    async fn hand_over(
        &self,
        device: String,
        door: &str,
        seconds: Option<u32>,
        person_id: Option<&str>,
    ) -> Result<HandedOver> {
        let store = &self.directory.store;
        let mut id = [0u8; 12];
        getrandom::fill(&mut id).expect("the OS has randomness");
        let command = DoorCommand {
            id: format!("cmd-{}", hex::encode(id)),
            device,
            door: door.to_owned(),
            seconds,
            person_id: person_id.map(str::to_owned),
        };
        store.ask_command(&command).await?;
        let asked = Instant::now();
        loop {
            tokio::time::sleep(LOOK_EVERY).await;
            match store.command_state(&command.id).await? {
                Some(CommandState::Done(outcome)) => {
                    let driven = serde_json::from_str(&outcome).map_err(|e| {
                        ServiceError::unavailable(format!("a door command's outcome is unreadable: {e}"))
                    })?;
                    return Ok(HandedOver::Done(driven));
                }
                Some(CommandState::Waiting) if asked.elapsed() >= TAKEN_WITHIN => {
                    if store.give_up_command(&command.id).await? {
                        return Ok(HandedOver::NotTaken(format!(
                            "no lintel node drives {} now (is it configured, and is that node up?)",
                            command.device
                        )));
                    }
                }
                Some(CommandState::Taken) if asked.elapsed() >= TAKEN_WITHIN + DONE_WITHIN => {
                    // The owner records what the device does; this node only stops waiting.
                    return Ok(HandedOver::Done(Driven {
                        opened: false,
                        confirmed: false,
                        error: Some("the node that drives this door did not say what the device did in time".into()),
                    }));
                }
                Some(CommandState::GivenUp) | None => {
                    return Ok(HandedOver::NotTaken("the door command was withdrawn".into()));
                }
                Some(CommandState::Waiting | CommandState::Taken) => {}
            }
        }
    }

    /// Takes the commands other nodes hand to this one for the devices it drives, until
    /// shutdown.
    pub fn spawn_command_taker(self: &Arc<Self>, workers: &Workers) {
        let doors = self.clone();
        let mut wake = self.directory.store.notifications(Channel::Commands);
        let mut ticks = workers.every(if wake.is_some() { TAKE_EVERY_NOTIFIED } else { TAKE_EVERY_POLLING });
        let workers = workers.clone();
        workers.clone().spawn(async move {
            let mut forgotten = Instant::now();
            loop {
                let go_on = match wake.as_mut() {
                    Some(notified) => tokio::select! {
                        woke = notified.recv() => woke.is_some() || ticks.next().await,
                        more = ticks.next() => more,
                    },
                    None => ticks.next().await,
                };
                if !go_on {
                    return;
                }
                for device in doors.links.devices_here() {
                    match doors.directory.store.take_commands(&device).await {
                        Ok(commands) => commands.into_iter().for_each(|c| doors.carry_out(c, &workers)),
                        Err(e) => tracing::warn!(device, error = %e, "door commands not taken"),
                    }
                }
                if forgotten.elapsed() >= KEEP_COMMANDS {
                    forgotten = Instant::now();
                    let before = chrono::Utc::now().timestamp_micros() - KEEP_COMMANDS.as_micros() as i64;
                    if let Err(e) = doors.directory.store.forget_commands(before).await {
                        tracing::warn!(error = %e, "old door commands not forgotten");
                    }
                }
            }
        });
    }

    /// Drives the door of a command this node took, and writes what the device did.
    fn carry_out(self: &Arc<Self>, command: DoorCommand, workers: &Workers) {
        let doors = self.clone();
        workers.spawn(async move {
            let driven = match doors.drive(&command.door, command.seconds, command.person_id.as_deref()).await {
                Ok(driven) => driven,
                Err(e) => Driven { opened: false, confirmed: false, error: Some(e.to_string()) },
            };
            let outcome = serde_json::to_string(&driven).expect("an outcome always serializes");
            if let Err(e) = doors.directory.store.finish_command(&command.id, &outcome).await {
                tracing::warn!(command = command.id, error = %e, "a door command's outcome not written");
            }
        });
    }
}
