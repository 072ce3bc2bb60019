//! The append-only event log: appending, paging, attendance entries. Decisions are
//! appended through the group commit in `decision_log`.

use lintel_proto::{Event, Reason};
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::rows::time;
use crate::{EVENT_PEOPLE_LOCK, Result, Store, StoreError, now_micros};

/// The most events one round of indexing by person covers (a bounded transaction; at a
/// round a second it keeps up with far more decisions than a site makes).
const EVENT_PEOPLE_PER_ROUND: i64 = 100_000;

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
    /// Who made the change (see [`lintel_proto::Event::actor`]).
    pub actor: Option<String>,
    pub data: serde_json::Value,
    /// What an allowed entry did with a pass.
    pub pass_use: Option<PassUse>,
}

/// What an allowed entry did with a grant's pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassUse {
    /// Used one (and checked its holder in for the pass's time, if it lasts).
    Used,
    /// Came in on a check-in opened earlier: used nothing.
    CheckedIn,
}

impl PassUse {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Used => "used",
            Self::CheckedIn => "checked_in",
        }
    }
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
            actor: None,
            data: serde_json::Value::Object(Default::default()),
            pass_use: None,
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

    /// What an edit changed, for the audit trail: `before` and `after` hold the fields
    /// that differ (times of the edit itself left out), each side as it was.
    pub fn changed<T: serde::Serialize>(self, before: &T, after: &T) -> Self {
        use serde_json::{Map, Value};
        let fields = |v: &T| match serde_json::to_value(v) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        let (old, new) = (fields(before), fields(after));
        let keys: Vec<&String> = old
            .keys()
            .chain(new.keys().filter(|k| !old.contains_key(*k)))
            .filter(|k| *k != "updated_at" && old.get(*k) != new.get(*k))
            .collect();
        let side = |map: &Map<String, Value>| -> Map<String, Value> {
            keys.iter().map(|k| ((*k).clone(), map.get(*k).cloned().unwrap_or(Value::Null))).collect()
        };
        self.with("before", side(&old)).with("after", side(&new))
    }

    pub fn with(mut self, key: &str, value: impl serde::Serialize) -> Self {
        if let serde_json::Value::Object(map) = &mut self.data {
            map.insert(key.to_owned(), serde_json::to_value(value).unwrap_or_default());
        }
        self
    }
}

pub(crate) const EVENT_COLUMNS: &str =
    "seq, at, kind, allowed, reason, person_id, door_id, credential_id, grant_id, actor, data";

pub(crate) fn event(row: &AnyRow) -> Result<Event> {
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
        actor: row.try_get("actor")?,
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
    const COLUMNS: usize = 11;
    let values: Vec<String> = (0..events.len())
        .map(|i| {
            let params: Vec<String> = (1..=COLUMNS).map(|c| format!("${}", i * COLUMNS + c)).collect();
            format!("({})", params.join(", "))
        })
        .collect();
    let sql = format!(
        "INSERT INTO events (at, kind, allowed, reason, person_id, door_id, credential_id, grant_id, data, pass_use, \
         actor) VALUES {} RETURNING seq",
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
            .bind(serde_json::to_string(&e.data).expect("JSON values serialize"))
            .bind(e.pass_use.map(PassUse::as_str))
            .bind(&e.actor);
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
        actor: e.actor.clone(),
        data: e.data.clone(),
    })
}

/// ` AND kind = $n AND door_id = $m ...` for the filter's kind, door and site, their
/// values pushed to `binds` (whose parameters start at `$3`).
fn filter_conditions<'a>(filter: &'a EventFilter, prefix: &str, binds: &mut Vec<&'a str>) -> String {
    let mut sql = String::new();
    for (column, value) in [("kind", &filter.kind), ("door_id", &filter.door)] {
        if let Some(v) = value {
            binds.push(v);
            sql.push_str(&format!(" AND {prefix}{column} = ${}", binds.len() + 2));
        }
    }
    if let Some(actor) = &filter.actor {
        binds.push(actor);
        sql.push_str(&format!(" AND {prefix}actor = ${}", binds.len() + 2));
    }
    if filter.changes_only {
        sql.push_str(&format!(" AND {prefix}actor IS NOT NULL"));
    }
    if let Some(site) = &filter.site {
        binds.push(site);
        sql.push_str(&format!(" AND {prefix}door_id IN (SELECT id FROM doors WHERE site = ${})", binds.len() + 2));
    }
    // Integers, written into the statement as such.
    if let Some(from) = filter.from {
        sql.push_str(&format!(" AND {prefix}at >= {from}"));
    }
    if let Some(to) = filter.to {
        sql.push_str(&format!(" AND {prefix}at < {to}"));
    }
    sql
}

#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub after: Option<i64>,
    /// Exclusive upper bound.
    pub before: Option<i64>,
    pub kind: Option<String>,
    pub person_id: Option<String>,
    pub door: Option<String>,
    /// Events at the doors of this site (as the doors are now).
    pub site: Option<String>,
    /// Changes made by this actor (`token:ci`, `operator:ann`, `integration:cobot`).
    pub actor: Option<String>,
    /// Only changes someone made (the audit trail), no decisions or device events.
    pub changes_only: bool,
    /// Events at or after this instant (µs since the epoch).
    pub from: Option<i64>,
    /// Events before this instant (µs since the epoch).
    pub to: Option<i64>,
    pub limit: i64,
}

impl Store {
    /// Appends an event that changes nothing else (door opened, driver failed, ...).
    pub async fn append_event(&self, event: &NewEvent) -> Result<Event> {
        let mut tx = self.begin().await?;
        let recorded = insert(&mut tx, event).await?;
        tx.commit().await?;
        Ok(recorded)
    }

    /// Events after a cursor, oldest first.
    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<Event>> {
        let mut binds: Vec<&str> = Vec::new();
        let limit = filter.limit.clamp(1, 1000);
        let sql = match &filter.person_id {
            None => format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE seq > $1 AND seq < $2{} ORDER BY seq LIMIT {limit}",
                filter_conditions(filter, "", &mut binds)
            ),
            // Indexed by person up to a watermark; above it, the short tail is scanned.
            Some(person) => {
                binds.push(person);
                let p = binds.len() + 2;
                let indexed = "(SELECT value FROM meta WHERE name = 'event_people_indexed')";
                let qualified: Vec<String> = EVENT_COLUMNS.split(", ").map(|c| format!("e.{c}")).collect();
                let (head, tail) =
                    (filter_conditions(filter, "e.", &mut binds), filter_conditions(filter, "", &mut binds));
                format!(
                    "SELECT {} FROM event_people p JOIN events e ON e.seq = p.seq \
                     WHERE p.person_id = ${p} AND p.seq > $1 AND p.seq < $2 AND p.seq <= {indexed}{head} \
                     UNION ALL \
                     SELECT {EVENT_COLUMNS} FROM events \
                     WHERE seq > {indexed} AND seq > $1 AND seq < $2 AND person_id = ${p}{tail} \
                     ORDER BY seq LIMIT {limit}",
                    qualified.join(", ")
                )
            }
        };
        let mut query =
            sqlx::query(AssertSqlSafe(sql)).bind(filter.after.unwrap_or(0)).bind(filter.before.unwrap_or(i64::MAX));
        for b in binds {
            query = query.bind(b);
        }
        query.fetch_all(&self.read).await?.iter().map(event).collect()
    }

    /// Indexes by person the events written since the last round, at most
    /// [`EVENT_PEOPLE_PER_ROUND`] of them, sorted, in one statement; returns how many
    /// events it covered. Runs every second (`Store::open`); any process may run it.
    pub(crate) async fn index_event_people(&self) -> Result<i64> {
        let mut tx = self.begin_under(EVENT_PEOPLE_LOCK).await?;
        let indexed: i64 = sqlx::query_scalar("SELECT value FROM meta WHERE name = 'event_people_indexed'")
            .fetch_one(&mut *tx)
            .await?;
        let newest: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events").fetch_one(&mut *tx).await?;
        let upto = newest.min(indexed + EVENT_PEOPLE_PER_ROUND);
        if upto <= indexed {
            return Ok(0);
        }
        sqlx::query(
            "INSERT INTO event_people (person_id, seq) SELECT person_id, seq FROM events \
             WHERE seq > $1 AND seq <= $2 AND person_id IS NOT NULL ORDER BY person_id, seq \
             ON CONFLICT DO NOTHING",
        )
        .bind(indexed)
        .bind(upto)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE meta SET value = $1 WHERE name = 'event_people_indexed'")
            .bind(upto)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(upto - indexed)
    }

    /// Allowed entries (person, time) between two instants at doors that count attendance
    /// (and at doors since deleted, unless a site is asked), those of pruned events
    /// included; at one site's doors only when `site` is given.
    pub async fn entries_between(&self, from: i64, until: i64, site: Option<&str>) -> Result<Vec<(String, i64)>> {
        let (events_at, kept_at) = match site {
            Some(_) => (" AND d.site = $3", " AND site = $3"),
            None => ("", ""),
        };
        let sql = format!(
            "SELECT e.person_id, e.at FROM events e LEFT JOIN doors d ON d.id = e.door_id \
             WHERE e.kind = 'decision' AND e.allowed = 1 AND e.person_id IS NOT NULL \
             AND e.at >= $1 AND e.at < $2 AND (d.attendance IS NULL OR d.attendance = 1){events_at} \
             UNION ALL SELECT person_id, at FROM attendance_entries WHERE at >= $1 AND at < $2{kept_at} ORDER BY at"
        );
        let mut query = sqlx::query(AssertSqlSafe(sql)).bind(from).bind(until);
        if let Some(site) = site {
            query = query.bind(site);
        }
        let rows = query.fetch_all(&self.read).await?;
        rows.iter().map(|r| Ok((r.try_get("person_id")?, r.try_get("at")?))).collect()
    }

    /// Removes up to `batch` of the oldest events from before `before` (µs) in one
    /// transaction, keeping the allowed entries at attendance doors among them in
    /// `attendance_entries`; returns how many went. Small batches keep the transaction
    /// short, so taps wait at most for one of them.
    pub async fn prune_events(&self, before: i64, batch: i64) -> Result<u64> {
        // Never the newest event: SQLite would then hand its number out again, and cursors
        // (`after`, Last-Event-ID) would skip what came next.
        let doomed = "SELECT seq FROM events WHERE at < $1 AND seq < (SELECT MAX(seq) FROM events) \
                      ORDER BY seq LIMIT $2";
        let mut tx = self.begin().await?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO attendance_entries (person_id, at, site) \
             SELECT e.person_id, e.at, d.site FROM events e LEFT JOIN doors d ON d.id = e.door_id \
             WHERE e.seq IN ({doomed}) AND e.kind = 'decision' AND e.allowed = 1 \
             AND e.person_id IS NOT NULL AND (d.attendance IS NULL OR d.attendance = 1)"
        )))
        .bind(before)
        .bind(batch)
        .execute(&mut *tx)
        .await?;
        sqlx::query(AssertSqlSafe(format!("DELETE FROM event_people WHERE seq IN ({doomed})")))
            .bind(before)
            .bind(batch)
            .execute(&mut *tx)
            .await?;
        let gone = sqlx::query(AssertSqlSafe(format!("DELETE FROM events WHERE seq IN ({doomed})")))
            .bind(before)
            .bind(batch)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(gone)
    }

    /// The newest event's cursor, 0 when the log is empty.
    pub async fn last_event_seq(&self) -> Result<i64> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM events").fetch_one(&self.read).await?;
        Ok(seq.unwrap_or(0))
    }

    /// Records what a door's device last said: online or not, when, and its error.
    /// Not a directory change: no version bump.
    /// The door's device answered something other than an opening (a hold): online.
    pub async fn set_door_answered(&self, door: &str, at: i64) -> Result<()> {
        sqlx::query("UPDATE doors SET online = 1, last_seen = $2, last_error = NULL WHERE id = $1")
            .bind(door)
            .bind(at)
            .execute(&self.write)
            .await?;
        Ok(())
    }

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
