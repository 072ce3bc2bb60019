//! The append-only event log, and the group commit of decisions.

use lintel_core::{Change, Pk};
use lintel_proto::{Event, Reason};
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::rows::{index_credential, time};
use crate::{Result, Store, StoreError, now_micros};

/// An event about to be appended.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub at: i64,
    pub kind: String,
    pub allowed: Option<bool>,
    pub reason: Option<Reason>,
    pub person_id: Option<String>,
    pub door_id: Option<String>,
    pub credential_id: Option<String>,
    pub grant_id: Option<String>,
    pub data: serde_json::Value,
}

impl NewEvent {
    pub fn new(kind: impl Into<String>) -> Self {
        Self {
            at: now_micros(),
            kind: kind.into(),
            allowed: None,
            reason: None,
            person_id: None,
            door_id: None,
            credential_id: None,
            grant_id: None,
            data: serde_json::Value::Object(Default::default()),
        }
    }

    pub fn person(mut self, id: impl Into<String>) -> Self {
        self.person_id = Some(id.into());
        self
    }

    pub fn door(mut self, id: impl Into<String>) -> Self {
        self.door_id = Some(id.into());
        self
    }

    pub fn credential(mut self, id: impl Into<String>) -> Self {
        self.credential_id = Some(id.into());
        self
    }

    pub fn grant(mut self, id: impl Into<String>) -> Self {
        self.grant_id = Some(id.into());
        self
    }

    pub fn with(mut self, key: &str, value: impl serde::Serialize) -> Self {
        if let serde_json::Value::Object(map) = &mut self.data {
            map.insert(key.to_owned(), serde_json::to_value(value).unwrap_or_default());
        }
        self
    }
}

const EVENT_COLUMNS: &str = "seq, at, kind, allowed, reason, person_id, door_id, credential_id, grant_id, data";

fn event(row: &AnyRow) -> Result<Event> {
    let reason: Option<String> = row.try_get("reason")?;
    let data: String = row.try_get("data")?;
    Ok(Event {
        id: row.try_get::<i64, _>("seq")?.to_string(),
        at: time(row.try_get("at")?)?,
        kind: row.try_get("kind")?,
        allowed: row.try_get::<Option<i64>, _>("allowed")?.map(|v| v != 0),
        reason: reason
            .as_deref()
            .map(|r| Reason::parse(r).ok_or_else(|| StoreError::Corrupt(format!("reason {r:?}"))))
            .transpose()?,
        person_id: row.try_get("person_id")?,
        door: row.try_get("door_id")?,
        credential_id: row.try_get("credential_id")?,
        grant_id: row.try_get("grant_id")?,
        data: serde_json::from_str(&data).map_err(|e| StoreError::Corrupt(e.to_string()))?,
    })
}

pub(crate) async fn insert(tx: &mut Transaction<'static, Any>, e: &NewEvent) -> Result<Event> {
    let data = serde_json::to_string(&e.data).expect("JSON values serialize");
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO events (at, kind, allowed, reason, person_id, door_id, credential_id, grant_id, data) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING seq",
    )
    .bind(e.at)
    .bind(&e.kind)
    .bind(e.allowed.map(i64::from))
    .bind(e.reason.map(|r| r.as_str()))
    .bind(&e.person_id)
    .bind(&e.door_id)
    .bind(&e.credential_id)
    .bind(&e.grant_id)
    .bind(data)
    .fetch_one(&mut **tx)
    .await?;
    Ok(Event {
        id: seq.to_string(),
        at: time(e.at)?,
        kind: e.kind.clone(),
        allowed: e.allowed,
        reason: e.reason,
        person_id: e.person_id.clone(),
        door: e.door_id.clone(),
        credential_id: e.credential_id.clone(),
        grant_id: e.grant_id.clone(),
        data: e.data.clone(),
    })
}

/// Appends events with one statement; the sequence numbers come back in insertion order.
async fn insert_many<'e, E>(exec: E, events: &[NewEvent]) -> Result<Vec<Event>>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let values: Vec<String> = (0..events.len())
        .map(|i| {
            let b = i * 9;
            format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6,
                b + 7,
                b + 8,
                b + 9
            )
        })
        .collect();
    let sql = format!(
        "INSERT INTO events (at, kind, allowed, reason, person_id, door_id, credential_id, grant_id, data) VALUES {} RETURNING seq",
        values.join(", ")
    );
    let mut query = sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql));
    for e in events {
        query = query
            .bind(e.at)
            .bind(&e.kind)
            .bind(e.allowed.map(i64::from))
            .bind(e.reason.map(|r| r.as_str()))
            .bind(&e.person_id)
            .bind(&e.door_id)
            .bind(&e.credential_id)
            .bind(&e.grant_id)
            .bind(serde_json::to_string(&e.data).expect("JSON values serialize"));
    }
    let mut seqs = query.fetch_all(exec).await?;
    // One statement assigns its rows ascending numbers in the order of its VALUES.
    seqs.sort_unstable();
    events
        .iter()
        .zip(seqs)
        .map(|(e, seq)| {
            Ok(Event {
                id: seq.to_string(),
                at: time(e.at)?,
                kind: e.kind.clone(),
                allowed: e.allowed,
                reason: e.reason,
                person_id: e.person_id.clone(),
                door: e.door_id.clone(),
                credential_id: e.credential_id.clone(),
                grant_id: e.grant_id.clone(),
                data: e.data.clone(),
            })
        })
        .collect()
}

/// The most events one statement carries (9 parameters each, well under the limits).
const EVENTS_PER_STATEMENT: usize = 500;

/// A decision waiting for the group commit, with what it would use up.
#[derive(Debug, Clone)]
pub struct PendingDecision {
    pub event: NewEvent,
    /// Use one pass of this grant; when none is left the decision becomes a denial.
    pub pass_grant: Option<Pk>,
    /// Mark this backup code used; when it already is, the decision becomes a denial.
    pub backup_code: Option<Pk>,
}

/// A recorded decision: its event as stored (possibly turned into a denial) and the
/// changes its consumption made to the directory.
#[derive(Debug, Clone)]
pub struct CommittedDecision {
    pub event: Event,
    pub changes: Vec<Change>,
}

#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub after: Option<i64>,
    /// Exclusive upper bound.
    pub before: Option<i64>,
    pub kind: Option<String>,
    pub person_id: Option<String>,
    pub door: Option<String>,
    pub limit: i64,
}

fn deny(event: &mut NewEvent, reason: Reason, detail: &str) {
    event.allowed = Some(false);
    event.reason = Some(reason);
    if let serde_json::Value::Object(map) = &mut event.data {
        map.insert("detail".into(), detail.into());
    }
}

/// Uses up what an allowed decision spends, or turns it into a denial when it is gone.
async fn consume(tx: &mut Transaction<'static, Any>, pending: &mut PendingDecision) -> Result<Vec<Change>> {
    let mut changes = Vec::new();
    if let Some(grant) = pending.pass_grant {
        let used: Option<i64> = sqlx::query_scalar(
            "UPDATE grants SET passes_used = passes_used + 1 \
             WHERE pk = $1 AND passes IS NOT NULL AND passes_used < passes RETURNING passes_used",
        )
        .bind(grant)
        .fetch_optional(&mut **tx)
        .await?;
        match used {
            Some(used) => changes.push(Change::PassesUsed { grant, used: u32::try_from(used).unwrap_or(u32::MAX) }),
            None => deny(&mut pending.event, Reason::NoPassesLeft, "every pass of the grant has been used"),
        }
    }
    if let (Some(credential), true) = (pending.backup_code, pending.event.allowed == Some(true)) {
        let done = sqlx::query(
            "UPDATE credentials SET status = 'used', status_reason = 'used', revoked_at = $2 \
             WHERE pk = $1 AND status = 'active'",
        )
        .bind(credential)
        .bind(pending.event.at)
        .execute(&mut **tx)
        .await?;
        if done.rows_affected() == 1 {
            let row = sqlx::query(AssertSqlSafe(format!(
                "SELECT {} FROM {} WHERE c.pk = $1",
                crate::rows::CREDENTIAL_COLUMNS,
                crate::rows::CREDENTIAL_FROM
            )))
            .bind(credential)
            .fetch_one(&mut **tx)
            .await?;
            let (key, cred) = index_credential(&row)?;
            changes.push(Change::Credential(key, cred));
        } else {
            // Give back the pass this decision took: it did not let anyone in.
            if let Some(Change::PassesUsed { grant, .. }) = changes.pop() {
                sqlx::query("UPDATE grants SET passes_used = passes_used - 1 WHERE pk = $1")
                    .bind(grant)
                    .execute(&mut **tx)
                    .await?;
            }
            deny(&mut pending.event, Reason::CredentialRevoked, "the backup code has already been used");
        }
    }
    Ok(changes)
}

impl Store {
    /// Records a batch of decisions in one transaction (group commit): each pass and
    /// backup code is used at most once, and every event is durable before any caller
    /// hears its answer.
    pub async fn commit_decisions(&self, batch: Vec<PendingDecision>) -> Result<Vec<CommittedDecision>> {
        let consumes = batch.iter().any(|p| p.pass_grant.is_some() || p.backup_code.is_some());
        if !consumes && self.backend == crate::Backend::Sqlite && batch.len() <= EVENTS_PER_STATEMENT {
            // Nothing to use up: one INSERT, atomic by itself, is the whole commit.
            let events: Vec<NewEvent> = batch.into_iter().map(|p| p.event).collect();
            let stored = insert_many(&self.write, &events).await?;
            return Ok(stored.into_iter().map(|event| CommittedDecision { event, changes: Vec::new() }).collect());
        }
        let mut tx = self.begin().await?;
        let mut events = Vec::with_capacity(batch.len());
        let mut all_changes = Vec::with_capacity(batch.len());
        for mut pending in batch {
            let changes = consume(&mut tx, &mut pending).await?;
            events.push(pending.event);
            all_changes.push(changes);
        }
        let mut stored = Vec::with_capacity(events.len());
        for chunk in events.chunks(EVENTS_PER_STATEMENT) {
            stored.extend(insert_many(&mut *tx, chunk).await?);
        }
        tx.commit().await?;
        Ok(stored.into_iter().zip(all_changes).map(|(event, changes)| CommittedDecision { event, changes }).collect())
    }

    /// Appends events that change nothing else (door opened, driver failed, ...).
    pub async fn append_events(&self, events: &[NewEvent]) -> Result<Vec<Event>> {
        let mut tx = self.begin().await?;
        let mut out = Vec::with_capacity(events.len());
        for e in events {
            out.push(insert(&mut tx, e).await?);
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Events after a cursor, oldest first.
    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<Event>> {
        let mut sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq > $1 AND seq < $2");
        let mut n = 2;
        let mut binds: Vec<&str> = Vec::new();
        for (column, value) in [("kind", &filter.kind), ("person_id", &filter.person_id), ("door_id", &filter.door)] {
            if let Some(v) = value {
                n += 1;
                sql.push_str(&format!(" AND {column} = ${n}"));
                binds.push(v);
            }
        }
        sql.push_str(&format!(" ORDER BY seq LIMIT {}", filter.limit.clamp(1, 1000)));
        let mut query =
            sqlx::query(AssertSqlSafe(sql)).bind(filter.after.unwrap_or(0)).bind(filter.before.unwrap_or(i64::MAX));
        for b in binds {
            query = query.bind(b);
        }
        query.fetch_all(&self.read).await?.iter().map(event).collect()
    }

    /// Allowed entries (person, time) between two instants at doors that count attendance
    /// (and at doors since deleted).
    pub async fn entries_between(&self, from: i64, until: i64) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT e.person_id, e.at FROM events e LEFT JOIN doors d ON d.id = e.door_id \
             WHERE e.kind = 'decision' AND e.allowed = 1 AND e.person_id IS NOT NULL \
             AND e.at >= $1 AND e.at < $2 AND (d.attendance IS NULL OR d.attendance = 1) ORDER BY e.seq",
        )
        .bind(from)
        .bind(until)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|r| Ok((r.try_get("person_id")?, r.try_get("at")?))).collect()
    }

    /// The newest event's cursor, 0 when the log is empty.
    pub async fn last_event_seq(&self) -> Result<i64> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM events").fetch_one(&self.read).await?;
        Ok(seq.unwrap_or(0))
    }

    /// Records what a door's device last said: online or not, when, and its error.
    /// Not a directory change: no version bump.
    pub async fn set_door_state(&self, door: &str, answered: bool, at: i64, error: Option<&str>) -> Result<()> {
        let query = if answered {
            sqlx::query(
                "UPDATE doors SET online = 1, last_seen = $2, last_opened = $2, last_error = NULL WHERE id = $1",
            )
            .bind(door)
            .bind(at)
        } else {
            sqlx::query("UPDATE doors SET online = 0, last_error = $2 WHERE id = $1").bind(door).bind(error)
        };
        query.execute(&self.write).await?;
        Ok(())
    }
}
