//! Anti-passback zones: their doors, and who is inside. Who is inside is kept by the
//! decision log's commit (see `decision_log`); here zones are made, read and forgiven.

use lintel_core::passback::{Direction, Strictness};
use std::collections::HashMap;

use lintel_proto::controller::ListZone;
use lintel_proto::{Zone, ZonePresence};
use sqlx::Row;

use crate::directory::{Tx, read_door};
use crate::events::NewEvent;
use crate::rows::time;
use crate::{IndexUpdate, NOTHING_INDEXED, Result, Store, StoreError, Written, conflict_on_unique, now_micros};
use lintel_core::Pk;

/// A zone as it is to be saved (checked by the caller: names, limits, no door twice).
#[derive(Debug, Clone)]
pub struct ZoneRecord {
    pub name: String,
    pub strictness: Strictness,
    pub reset_minutes: u32,
    pub entry: Vec<String>,
    pub exit: Vec<String>,
}

impl Store {
    /// Makes or replaces a zone whole, all or nothing: every door must exist and be in no
    /// other zone. Who is inside is kept when a zone is replaced. Whether it was made.
    pub async fn put_zone(&self, id: &str, zone: &ZoneRecord) -> Result<Written<bool>> {
        let mut tx = self.begin().await?;
        let now = now_micros();
        let existing: Option<i64> =
            sqlx::query_scalar("SELECT pk FROM zones WHERE id = $1").bind(id).fetch_optional(&mut *tx).await?;
        // The doors it had and has: their controllers' lists carry their zones.
        let mut touched = zone_door_pks(&mut tx, id).await?;
        let pk = match existing {
            Some(pk) => {
                sqlx::query("UPDATE zones SET name = $2, strictness = $3, reset_minutes = $4 WHERE pk = $1")
                    .bind(pk)
                    .bind(&zone.name)
                    .bind(zone.strictness.as_str())
                    .bind(i64::from(zone.reset_minutes))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM zone_doors WHERE zone_pk = $1").bind(pk).execute(&mut *tx).await?;
                pk
            }
            None => {
                sqlx::query_scalar(
                    "INSERT INTO zones (id, name, strictness, reset_minutes, created_at) \
                     VALUES ($1, $2, $3, $4, $5) RETURNING pk",
                )
                .bind(id)
                .bind(&zone.name)
                .bind(zone.strictness.as_str())
                .bind(i64::from(zone.reset_minutes))
                .bind(now)
                .fetch_one(&mut *tx)
                .await?
            }
        };
        let doors =
            zone.entry.iter().map(|d| (d, Direction::Entry)).chain(zone.exit.iter().map(|d| (d, Direction::Exit)));
        for (door, direction) in doors {
            let known: Option<String> =
                sqlx::query_scalar("SELECT id FROM doors WHERE id = $1").bind(door).fetch_optional(&mut *tx).await?;
            if known.is_none() {
                return Err(StoreError::Invalid(format!("there is no door {door:?}")));
            }
            let other: Option<String> = sqlx::query_scalar(
                "SELECT z.id FROM zone_doors d JOIN zones z ON z.pk = d.zone_pk WHERE d.door_id = $1",
            )
            .bind(door)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(other) = other {
                return Err(StoreError::Conflict(format!("door {door:?} is in zone {other:?} already")));
            }
            sqlx::query("INSERT INTO zone_doors (door_id, zone_pk, direction) VALUES ($1, $2, $3)")
                .bind(door)
                .bind(pk)
                .bind(direction.as_str())
                .execute(&mut *tx)
                .await
                .map_err(|e| conflict_on_unique(e, || format!("door {door:?} is in another zone already")))?;
        }
        touched.extend(zone_door_pks(&mut tx, id).await?);
        let index = doors_touched(&mut tx, touched).await?;
        let event = NewEvent::new(if existing.is_some() { "zone.changed" } else { "zone.created" })
            .with("zone", id)
            .with("strictness", zone.strictness.as_str())
            .with("reset_minutes", zone.reset_minutes)
            .with("entry", &zone.entry)
            .with("exit", &zone.exit);
        self.finish(tx, existing.is_none(), index, vec![event]).await
    }

    /// Removes a zone: its doors are in no zone any more, and who was inside is forgotten.
    pub async fn delete_zone(&self, id: &str) -> Result<Written<()>> {
        let mut tx = self.begin().await?;
        let pk: Option<i64> =
            sqlx::query_scalar("SELECT pk FROM zones WHERE id = $1").bind(id).fetch_optional(&mut *tx).await?;
        let pk = pk.ok_or_else(|| StoreError::not_found("zone", id))?;
        let touched = zone_door_pks(&mut tx, id).await?;
        // Explicitly, not by cascade: SQLite enforces foreign keys only where switched on.
        sqlx::query("DELETE FROM zone_presence WHERE zone_pk = $1").bind(pk).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM zone_doors WHERE zone_pk = $1").bind(pk).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM zones WHERE pk = $1").bind(pk).execute(&mut *tx).await?;
        let index = doors_touched(&mut tx, touched).await?;
        self.finish(tx, (), index, vec![NewEvent::new("zone.deleted").with("zone", id)]).await
    }

    /// Each door's place in a zone, for the controllers' lists.
    pub async fn door_zones(&self) -> Result<HashMap<String, ListZone>> {
        let rows =
            sqlx::query("SELECT d.door_id, z.id, d.direction FROM zone_doors d JOIN zones z ON z.pk = d.zone_pk")
                .fetch_all(&self.read)
                .await?;
        rows.iter()
            .map(|r| {
                let direction: String = r.try_get(2)?;
                Ok((r.try_get(0)?, ListZone { id: r.try_get(1)?, exit: direction == Direction::Exit.as_str() }))
            })
            .collect()
    }

    /// Every zone, by id.
    pub async fn zones(&self) -> Result<Vec<Zone>> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM zones ORDER BY id").fetch_all(&self.read).await?;
        let mut zones = Vec::with_capacity(ids.len());
        for id in ids {
            zones.push(self.zone(&id).await?);
        }
        Ok(zones)
    }

    /// A zone, with who is inside now.
    pub async fn zone(&self, id: &str) -> Result<Zone> {
        let row = sqlx::query("SELECT pk, name, strictness, reset_minutes FROM zones WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.read)
            .await?
            .ok_or_else(|| StoreError::not_found("zone", id))?;
        let pk: i64 = row.try_get("pk")?;
        let reset_minutes: i64 = row.try_get("reset_minutes")?;
        let doors = sqlx::query("SELECT door_id, direction FROM zone_doors WHERE zone_pk = $1 ORDER BY door_id")
            .bind(pk)
            .fetch_all(&self.read)
            .await?;
        let (mut entry, mut exit) = (Vec::new(), Vec::new());
        for d in doors {
            let door: String = d.try_get("door_id")?;
            let direction: String = d.try_get("direction")?;
            match Direction::parse(&direction) {
                Some(Direction::Entry) => entry.push(door),
                Some(Direction::Exit) => exit.push(door),
                None => return Err(StoreError::Corrupt(format!("zone {id}: door {door} leads {direction:?}"))),
            }
        }
        let inside = sqlx::query(
            "SELECT person_id, at FROM zone_presence WHERE zone_pk = $1 AND inside = 1 AND at > $2 ORDER BY at",
        )
        .bind(pk)
        .bind(reset_cutoff(reset_minutes))
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(|r| Ok(ZonePresence { person_id: r.try_get("person_id")?, since: time(r.try_get("at")?)? }))
        .collect::<Result<Vec<_>>>()?;
        Ok(Zone {
            id: id.to_owned(),
            name: row.try_get("name")?,
            strictness: row.try_get("strictness")?,
            reset_minutes: u32::try_from(reset_minutes).unwrap_or(u32::MAX),
            entry,
            exit,
            inside,
        })
    }

    /// Lets one person (or everyone) inside a zone count as outside, recorded; how many.
    pub async fn forgive(&self, zone: &str, person: Option<&str>) -> Result<Written<u32>> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("SELECT pk, reset_minutes FROM zones WHERE id = $1")
            .bind(zone)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::not_found("zone", zone))?;
        let (pk, reset_minutes): (i64, i64) = (row.try_get("pk")?, row.try_get("reset_minutes")?);
        if let Some(person) = person {
            let known: Option<String> =
                sqlx::query_scalar("SELECT id FROM people WHERE id = $1").bind(person).fetch_optional(&mut *tx).await?;
            if known.is_none() {
                return Err(StoreError::not_found("person", person));
            }
        }
        // `at` stays: a late offline upload is still judged against the last passage.
        let done = sqlx::query(
            "UPDATE zone_presence SET inside = 0 \
             WHERE zone_pk = $1 AND inside = 1 AND at > $2 AND ($3 IS NULL OR person_id = $3)",
        )
        .bind(pk)
        .bind(reset_cutoff(reset_minutes))
        .bind(person)
        .execute(&mut *tx)
        .await?;
        let forgiven = u32::try_from(done.rows_affected()).unwrap_or(u32::MAX);
        let mut event = NewEvent::new("zone.forgiven").with("zone", zone).with("forgiven", forgiven);
        if let Some(person) = person {
            event = event.person(person);
        }
        self.finish(tx, forgiven, NOTHING_INDEXED, vec![event]).await
    }
}

/// The doors of a zone, by key.
async fn zone_door_pks(tx: &mut Tx, zone: &str) -> Result<Vec<Pk>> {
    Ok(sqlx::query_scalar(
        "SELECT o.pk FROM zone_doors d JOIN zones z ON z.pk = d.zone_pk JOIN doors o ON o.id = d.door_id WHERE z.id = $1",
    )
    .bind(zone)
    .fetch_all(&mut **tx)
    .await?)
}

/// A zone's doors as changes for the index: nothing in it changes, but other nodes and
/// the controllers' lists learn through the change feed which doors to look at again.
async fn doors_touched(tx: &mut Tx, mut doors: Vec<Pk>) -> Result<IndexUpdate> {
    doors.sort_unstable();
    doors.dedup();
    let mut changes = Vec::with_capacity(doors.len());
    for pk in doors {
        changes.push(read_door(tx, pk).await?.1);
    }
    Ok(IndexUpdate::Patch(changes))
}

/// Passages at or before this count as reset.
fn reset_cutoff(reset_minutes: i64) -> i64 {
    now_micros() - reset_minutes.saturating_mul(60_000_000)
}
