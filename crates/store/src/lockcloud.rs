//! A lock cloud's state as lintel last pushed it, and entries other systems report.

use std::collections::HashMap;

use lintel_proto::Event;
use sqlx::Row;

use crate::events::{NewEvent, insert};
use crate::{Result, Store};

impl Store {
    /// Person id -> the digest of what the cloud was last told.
    pub async fn lockcloud_user_states(&self) -> Result<HashMap<String, String>> {
        let rows = sqlx::query("SELECT person_id, state FROM lockcloud_users").fetch_all(&self.read).await?;
        rows.iter().map(|r| Ok((r.try_get("person_id")?, r.try_get("state")?))).collect()
    }

    pub async fn set_lockcloud_user_state(&self, person_id: &str, state: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO lockcloud_users (person_id, state) VALUES ($1, $2) \
             ON CONFLICT (person_id) DO UPDATE SET state = excluded.state",
        )
        .bind(person_id)
        .bind(state)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Records an entry another system reports, once per its own id: `None` when this id
    /// was recorded before (a redelivery).
    pub async fn record_external_entry(
        &self,
        source: &str,
        external_id: &str,
        event: &NewEvent,
    ) -> Result<Option<Event>> {
        let mut tx = self.begin().await?;
        let new = sqlx::query(
            "INSERT INTO external_entries (source, external_id) VALUES ($1, $2) ON CONFLICT (source, external_id) DO NOTHING",
        )
        .bind(source)
        .bind(external_id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !new {
            return Ok(None);
        }
        let recorded = insert(&mut tx, event).await?;
        tx.commit().await?;
        Ok(Some(recorded))
    }
}
