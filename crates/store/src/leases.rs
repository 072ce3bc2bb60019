//! Leases for work that one node at a time must do (see `migrations/*/0014_leases.sql`).
//! A lease is held by a node (the store's [`Store::node`]) until it expires; the holder
//! renews it, anyone takes it once it has expired.

use std::time::Duration;

use crate::{Result, Store, now_micros};

impl Store {
    /// Takes or renews the lease `name` for `ttl`; whether this node holds it now.
    pub async fn hold_lease(&self, name: &str, ttl: Duration) -> Result<bool> {
        let now = now_micros();
        let until = now + i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX / 2);
        let held: Option<String> = sqlx::query_scalar(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at < $4 \
             RETURNING holder",
        )
        .bind(name)
        .bind(self.node())
        .bind(until)
        .bind(now)
        .fetch_optional(&self.write)
        .await?;
        Ok(held.is_some())
    }

    /// Gives the lease `name` up, if this node holds it, so that another node takes over
    /// at once.
    pub async fn release_lease(&self, name: &str) -> Result<()> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(self.node())
            .execute(&self.write)
            .await?;
        Ok(())
    }
}
