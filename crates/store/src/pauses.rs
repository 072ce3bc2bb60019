//! Upstreams left alone for a while, by every node (see `migrations/*/0018_pauses.sql`).

use crate::{Result, Store};

impl Store {
    /// Leaves `name` alone until `until` (unix microseconds), saying why.
    pub async fn pause(&self, name: &str, until: i64, reason: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO pauses (name, until, reason) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET until = excluded.until, reason = excluded.reason",
        )
        .bind(name)
        .bind(until)
        .bind(reason)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Why `name` is left alone at `now`, if it is.
    pub async fn paused(&self, name: &str, now: i64) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT reason FROM pauses WHERE name = $1 AND until > $2")
            .bind(name)
            .bind(now)
            .fetch_optional(&self.read)
            .await?)
    }

    /// `name` answers again: nobody need leave it alone.
    pub async fn unpause(&self, name: &str) -> Result<()> {
        sqlx::query("DELETE FROM pauses WHERE name = $1").bind(name).execute(&self.write).await?;
        Ok(())
    }
}
