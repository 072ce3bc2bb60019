//! Doors that live in a lock vendor's cloud. lintel keeps the cloud's users in step with
//! its directory (active people with an email are registered; suspended or deleted ones
//! are deactivated), mirrors room bookings as temporary access groups, and takes the
//! cloud's "lock opened" webhook as an entry, which flows on like any other (events,
//! attendance, check-ins). Every call goes through the outbox.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use lintel_connectors::lockcloud::{Client, CloudError, LockEvent};
use lintel_proto::{PersonStatus, Reason};
use lintel_store::{NewEvent, PersonFilter, StoreError, WorkItem};
use serde_json::json;
use sha2::Digest as _;
use subtle::ConstantTimeEq;

use crate::directory::Directory;
use crate::error::{Result, ServiceError};
use crate::workers::Workers;
use crate::{outbox, secrets};

/// The `[lockcloud]` settings.
#[derive(Clone, Debug)]
pub struct LockCloudConfig {
    pub base_url: String,
    /// The header the token goes in, e.g. `X-Api-Key`.
    pub token_header: String,
    pub token: String,
    /// The cloud calls `POST /hooks/lockcloud?token=...` with this.
    pub webhook_token: Option<String>,
    /// Door id -> the cloud's lock id.
    pub door_locks: BTreeMap<String, String>,
}

pub struct LockCloud {
    pub config: LockCloudConfig,
    client: Client,
    directory: Arc<Directory>,
}

/// What became of a report from the cloud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reported {
    /// Recorded now, as this event.
    Recorded(String),
    /// The same report came before.
    Before,
    /// Not a lock opening: nothing lintel follows.
    Ignored(String),
}

/// What the cloud should know of a person: registered and active, or deactivated.
fn user_state(email: &str, name: &str, active: bool) -> String {
    hex::encode(sha2::Sha256::digest(format!("{email}\n{name}\n{active}").as_bytes()))
}

fn upstream(e: CloudError) -> ServiceError {
    ServiceError::upstream("lockcloud", e.to_string(), e.is_transient())
}

impl LockCloud {
    pub fn new(config: LockCloudConfig, directory: Arc<Directory>) -> Result<Self> {
        let client = Client::new(&config.base_url, &config.token_header, &config.token)
            .map_err(|e| ServiceError::invalid(format!("[lockcloud] is not usable: {e}")))?;
        Ok(Self { config, client, directory })
    }

    fn door_of(&self, lock: &str) -> Option<&str> {
        self.config.door_locks.iter().find(|(_, l)| *l == lock).map(|(d, _)| d.as_str())
    }

    /// Whether a webhook call carries the configured token (none configured: no call does).
    pub fn admits(&self, given: Option<&str>) -> bool {
        let expected = self.config.webhook_token.as_deref().map(secrets::digest);
        match (expected, given) {
            (Some(expected), Some(given)) => bool::from(secrets::digest(given).ct_eq(&expected)),
            _ => false,
        }
    }

    /// The cloud reports a lock opened: recorded once (by the cloud's event id) as an
    /// entry at the door that lock is, by the person it names, so that it counts like any
    /// entry (attendance, check-ins).
    pub async fn report(&self, event: &LockEvent) -> Result<Reported> {
        if event.event != "lock.opened" {
            return Ok(Reported::Ignored(event.event.chars().take(64).collect()));
        }
        if event.id.is_empty() || event.id.len() > 128 {
            return Err(ServiceError::invalid("id is 1 to 128 characters"));
        }
        let door =
            self.door_of(&event.lock_id).ok_or_else(|| ServiceError::invalid("no door is mapped to this lock_id"))?;
        let store = &self.directory.store;
        let person = match event.user_id.as_deref() {
            Some(id) if store.person_pk(id).await?.is_some() => Some(id.to_owned()),
            _ => None,
        };
        let mut entry =
            NewEvent::new("decision").door(door).with("detail", "opened in the lock cloud").with("via", "lockcloud");
        entry = entry.with("cloud_event", &event.id);
        entry.allowed = Some(true);
        entry.reason = Some(Reason::Granted);
        entry.person_id = person;
        entry.data["credential_kind"] = "lockcloud".into();
        // A report a day off is the cloud's clock, not when the door opened.
        if let Some(at) = event.at.filter(|at| (*at - Utc::now()).num_minutes().abs() < 24 * 60) {
            entry.at = at.timestamp_micros();
        }
        Ok(match store.record_external_entry("lockcloud", &event.id, &entry).await? {
            Some(recorded) => {
                self.directory.publish(std::slice::from_ref(&recorded));
                Reported::Recorded(recorded.id)
            }
            None => Reported::Before,
        })
    }

    /// Mirrors a booking as a temporary access group for the booked doors that live in the
    /// cloud (nothing when none do).
    pub async fn booking_changed(
        &self,
        booking: &str,
        person: &str,
        doors: &[String],
        from: i64,
        until: i64,
    ) -> Result<(), StoreError> {
        let locks: Vec<&String> = doors.iter().filter_map(|d| self.config.door_locks.get(d)).collect();
        if locks.is_empty() {
            return Ok(());
        }
        let time = |micros: i64| chrono::DateTime::from_timestamp_micros(micros).map(|t| t.to_rfc3339());
        let group = json!({"id": format!("booking-{booking}"), "booking": booking, "name": format!("Booking {booking}"),
                           "locks": locks, "users": [person], "starts_at": time(from), "ends_at": time(until)});
        let store = &self.directory.store;
        let key = format!("lockcloud-group:{booking}:{from}:{until}:{}", store.directory_version().await?);
        store.enqueue("lockcloud", "group", &key, &group).await?;
        Ok(())
    }

    pub async fn booking_ended(&self, booking: &str) -> Result<(), StoreError> {
        let store = &self.directory.store;
        let key = format!("lockcloud-group-delete:{booking}:{}", store.directory_version().await?);
        store.enqueue("lockcloud", "group_delete", &key, &json!({"id": format!("booking-{booking}")})).await?;
        Ok(())
    }

    /// The user as the cloud should have it now: `(email, name, active)`. A person deleted
    /// is inactive; one without an email is not the cloud's to know.
    async fn desired_user(&self, person: &str) -> Result<Option<(String, String, bool)>, StoreError> {
        match self.directory.store.person(person).await {
            Ok(p) => Ok(p.email.map(|email| (email, p.name, p.status == PersonStatus::Active))),
            Err(StoreError::NotFound { .. }) => Ok(Some((String::new(), String::new(), false))),
            Err(e) => Err(e),
        }
    }

    /// Compares the directory with what the cloud was told and queues a user update for
    /// each difference. The key names the directory version: a change back to an earlier
    /// state is a new change, and the worker always sends the state of the moment it sends.
    async fn reconcile_users(&self, version: i64) -> Result<usize, StoreError> {
        let store = &self.directory.store;
        let told = store.lockcloud_user_states().await?;
        let mut seen = HashSet::new();
        let mut differ = Vec::new();
        let mut after = None;
        loop {
            let (people, next) = store.people(&PersonFilter { after, limit: 500, ..Default::default() }).await?;
            for p in people {
                if let Some(email) = &p.email {
                    let state = user_state(email, &p.name, p.status == PersonStatus::Active);
                    if told.get(&p.id) != Some(&state) {
                        differ.push(p.id.clone());
                    }
                }
                seen.insert(p.id);
            }
            match next.and_then(|n| n.parse().ok()) {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        // Deleted people the cloud still has active.
        let gone = user_state("", "", false);
        differ.extend(told.into_iter().filter(|(p, state)| !seen.contains(p) && *state != gone).map(|(p, _)| p));
        let mut queued = 0;
        for person in differ {
            let key = format!("lockcloud-user:{person}:{version}");
            queued += usize::from(store.enqueue("lockcloud", "user", &key, &json!({"person_id": person})).await?);
        }
        Ok(queued)
    }

    async fn deliver(&self, item: &WorkItem) -> Result<()> {
        let store = &self.directory.store;
        let p = &item.payload;
        let text = |k: &str| p[k].as_str().unwrap_or_default().to_owned();
        match item.kind.as_str() {
            // What the person is now, not what they were when this was queued: updates
            // retried out of order cannot leave the cloud behind.
            "user" => {
                let person = text("person_id");
                let Some((email, name, active)) = self.desired_user(&person).await? else { return Ok(()) };
                self.client.put_user(&person, &email, &name, active).await.map_err(upstream)?;
                store.set_lockcloud_user_state(&person, &user_state(&email, &name, active)).await?;
                Ok(())
            }
            // A group whose booking ended meanwhile is not put back.
            "group" => match store.cobot_booking(&text("booking")).await? {
                Some(_) => self.client.put_group(&text("id"), p).await.map_err(upstream),
                None => Ok(()),
            },
            "group_delete" => self.client.delete_group(&text("id")).await.map_err(upstream),
            other => Err(ServiceError::invalid(format!("unknown outbox kind {other:?}"))),
        }
    }

    async fn send_due(&self) -> Result<usize, StoreError> {
        let store = &self.directory.store;
        outbox::run_outbox(store, "lockcloud", None, |item| async move { self.deliver(&item).await }).await
    }

    /// Keeps the cloud in step while the server runs: users whenever the directory changes
    /// (and every few minutes regardless), the outbox every second.
    pub fn spawn_workers(self: &Arc<Self>, workers: &Workers) {
        let cloud = self.clone();
        let mut ticks = workers.one_node_every("lockcloud", Duration::from_secs(1));
        workers.spawn(async move {
            let store = &cloud.directory.store;
            let mut reconciled: Option<(i64, tokio::time::Instant)> = None;
            while ticks.next().await {
                let version = store.directory_version().await.unwrap_or(-1);
                let due = reconciled.is_none_or(|(v, at)| v != version || at.elapsed() > Duration::from_secs(300));
                if due {
                    match cloud.reconcile_users(version).await {
                        Ok(_) => reconciled = Some((version, tokio::time::Instant::now())),
                        Err(e) => tracing::warn!(error = %e, "lock cloud users not reconciled"),
                    }
                }
                if let Err(e) = cloud.send_due().await {
                    tracing::warn!(error = %e, "lock cloud outbox not processed");
                }
            }
        });
    }
}
