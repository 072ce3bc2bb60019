//! Wrong guesses per source, shared by the nodes on one database (see
//! `migrations/*/0015_guesses.sql`). The store keeps the counts; what they mean (when a
//! source is locked, for how long) is the limiter's, which hands each change in as a
//! function of the record before it.

use sqlx::Row;

use crate::{Backend, Result, Store};

/// A source's wrong guesses (times in unix microseconds; `locked_until` 0: never locked).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuessRecord {
    pub failures: i64,
    pub last_failure: i64,
    pub locked_until: i64,
    /// Whether a refusal under the current lock was recorded already.
    pub refusal_recorded: bool,
}

impl Store {
    pub async fn guesses(&self, source: &str) -> Result<Option<GuessRecord>> {
        let row =
            sqlx::query("SELECT failures, last_failure, locked_until, refusal_recorded FROM guesses WHERE source = $1")
                .bind(source)
                .fetch_optional(&self.write)
                .await?;
        row.map(|r| {
            Ok(GuessRecord {
                failures: r.try_get("failures")?,
                last_failure: r.try_get("last_failure")?,
                locked_until: r.try_get("locked_until")?,
                refusal_recorded: r.try_get::<i64, _>("refusal_recorded")? != 0,
            })
        })
        .transpose()
    }

    /// Marks the first refusal under a lock that holds at `now`; whether this call did
    /// (exactly one caller does, whichever node it is on).
    pub async fn first_refusal(&self, source: &str, now: i64) -> Result<bool> {
        let claimed = sqlx::query(
            "UPDATE guesses SET refusal_recorded = 1 WHERE source = $1 AND locked_until > $2 AND refusal_recorded = 0",
        )
        .bind(source)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(claimed.rows_affected() == 1)
    }

    /// Counts a wrong guess: `next` turns the record before it (none for a new source)
    /// into the one after, under a lock on the row, so that failures on two nodes at once
    /// both count. Records nobody needs any more (no failure for `forget_micros`, no lock)
    /// are dropped now and then.
    pub async fn guessed_wrong(
        &self,
        source: &str,
        now: i64,
        forget_micros: i64,
        next: impl FnOnce(Option<GuessRecord>) -> GuessRecord,
    ) -> Result<GuessRecord> {
        let mut tx = match self.backend {
            Backend::Sqlite => self.write.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.write.begin().await?,
        };
        // A new source's row must exist to be locked.
        sqlx::query(
            "INSERT INTO guesses (source, failures, last_failure, locked_until, refusal_recorded) \
             VALUES ($1, 0, $2, 0, 0) ON CONFLICT (source) DO NOTHING",
        )
        .bind(source)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let lock = if self.backend == Backend::Postgres { " FOR UPDATE" } else { "" };
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT failures, last_failure, locked_until, refusal_recorded FROM guesses WHERE source = $1{lock}"
        )))
        .bind(source)
        .fetch_one(&mut *tx)
        .await?;
        let before = GuessRecord {
            failures: row.try_get("failures")?,
            last_failure: row.try_get("last_failure")?,
            locked_until: row.try_get("locked_until")?,
            refusal_recorded: row.try_get::<i64, _>("refusal_recorded")? != 0,
        };
        let after = next((before.failures > 0).then_some(before));
        sqlx::query(
            "UPDATE guesses SET failures = $2, last_failure = $3, locked_until = $4, refusal_recorded = $5 \
             WHERE source = $1",
        )
        .bind(source)
        .bind(after.failures)
        .bind(after.last_failure)
        .bind(after.locked_until)
        .bind(i64::from(after.refusal_recorded))
        .execute(&mut *tx)
        .await?;
        if now % 64 == 0 {
            sqlx::query("DELETE FROM guesses WHERE last_failure < $1 AND locked_until < $2")
                .bind(now - forget_micros)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(after)
    }
}
