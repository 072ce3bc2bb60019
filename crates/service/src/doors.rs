//! Opening doors: decide, then drive, then record what the device said. Every front-end
//! (the API, the web UI, Slack, signed operations, OSDP readers) opens through here.

use std::sync::Arc;

use lintel_core::Pk;
use lintel_proto::{DecisionResponse, Reason};
use lintel_store::NewEvent;

use crate::decide::{Ask, Decider};
use crate::directory::Directory;
use crate::error::{Result, ServiceError};

/// Who asks a door to open.
pub enum Opener<'a> {
    /// An operator opening from afar (an admin token, the web UI): recorded as an allowed
    /// decision `by` them, without a person (it is not their own entry).
    Operator { by: String, note: Option<&'a str> },
    /// Someone presenting a credential (a personal secret, a backup code): decided first.
    Credential(Ask<'a>),
    /// A person on their own authority (a button in chat, a signed operation): decided by
    /// their grants; `via` names the channel in the event, `data` is added to it.
    Person { pk: Pk, via: &'a str, data: serde_json::Map<String, serde_json::Value> },
}

/// What the device did.
#[derive(Debug, Clone, PartialEq, Eq)]
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
            Opener::Operator { by, note } => {
                if self.directory.index().door(door).is_none() {
                    return Err(ServiceError::not_found(format!("door {door:?} not found")));
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
        let recorded = self.directory.store.append_events(&[event]).await?;
        self.directory.publish(&recorded);
        Ok(DecisionResponse {
            allowed: true,
            reason: Reason::Granted,
            detail: format!("opened by {by}"),
            person_id: None,
            grant_id: None,
            event_id: recorded.first().map(|e| e.id.clone()),
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
        let driver = lintel_doors::driver_for(&door.driver, &door.id, &self.links);
        let seconds = seconds.unwrap_or(door.open_seconds);
        let outcome = driver.open(seconds).await;
        let mut event =
            NewEvent::new("door.opened").door(door_id).with("driver", driver.kind()).with("seconds", seconds);
        event.person_id = person_id.map(str::to_owned);
        let driven = match outcome {
            Ok(o) => {
                event = event.with("confirmed", o.confirmed);
                Driven { opened: driver.kind() != "none", confirmed: o.confirmed, error: None }
            }
            Err(e) => {
                metrics::counter!("lintel_driver_failures_total", "driver" => driver.kind()).increment(1);
                tracing::warn!(door = door_id, driver = driver.kind(), error = %e, "door driver failed");
                event.kind = "door.driver_failed".into();
                event = event.with("error", e.to_string());
                Driven { opened: false, confirmed: false, error: Some(e.to_string()) }
            }
        };
        if driven.error.is_some() && !record_failure {
            return Ok(driven);
        }
        let events = store.append_events(&[event]).await?;
        self.directory.publish(&events);
        if driver.kind() != "none" {
            // Only an answer from the device counts as seeing it.
            let now = chrono::Utc::now().timestamp_micros();
            store.set_door_state(door_id, driven.error.is_none(), now, driven.error.as_deref()).await?;
        }
        Ok(driven)
    }
}
