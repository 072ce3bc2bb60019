//! Enrolments: a card tapped at a door becomes a person's card. What was tapped is read
//! from the event log (an unknown card's decision keeps its UID), so readers of every
//! kind (the decision API, MQTT controllers, OSDP) enrol the same way, and nothing is
//! added to the decision's path.

use lintel_proto::{Credential, Enrolment};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::directory::{issue_in, person_pk};
use crate::events::NewEvent;
use crate::rows::time;
use crate::{IndexUpdate, NewCredentialRecord, Result, Store, StoreError, Written, now_micros};

/// An enrolment as stored: what the API shows, and what the service needs to finish it.
#[derive(Debug, Clone)]
pub struct EnrolmentRow {
    pub shown: Enrolment,
    /// Taps after this event count.
    pub after_seq: i64,
    pub expires_at: i64,
    /// Who started it.
    pub actor: String,
}

const COLUMNS: &str = "id, person_id, door_id, after_seq, expires_at, actor, state, uid, credential_id";

fn enrolment(row: &AnyRow) -> Result<EnrolmentRow> {
    let expires_at: i64 = row.try_get("expires_at")?;
    Ok(EnrolmentRow {
        shown: Enrolment {
            id: row.try_get("id")?,
            person_id: row.try_get("person_id")?,
            door: row.try_get("door_id")?,
            state: row.try_get("state")?,
            expires_at: time(expires_at)?,
            uid: row.try_get("uid")?,
            credential_id: row.try_get("credential_id")?,
        },
        after_seq: row.try_get("after_seq")?,
        expires_at,
        actor: row.try_get("actor")?,
    })
}

impl Store {
    /// Starts an enrolment: taps after the newest event, until `expires_at`, count.
    pub async fn start_enrolment(
        &self,
        id: &str,
        person_id: &str,
        door: &str,
        expires_at: i64,
        actor: &str,
    ) -> Result<EnrolmentRow> {
        let mut tx = self.begin().await?;
        person_pk(&mut tx, person_id).await?;
        crate::directory::door_pk(&mut tx, door).await?;
        let after_seq: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events").fetch_one(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO enrolments (id, person_id, door_id, after_seq, created_at, expires_at, actor, state) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'waiting')",
        )
        .bind(id)
        .bind(person_id)
        .bind(door)
        .bind(after_seq)
        .bind(now_micros())
        .bind(expires_at)
        .bind(actor)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.enrolment(id).await
    }

    pub async fn enrolment(&self, id: &str) -> Result<EnrolmentRow> {
        let sql = format!("SELECT {COLUMNS} FROM enrolments WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&self.read).await?;
        row.as_ref().map(enrolment).transpose()?.ok_or_else(|| StoreError::not_found("enrolment", id))
    }

    /// The first unknown card tapped at the enrolment's door in its window, if any.
    pub async fn tapped_for(&self, e: &EnrolmentRow) -> Result<Option<String>> {
        let rows = sqlx::query(
            "SELECT data FROM events WHERE seq > $1 AND kind = 'decision' AND door_id = $2 \
             AND reason = 'unknown_credential' AND at <= $3 ORDER BY seq LIMIT 20",
        )
        .bind(e.after_seq)
        .bind(&e.shown.door)
        .bind(e.expires_at)
        .fetch_all(&self.read)
        .await?;
        for row in rows {
            let data: String = row.try_get("data")?;
            let data: serde_json::Value =
                serde_json::from_str(&data).map_err(|err| StoreError::Corrupt(err.to_string()))?;
            if let Some(uid) = data.get("uid").and_then(|v| v.as_str()).filter(|u| !u.is_empty()) {
                return Ok(Some(uid.to_owned()));
            }
        }
        Ok(None)
    }

    /// Issues the tapped card to the person and closes the enrolment, in one transaction;
    /// `None` when it was closed already (another node, another look, got there first).
    pub async fn enrol_card(
        &self,
        id: &str,
        uid: &str,
        card: &NewCredentialRecord,
    ) -> Result<Written<Option<Credential>>> {
        let mut tx = self.begin().await?;
        let claimed =
            sqlx::query("UPDATE enrolments SET state = 'enrolled', uid = $2 WHERE id = $1 AND state = 'waiting'")
                .bind(id)
                .bind(uid)
                .execute(&mut *tx)
                .await?;
        if claimed.rows_affected() == 0 {
            return self.finish(tx, None, IndexUpdate::Patch(Vec::new()), Vec::new()).await;
        }
        let person_id: String =
            sqlx::query_scalar("SELECT person_id FROM enrolments WHERE id = $1").bind(id).fetch_one(&mut *tx).await?;
        let person = person_pk(&mut tx, &person_id).await?;
        let (mut changes, mut events) = (Vec::new(), Vec::new());
        let credential = issue_in(&mut tx, person, &person_id, card, now_micros(), &mut changes, &mut events).await?;
        sqlx::query("UPDATE enrolments SET credential_id = $2 WHERE id = $1")
            .bind(id)
            .bind(&credential.id)
            .execute(&mut *tx)
            .await?;
        events.push(NewEvent::new("card.enrolled").person(&person_id).credential(&credential.id).with("uid", uid));
        self.finish(tx, Some(credential), IndexUpdate::Patch(changes), events).await
    }
}
