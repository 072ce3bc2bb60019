//! Outbound webhook endpoints, the queue of their deliveries (outbox work under the target
//! `webhook:<endpoint>`, taken strictly in order), and the attempts made.

use lintel_proto::{Event, WebhookAttempt, WebhookDelivery};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::directory::Tx;
use crate::events::{NewEvent, insert};
use crate::rows::time;
use crate::work::{LEASE_MICROS, WorkItem, state, work_item};
use crate::{Result, Store, StoreError, now_micros};
use lintel_proto::redact_url;

/// An endpoint as the store keeps it, secrets included (never in its `Debug` form, so
/// that no log line can carry them).
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookRow {
    pub id: String,
    pub url: String,
    pub kinds: Vec<String>,
    /// Only events at this site's doors.
    pub site: Option<String>,
    pub description: Option<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_until: Option<i64>,
    pub allow_http: bool,
    pub cursor: i64,
    pub created_at: i64,
}

impl std::fmt::Debug for WebhookRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookRow")
            .field("id", &self.id)
            .field("url", &lintel_proto::redact_url(&self.url))
            .field("kinds", &self.kinds)
            .field("site", &self.site)
            .field("enabled", &self.enabled)
            .field("disabled_reason", &self.disabled_reason)
            .field("secret", &"***")
            .field("previous_until", &self.previous_until)
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str = "id, url, kinds, site, description, enabled, disabled_reason, secret, previous_secret, \
                       previous_until, allow_http, cursor, created_at";

fn endpoint(row: &AnyRow) -> Result<WebhookRow> {
    let kinds: String = row.try_get("kinds")?;
    Ok(WebhookRow {
        id: row.try_get("id")?,
        url: row.try_get("url")?,
        kinds: serde_json::from_str(&kinds).map_err(|e| StoreError::Corrupt(format!("webhook kinds: {e}")))?,
        site: row.try_get("site")?,
        description: row.try_get("description")?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        disabled_reason: row.try_get("disabled_reason")?,
        secret: row.try_get("secret")?,
        previous_secret: row.try_get("previous_secret")?,
        previous_until: row.try_get("previous_until")?,
        allow_http: row.try_get::<i64, _>("allow_http")? != 0,
        cursor: row.try_get("cursor")?,
        created_at: row.try_get("created_at")?,
    })
}

/// The outbox target of an endpoint's deliveries.
pub fn webhook_target(endpoint: &str) -> String {
    format!("webhook:{endpoint}")
}

impl Store {
    pub async fn create_webhook(&self, w: &WebhookRow) -> Result<()> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "INSERT INTO webhook_endpoints (id, url, kinds, description, enabled, secret, allow_http, cursor, created_at, \
             site) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&w.id)
        .bind(&w.url)
        .bind(serde_json::to_string(&w.kinds).expect("strings serialize"))
        .bind(&w.description)
        .bind(i64::from(w.enabled))
        .bind(&w.secret)
        .bind(i64::from(w.allow_http))
        .bind(w.cursor)
        .bind(w.created_at)
        .bind(&w.site)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("webhook endpoint {:?} exists", w.id)));
        }
        let made = NewEvent::new("webhook.created").with("endpoint", &w.id).with("url", redact_url(&w.url));
        self.record_change(&mut tx, made).await?;
        // It gets the events after its own making.
        sqlx::query("UPDATE webhook_endpoints SET cursor = (SELECT COALESCE(MAX(seq), 0) FROM events) WHERE id = $1")
            .bind(&w.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn webhooks(&self) -> Result<Vec<WebhookRow>> {
        let sql = format!("SELECT {COLUMNS} FROM webhook_endpoints ORDER BY created_at, id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(&self.read).await?;
        rows.iter().map(endpoint).collect()
    }

    pub async fn webhook(&self, id: &str) -> Result<WebhookRow> {
        let sql = format!("SELECT {COLUMNS} FROM webhook_endpoints WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&self.read).await?;
        row.as_ref().map(endpoint).transpose()?.ok_or_else(|| StoreError::not_found("webhook endpoint", id))
    }

    /// Writes an endpoint's settings (everything but its secrets and cursor).
    pub async fn update_webhook(&self, w: &WebhookRow) -> Result<()> {
        let before = self.webhook(&w.id).await?;
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE webhook_endpoints SET url = $2, kinds = $3, description = $4, enabled = $5, \
             disabled_reason = $6, site = $7 WHERE id = $1",
        )
        .bind(&w.id)
        .bind(&w.url)
        .bind(serde_json::to_string(&w.kinds).expect("strings serialize"))
        .bind(&w.description)
        .bind(i64::from(w.enabled))
        .bind(&w.disabled_reason)
        .bind(&w.site)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("webhook endpoint", &w.id));
        }
        let settings = |w: &WebhookRow| {
            serde_json::json!({"url": redact_url(&w.url), "kinds": w.kinds, "site": w.site,
                               "description": w.description, "enabled": w.enabled})
        };
        let event = NewEvent::new("webhook.updated").with("endpoint", &w.id).changed(&settings(&before), &settings(w));
        self.record_change(&mut tx, event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The event of a change to an endpoint, for the audit trail: only when someone made
    /// it (lintel's own updates, such as disabling an endpoint that answered 410, have
    /// events of their own).
    async fn record_change(&self, tx: &mut Tx, mut event: NewEvent) -> Result<()> {
        if let Some(actor) = &self.actor {
            event.actor = Some(actor.to_string());
            insert(tx, &event).await?;
        }
        Ok(())
    }

    /// A new signing key; the current one keeps signing until `previous_until`.
    pub async fn rotate_webhook_secret(&self, id: &str, secret: &str, previous_until: i64) -> Result<()> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE webhook_endpoints SET previous_secret = secret, previous_until = $3, secret = $2 WHERE id = $1",
        )
        .bind(id)
        .bind(secret)
        .bind(previous_until)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("webhook endpoint", id));
        }
        self.record_change(&mut tx, NewEvent::new("webhook.rotated").with("endpoint", id)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes an endpoint with its queue and attempts.
    pub async fn delete_webhook(&self, id: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1").bind(id).execute(&mut *tx).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("webhook endpoint", id));
        }
        sqlx::query("DELETE FROM outbox WHERE target = $1").bind(webhook_target(id)).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM webhook_attempts WHERE endpoint_id = $1").bind(id).execute(&mut *tx).await?;
        self.record_change(&mut tx, NewEvent::new("webhook.deleted").with("endpoint", id)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Queues the deliveries of `events` (already matched to the endpoint; `body` is each
    /// one's signed body) and moves the endpoint's cursor to `cursor`, in one transaction:
    /// an event is queued once, and never skipped. `tag` tells a re-send's deliveries
    /// apart from the first ones (empty for those).
    pub async fn queue_webhook_deliveries(
        &self,
        endpoint: &str,
        events: &[(&Event, String)],
        cursor: Option<i64>,
        tag: &str,
    ) -> Result<u64> {
        let mut tx = self.write.begin().await?;
        let now = now_micros();
        let mut queued = 0;
        for (event, body) in events {
            let payload = serde_json::json!({
                "message_id": format!("msg_{}_{}", event.id, endpoint),
                "type": event.kind,
                "event_id": event.id,
                "body": body,
            });
            queued += sqlx::query(
                "INSERT INTO outbox (target, kind, idempotency_key, payload, created_at, next_attempt_at) \
                 VALUES ($1, 'webhook', $2, $3, $4, $4) ON CONFLICT (idempotency_key) DO NOTHING",
            )
            .bind(webhook_target(endpoint))
            .bind(format!("webhook:{endpoint}:{}{tag}", event.id))
            .bind(payload.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        if let Some(cursor) = cursor {
            sqlx::query("UPDATE webhook_endpoints SET cursor = $2 WHERE id = $1 AND cursor < $2")
                .bind(endpoint)
                .bind(cursor)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(queued)
    }

    /// Claims the endpoint's oldest delivery not yet done, if it is due: deliveries go out
    /// in order, so a failing one holds back those after it.
    pub async fn due_webhook_delivery(&self, endpoint: &str) -> Result<Option<WorkItem>> {
        let now = now_micros();
        let row = sqlx::query(
            "UPDATE outbox SET next_attempt_at = $3 WHERE pk = (SELECT MIN(pk) FROM outbox WHERE target = $1 \
             AND state = 'pending') AND next_attempt_at <= $2 RETURNING pk, kind, payload, attempts",
        )
        .bind(webhook_target(endpoint))
        .bind(now)
        .bind(now + LEASE_MICROS)
        .fetch_optional(&self.write)
        .await?;
        row.as_ref().map(|r| work_item(r, "kind")).transpose()
    }

    pub async fn record_webhook_attempt(
        &self,
        endpoint: &str,
        delivery: i64,
        status: Option<u16>,
        duration_ms: u64,
        excerpt: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO webhook_attempts (delivery, endpoint_id, at, status, duration_ms, excerpt) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(delivery)
        .bind(endpoint)
        .bind(now_micros())
        .bind(status.map(i64::from))
        .bind(i64::try_from(duration_ms).unwrap_or(i64::MAX))
        .bind(excerpt)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// The endpoint's newest deliveries, each with its attempts.
    pub async fn webhook_deliveries(&self, endpoint: &str, limit: i64) -> Result<Vec<WebhookDelivery>> {
        let rows = sqlx::query(
            "SELECT pk, payload, state, next_attempt_at FROM outbox WHERE target = $1 ORDER BY pk DESC LIMIT $2",
        )
        .bind(webhook_target(endpoint))
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        // Every attempt of those deliveries in one query, grouped here.
        let oldest = rows.last().map(|r| r.try_get::<i64, _>("pk")).transpose()?.unwrap_or(i64::MAX);
        let mut attempts: std::collections::HashMap<i64, Vec<WebhookAttempt>> = Default::default();
        let attempt_rows = sqlx::query(
            "SELECT delivery, at, status, duration_ms, excerpt FROM webhook_attempts \
             WHERE endpoint_id = $1 AND delivery >= $2 ORDER BY pk",
        )
        .bind(endpoint)
        .bind(oldest)
        .fetch_all(&self.read)
        .await?;
        for a in &attempt_rows {
            attempts.entry(a.try_get("delivery")?).or_default().push(WebhookAttempt {
                at: time(a.try_get("at")?)?,
                status: a.try_get::<Option<i64>, _>("status")?.and_then(|s| u16::try_from(s).ok()),
                duration_ms: u64::try_from(a.try_get::<i64, _>("duration_ms")?).unwrap_or(0),
                excerpt: a.try_get("excerpt")?,
            });
        }
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let pk: i64 = row.try_get("pk")?;
            let payload: serde_json::Value = serde_json::from_str(&row.try_get::<String, _>("payload")?)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let attempts = attempts.remove(&pk).unwrap_or_default();
            let text = |key: &str| payload[key].as_str().unwrap_or_default().to_owned();
            out.push(WebhookDelivery {
                id: pk,
                message_id: text("message_id"),
                kind: text("type"),
                event_id: text("event_id"),
                state: state(row)?,
                next_attempt_at: time(row.try_get("next_attempt_at")?)?,
                attempts,
            });
        }
        Ok(out)
    }

    /// Sends a delivery again (done or given up): it goes out next, before the
    /// endpoint's later deliveries that are still waiting.
    pub async fn replay_webhook_delivery(&self, endpoint: &str, delivery: i64) -> Result<()> {
        let done = sqlx::query(
            "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = $3, done_at = NULL \
             WHERE pk = $1 AND target = $2",
        )
        .bind(delivery)
        .bind(webhook_target(endpoint))
        .bind(now_micros())
        .execute(&self.write)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("webhook delivery", delivery.to_string()));
        }
        Ok(())
    }
}
