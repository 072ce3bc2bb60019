//! Doors that live in a lock vendor's cloud. lintel keeps the cloud's users in step with
//! its directory (active people with an email are registered; suspended or deleted ones
//! are deactivated), mirrors room bookings as temporary access groups, and takes the
//! cloud's "lock opened" webhook as an entry, which flows on like any other (events,
//! attendance, check-ins). Every call goes through the outbox.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;
use lintel_connectors::lockcloud::{Client, CloudError, LockEvent};
use lintel_proto::{PersonStatus, Problem, Reason};
use lintel_store::{Attempt, NewEvent, PersonFilter, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Digest as _;
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::problem::{ApiError, ApiQuery, RawBody, parse_json};

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
}

impl LockCloud {
    pub fn new(config: LockCloudConfig) -> Result<Self, CloudError> {
        let client = Client::new(&config.base_url, &config.token_header, &config.token)?;
        Ok(Self { config, client })
    }

    fn door_of(&self, lock: &str) -> Option<&str> {
        self.config.door_locks.iter().find(|(_, l)| *l == lock).map(|(d, _)| d.as_str())
    }
}

/// What the cloud should know of a person: registered and active, or deactivated.
fn user_state(email: &str, name: &str, active: bool) -> String {
    hex::encode(sha2::Sha256::digest(format!("{email}\n{name}\n{active}").as_bytes()))
}

/// The user as the cloud should have it now: `(email, name, active)`. A person deleted,
/// or without an email, is inactive (with what the cloud was told last kept as is).
async fn desired_user(s: &AppState, person: &str) -> Result<Option<(String, String, bool)>, StoreError> {
    match s.store().person(person).await {
        Ok(p) => Ok(p.email.map(|email| (email, p.name, p.status == PersonStatus::Active))),
        Err(StoreError::NotFound { .. }) => Ok(Some((String::new(), String::new(), false))),
        Err(e) => Err(e),
    }
}

/// Compares the directory with what the cloud was told and queues a user update for each
/// difference. The key names the directory version: a change back to an earlier state is
/// a new change, and the worker always sends the state of the moment it sends.
async fn reconcile_users(s: &AppState, version: i64) -> Result<usize, StoreError> {
    let store = &s.store();
    let told = store.lockcloud_user_states().await?;
    let mut seen = std::collections::HashSet::new();
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

/// Mirrors a booking as a temporary access group for the booked doors that live in the
/// cloud (nothing when none do).
pub async fn booking_changed(
    s: &AppState,
    booking: &str,
    person: &str,
    doors: &[String],
    from: i64,
    until: i64,
) -> Result<(), StoreError> {
    let Some(cloud) = s.inner.lockcloud.as_ref() else { return Ok(()) };
    let locks: Vec<&String> = doors.iter().filter_map(|d| cloud.config.door_locks.get(d)).collect();
    if locks.is_empty() {
        return Ok(());
    }
    let time = |micros: i64| chrono::DateTime::from_timestamp_micros(micros).map(|t| t.to_rfc3339());
    let group = json!({"id": format!("booking-{booking}"), "booking": booking, "name": format!("Booking {booking}"),
                       "locks": locks, "users": [person], "starts_at": time(from), "ends_at": time(until)});
    let store = &s.store();
    let key = format!("lockcloud-group:{booking}:{from}:{until}:{}", store.directory_version().await?);
    store.enqueue("lockcloud", "group", &key, &group).await?;
    Ok(())
}

pub async fn booking_ended(s: &AppState, booking: &str) -> Result<(), StoreError> {
    if s.inner.lockcloud.is_none() {
        return Ok(());
    }
    let store = &s.store();
    let key = format!("lockcloud-group-delete:{booking}:{}", store.directory_version().await?);
    store.enqueue("lockcloud", "group_delete", &key, &json!({"id": format!("booking-{booking}")})).await?;
    Ok(())
}

async fn run_outbox(s: &AppState, cloud: &LockCloud) -> Result<(), StoreError> {
    let store = &s.store();
    for item in store.due_outbox("lockcloud", 20).await? {
        let p = &item.payload;
        let text = |k: &str| p[k].as_str().unwrap_or_default().to_owned();
        let mut sent_state = None;
        let result = match item.kind.as_str() {
            // What the person is now, not what they were when this was queued: updates
            // retried out of order cannot leave the cloud behind.
            "user" => match desired_user(s, &text("person_id")).await? {
                Some((email, name, active)) => {
                    sent_state = Some(user_state(&email, &name, active));
                    cloud.client.put_user(&text("person_id"), &email, &name, active).await
                }
                None => Ok(()),
            },
            // A group whose booking ended meanwhile is not put back.
            "group" => match store.cobot_booking(&text("booking")).await? {
                Some(_) => cloud.client.put_group(&text("id"), p).await,
                None => Ok(()),
            },
            "group_delete" => cloud.client.delete_group(&text("id")).await,
            other => Err(CloudError::Config(format!("unknown outbox kind {other:?}"))),
        };
        let attempt = match result {
            Ok(()) => {
                if let Some(state) = sent_state {
                    store.set_lockcloud_user_state(&text("person_id"), &state).await?;
                }
                Attempt::Done
            }
            Err(e) if !e.is_transient() || item.attempts >= 80 => Attempt::Failed(e.to_string()),
            Err(e) => {
                let delay = Duration::from_secs(5u64 << item.attempts.clamp(0, 8)).min(Duration::from_secs(1800));
                Attempt::RetryAt(Utc::now().timestamp_micros() + delay.as_micros() as i64, e.to_string())
            }
        };
        store.outbox_attempted(item.pk, &attempt).await?;
    }
    Ok(())
}

/// Keeps the cloud in step while the server runs: users whenever the directory changes
/// (and every few minutes regardless), the outbox every second.
pub fn spawn_workers(s: AppState) {
    s.clone().spawn_worker(async move {
        let Some(cloud) = s.inner.lockcloud.as_ref() else { return };
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reconciled: Option<(i64, tokio::time::Instant)> = None;
        while s.unless_stopping(tick.tick()).await.is_some() {
            let version = s.store().directory_version().await.unwrap_or(-1);
            let due = reconciled.is_none_or(|(v, at)| v != version || at.elapsed() > Duration::from_secs(300));
            if due {
                match reconcile_users(&s, version).await {
                    Ok(_) => reconciled = Some((version, tokio::time::Instant::now())),
                    Err(e) => tracing::warn!(error = %e, "lock cloud users not reconciled"),
                }
            }
            if let Err(e) = run_outbox(&s, cloud).await {
                tracing::warn!(error = %e, "lock cloud outbox not processed");
            }
        }
    });
}

#[derive(Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

/// The cloud reports a lock opened: recorded once (by the cloud's event id) as an entry
/// at the door that lock is, by the person it names, so that it counts like any entry
/// (attendance, check-ins).
#[utoipa::path(post, path = "/hooks/lockcloud", tag = "integrations", params(("token" = Option<String>, Query, description = "the webhook token")),
    responses((status = 200, description = "recorded (or recorded before)"), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 413, body = Problem, description = "larger than max_body_bytes"), (status = 422, body = Problem)))]
pub async fn webhook(
    State(s): State<AppState>,
    ApiQuery(query): ApiQuery<TokenQuery>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let cloud = s
        .inner
        .lockcloud
        .as_ref()
        .ok_or_else(|| ApiError::not_found("the lock cloud is not configured ([lockcloud])"))?;
    let expected = cloud.config.webhook_token.as_deref().map(lintel_service::secrets::digest);
    let given = query.token.as_deref().or(headers.get("x-webhook-token").and_then(|v| v.to_str().ok()));
    let admitted = match (expected, given) {
        (Some(expected), Some(given)) => bool::from(lintel_service::secrets::digest(given).ct_eq(&expected)),
        _ => false,
    };
    if !admitted {
        return Err(ApiError::unauthorized("wrong or missing webhook token"));
    }
    let event: LockEvent = parse_json(&body)?;
    if event.event != "lock.opened" {
        return Ok((StatusCode::OK, Json(json!({"ignored": event.event.chars().take(64).collect::<String>()}))));
    }
    if event.id.is_empty() || event.id.len() > 128 {
        return Err(ApiError::invalid("id is 1 to 128 characters"));
    }
    let door = cloud.door_of(&event.lock_id).ok_or_else(|| ApiError::invalid("no door is mapped to this lock_id"))?;
    let person = match event.user_id.as_deref() {
        Some(id) if s.store().person_pk(id).await?.is_some() => Some(id.to_owned()),
        _ => None,
    };
    let mut entry =
        NewEvent::new("decision").door(door).with("detail", "opened in the lock cloud").with("via", "lockcloud");
    entry = entry.with("cloud_event", &event.id);
    entry.allowed = Some(true);
    entry.reason = Some(Reason::Granted);
    entry.person_id = person;
    entry.data["credential_kind"] = "lockcloud".into();
    if let Some(at) = event.at.filter(|at| (*at - Utc::now()).num_minutes().abs() < 24 * 60) {
        entry.at = at.timestamp_micros();
    }
    match s.store().record_external_entry("lockcloud", &event.id, &entry).await? {
        Some(recorded) => {
            s.directory().publish(std::slice::from_ref(&recorded));
            Ok((StatusCode::OK, Json(json!({"recorded": recorded.id}))))
        }
        None => Ok((StatusCode::OK, Json(json!({"recorded": "before"})))),
    }
}
