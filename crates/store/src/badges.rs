//! Badges imported from another badge system's CSV export, and the lookup of a badge id
//! (already converted) against them and against lintel's own cards.

use sqlx::Row;

use crate::{Result, Store, StoreError, now_micros};

/// One row of a badge export: the badge number and the row's other columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadgeRow {
    pub badge: String,
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// Whom a card of lintel's belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardHolder {
    pub id: String,
    pub name: String,
    pub email: Option<String>,
    pub status: String,
}

/// A badge number as stored and looked up: trimmed, upper case.
pub fn normalize_badge(badge: &str) -> String {
    badge.trim().to_ascii_uppercase()
}

const CHUNK: usize = 500;

impl Store {
    /// Replaces every imported badge with `rows` in one transaction (an export is the
    /// whole list); answers how many were there before.
    pub async fn replace_badges(&self, rows: &[BadgeRow]) -> Result<u64> {
        let mut tx = self.begin().await?;
        let before = sqlx::query("DELETE FROM badges").execute(&mut *tx).await?.rows_affected();
        let now = now_micros();
        for chunk in rows.chunks(CHUNK) {
            let mut sql = String::from("INSERT INTO badges (badge, attributes, imported_at) VALUES ");
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3));
            }
            sql.push_str(" ON CONFLICT (badge) DO UPDATE SET attributes = excluded.attributes");
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for row in chunk {
                let attributes = serde_json::Value::Object(row.attributes.clone()).to_string();
                query = query.bind(normalize_badge(&row.badge)).bind(attributes).bind(now);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(before)
    }

    /// The attributes of an imported badge, by its number (compared upper case).
    pub async fn badge(&self, badge: &str) -> Result<Option<serde_json::Map<String, serde_json::Value>>> {
        let row = sqlx::query("SELECT attributes FROM badges WHERE badge = $1")
            .bind(normalize_badge(badge))
            .fetch_optional(&self.read)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let text: String = row.try_get("attributes")?;
        match serde_json::from_str(&text) {
            Ok(serde_json::Value::Object(map)) => Ok(Some(map)),
            _ => Err(StoreError::Corrupt(format!("badge {badge:?}: attributes are not a JSON object"))),
        }
    }

    /// The holder of the active card with this UID (normalized hex), if any.
    pub async fn card_holder(&self, card_uid: &str) -> Result<Option<CardHolder>> {
        let row = sqlx::query(
            "SELECT p.id, p.name, p.email, p.status FROM credentials c JOIN people p ON p.pk = c.person_pk \
             WHERE c.card_uid = $1 AND c.status = 'active'",
        )
        .bind(card_uid)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| {
            Ok(CardHolder {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                email: r.try_get("email")?,
                status: r.try_get("status")?,
            })
        })
        .transpose()
    }
}
