//! Door inputs and alarms as kept: a door's position, and alarms that stay until their
//! condition cleared and an operator acknowledged them. The door row keeps the kinds of its
//! open alarms, so that every read of a door shows them.

use chrono::{DateTime, Utc};
use lintel_proto::Alarm;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::directory::Tx;
use crate::events::NewEvent;
use crate::rows::{opt_time, time};
use crate::{NOTHING_INDEXED, Result, Store, StoreError, Written, now_micros};

const OPEN: &str = "(cleared_at IS NULL OR acked_at IS NULL)";

fn alarm(row: &AnyRow) -> Result<Alarm> {
    Ok(Alarm {
        id: row.try_get("id")?,
        door: row.try_get("door")?,
        kind: row.try_get("kind")?,
        raised_at: time(row.try_get("raised_at")?)?,
        cleared_at: opt_time(row.try_get("cleared_at")?)?,
        acked_at: opt_time(row.try_get("acked_at")?)?,
        acked_by: row.try_get("acked_by")?,
        note: row.try_get("note")?,
    })
}

/// Keeps the door row's list of its open alarms' kinds.
async fn note_open_alarms(tx: &mut Tx, door: &str) -> Result<()> {
    let kinds: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT DISTINCT kind FROM alarms WHERE door = $1 AND {OPEN} ORDER BY kind"
    )))
    .bind(door)
    .fetch_all(&mut **tx)
    .await?;
    sqlx::query("UPDATE doors SET alarms = $2 WHERE id = $1")
        .bind(door)
        .bind(kinds.join(","))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A door that stands open, and since when (for the held-open alarm).
#[derive(Debug, Clone)]
pub struct OpenDoor {
    pub id: String,
    pub since: DateTime<Utc>,
    pub held_open_seconds: u32,
    /// Lintel holds it unlocked: standing open is what it is for.
    pub held_unlocked: bool,
}

impl Store {
    /// Keeps what the door's position switch said; the position before.
    pub async fn set_position(&self, door: &str, open: bool, at: DateTime<Utc>) -> Result<Option<String>> {
        let mut tx = self.begin().await?;
        let before: Option<Option<String>> =
            sqlx::query_scalar("SELECT position FROM doors WHERE id = $1").bind(door).fetch_optional(&mut *tx).await?;
        let Some(before) = before else { return Err(StoreError::NotFound { what: "door", id: door.into() }) };
        let position = if open { "open" } else { "closed" };
        if before.as_deref() != Some(position) {
            sqlx::query("UPDATE doors SET position = $2, position_at = $3 WHERE id = $1")
                .bind(door)
                .bind(position)
                .bind(at.timestamp_micros())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(before)
    }

    /// Whether the door was released in `[since, now]`: an allowed entry, an opening by
    /// lintel, or an exit request. A door opened without one was forced.
    pub async fn released_since(&self, door: &str, since: DateTime<Utc>) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT seq FROM events WHERE door_id = $1 AND at >= $2 \
             AND ((kind = 'decision' AND allowed = 1) OR kind IN ('door.opened', 'door.exit_requested')) LIMIT 1",
        )
        .bind(door)
        .bind(since.timestamp_micros())
        .fetch_optional(&self.read)
        .await?;
        Ok(found.is_some())
    }

    /// The doors standing open now (their position switch says so).
    pub async fn doors_standing_open(&self) -> Result<Vec<OpenDoor>> {
        let rows = sqlx::query(
            "SELECT id, position_at, held_open_seconds, mode FROM doors WHERE position = 'open' AND position_at IS NOT NULL",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                let mode: String = r.try_get("mode")?;
                Ok(OpenDoor {
                    id: r.try_get("id")?,
                    since: time(r.try_get("position_at")?)?,
                    held_open_seconds: u32::try_from(r.try_get::<i64, _>("held_open_seconds")?).unwrap_or(u32::MAX),
                    held_unlocked: matches!(mode.as_str(), "unlocked" | "egress_open"),
                })
            })
            .collect()
    }

    /// Takes the warning of a door held open since `since`: true once per opening, on
    /// whichever node asks first (the mark is in the store, so a node taking over the
    /// watch does not warn again).
    pub async fn take_held_open_warning(&self, door: &str, since: DateTime<Utc>) -> Result<bool> {
        let since = since.timestamp_micros();
        let done = sqlx::query(
            "UPDATE doors SET held_warned_at = $2 WHERE id = $1 AND (held_warned_at IS NULL OR held_warned_at <> $2)",
        )
        .bind(door)
        .bind(since)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The doors whose device has been offline since before `before` (`online` false),
    /// and those online again, for the device-offline alarm.
    pub async fn doors_offline(&self, before: DateTime<Utc>) -> Result<(Vec<String>, Vec<String>)> {
        let rows = sqlx::query("SELECT id, online, last_seen FROM doors WHERE online IS NOT NULL")
            .fetch_all(&self.read)
            .await?;
        let (mut gone, mut back) = (Vec::new(), Vec::new());
        for r in rows {
            let id: String = r.try_get("id")?;
            let online = r.try_get::<i64, _>("online")? != 0;
            let last_seen: Option<i64> = r.try_get("last_seen")?;
            match online {
                true => back.push(id),
                false if last_seen.is_none_or(|at| at < before.timestamp_micros()) => gone.push(id),
                false => {}
            }
        }
        Ok((gone, back))
    }

    /// Raises an alarm at a door, recorded, unless one of its kind is open there already.
    pub async fn raise_alarm(
        &self,
        door: &str,
        kind: &str,
        data: Option<(&str, &str)>,
    ) -> Result<Written<Option<Alarm>>> {
        let mut tx = self.begin().await?;
        let open: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM alarms WHERE door = $1 AND kind = $2 AND {OPEN}"
        )))
        .bind(door)
        .bind(kind)
        .fetch_optional(&mut *tx)
        .await?;
        if open.is_some() {
            return self.finish(tx, None, NOTHING_INDEXED, Vec::new()).await;
        }
        let now = now_micros();
        let id =
            format!("alarm-{}", hex::encode(getrandom::u64().unwrap_or_else(|_| now.unsigned_abs()).to_be_bytes()));
        sqlx::query("INSERT INTO alarms (id, door, kind, raised_at) VALUES ($1, $2, $3, $4)")
            .bind(&id)
            .bind(door)
            .bind(kind)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        note_open_alarms(&mut tx, door).await?;
        let mut event = NewEvent::new("alarm.raised").door(door).with("alarm", &id).with("kind", kind);
        if let Some((key, value)) = data {
            event = event.with(key, value);
        }
        let raised = Alarm {
            id,
            door: door.to_owned(),
            kind: kind.to_owned(),
            raised_at: time(now)?,
            cleared_at: None,
            acked_at: None,
            acked_by: None,
            note: None,
        };
        self.finish(tx, Some(raised), NOTHING_INDEXED, vec![event]).await
    }

    /// The condition of a door's alarms of `kind` cleared: recorded; they stay open until
    /// acknowledged. How many.
    pub async fn clear_alarms(&self, door: &str, kind: &str) -> Result<Written<u32>> {
        let mut tx = self.begin().await?;
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM alarms WHERE door = $1 AND kind = $2 AND cleared_at IS NULL")
                .bind(door)
                .bind(kind)
                .fetch_all(&mut *tx)
                .await?;
        if ids.is_empty() {
            return self.finish(tx, 0, NOTHING_INDEXED, Vec::new()).await;
        }
        sqlx::query("UPDATE alarms SET cleared_at = $3 WHERE door = $1 AND kind = $2 AND cleared_at IS NULL")
            .bind(door)
            .bind(kind)
            .bind(now_micros())
            .execute(&mut *tx)
            .await?;
        note_open_alarms(&mut tx, door).await?;
        let events = ids
            .iter()
            .map(|id| NewEvent::new("alarm.cleared").door(door).with("alarm", id).with("kind", kind))
            .collect();
        self.finish(tx, u32::try_from(ids.len()).unwrap_or(u32::MAX), NOTHING_INDEXED, events).await
    }

    /// An operator acknowledges an alarm, with a note; recorded.
    pub async fn ack_alarm(&self, id: &str, note: Option<&str>) -> Result<Written<Alarm>> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("SELECT * FROM alarms WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound { what: "alarm", id: id.into() })?;
        let before = alarm(&row)?;
        if before.acked_at.is_some() {
            return Err(StoreError::Conflict(format!("alarm {id:?} was acknowledged already")));
        }
        let by = self.actor.as_deref().unwrap_or("lintel");
        sqlx::query("UPDATE alarms SET acked_at = $2, acked_by = $3, note = $4 WHERE id = $1")
            .bind(id)
            .bind(now_micros())
            .bind(by)
            .bind(note)
            .execute(&mut *tx)
            .await?;
        note_open_alarms(&mut tx, &before.door).await?;
        let row = sqlx::query("SELECT * FROM alarms WHERE id = $1").bind(id).fetch_one(&mut *tx).await?;
        let mut event =
            NewEvent::new("alarm.acknowledged").door(&before.door).with("alarm", id).with("kind", &before.kind);
        if let Some(note) = note {
            event = event.with("note", note);
        }
        self.finish(tx, alarm(&row)?, NOTHING_INDEXED, vec![event]).await
    }

    /// The open alarms (every alarm when `all`), newest first, at one site's doors when
    /// `site` is given.
    pub async fn alarms(&self, all: bool, site: Option<&str>) -> Result<Vec<Alarm>> {
        let open = if all { "1 = 1" } else { OPEN };
        let at_site = if site.is_some() { " AND door IN (SELECT id FROM doors WHERE site = $1)" } else { "" };
        let sql = format!("SELECT * FROM alarms WHERE {open}{at_site} ORDER BY raised_at DESC, id LIMIT 1000");
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        if let Some(site) = site {
            query = query.bind(site);
        }
        query.fetch_all(&self.read).await?.iter().map(alarm).collect()
    }

    /// How far the event-log reader `name` has got (`None`: it never read).
    pub async fn event_cursor(&self, name: &str) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar("SELECT after_seq FROM event_cursors WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.write)
            .await?)
    }

    pub async fn set_event_cursor(&self, name: &str, after: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO event_cursors (name, after_seq) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET after_seq = excluded.after_seq",
        )
        .bind(name)
        .bind(after)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    pub async fn alarm(&self, id: &str) -> Result<Alarm> {
        let row = sqlx::query("SELECT * FROM alarms WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.read)
            .await?
            .ok_or_else(|| StoreError::NotFound { what: "alarm", id: id.into() })?;
        alarm(&row)
    }
}
