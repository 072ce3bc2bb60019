//! The group commit of decisions. Callers hand over one decision each and wait; one
//! writer takes everything that queued up meanwhile and commits it in one transaction,
//! using up passes and backup codes exactly once, so that a burst of taps costs one
//! commit and every answer leaves only once its event is durable.
//!
//! On SQLite the writer is a thread of its own with a plain SQLite connection: this is
//! the hot path of every tap, and a direct call costs a fraction of an async driver's
//! round trips. On PostgreSQL it is a task on the pool.

use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use lintel_core::{Change, Pk};
use lintel_proto::{Event, Reason};
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use sqlx::{Any, AnyPool, AssertSqlSafe, Transaction};
use tokio::sync::{mpsc, oneshot};

use crate::events::{NewEvent, insert_many, stored};
use crate::rows::{CredentialParts, grant_id, index_credential, index_credential_from};
use crate::{Result, SqliteSync, StoreError};

const MAX_BATCH: usize = 512;

/// A decision waiting for the group commit, with what it would use up.
#[derive(Debug, Clone)]
pub struct PendingDecision {
    pub event: NewEvent,
    /// Use one pass of the first of these grants that has one left; when none has, the
    /// decision becomes a denial.
    pub pass_grants: Vec<Pk>,
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

fn deny(event: &mut NewEvent, reason: Reason, detail: &str) {
    event.allowed = Some(false);
    event.reason = Some(reason);
    event.grant_id = None;
    if let serde_json::Value::Object(map) = &mut event.data {
        map.insert("detail".into(), detail.into());
    }
}

pub(crate) struct Job {
    decision: PendingDecision,
    reply: oneshot::Sender<Result<CommittedDecision, String>>,
}

/// What the writer is asked: record a decision, or record what is queued and stop.
#[expect(clippy::large_enum_variant, reason = "nearly every message is a decision; boxing would allocate per tap")]
enum Message {
    Decide(Job),
    Close(oneshot::Sender<()>),
}

/// Where decisions queue for the writer (a thread on SQLite, a task on PostgreSQL).
#[derive(Clone)]
pub(crate) struct DecisionLog {
    jobs: mpsc::Sender<Message>,
}

/// A WAL past this size is checkpointed completely and truncated (the writer waits for
/// that moment); below it, checkpoints never make anyone wait. Under continuous writes a
/// passive checkpoint alone never gets to restart the log, which then grows without bound.
const WAL_TRUNCATE_BYTES: u64 = 16 << 20;

/// What SQLite leaves of a WAL once it restarts it.
const JOURNAL_SIZE_LIMIT: i64 = 16 << 20;

impl DecisionLog {
    /// Opens the SQLite writer's own connection (the migrations have run) and starts it.
    pub(crate) fn sqlite(path: PathBuf, sync: SqliteSync) -> Result<Self> {
        let conn = rusqlite::Connection::open(&path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", if sync == SqliteSync::Full { "FULL" } else { "NORMAL" })?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
        // Checkpoints run on a thread of their own, so a tap never waits for one.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpoints = rusqlite::Connection::open(&path)?;
        checkpoints.busy_timeout(Duration::from_secs(10))?;
        checkpoints.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
        let mut wal = path.into_os_string();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        let (jobs, rx) = mpsc::channel(16 * MAX_BATCH);
        let (stop, stopped) = std_mpsc::channel::<()>();
        let checkpointer = std::thread::Builder::new()
            .name("lintel-checkpoint".into())
            .spawn(move || {
                while let Err(std_mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(Duration::from_secs(1)) {
                    checkpoint(&checkpoints, &wal);
                }
            })
            .map_err(|e| StoreError::Invalid(format!("cannot start a thread: {e}")))?;
        std::thread::Builder::new()
            .name("lintel-decision-log".into())
            .spawn(move || {
                let closed = sqlite_writer(conn, rx);
                drop(stop);
                let _ = checkpointer.join();
                if let Some(closed) = closed {
                    let _ = closed.send(());
                }
            })
            .map_err(|e| StoreError::Invalid(format!("cannot start a thread: {e}")))?;
        Ok(Self { jobs })
    }

    pub(crate) fn postgres(pool: AnyPool) -> Self {
        let (jobs, rx) = mpsc::channel(16 * MAX_BATCH);
        tokio::spawn(any_writer(pool, rx));
        Self { jobs }
    }

    pub(crate) async fn commit(&self, decision: PendingDecision) -> Result<CommittedDecision> {
        let (reply, answer) = oneshot::channel();
        let sent = self.jobs.send(Message::Decide(Job { decision, reply })).await.is_ok();
        let stopped = || StoreError::Invalid("the decision log has stopped".into());
        if !sent {
            return Err(stopped());
        }
        answer.await.map_err(|_| stopped())?.map_err(StoreError::Invalid)
    }

    /// Records what is queued, then stops the writer and closes its connections (on
    /// SQLite, the last connection to close checkpoints the WAL and removes it).
    pub(crate) async fn close(&self) {
        let (closed, done) = oneshot::channel();
        if self.jobs.send(Message::Close(closed)).await.is_ok() {
            let _ = done.await;
        }
    }
}

/// One checkpoint: passive while the WAL is small, complete and truncating past
/// [`WAL_TRUNCATE_BYTES`].
fn checkpoint(conn: &rusqlite::Connection, wal: &std::path::Path) {
    let size = std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0);
    let sql =
        if size > WAL_TRUNCATE_BYTES { "PRAGMA wal_checkpoint(TRUNCATE)" } else { "PRAGMA wal_checkpoint(PASSIVE)" };
    match conn.query_row(sql, [], |r| r.get::<_, i64>(0)) {
        Ok(0) => {}
        // Busy: readers or the writer held on past the busy timeout; next second.
        Ok(_) => tracing::debug!(wal_bytes = size, "WAL checkpoint could not complete"),
        Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
    }
}

/// Takes what queued up behind `first`, up to a batch, stopping at a close.
fn batch_after(first: Job, rx: &mut mpsc::Receiver<Message>) -> (Vec<Job>, Option<oneshot::Sender<()>>) {
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(Message::Decide(job)) => batch.push(job),
            Ok(Message::Close(closed)) => return (batch, Some(closed)),
            Err(_) => break,
        }
    }
    (batch, None)
}

fn reply_all(replies: Vec<oneshot::Sender<Result<CommittedDecision, String>>>, result: Result<Vec<CommittedDecision>>) {
    match result {
        Ok(committed) => {
            for (reply, c) in replies.into_iter().zip(committed) {
                let _ = reply.send(Ok(c));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "group commit failed; the decisions in it are refused");
            for reply in replies {
                let _ = reply.send(Err(e.to_string()));
            }
        }
    }
}

/// Commits batches until asked to close (returns who asked) or every sender is gone.
fn sqlite_writer(mut conn: rusqlite::Connection, mut rx: mpsc::Receiver<Message>) -> Option<oneshot::Sender<()>> {
    while let Some(message) = rx.blocking_recv() {
        let first = match message {
            Message::Decide(job) => job,
            Message::Close(closed) => return Some(closed),
        };
        let (batch, closed) = batch_after(first, &mut rx);
        let (decisions, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|j| (j.decision, j.reply)).unzip();
        match commit_sqlite(&mut conn, decisions.clone()) {
            Ok(committed) => reply_all(replies, Ok(committed)),
            // One bad decision must not take the others down with it: commit them one by one.
            Err(_) if decisions.len() > 1 => {
                for (decision, reply) in decisions.into_iter().zip(replies) {
                    reply_all(vec![reply], commit_sqlite(&mut conn, vec![decision]));
                }
            }
            Err(e) => reply_all(replies, Err(e)),
        }
        if closed.is_some() {
            return closed;
        }
    }
    None
}

fn commit_sqlite(conn: &mut rusqlite::Connection, batch: Vec<PendingDecision>) -> Result<Vec<CommittedDecision>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut out = Vec::with_capacity(batch.len());
    for mut pending in batch {
        let changes = consume_sqlite(&tx, &mut pending)?;
        let e = &pending.event;
        tx.prepare_cached(
            "INSERT INTO events (at, kind, allowed, reason, person_id, door_id, credential_id, grant_id, data) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?
        .execute(params![
            e.at,
            e.kind,
            e.allowed.map(i64::from),
            e.reason.map(|r| r.as_str()),
            e.person_id,
            e.door_id,
            e.credential_id,
            e.grant_id,
            serde_json::to_string(&e.data).expect("JSON values serialize"),
        ])?;
        out.push(CommittedDecision { event: stored(e, tx.last_insert_rowid())?, changes });
    }
    tx.commit()?;
    Ok(out)
}

fn consume_sqlite(tx: &rusqlite::Transaction<'_>, pending: &mut PendingDecision) -> Result<Vec<Change>> {
    let mut changes = Vec::new();
    if !pending.pass_grants.is_empty() {
        let mut used_one = false;
        for &grant in &pending.pass_grants {
            let used: Option<i64> = tx
                .prepare_cached(
                    "UPDATE grants SET passes_used = passes_used + 1 \
                     WHERE pk = ?1 AND passes IS NOT NULL AND passes_used < passes RETURNING passes_used",
                )?
                .query_row([grant], |r| r.get(0))
                .optional()?;
            match used {
                Some(used) => {
                    changes.push(Change::PassesUsed { grant, used: u32::try_from(used).unwrap_or(u32::MAX) });
                    pending.event.grant_id = Some(grant_id(grant));
                    used_one = true;
                    break;
                }
                None => {
                    // Used up elsewhere (another tap, another node): tell the index.
                    let passes: Option<i64> = tx
                        .query_row("SELECT passes FROM grants WHERE pk = ?1", [grant], |r| r.get(0))
                        .optional()?
                        .flatten();
                    if let Some(passes) = passes {
                        changes.push(Change::PassesUsed { grant, used: u32::try_from(passes).unwrap_or(u32::MAX) });
                    }
                }
            }
        }
        if !used_one {
            deny(&mut pending.event, Reason::NoPassesLeft, "every pass of the grant has been used");
        }
    }
    if let (Some(credential), true) = (pending.backup_code, pending.event.allowed == Some(true)) {
        let done = tx
            .prepare_cached(
                "UPDATE credentials SET status = 'used', status_reason = 'used', revoked_at = ?2 \
                 WHERE pk = ?1 AND status = 'active'",
            )?
            .execute(params![credential, pending.event.at])?;
        if done == 1 {
            let parts = tx.query_row(
                "SELECT pk, person_pk, kind, card_uid, revocation_code, digest, status FROM credentials WHERE pk = ?1",
                [credential],
                |r| {
                    Ok(CredentialParts {
                        pk: r.get(0)?,
                        person_pk: r.get(1)?,
                        kind: r.get(2)?,
                        card_uid: r.get(3)?,
                        revocation_code: r.get(4)?,
                        digest: r.get(5)?,
                        status: r.get(6)?,
                    })
                },
            )?;
            let (key, cred) = index_credential_from(parts)?;
            changes.push(Change::Credential(key, cred));
        } else {
            // Give back the pass this decision took: it did not let anyone in.
            if let Some(Change::PassesUsed { grant, .. }) = changes.pop() {
                tx.execute("UPDATE grants SET passes_used = passes_used - 1 WHERE pk = ?1", [grant])?;
            }
            deny(&mut pending.event, Reason::CredentialRevoked, "the backup code has already been used");
        }
    }
    Ok(changes)
}

async fn any_writer(pool: AnyPool, mut rx: mpsc::Receiver<Message>) {
    while let Some(message) = rx.recv().await {
        let first = match message {
            Message::Decide(job) => job,
            Message::Close(closed) => {
                let _ = closed.send(());
                return;
            }
        };
        let (batch, closed) = batch_after(first, &mut rx);
        let (decisions, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|j| (j.decision, j.reply)).unzip();
        match commit_any(&pool, decisions.clone()).await {
            Ok(committed) => reply_all(replies, Ok(committed)),
            // One bad decision must not take the others down with it: commit them one by one.
            Err(_) if decisions.len() > 1 => {
                for (decision, reply) in decisions.into_iter().zip(replies) {
                    reply_all(vec![reply], commit_any(&pool, vec![decision]).await);
                }
            }
            Err(e) => reply_all(replies, Err(e)),
        }
        if let Some(closed) = closed {
            let _ = closed.send(());
            return;
        }
    }
}

async fn commit_any(pool: &AnyPool, batch: Vec<PendingDecision>) -> Result<Vec<CommittedDecision>> {
    let mut tx = pool.begin().await?;
    // The same lock as every other event writer on PostgreSQL: sequence numbers become
    // visible in order.
    sqlx::query("SELECT pg_advisory_xact_lock(7152)").execute(&mut *tx).await?;
    let mut events = Vec::with_capacity(batch.len());
    let mut all_changes = Vec::with_capacity(batch.len());
    for mut pending in batch {
        all_changes.push(consume_any(&mut tx, &mut pending).await?);
        events.push(pending.event);
    }
    let mut out = Vec::with_capacity(events.len());
    for chunk in events.chunks(EVENTS_PER_STATEMENT) {
        out.extend(insert_many(&mut *tx, chunk).await?);
    }
    tx.commit().await?;
    Ok(out.into_iter().zip(all_changes).map(|(event, changes)| CommittedDecision { event, changes }).collect())
}

/// The most events one statement carries (9 parameters each, well under the limits).
const EVENTS_PER_STATEMENT: usize = 500;

/// Uses up what an allowed decision spends, or turns it into a denial when it is gone.
async fn consume_any(tx: &mut Transaction<'static, Any>, pending: &mut PendingDecision) -> Result<Vec<Change>> {
    let mut changes = Vec::new();
    if !pending.pass_grants.is_empty() {
        let mut used_one = false;
        for &grant in &pending.pass_grants {
            let used: Option<i64> = sqlx::query_scalar(
                "UPDATE grants SET passes_used = passes_used + 1 \
                 WHERE pk = $1 AND passes IS NOT NULL AND passes_used < passes RETURNING passes_used",
            )
            .bind(grant)
            .fetch_optional(&mut **tx)
            .await?;
            match used {
                Some(used) => {
                    changes.push(Change::PassesUsed { grant, used: u32::try_from(used).unwrap_or(u32::MAX) });
                    pending.event.grant_id = Some(grant_id(grant));
                    used_one = true;
                    break;
                }
                None => {
                    // Used up elsewhere (another tap, another node): tell the index.
                    let passes: Option<Option<i64>> = sqlx::query_scalar("SELECT passes FROM grants WHERE pk = $1")
                        .bind(grant)
                        .fetch_optional(&mut **tx)
                        .await?;
                    let passes = passes.flatten();
                    if let Some(passes) = passes {
                        changes.push(Change::PassesUsed { grant, used: u32::try_from(passes).unwrap_or(u32::MAX) });
                    }
                }
            }
        }
        if !used_one {
            deny(&mut pending.event, Reason::NoPassesLeft, "every pass of the grant has been used");
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
