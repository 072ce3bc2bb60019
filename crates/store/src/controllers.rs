//! MQTT door controllers: the allow-list versions lintel wants and those acknowledged,
//! online state, and offline decisions recorded exactly once.

use std::collections::HashMap;

use lintel_core::{Change, Pk};
use lintel_proto::Event;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::decision_log::{AnyLedger, Ledger as _, record_offline_passage};
use crate::events::{EVENT_COLUMNS, NewEvent, event, insert};
use crate::rows::credential_id;
use crate::{IndexUpdate, Result, Store, now_micros};

/// An offline decision as uploaded, to be recorded once.
#[derive(Debug, Clone)]
pub struct OfflineRecord {
    /// Its id in the controller's upload.
    pub upload_id: String,
    pub event: NewEvent,
    /// The backup code the controller let in with it, if it did: used up now, everywhere.
    pub backup_code: Option<Pk>,
}

/// What an upload recorded: the events appended now, and the backup codes it used up as
/// changes for the index, with the directory version they made.
#[derive(Debug, Clone, Default)]
pub struct RecordedOffline {
    pub events: Vec<Event>,
    pub changes: Vec<Change>,
    pub version: Option<i64>,
}

/// The kind of the event that reports a backup code let in twice: at two controllers that
/// were both offline, or offline after it was used elsewhere.
const BACKUP_CODE_CONFLICT: &str = "backup_code.conflict";

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
    /// A controller that comes online may have restarted: what its doors were told to hold
    /// is forgotten, so that the mode worker tells it again.
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
                sqlx::query("UPDATE doors SET online = 1, last_seen = $2, told_held = NULL WHERE id = $1")
                    .bind(door)
                    .bind(now)
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
    /// One transaction, so an upload is recorded whole or not at all. A backup code let in
    /// offline is used up as an online use does it (the same statement and change, so it
    /// leaves every list); one that was used already is a conflict, reported once by an
    /// event of its own beside the entry, which is kept and marked.
    pub async fn record_offline_decisions(
        &self,
        controller: &str,
        records: &[OfflineRecord],
    ) -> Result<RecordedOffline> {
        let mut tx = self.begin().await?;
        let mut recorded = RecordedOffline::default();
        for record in records {
            let fresh: Option<String> = sqlx::query_scalar(
                "INSERT INTO controller_uploads (controller, upload_id) VALUES ($1, $2) \
                 ON CONFLICT (controller, upload_id) DO NOTHING RETURNING upload_id",
            )
            .bind(controller)
            .bind(&record.upload_id)
            .fetch_optional(&mut *tx)
            .await?;
            if fresh.is_none() {
                continue;
            }
            let mut entry = record.event.clone();
            let mut code = None;
            if let Some(pk) = record.backup_code {
                // Only a backup code is used up here: a controller naming another credential
                // (a card) must not be able to end it.
                match backup_code_holder(&mut tx, pk).await? {
                    Some(person) => {
                        entry.credential_id = Some(credential_id(pk));
                        entry.person_id = person;
                        code = Some(pk);
                    }
                    None => entry = entry.with("backup_code_unknown", true),
                }
            }
            record_offline_passage(&mut AnyLedger::new(&mut tx), &mut entry).await?;
            match code.filter(|_| entry.allowed == Some(true)) {
                Some(code) => use_offline(&mut tx, code, entry, &mut recorded).await?,
                None => recorded.events.push(insert(&mut tx, &entry).await?),
            }
        }
        if !recorded.changes.is_empty() {
            recorded.version = Some(crate::bump_version(&mut tx, &IndexUpdate::Patch(recorded.changes.clone())).await?);
        }
        tx.commit().await?;
        Ok(recorded)
    }
}

/// Records an entry that a backup code let in offline and uses the code up; when it was
/// used already, the entry is marked and a conflict event names both uses.
async fn use_offline(
    tx: &mut Transaction<'static, Any>,
    code: Pk,
    entry: NewEvent,
    recorded: &mut RecordedOffline,
) -> Result<()> {
    let mut ledger = AnyLedger::new(tx);
    if ledger.use_backup_code(code, entry.at).await? {
        let (key, credential) = ledger.credential(code).await?;
        recorded.changes.push(Change::Credential(key, credential));
        recorded.events.push(insert(tx, &entry).await?);
        return Ok(());
    }
    let earlier = earlier_use(tx, code).await?;
    if earlier.is_none() && !was_used(tx, code).await? {
        // Revoked (or deleted) meanwhile, never used: no one else got in with it.
        recorded.events.push(insert(tx, &entry.with("backup_code_revoked", true)).await?);
        return Ok(());
    }
    let second = insert(tx, &entry.with("backup_code_conflict", true)).await?;
    let mut uses: Vec<&Event> = earlier.iter().chain([&second]).collect();
    uses.sort_by_key(|e| e.at);
    let conflict = NewEvent {
        person_id: second.person_id.clone(),
        door_id: second.door.clone(),
        credential_id: second.credential_id.clone(),
        ..NewEvent::new(BACKUP_CODE_CONFLICT)
    }
    .with("detail", "a backup code was let in twice: it was used already when this controller let it in offline")
    .with("uses", uses.iter().copied().map(use_of).collect::<Vec<_>>());
    recorded.events.push(second.clone());
    recorded.events.push(insert(tx, &conflict).await?);
    Ok(())
}

/// The person a backup code belongs to, by id (`Some(None)`: nobody now); `None` when the
/// credential is not a backup code.
async fn backup_code_holder(tx: &mut Transaction<'static, Any>, code: Pk) -> Result<Option<Option<String>>> {
    let row = sqlx::query(
        "SELECT p.id FROM credentials c LEFT JOIN people p ON p.pk = c.person_pk \
         WHERE c.pk = $1 AND c.kind = 'backup_code'",
    )
    .bind(code)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|r| r.try_get::<Option<String>, _>(0)).transpose().map_err(Into::into)
}

async fn was_used(tx: &mut Transaction<'static, Any>, code: Pk) -> Result<bool> {
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM credentials WHERE pk = $1").bind(code).fetch_optional(&mut **tx).await?;
    Ok(status.as_deref() == Some("used"))
}

/// The entry that used the code first. (No index on the events' credential: this runs only
/// for a conflict, which is rare.)
async fn earlier_use(tx: &mut Transaction<'static, Any>, code: Pk) -> Result<Option<Event>> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE credential_id = $1 AND kind = 'decision' AND allowed = 1 \
         ORDER BY seq LIMIT 1"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(credential_id(code)).fetch_optional(&mut **tx).await?;
    row.as_ref().map(event).transpose()
}

/// One use of a code, as the conflict event tells it.
fn use_of(e: &Event) -> serde_json::Value {
    serde_json::json!({
        "event_id": e.id,
        "door": e.door,
        "at": e.at,
        "controller": e.data.get("controller"),
        "offline": e.data.get("offline").and_then(serde_json::Value::as_bool).unwrap_or(false),
    })
}
