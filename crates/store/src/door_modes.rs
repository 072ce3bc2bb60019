//! What a door's mode follows from, as kept: its unlock schedule, exit-route flag and an
//! operator's hold on the door row, its site's holidays, the day's first arrival in the
//! events; and the mode lintel last put it in, which the mode worker records.

use chrono::{DateTime, NaiveDate, Utc};
use lintel_proto::{DriverConfig, HoldState, Holiday, UnlockSchedule};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::directory::door_pk;
use crate::events::NewEvent;
use crate::rows::{json, time};
use crate::{NOTHING_INDEXED, Result, Store, StoreError, Written, conflict_on_unique, now_micros};

/// A door whose mode lintel keeps: one with an unlock schedule, on an exit route, held by
/// an operator, in lockdown, or left in a mode other than secure or with its device held
/// (to be put back: a door leaves the list only once its device let go).
#[derive(Debug, Clone)]
pub struct ModedDoor {
    pub id: String,
    pub site: String,
    pub driver: DriverConfig,
    pub unlock_schedule: Option<UnlockSchedule>,
    pub egress: bool,
    pub hold: Option<(HoldState, DateTime<Utc>)>,
    pub lockdown: bool,
    /// An emergency release of its site is in force.
    pub emergency: bool,
    /// The mode recorded last (`secure`, `unlocked`, `lockdown`, `egress_open`).
    pub mode: String,
    /// Whether the device was last told to hold the lock released; `None`: tell it again.
    pub told_held: Option<bool>,
}

pub(crate) fn hold(row: &AnyRow) -> Result<Option<(HoldState, DateTime<Utc>)>> {
    let state: Option<String> = row.try_get("hold_state")?;
    let until: Option<i64> = row.try_get("hold_until")?;
    Ok(match (state.as_deref(), until) {
        (Some("unlocked"), Some(until)) => Some((HoldState::Unlocked, time(until)?)),
        (Some("secure"), Some(until)) => Some((HoldState::Secure, time(until)?)),
        _ => None,
    })
}

fn holiday(row: &AnyRow) -> Result<Holiday> {
    let day = |column: &str| -> Result<NaiveDate> {
        let text: String = row.try_get(column)?;
        text.parse().map_err(|e| StoreError::Corrupt(format!("holiday {column} {text:?}: {e}")))
    };
    Ok(Holiday {
        id: row.try_get("id")?,
        site: row.try_get("site")?,
        name: row.try_get("name")?,
        from: day("first_day")?,
        to: day("last_day")?,
        uid: row.try_get("uid")?,
    })
}

/// A holiday to add: `(name, first day, last day, iCalendar UID)`.
pub type HolidayRecord = (String, NaiveDate, NaiveDate, Option<String>);

impl Store {
    /// The doors whose mode lintel keeps (see [`ModedDoor`]).
    pub async fn moded_doors(&self) -> Result<Vec<ModedDoor>> {
        let rows = sqlx::query(
            "SELECT d.id, d.site, d.driver, d.unlock_schedule, d.egress, d.hold_state, d.hold_until, d.lockdown_by, \
             d.mode, d.told_held, s.emergency_by FROM doors d JOIN sites s ON s.id = d.site \
             WHERE d.unlock_schedule IS NOT NULL OR d.egress <> 0 OR d.hold_state IS NOT NULL \
             OR d.lockdown_by IS NOT NULL OR d.mode <> 'secure' OR d.told_held <> 0 ORDER BY d.id",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ModedDoor {
                    id: row.try_get("id")?,
                    site: row.try_get("site")?,
                    driver: json(&row.try_get::<String, _>("driver")?)?,
                    unlock_schedule: row
                        .try_get::<Option<String>, _>("unlock_schedule")?
                        .as_deref()
                        .map(json)
                        .transpose()?,
                    egress: row.try_get::<i64, _>("egress")? != 0,
                    hold: hold(row)?,
                    lockdown: row.try_get::<Option<String>, _>("lockdown_by")?.is_some(),
                    emergency: row.try_get::<Option<String>, _>("emergency_by")?.is_some(),
                    mode: row.try_get("mode")?,
                    told_held: row.try_get::<Option<i64>, _>("told_held")?.map(|v| v != 0),
                })
            })
            .collect()
    }

    /// Whether the door's device was last told to hold its lock released: an opening's
    /// timed pulse would end the hold.
    pub async fn told_held(&self, door: &str) -> Result<bool> {
        let held: Option<Option<i64>> = sqlx::query_scalar("SELECT told_held FROM doors WHERE id = $1")
            .bind(door)
            .fetch_optional(&self.read)
            .await?;
        Ok(held.flatten().is_some_and(|v| v != 0))
    }

    /// Keeps what the door's device was told (`None`: forget it, to tell it again).
    pub async fn set_told_held(&self, door: &str, held: Option<bool>) -> Result<()> {
        sqlx::query("UPDATE doors SET told_held = $2 WHERE id = $1")
            .bind(door)
            .bind(held.map(i64::from))
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Records that the door went from mode `from` to `to` (`why`: schedule, hold,
    /// lockdown, emergency, …), once: another node that recorded it first wins, and this
    /// answers `None`.
    pub async fn record_mode(&self, door: &str, from: &str, to: &str, why: &str) -> Result<Written<Option<()>>> {
        let mut tx = self.begin().await?;
        let pk = door_pk(&mut tx, door).await?;
        let done = sqlx::query("UPDATE doors SET mode = $3 WHERE pk = $1 AND mode = $2")
            .bind(pk)
            .bind(from)
            .bind(to)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return self.finish(tx, None, NOTHING_INDEXED, Vec::new()).await;
        }
        let event = NewEvent::new("door.mode_changed").door(door).with("from", from).with("to", to).with("why", why);
        self.finish(tx, Some(()), NOTHING_INDEXED, vec![event]).await
    }

    /// Sets an operator's hold on a door (`None`: ends it early), recorded.
    pub async fn set_hold(&self, door: &str, hold: Option<(HoldState, DateTime<Utc>)>) -> Result<Written<()>> {
        let mut tx = self.begin().await?;
        let pk = door_pk(&mut tx, door).await?;
        let by = self.actor.as_deref().unwrap_or("lintel");
        let (state, until) = hold.map(|(s, u)| (s.as_str(), u.timestamp_micros())).unzip();
        let done = sqlx::query("UPDATE doors SET hold_state = $2, hold_until = $3, hold_by = $4 WHERE pk = $1")
            .bind(pk)
            .bind(state)
            .bind(until)
            .bind(hold.map(|_| by))
            .execute(&mut *tx)
            .await?;
        debug_assert_eq!(done.rows_affected(), 1);
        let event = match hold {
            Some((state, until)) => {
                NewEvent::new("door.hold_set").door(door).with("state", state.as_str()).with("until", until)
            }
            None => NewEvent::new("door.hold_ended").door(door),
        };
        self.finish(tx, (), NOTHING_INDEXED, vec![event]).await
    }

    /// Ends the holds that have run out by `now`, each recorded; the doors.
    pub async fn end_lapsed_holds(&self, now: DateTime<Utc>) -> Result<Written<Vec<String>>> {
        let mut tx = self.begin().await?;
        let rows = sqlx::query("SELECT pk, id FROM doors WHERE hold_until IS NOT NULL AND hold_until <= $1")
            .bind(now.timestamp_micros())
            .fetch_all(&mut *tx)
            .await?;
        let (mut ended, mut events) = (Vec::new(), Vec::new());
        for row in rows {
            let (pk, id): (i64, String) = (row.try_get("pk")?, row.try_get("id")?);
            sqlx::query("UPDATE doors SET hold_state = NULL, hold_until = NULL, hold_by = NULL WHERE pk = $1")
                .bind(pk)
                .execute(&mut *tx)
                .await?;
            events.push(NewEvent::new("door.hold_ended").door(&id).with("lapsed", true));
            ended.push(id);
        }
        self.finish(tx, ended, NOTHING_INDEXED, events).await
    }

    /// The day's first allowed entry at `door` in `[since, until)`, of a member of `group`
    /// when one is named: what starts a first-to-arrive schedule.
    pub async fn first_allowed_entry(
        &self,
        door: &str,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        group: Option<&str>,
    ) -> Result<Option<DateTime<Utc>>> {
        let of_group = match group {
            Some(_) => {
                " AND e.person_id IN (SELECT p.id FROM people p JOIN group_members m ON m.person_pk = p.pk \
                 JOIN access_groups g ON g.pk = m.group_pk WHERE g.id = $4)"
            }
            None => "",
        };
        let sql = format!(
            "SELECT MIN(e.at) FROM events e WHERE e.kind = 'decision' AND e.allowed = 1 AND e.door_id = $1 \
             AND e.person_id IS NOT NULL AND e.at >= $2 AND e.at < $3{of_group}"
        );
        let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(door)
            .bind(since.timestamp_micros())
            .bind(until.timestamp_micros());
        if let Some(group) = group {
            query = query.bind(group);
        }
        let first: Option<i64> = query.fetch_one(&self.read).await?;
        first.map(time).transpose()
    }

    /// The first exit request at the door in `[since, until)`: the last to leave ending the
    /// day's unlocked hours.
    pub async fn first_exit_request(
        &self,
        door: &str,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        let first: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(at) FROM events WHERE kind = 'door.exit_requested' AND door_id = $1 AND at >= $2 AND at < $3",
        )
        .bind(door)
        .bind(since.timestamp_micros())
        .bind(until.timestamp_micros())
        .fetch_one(&self.read)
        .await?;
        first.map(time).transpose()
    }

    /// Raises (`on`) or resets an emergency release of a site, recorded; whether it changed
    /// (one raised already is left as it is).
    pub async fn set_emergency(&self, site: &str, on: bool, why: Option<&str>) -> Result<Written<bool>> {
        let mut tx = self.begin().await?;
        let known: Option<String> =
            sqlx::query_scalar("SELECT id FROM sites WHERE id = $1").bind(site).fetch_optional(&mut *tx).await?;
        if known.is_none() {
            return Err(StoreError::not_found("site", site));
        }
        let by = self.actor.as_deref().unwrap_or("lintel").to_owned();
        let done = match on {
            true => sqlx::query(
                "UPDATE sites SET emergency_by = $2, emergency_at = $3 WHERE id = $1 AND emergency_by IS NULL",
            )
            .bind(site)
            .bind(&by)
            .bind(now_micros()),
            false => sqlx::query(
                "UPDATE sites SET emergency_by = NULL, emergency_at = NULL WHERE id = $1 AND emergency_by IS NOT NULL",
            )
            .bind(site),
        }
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return self.finish(tx, false, NOTHING_INDEXED, Vec::new()).await;
        }
        let kind = if on { "site.emergency_started" } else { "site.emergency_ended" };
        let mut event = NewEvent::new(kind).with("site", site);
        if let Some(why) = why {
            event = event.with("why", why);
        }
        self.finish(tx, true, NOTHING_INDEXED, vec![event]).await
    }

    /// A site's holidays (every site's when `None`), by first day.
    pub async fn holidays(&self, site: Option<&str>) -> Result<Vec<Holiday>> {
        let rows = match site {
            Some(site) => {
                sqlx::query("SELECT * FROM holidays WHERE site = $1 ORDER BY first_day, id")
                    .bind(site)
                    .fetch_all(&self.read)
                    .await?
            }
            None => sqlx::query("SELECT * FROM holidays ORDER BY site, first_day, id").fetch_all(&self.read).await?,
        };
        rows.iter().map(holiday).collect()
    }

    /// Adds holidays to a site in one transaction: all or none. One that overlaps another
    /// of the site's is refused, unless it is the same calendar event (same UID and days),
    /// which is left as it is. Answers the holidays added and how many were there already.
    pub async fn add_holidays(&self, site: &str, new: &[HolidayRecord]) -> Result<Written<(Vec<Holiday>, u32)>> {
        let mut tx = self.begin().await?;
        let known: Option<String> =
            sqlx::query_scalar("SELECT id FROM sites WHERE id = $1").bind(site).fetch_optional(&mut *tx).await?;
        if known.is_none() {
            return Err(StoreError::not_found("site", site));
        }
        let (mut added, mut unchanged, mut events) = (Vec::new(), 0, Vec::new());
        for (name, from, to, uid) in new {
            let overlapping =
                sqlx::query("SELECT * FROM holidays WHERE site = $1 AND first_day <= $3 AND last_day >= $2")
                    .bind(site)
                    .bind(from.to_string())
                    .bind(to.to_string())
                    .fetch_all(&mut *tx)
                    .await?;
            if let Some(other) = overlapping.first().map(holiday).transpose()? {
                if uid.is_some() && other.uid == *uid && other.from == *from && other.to == *to {
                    unchanged += 1;
                    continue;
                }
                return Err(StoreError::Conflict(format!(
                    "{name:?} ({from} to {to}) overlaps {:?} ({} to {}) at site {site:?}",
                    other.name, other.from, other.to
                )));
            }
            let id = format!("{site}-{from}");
            sqlx::query(
                "INSERT INTO holidays (id, site, name, first_day, last_day, uid, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&id)
            .bind(site)
            .bind(name)
            .bind(from.to_string())
            .bind(to.to_string())
            .bind(uid)
            .bind(now_micros())
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict_on_unique(e, || format!("a holiday {id:?} exists already")))?;
            events.push(
                NewEvent::new("holiday.added")
                    .with("site", site)
                    .with("holiday", &id)
                    .with("name", name)
                    .with("from", from)
                    .with("to", to),
            );
            added.push(Holiday {
                id,
                site: site.to_owned(),
                name: name.clone(),
                from: *from,
                to: *to,
                uid: uid.clone(),
            });
        }
        self.finish(tx, (added, unchanged), NOTHING_INDEXED, events).await
    }

    pub async fn delete_holiday(&self, site: &str, id: &str) -> Result<Written<()>> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("DELETE FROM holidays WHERE site = $1 AND id = $2")
            .bind(site)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("holiday", id));
        }
        let event = NewEvent::new("holiday.removed").with("site", site).with("holiday", id);
        self.finish(tx, (), NOTHING_INDEXED, vec![event]).await
    }
}
