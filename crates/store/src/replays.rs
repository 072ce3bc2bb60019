//! Signed requests seen, shared by every node (see `migrations/*/0017_replays.sql`).

use crate::{Result, Store, now_micros};

impl Store {
    /// Notes `key` as seen until `expires_at` (unix seconds); whether it is new (`false`:
    /// a replay). What has expired is forgotten now and then.
    pub async fn first_seen(&self, key: &str, expires_at: i64) -> Result<bool> {
        let now = now_micros() / 1_000_000;
        if now % 16 == 0 {
            sqlx::query("DELETE FROM replays WHERE expires_at < $1").bind(now).execute(&self.write).await?;
        }
        let inserted = sqlx::query(
            "INSERT INTO replays (key, expires_at) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at WHERE replays.expires_at < $3",
        )
        .bind(key)
        .bind(expires_at)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(inserted.rows_affected() == 1)
    }
}
