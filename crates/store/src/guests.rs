//! Guest passes: the visitor (a person of their own), their personal secret, their grant to
//! the pass's doors and the pass's record are written in one transaction, and removed in
//! one when the pass is revoked or over; the record stays, for the operator's list.

use lintel_proto::{GuestPass, NewPerson};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::directory::{insert_grant, insert_person, issue_in, person_pk, remove_person};
use crate::events::NewEvent;
use crate::rows::{time, to_json};
use crate::{IndexUpdate, NewCredentialRecord, NewGrantRecord, Result, Store, StoreError, Written, now_micros};

const COLUMNS: &str =
    "id, person_id, name, email, doors, valid_from, valid_until, created_at, created_by, revoked_at, revoked_by";

/// What a new pass is made of, checked by the caller.
pub struct NewGuestPassRecord {
    pub id: String,
    pub person: NewPerson,
    pub person_id: String,
    pub secret: NewCredentialRecord,
    pub grant: NewGrantRecord,
}

fn guest_pass(row: &AnyRow, now: i64) -> Result<GuestPass> {
    let doors: String = row.try_get("doors")?;
    let (from, until): (i64, i64) = (row.try_get("valid_from")?, row.try_get("valid_until")?);
    let revoked_at: Option<i64> = row.try_get("revoked_at")?;
    let state = match revoked_at {
        Some(_) => "revoked",
        None if now < from => "upcoming",
        None if now < until => "active",
        None => "ended",
    };
    Ok(GuestPass {
        id: row.try_get("id")?,
        person_id: row.try_get("person_id")?,
        name: row.try_get("name")?,
        email: row.try_get("email")?,
        doors: serde_json::from_str(&doors).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        valid_from: time(from)?,
        valid_until: time(until)?,
        state: state.to_owned(),
        created_at: time(row.try_get("created_at")?)?,
        created_by: row.try_get("created_by")?,
        revoked_at: revoked_at.map(time).transpose()?,
        revoked_by: row.try_get("revoked_by")?,
        link: None,
        secret: None,
        emailed: None,
    })
}

impl Store {
    /// Issues a guest pass: the visitor, their secret, their grant and the pass, at once.
    pub async fn create_guest_pass(&self, pass: &NewGuestPassRecord) -> Result<Written<GuestPass>> {
        let mut tx = self.begin().await?;
        let (mut changes, mut events) = (Vec::new(), Vec::new());
        let now = now_micros();
        insert_person(&mut tx, &pass.person, &pass.person_id, &mut changes, &mut events).await?;
        let pk = person_pk(&mut tx, &pass.person_id).await?;
        issue_in(&mut tx, pk, &pass.person_id, &pass.secret, now, &mut changes, &mut events).await?;
        insert_grant(&mut tx, &pass.grant, &mut changes, &mut events).await?;
        let doors = pass.grant.doors.clone().unwrap_or_default();
        let (from, until) = (pass.grant.valid_from.unwrap_or(now), pass.grant.valid_until.unwrap_or(now));
        let created_by = self.actor.as_deref().unwrap_or("lintel").to_owned();
        sqlx::query(
            "INSERT INTO guest_passes (id, person_id, name, email, doors, valid_from, valid_until, created_at, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&pass.id)
        .bind(&pass.person_id)
        .bind(&pass.person.name)
        .bind(&pass.person.email)
        .bind(to_json(&doors))
        .bind(from)
        .bind(until)
        .bind(now)
        .bind(&created_by)
        .execute(&mut *tx)
        .await?;
        events.push(
            NewEvent::new("guest_pass.issued")
                .person(&pass.person_id)
                .with("guest_pass", &pass.id)
                .with("doors", &doors),
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM guest_passes WHERE id = $1")))
            .bind(&pass.id)
            .fetch_one(&mut *tx)
            .await?;
        let shown = guest_pass(&row, now)?;
        self.finish(tx, shown, IndexUpdate::Patch(changes), events).await
    }

    pub async fn guest_pass(&self, id: &str) -> Result<GuestPass> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM guest_passes WHERE id = $1")))
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| guest_pass(&r, now_micros())).transpose()?.ok_or_else(|| StoreError::not_found("guest pass", id))
    }

    /// The newest passes first; `open_only`: those not revoked and not over.
    pub async fn guest_passes(&self, open_only: bool, limit: i64) -> Result<Vec<GuestPass>> {
        let now = now_micros();
        let filter = if open_only { "WHERE revoked_at IS NULL AND valid_until > $2" } else { "WHERE $2 = $2" };
        let sql = format!("SELECT {COLUMNS} FROM guest_passes {filter} ORDER BY created_at DESC, id LIMIT $1");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(limit).bind(now).fetch_all(&self.read).await?;
        rows.iter().map(|r| guest_pass(r, now)).collect()
    }

    /// Revokes a pass (`by` says who): the visitor is removed, so their secret stops
    /// working at once. Revoking a revoked pass changes nothing.
    pub async fn revoke_guest_pass(&self, id: &str, by: &str) -> Result<Written<GuestPass>> {
        let mut tx = self.begin().await?;
        let now = now_micros();
        let (mut changes, mut events) = (Vec::new(), Vec::new());
        // A pass that is over (closed) or revoked already stays as it is.
        let revoked = sqlx::query(
            "UPDATE guest_passes SET revoked_at = $2, revoked_by = $3 WHERE id = $1 AND revoked_at IS NULL AND closed_at IS NULL",
        )
        .bind(id)
        .bind(now)
        .bind(by)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM guest_passes WHERE id = $1")))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::not_found("guest pass", id))?;
        let shown = guest_pass(&row, now)?;
        if revoked.rows_affected() == 1
            && close_in(&mut tx, id, &shown.person_id, now, &mut changes, &mut events).await?
        {
            events.push(NewEvent::new("guest_pass.revoked").person(&shown.person_id).with("guest_pass", id));
        }
        self.finish(tx, shown, IndexUpdate::Patch(changes), events).await
    }

    /// Removes the visitors of passes that are over; how many. Their grants ended them
    /// already; this is so that a list of people is not a list of past visitors.
    pub async fn close_ended_guest_passes(&self) -> Result<Written<usize>> {
        let mut tx = self.begin().await?;
        let now = now_micros();
        let ended: Vec<(String, String)> = sqlx::query(
            "SELECT id, person_id FROM guest_passes WHERE closed_at IS NULL AND valid_until <= $1 ORDER BY id LIMIT 100",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("person_id")?)))
        .collect::<Result<_>>()?;
        let (mut changes, mut events) = (Vec::new(), Vec::new());
        for (id, person) in &ended {
            if close_in(&mut tx, id, person, now, &mut changes, &mut events).await? {
                events.push(NewEvent::new("guest_pass.ended").person(person).with("guest_pass", id));
            }
        }
        self.finish(tx, ended.len(), IndexUpdate::Patch(changes), events).await
    }
}

/// Marks a pass closed and removes its visitor (gone already, e.g. deleted by an operator,
/// is fine).
async fn close_in(
    tx: &mut crate::directory::Tx,
    id: &str,
    person: &str,
    now: i64,
    changes: &mut Vec<lintel_core::Change>,
    events: &mut Vec<NewEvent>,
) -> Result<bool> {
    let closed = sqlx::query("UPDATE guest_passes SET closed_at = $2 WHERE id = $1 AND closed_at IS NULL")
        .bind(id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    if closed.rows_affected() == 0 {
        // Closed by another node meanwhile.
        return Ok(false);
    }
    match remove_person(tx, person, changes, events).await {
        Ok(()) | Err(StoreError::NotFound { .. }) => Ok(true),
        Err(e) => Err(e),
    }
}
