//! The inbox (webhook deliveries, stored before they are acknowledged) and the outbox
//! (calls to other systems, each under a unique idempotency key). Workers take what is
//! due, and record done, a retry with its time, or failure with the reason: nothing is
//! dropped silently.

use lintel_proto::{InboxEntry, OutboxEntry, WorkState};
use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::rows::{opt_time, time};
use crate::{INBOX_LOCK, Result, Store, StoreError, now_micros};

/// How long a worker holds the work it took before another may take it: longer than a
/// batch of calls takes (each call gives up after 15 s).
pub const LEASE_MICROS: i64 = 10 * 60 * 1_000_000;

/// A unit of work as a worker sees it.
#[derive(Debug, Clone)]
pub struct WorkItem {
    pub pk: i64,
    /// The inbox's event, or the outbox's kind.
    pub kind: String,
    pub payload: Value,
    pub attempts: i64,
}

/// What became of an attempt.
#[derive(Debug, Clone)]
pub enum Attempt {
    Done,
    /// Try again at this time (unix microseconds).
    RetryAt(i64, String),
    /// Give up, keeping why.
    Failed(String),
}

pub(crate) fn work_item(row: &AnyRow, kind_column: &str) -> Result<WorkItem> {
    let payload: String = row.try_get("payload")?;
    Ok(WorkItem {
        pk: row.try_get("pk")?,
        kind: row.try_get(kind_column)?,
        payload: serde_json::from_str(&payload).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        attempts: row.try_get("attempts")?,
    })
}

pub(crate) fn state(row: &AnyRow) -> Result<WorkState> {
    let s: String = row.try_get("state")?;
    WorkState::parse(&s).ok_or_else(|| StoreError::Corrupt(format!("work state {s:?}")))
}

fn payload(row: &AnyRow) -> Result<Value> {
    serde_json::from_str(&row.try_get::<String, _>("payload")?).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl Store {
    /// Stores a webhook delivery, unless `max_pending` deliveries of this source wait
    /// already: then `None`, and nothing is stored. Once this returns `Some`, the delivery
    /// may be acknowledged. The count and the insert are one transaction under a lock that
    /// every node takes, so deliveries arriving together cannot pass the bound.
    pub async fn receive(&self, source: &str, event: &str, payload: &Value, max_pending: i64) -> Result<Option<i64>> {
        let mut tx = self.begin_under(INBOX_LOCK).await?;
        let now = now_micros();
        let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM inbox WHERE source = $1 AND state = 'pending'")
            .bind(source)
            .fetch_one(&mut *tx)
            .await?;
        if pending >= max_pending {
            return Ok(None);
        }
        let pk = sqlx::query_scalar(
            "INSERT INTO inbox (source, event, payload, received_at, next_attempt_at) VALUES ($1, $2, $3, $4, $4) \
             RETURNING pk",
        )
        .bind(source)
        .bind(event)
        .bind(payload.to_string())
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(pk))
    }

    /// Forgets processed deliveries older than `before` (unix microseconds); failed ones
    /// stay for the operator.
    pub async fn prune_inbox(&self, before: i64) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM inbox WHERE state = 'done' AND done_at < $1")
            .bind(before)
            .execute(&self.write)
            .await?
            .rows_affected())
    }

    /// Claims up to `limit` due deliveries of a source (see [`Store::claim`]).
    pub async fn due_inbox(&self, source: &str, limit: i64) -> Result<Vec<WorkItem>> {
        self.claim("inbox", "source", source, "event", limit).await
    }

    pub async fn inbox_attempted(&self, pk: i64, attempt: &Attempt) -> Result<()> {
        self.attempted("inbox", pk, attempt).await
    }

    /// Queues a call; `false` if work under this key exists already (it is not queued again).
    pub async fn enqueue(&self, target: &str, kind: &str, key: &str, payload: &Value) -> Result<bool> {
        let now = now_micros();
        let inserted = sqlx::query(
            "INSERT INTO outbox (target, kind, idempotency_key, payload, created_at, next_attempt_at) \
             VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(target)
        .bind(kind)
        .bind(key)
        .bind(payload.to_string())
        .bind(now)
        .execute(&self.write)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    /// Claims up to `limit` due calls to a system (see [`Store::claim`]).
    pub async fn due_outbox(&self, target: &str, limit: i64) -> Result<Vec<WorkItem>> {
        self.claim("outbox", "target", target, "kind", limit).await
    }

    /// Takes due work for this worker: its next attempt moves [`LEASE_MICROS`] ahead in the
    /// same statement, so another node's worker (PostgreSQL re-checks the condition on a
    /// row another transaction just changed) does not take it too. Work whose worker died
    /// is due again when the lease runs out.
    async fn claim(
        &self,
        table: &'static str,
        group: &'static str,
        value: &str,
        kind: &'static str,
        limit: i64,
    ) -> Result<Vec<WorkItem>> {
        let now = now_micros();
        let sql = format!(
            "UPDATE {table} SET next_attempt_at = $3 WHERE state = 'pending' AND next_attempt_at <= $2 \
             AND {group} = $1 AND pk IN (SELECT pk FROM {table} WHERE {group} = $1 AND state = 'pending' \
             AND next_attempt_at <= $2 ORDER BY pk LIMIT $4) RETURNING pk, {kind}, payload, attempts"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(value)
            .bind(now)
            .bind(now + LEASE_MICROS)
            .bind(limit)
            .fetch_all(&self.write)
            .await?;
        let mut items = rows.iter().map(|r| work_item(r, kind)).collect::<Result<Vec<_>>>()?;
        items.sort_by_key(|i| i.pk);
        Ok(items)
    }

    pub async fn outbox_attempted(&self, pk: i64, attempt: &Attempt) -> Result<()> {
        self.attempted("outbox", pk, attempt).await
    }

    async fn attempted(&self, table: &'static str, pk: i64, attempt: &Attempt) -> Result<()> {
        let now = now_micros();
        let (state, next, error) = match attempt {
            Attempt::Done => ("done", now, None),
            Attempt::RetryAt(at, why) => ("pending", *at, Some(why.as_str())),
            Attempt::Failed(why) => ("failed", now, Some(why.as_str())),
        };
        let done_at = (state != "pending").then_some(now);
        let sql = format!(
            "UPDATE {table} SET state = $1, next_attempt_at = $2, last_error = COALESCE($3, last_error), \
             done_at = $4, attempts = attempts + 1 WHERE pk = $5"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(state)
            .bind(next)
            .bind(error)
            .bind(done_at)
            .bind(pk)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Marks an entry done and replaces its payload in the same statement, so that what
    /// only the call needed (an invitation's secret) never outlives the call.
    pub async fn outbox_done_scrubbed(&self, pk: i64, payload: &Value) -> Result<()> {
        let now = now_micros();
        sqlx::query(
            "UPDATE outbox SET state = 'done', payload = $1, done_at = $2, next_attempt_at = $2, \
             attempts = attempts + 1 WHERE pk = $3",
        )
        .bind(payload.to_string())
        .bind(now)
        .bind(pk)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Replaces an entry's payload (a failed invitation's secret is of use to no one).
    pub async fn scrub_outbox(&self, pk: i64, payload: &Value) -> Result<()> {
        sqlx::query("UPDATE outbox SET payload = $1 WHERE pk = $2")
            .bind(payload.to_string())
            .bind(pk)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Puts failed outbox work back in the queue (after the operator fixed the cause).
    pub async fn retry_failed_outbox(&self) -> Result<u64> {
        Ok(sqlx::query("UPDATE outbox SET state = 'pending', next_attempt_at = $1 WHERE state = 'failed'")
            .bind(now_micros())
            .execute(&self.write)
            .await?
            .rows_affected())
    }

    /// A table's entries, newest first, optionally in one state.
    async fn listing(
        &self,
        table: &'static str,
        columns: &'static str,
        state_filter: Option<WorkState>,
        limit: i64,
    ) -> Result<Vec<AnyRow>> {
        let sql = format!("SELECT {columns} FROM {table} WHERE ($1 = '' OR state = $1) ORDER BY pk DESC LIMIT $2");
        Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(state_filter.map_or("", WorkState::as_str))
            .bind(limit)
            .fetch_all(&self.read)
            .await?)
    }

    /// Outbox work not done yet, counted by target and state (`pending`, `failed`).
    pub async fn outbox_counts(&self) -> Result<Vec<(String, String, i64)>> {
        let rows =
            sqlx::query("SELECT target, state, COUNT(*) AS n FROM outbox WHERE state <> 'done' GROUP BY target, state")
                .fetch_all(&self.read)
                .await?;
        rows.iter().map(|r| Ok((r.try_get("target")?, r.try_get("state")?, r.try_get("n")?))).collect()
    }

    /// Outbox entries, newest first, optionally in one state.
    pub async fn outbox(&self, state_filter: Option<WorkState>, limit: i64) -> Result<Vec<OutboxEntry>> {
        let columns = "pk, target, kind, idempotency_key, payload, created_at, state, attempts, next_attempt_at, \
                       last_error, done_at";
        let rows = self.listing("outbox", columns, state_filter, limit).await?;
        rows.iter()
            .map(|r| {
                Ok(OutboxEntry {
                    id: r.try_get("pk")?,
                    target: r.try_get("target")?,
                    kind: r.try_get("kind")?,
                    idempotency_key: r.try_get("idempotency_key")?,
                    state: state(r)?,
                    attempts: r.try_get("attempts")?,
                    last_error: r.try_get("last_error")?,
                    created_at: time(r.try_get("created_at")?)?,
                    next_attempt_at: time(r.try_get("next_attempt_at")?)?,
                    done_at: opt_time(r.try_get("done_at")?)?,
                    payload: payload(r)?,
                })
            })
            .collect()
    }

    /// Inbox entries, newest first, optionally in one state.
    pub async fn inbox(&self, state_filter: Option<WorkState>, limit: i64) -> Result<Vec<InboxEntry>> {
        let columns = "pk, source, event, payload, received_at, state, attempts, last_error, done_at";
        let rows = self.listing("inbox", columns, state_filter, limit).await?;
        rows.iter()
            .map(|r| {
                Ok(InboxEntry {
                    id: r.try_get("pk")?,
                    source: r.try_get("source")?,
                    event: r.try_get("event")?,
                    state: state(r)?,
                    attempts: r.try_get("attempts")?,
                    last_error: r.try_get("last_error")?,
                    received_at: time(r.try_get("received_at")?)?,
                    done_at: opt_time(r.try_get("done_at")?)?,
                    payload: payload(r)?,
                })
            })
            .collect()
    }

    /// How much work waits or failed, per table: (pending inbox, failed inbox, pending
    /// outbox, failed outbox).
    pub async fn work_backlog(&self) -> Result<(i64, i64, i64, i64)> {
        let count = |sql: &'static str| async move { sqlx::query_scalar::<_, i64>(sql).fetch_one(&self.read).await };
        Ok((
            count("SELECT COUNT(*) FROM inbox WHERE state = 'pending'").await?,
            count("SELECT COUNT(*) FROM inbox WHERE state = 'failed'").await?,
            count("SELECT COUNT(*) FROM outbox WHERE state = 'pending'").await?,
            count("SELECT COUNT(*) FROM outbox WHERE state = 'failed'").await?,
        ))
    }
}
