//! Sessions of the web UI (see `migrations/*/0016_sessions.sql`): kept by the digest of
//! their id; what a session's holder is, is the service's (an opaque JSON text here).

use sqlx::Row;

use crate::{Result, Store};

/// A session as stored (times in unix microseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    pub holder: String,
    pub created_at: i64,
    pub seen_at: i64,
    /// Neither idleness nor age ends it (a wall display's).
    pub lasting: bool,
}

impl Store {
    /// Keeps a new session; sessions beyond `max` go, the least recently used first.
    pub async fn create_session(&self, id_digest: &str, holder: &str, now: i64, max: i64, lasting: bool) -> Result<()> {
        let mut tx = self.begin_under(crate::SESSIONS_LOCK).await?;
        sqlx::query(
            "INSERT INTO sessions (id_digest, holder, created_at, seen_at, lasting) VALUES ($1, $2, $3, $3, $4)",
        )
        .bind(id_digest)
        .bind(holder)
        .bind(now)
        .bind(i64::from(lasting))
        .execute(&mut *tx)
        .await?;
        // SQLite wants a LIMIT before an OFFSET (-1: none); PostgreSQL takes an OFFSET alone.
        let beyond = match self.backend {
            crate::Backend::Sqlite => "LIMIT -1 OFFSET $1",
            crate::Backend::Postgres => "OFFSET $1",
        };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM sessions WHERE id_digest IN (SELECT id_digest FROM sessions ORDER BY seen_at DESC {beyond})"
        )))
        .bind(max)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn session(&self, id_digest: &str) -> Result<Option<StoredSession>> {
        let row = sqlx::query("SELECT holder, created_at, seen_at, lasting FROM sessions WHERE id_digest = $1")
            .bind(id_digest)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| {
            Ok(StoredSession {
                holder: r.try_get("holder")?,
                created_at: r.try_get("created_at")?,
                seen_at: r.try_get("seen_at")?,
                lasting: r.try_get::<i64, _>("lasting")? != 0,
            })
        })
        .transpose()
    }

    pub async fn touch_session(&self, id_digest: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE sessions SET seen_at = $2 WHERE id_digest = $1")
            .bind(id_digest)
            .bind(now)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    pub async fn end_session(&self, id_digest: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id_digest = $1").bind(id_digest).execute(&self.write).await?;
        Ok(())
    }

    /// Drops the sessions unused since `idle_since` or made before `made_before` (never
    /// the lasting ones).
    pub async fn prune_sessions(&self, idle_since: i64, made_before: i64) -> Result<u64> {
        let gone = sqlx::query("DELETE FROM sessions WHERE lasting = 0 AND (seen_at < $1 OR created_at < $2)")
            .bind(idle_since)
            .bind(made_before)
            .execute(&self.write)
            .await?;
        Ok(gone.rows_affected())
    }
}
