//! Doorbell snapshots: kept in the database (any node may be asked for one) and only for
//! a limited time, since they are pictures of people.

use crate::{Result, Store, now_micros};

impl Store {
    /// Keeps an image under `id` (an unguessable token chosen by the caller) and drops
    /// those older than `keep_micros`.
    pub async fn save_snapshot(&self, id: &str, content_type: &str, image: &[u8], keep_micros: i64) -> Result<()> {
        let now = now_micros();
        let mut tx = self.write.begin().await?;
        sqlx::query("DELETE FROM doorbell_snapshots WHERE created_at < $1")
            .bind(now - keep_micros)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO doorbell_snapshots (id, content_type, image, created_at) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(content_type)
            .bind(image.to_vec())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The snapshot's content type and bytes, if it exists and is younger than `keep_micros`.
    pub async fn snapshot(&self, id: &str, keep_micros: i64) -> Result<Option<(String, Vec<u8>)>> {
        Ok(sqlx::query_as("SELECT content_type, image FROM doorbell_snapshots WHERE id = $1 AND created_at >= $2")
            .bind(id)
            .bind(now_micros() - keep_micros)
            .fetch_optional(&self.read)
            .await?)
    }
}
