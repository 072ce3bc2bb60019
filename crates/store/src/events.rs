//! The append-only event log: appending, paging, attendance entries. Decisions are
//! appended through the group commit in `decision_log`.

use lintel_proto::{Event, Reason};
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::rows::time;
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
    let mut stored = insert_many(&mut **tx, std::slice::from_ref(e)).await?;
    Ok(stored.pop().expect("one event in, one out"))
}

/// Appends events with one statement; the sequence numbers come back in insertion order.
pub(crate) async fn insert_many<'e, E>(exec: E, events: &[NewEvent]) -> Result<Vec<Event>>
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
    events.iter().zip(seqs).map(|(e, seq)| stored(e, seq)).collect()
}

/// The event as stored under its sequence number.
pub(crate) fn stored(e: &NewEvent, seq: i64) -> Result<Event> {
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

impl Store {
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
