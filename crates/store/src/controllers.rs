//! MQTT door controllers: the allow-list versions lintel wants and those acknowledged,
//! online state, and offline decisions recorded exactly once.

use std::collections::HashMap;

use lintel_proto::Event;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::events::{NewEvent, insert};
use crate::{Result, Store, now_micros};

/// A controller's row.
#[derive(Debug, Clone, PartialEq)]
pub struct ControllerRow {
    pub id: String,
    pub salt: [u8; 16],
    pub list_version: u64,
    pub list_digest: Option<String>,
    pub list_issued_at: Option<i64>,
    pub list_cards: u64,
    pub acked_version: u64,
    pub refused: Option<String>,
    pub online: Option<bool>,
    pub last_seen: Option<i64>,
}

const COLUMNS: &str =
    "id, salt, list_version, list_digest, list_issued_at, list_cards, acked_version, refused, online, last_seen";

fn row(r: &AnyRow) -> Result<ControllerRow> {
    let salt: String = r.try_get("salt")?;
    let salt = hex::decode(&salt)
        .ok()
        .and_then(|s| <[u8; 16]>::try_from(s).ok())
        .ok_or_else(|| crate::StoreError::Corrupt(format!("controller salt {salt:?}")))?;
    Ok(ControllerRow {
        id: r.try_get("id")?,
        salt,
        list_version: r.try_get::<i64, _>("list_version")?.max(0) as u64,
        list_digest: r.try_get("list_digest")?,
        list_issued_at: r.try_get("list_issued_at")?,
        list_cards: r.try_get::<i64, _>("list_cards")?.max(0) as u64,
        acked_version: r.try_get::<i64, _>("acked_version")?.max(0) as u64,
        refused: r.try_get("refused")?,
        online: r.try_get::<Option<i64>, _>("online")?.map(|v| v != 0),
        last_seen: r.try_get("last_seen")?,
    })
}

impl Store {
    pub async fn controllers(&self) -> Result<Vec<ControllerRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM controllers ORDER BY id")))
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(row).collect()
    }

    /// The controller's row, made on first use with `salt` (random, from the caller).
    pub async fn ensure_controller(&self, id: &str, salt: [u8; 16]) -> Result<ControllerRow> {
        sqlx::query("INSERT INTO controllers (id, salt) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
            .bind(id)
            .bind(hex::encode(salt))
            .execute(&self.write)
            .await?;
        let r = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM controllers WHERE id = $1")))
            .bind(id)
            .fetch_one(&self.write)
            .await?;
        row(&r)
    }

    /// Takes the next list version for a list with this content; returns it.
    pub async fn next_list_version(&self, id: &str, digest: &str, issued_at: i64, cards: u64) -> Result<u64> {
        let version: i64 = sqlx::query_scalar(
            "UPDATE controllers SET list_version = list_version + 1, list_digest = $2, list_issued_at = $3, \
             list_cards = $4, refused = NULL WHERE id = $1 RETURNING list_version",
        )
        .bind(id)
        .bind(digest)
        .bind(issued_at)
        .bind(cards as i64)
        .fetch_one(&self.write)
        .await?;
        Ok(version.max(0) as u64)
    }

    /// The controller installed `version`. Only a version lintel issued, and not older
    /// than one acknowledged before, counts (acks may arrive late or out of order).
    pub async fn list_acknowledged(&self, id: &str, version: u64) -> Result<()> {
        let version = i64::try_from(version).unwrap_or(i64::MAX);
        sqlx::query(
            "UPDATE controllers SET acked_version = $2, refused = NULL, last_seen = $3 \
             WHERE id = $1 AND $2 <= list_version AND $2 >= acked_version",
        )
        .bind(id)
        .bind(version)
        .bind(now_micros())
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// The controller refused a list, holding `holds`. When that is newer than lintel's (lintel's database restored from a backup), lintel must issue a version
    /// above it: the content is forgotten so that the next list takes `holds + 1`.
    /// Returns whether that is so.
    pub async fn list_refused(&self, id: &str, holds: u64, why: &str) -> Result<bool> {
        let holds = i64::try_from(holds).unwrap_or(i64::MAX - 1);
        let mut tx = self.begin().await?;
        let ahead = sqlx::query(
            "UPDATE controllers SET list_version = $2, list_digest = NULL WHERE id = $1 AND list_version < $2",
        )
        .bind(id)
        .bind(holds)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        sqlx::query("UPDATE controllers SET refused = $2, last_seen = $3 WHERE id = $1")
            .bind(id)
            .bind(why)
            .bind(now_micros())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(ahead)
    }

    /// What the controller's status topic says; `online` also updates its doors' state.
    pub async fn set_controller_online(&self, id: &str, online: bool, doors: &[String]) -> Result<()> {
        let now = now_micros();
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE controllers SET online = $2, last_seen = $3 WHERE id = $1")
            .bind(id)
            .bind(i64::from(online))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        for door in doors {
            let q = if online {
                sqlx::query("UPDATE doors SET online = 1, last_seen = $2 WHERE id = $1").bind(door).bind(now)
            } else {
                sqlx::query("UPDATE doors SET online = 0 WHERE id = $1").bind(door)
            };
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Revocation codes of active cards, by credential, for the offline lists.
    pub async fn card_revocation_codes(&self) -> Result<HashMap<i64, String>> {
        let rows = sqlx::query(
            "SELECT pk, revocation_code FROM credentials \
             WHERE kind = 'card' AND status = 'active' AND revocation_code IS NOT NULL",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|r| Ok((r.try_get("pk")?, r.try_get("revocation_code")?))).collect()
    }

    /// Records a controller's offline decisions, each once: ids seen before are skipped.
    /// One transaction, so an upload is recorded whole or not at all. Returns the events
    /// appended now.
    pub async fn record_offline_decisions(
        &self,
        controller: &str,
        decisions: &[(String, NewEvent)],
    ) -> Result<Vec<Event>> {
        let mut tx = self.begin().await?;
        let mut appended = Vec::new();
        for (upload_id, event) in decisions {
            let fresh: Option<String> = sqlx::query_scalar(
                "INSERT INTO controller_uploads (controller, upload_id) VALUES ($1, $2) \
                 ON CONFLICT (controller, upload_id) DO NOTHING RETURNING upload_id",
            )
            .bind(controller)
            .bind(upload_id)
            .fetch_optional(&mut *tx)
            .await?;
            if fresh.is_none() {
                continue;
            }
            appended.push(insert(&mut tx, event).await?);
        }
        tx.commit().await?;
        Ok(appended)
    }
}
