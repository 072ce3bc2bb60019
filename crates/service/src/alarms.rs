//! Door inputs and alarms. Devices report inputs (a door position switch, an exit button,
//! a tamper switch, a fire panel's contact); each is recorded and may raise an alarm:
//! `forced_open` (the door opened with no allowed entry, opening, exit request or unlock
//! shortly before), `held_open` (open longer than the door's `held_open_seconds`, with a
//! warning 10 s before), `tamper`, and `device_offline` (a device gone longer than
//! [`OFFLINE_AFTER`]). A fire input raises an emergency release of the door's site. An
//! alarm stays open until its condition cleared and an operator acknowledged it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lintel_proto::{Alarm, DoorInput, InputKind, InputState};

use crate::directory::{Actor, Directory};
use crate::error::{Result, ServiceError};
use crate::{site_limits, validate};

/// How long before an opening the door may have been released for it not to be forced:
/// the strike's time plus this margin (people are slow with heavy doors).
const RELEASE_MARGIN: chrono::TimeDelta = chrono::TimeDelta::seconds(5);
/// How long a device may be offline before its doors raise `device_offline`.
pub const OFFLINE_AFTER: Duration = Duration::from_secs(60);
/// How long before the held-open alarm its warning comes.
const WARN_BEFORE: u32 = 10;

/// Checks a door's `held_open_seconds` before it is kept.
pub(crate) fn check_held_open_seconds(seconds: Option<u32>) -> Result<()> {
    match seconds {
        Some(s) if !(1..=3600).contains(&s) => Err(ServiceError::invalid("held_open_seconds is 1 to 3600")),
        _ => Ok(()),
    }
}

/// What a reported input did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputOutcome {
    Recorded,
    /// It raised this alarm.
    Alarm(Alarm),
    /// It raised an emergency release of the door's site.
    Emergency,
}

/// Takes a device's input at `door`, `by` the device (a controller, a building system's
/// token): records it and raises or clears what it means.
pub async fn report(directory: &Arc<Directory>, by: &Actor, door: &str, input: DoorInput) -> Result<InputOutcome> {
    use InputKind::*;
    use InputState::*;
    site_limits::doors_within(&directory.store, by.site(), [door]).await?;
    let kept = directory.store.door(door).await?;
    let valid = match input.input {
        Door => matches!(input.state, Open | Closed),
        Exit | Tamper | Fire => matches!(input.state, Active | Inactive),
    };
    if !valid {
        return Err(ServiceError::invalid(
            "a door input is open or closed; exit, tamper and fire are active or inactive",
        ));
    }
    let now = Utc::now();
    let (kind, state) = (input_name(input.input), state_name(input.state));
    let event = lintel_store::NewEvent::new(if input.input == Exit { "door.exit_requested" } else { "door.input" })
        .door(door)
        .with("input", kind)
        .with("state", state);
    record(directory, by, event).await?;
    let raise = |alarm: &'static str| raise(directory, door, alarm, None);
    let clear = |alarm: &'static str| clear(directory, door, alarm);
    let outcome = match (input.input, input.state) {
        (Door, Open) => {
            let before = directory.store.set_position(door, true, now).await?;
            let window = now - chrono::TimeDelta::seconds(i64::from(kept.open_seconds)) - RELEASE_MARGIN;
            let forced = before.as_deref() != Some("open")
                && !kept.state.hold_open()
                && !directory.store.released_since(door, window).await?;
            match forced {
                true => raise("forced_open").await?.map_or(InputOutcome::Recorded, InputOutcome::Alarm),
                false => InputOutcome::Recorded,
            }
        }
        (Door, Closed) => {
            directory.store.set_position(door, false, now).await?;
            clear("forced_open").await?;
            clear("held_open").await?;
            InputOutcome::Recorded
        }
        (Tamper, Active) => raise("tamper").await?.map_or(InputOutcome::Recorded, InputOutcome::Alarm),
        (Tamper, Inactive) => {
            clear("tamper").await?;
            InputOutcome::Recorded
        }
        (Fire, Active) => {
            // A fire input at a site limits nothing: the building's life safety comes first.
            let why = format!("fire input at door {door}");
            crate::door_modes::emergency(directory, by, kept.site, true, Some(why)).await?;
            InputOutcome::Emergency
        }
        _ => InputOutcome::Recorded,
    };
    Ok(outcome)
}

/// Records an event that changes nothing, and shows it on the live streams.
async fn record(directory: &Directory, by: &Actor, mut event: lintel_store::NewEvent) -> Result<()> {
    event.actor = Some(by.as_str().to_owned());
    directory.record(event).await?;
    Ok(())
}

fn input_name(kind: InputKind) -> &'static str {
    match kind {
        InputKind::Door => "door",
        InputKind::Exit => "exit",
        InputKind::Tamper => "tamper",
        InputKind::Fire => "fire",
    }
}

fn state_name(state: InputState) -> &'static str {
    match state {
        InputState::Open => "open",
        InputState::Closed => "closed",
        InputState::Active => "active",
        InputState::Inactive => "inactive",
    }
}

async fn raise(
    directory: &Arc<Directory>,
    door: &str,
    kind: &'static str,
    data: Option<(&'static str, String)>,
) -> Result<Option<Alarm>> {
    let door = door.to_owned();
    let written = directory
        .write(&Actor::lintel(), move |s| async move {
            s.raise_alarm(&door, kind, data.as_ref().map(|(k, v)| (*k, v.as_str()))).await
        })
        .await?;
    Ok(written.value)
}

async fn clear(directory: &Arc<Directory>, door: &str, kind: &'static str) -> Result<()> {
    let door = door.to_owned();
    directory.write(&Actor::lintel(), move |s| async move { s.clear_alarms(&door, kind).await }).await?;
    Ok(())
}

/// A soft anti-passback zone let someone in a second time without leaving: an
/// `anti_passback` alarm at the door, cleared at once (nothing stays wrong there) and
/// open until an operator acknowledges it.
pub async fn passback_violation(directory: &Arc<Directory>, event: &lintel_proto::Event) -> Result<()> {
    let (Some(door), true) = (&event.door, is_passback_violation(event)) else {
        return Ok(());
    };
    let person = event.person_id.clone().unwrap_or_default();
    raise(directory, door, "anti_passback", Some(("person", person))).await?;
    clear(directory, door, "anti_passback").await
}

/// Whether the decision's commit found a second entry without an exit (soft zones, uploads).
pub fn is_passback_violation(event: &lintel_proto::Event) -> bool {
    event.data.get("anti_passback").and_then(|v| v.as_str()) == Some("violation")
}

/// An operator acknowledges an alarm, with an optional note.
pub async fn acknowledge(directory: &Arc<Directory>, by: &Actor, id: String, note: Option<String>) -> Result<Alarm> {
    let alarm = directory.store.alarm(&id).await?;
    site_limits::doors_within(&directory.store, by.site(), [alarm.door.as_str()]).await?;
    if let Some(note) = &note {
        validate::text("note", note, 1000)?;
    }
    Ok(directory.write(by, move |s| async move { s.ack_alarm(&id, note.as_deref()).await }).await?.value)
}

/// Watches what no input reports: doors held open too long, devices gone. Run by one node
/// (the mode worker's lease holder) every second.
pub async fn watch(directory: &Arc<Directory>, now: DateTime<Utc>) -> Result<()> {
    let store = &directory.store;
    // Raised already and not cleared: not raised again (each raise is a write).
    let open: Vec<Alarm> = store.alarms(false, None).await?;
    let raised =
        |door: &str, kind: &str| open.iter().any(|a| a.door == door && a.kind == kind && a.cleared_at.is_none());
    let standing = store.doors_standing_open().await?;
    for door in standing.iter().filter(|d| !d.held_unlocked) {
        let open_for = (now - door.since).num_seconds();
        let limit = i64::from(door.held_open_seconds);
        if open_for >= limit {
            if raised(&door.id, "held_open") {
                continue;
            }
            raise(directory, &door.id, "held_open", Some(("open_since", door.since.to_rfc3339()))).await?;
        } else if open_for >= limit - i64::from(WARN_BEFORE.min(door.held_open_seconds / 2))
            && store.take_held_open_warning(&door.id, door.since).await?
        {
            let event = lintel_store::NewEvent::new("alarm.warning").door(&door.id).with("kind", "held_open");
            record(directory, &Actor::lintel(), event).await?;
        }
    }
    let before = now - chrono::TimeDelta::from_std(OFFLINE_AFTER).unwrap_or_default();
    let (gone, back) = store.doors_offline(before).await?;
    for door in gone.iter().filter(|d| !raised(d, "device_offline")) {
        raise(directory, door, "device_offline", None).await?;
    }
    for door in back.iter().filter(|d| raised(d, "device_offline")) {
        clear(directory, door, "device_offline").await?;
    }
    Ok(())
}
