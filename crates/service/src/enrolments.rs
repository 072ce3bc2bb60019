//! Enrolling a card by tapping it: an operator says "the next unknown card at door X is
//! this person's"; within a minute someone taps a card there, and it is theirs. The tap
//! is read back from the event log (an unknown card's decision keeps its UID), so every
//! kind of reader enrols the same way and decisions do no extra work. An enrolment is
//! finished when someone looks at it (the web UI looks every second); the claim and the
//! card are one transaction, so two nodes looking at once issue the card once.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use lintel_proto::Enrolment;

use crate::credentials;
use crate::directory::{Actor, Directory};
use crate::error::Result;
use crate::validate;

/// How long an enrolment waits for a tap.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Starts waiting for a tap at `door` for `person`.
pub async fn start(directory: &Arc<Directory>, by: &Actor, person: &str, door: &str) -> Result<Enrolment> {
    validate::id("door", door)?;
    crate::site_limits::doors_within(&directory.store, by.site(), [door]).await?;
    let id = format!("enr_{}", crate::secrets::generate("").get(..16).unwrap_or_default());
    let expires_at = Utc::now().timestamp_micros() + i64::try_from(WINDOW.as_micros()).unwrap_or(i64::MAX);
    Ok(directory.store.start_enrolment(&id, person, door, expires_at, by.as_str()).await?.shown)
}

/// The enrolment as it stands, finished first if its card was tapped.
pub async fn check(directory: &Arc<Directory>, id: &str) -> Result<Enrolment> {
    let store = &directory.store;
    let row = store.enrolment(id).await?;
    if row.shown.state != "waiting" {
        return Ok(row.shown);
    }
    match store.tapped_for(&row).await? {
        Some(uid) => {
            let card = credentials::card(&uid, None)?.record;
            let (id, by) = (id.to_owned(), Actor::recorded(row.actor.clone()));
            let enrolled = id.clone();
            directory.write(&by, move |store| async move { store.enrol_card(&enrolled, &uid, &card).await }).await?;
            Ok(store.enrolment(&id).await?.shown)
        }
        None if Utc::now().timestamp_micros() > row.expires_at => {
            Ok(Enrolment { state: "expired".to_owned(), ..row.shown })
        }
        None => Ok(row.shown),
    }
}
