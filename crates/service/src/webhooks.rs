//! Outbound webhooks: other systems register an endpoint and the event kinds they want,
//! and lintel pushes each matching event to it, signed per Standard Webhooks.
//!
//! **Never lost, in order, at least once.** A worker (one node, under the `webhooks`
//! lease) reads the event log after each endpoint's cursor and queues one outbox delivery
//! per matching event, moving the cursor in the same transaction. Deliveries of an
//! endpoint go out strictly in order: the oldest one not done holds back the rest while it
//! is retried ([`crate::retry::WEBHOOKS`], about three days). A 2xx is success; 410 Gone
//! disables the endpoint; a delivery still failing when its retries run out disables it
//! too. Both are events (`webhook.disabled`). Every attempt is kept; a delivery can be
//! replayed and a time range re-sent.
//!
//! **Two nodes.** Queuing and sending run on the lease holder only; the queue, cursors and
//! attempts are in the store, so the next holder carries on where the last one stopped (a
//! delivery it was sending when it died is sent again: at least once).

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use lintel_connectors::webhooks::{self as standard, Sender};
use lintel_proto::{
    Event, NewWebhookEndpoint, WebhookDelivery, WebhookEndpoint, WebhookEndpointPatch, WebhookResend, WebhookSecret,
};
use lintel_store::{Attempt, EventFilter, NewEvent, Store, WebhookRow};
use serde_json::json;

use crate::directory::Directory;
use crate::error::{Result, ServiceError};
use crate::retry::WEBHOOKS;
use crate::validate;
use crate::workers::Workers;

/// How long the secret before a rotation keeps signing (both signatures are sent).
const ROTATION_OVERLAP: Duration = Duration::from_secs(24 * 3600);
/// Events read per query when queuing.
const PAGE: i64 = 500;
/// Deliveries one endpoint sends per round at most, so that one busy endpoint does not
/// keep the others waiting.
const PER_ROUND: usize = 50;

pub struct Webhooks {
    directory: Arc<Directory>,
    sender: Sender,
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the OS random number generator is available");
    bytes
}

/// Whether an event kind is wanted by a list of patterns: `*`, `prefix.*` or a kind.
pub fn wants(patterns: &[String], kind: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix(".*") {
        _ if p == "*" => true,
        Some(prefix) => kind.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('.')),
        None => p == kind,
    })
}

fn check_kinds(kinds: &[String]) -> Result<()> {
    if kinds.is_empty() || kinds.len() > 50 {
        return Err(ServiceError::invalid("kinds lists 1 to 50 event kinds (`*` for all)"));
    }
    for kind in kinds {
        let body = kind.strip_suffix(".*").unwrap_or(kind);
        let plain = !body.is_empty()
            && body.len() <= 64
            && body.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_');
        if kind != "*" && !plain {
            return Err(ServiceError::invalid(format!(
                "{kind:?} is not an event kind: `decision`, `door.opened`, `door.*` or `*`"
            )));
        }
    }
    Ok(())
}

/// An endpoint's URL: `https`, or `http` to a loopback or private address when allowed.
fn check_url(url: &str, allow_http: bool) -> Result<()> {
    validate::text("url", url, 2000)?;
    let parsed = reqwest::Url::parse(url).map_err(|e| ServiceError::invalid(format!("url: {e}")))?;
    let host = parsed.host_str().ok_or_else(|| ServiceError::invalid("url needs a host"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if !allow_http => Err(ServiceError::invalid(
            "url must be https (http needs allow_http, and then only to a loopback or private address)",
        )),
        "http" => {
            let ip: Option<IpAddr> = host.trim_start_matches('[').trim_end_matches(']').parse().ok();
            let private = match ip {
                Some(IpAddr::V4(v4)) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
                Some(IpAddr::V6(v6)) => v6.is_loopback() || v6.is_unique_local(),
                None => host == "localhost",
            };
            if private {
                Ok(())
            } else {
                Err(ServiceError::invalid("http is allowed only to a loopback or private address; use https"))
            }
        }
        other => Err(ServiceError::invalid(format!("url scheme {other:?}: use https"))),
    }
}

fn shown(row: &WebhookRow) -> WebhookEndpoint {
    let now = Utc::now().timestamp_micros();
    WebhookEndpoint {
        id: row.id.clone(),
        url: row.url.clone(),
        kinds: row.kinds.clone(),
        site: row.site.clone(),
        description: row.description.clone(),
        enabled: row.enabled,
        disabled_reason: row.disabled_reason.clone(),
        allow_http: row.allow_http,
        previous_secret_until: row
            .previous_until
            .filter(|until| *until > now && row.previous_secret.is_some())
            .and_then(DateTime::from_timestamp_micros),
        created_at: DateTime::from_timestamp_micros(row.created_at).unwrap_or_default(),
    }
}

/// The body Standard Webhooks define: the event's kind, time, and the event itself.
fn body(event: &Event) -> String {
    let timestamp = event.at.to_rfc3339_opts(SecondsFormat::Micros, true);
    json!({"type": event.kind, "timestamp": timestamp, "data": event}).to_string()
}

/// Refuses a site that does not exist.
async fn check_site(store: &Store, site: Option<&str>) -> Result<()> {
    if let Some(id) = site {
        crate::edits::existing_site(store, id).await?;
    }
    Ok(())
}

/// The doors of the endpoint's site (as they are now), when it is limited to one.
async fn site_doors(store: &Store, row: &WebhookRow) -> Result<Option<HashSet<String>>> {
    match &row.site {
        Some(site) => Ok(Some(store.doors(Some(site)).await?.into_iter().map(|d| d.id).collect())),
        None => Ok(None),
    }
}

/// The events an endpoint wants, each with its body: by kind, and only those at its
/// site's doors when it has a site (an event at no door belongs to no site).
fn matched<'e>(
    row: &WebhookRow,
    events: &'e [Event],
    site_doors: Option<&HashSet<String>>,
) -> Vec<(&'e Event, String)> {
    let at_site = |e: &Event| site_doors.is_none_or(|doors| e.door.as_ref().is_some_and(|d| doors.contains(d)));
    events.iter().filter(|e| wants(&row.kinds, &e.kind) && at_site(e)).map(|e| (e, body(e))).collect()
}

/// Registers an endpoint; its secret is in the answer, and never shown again. It gets
/// the events from now on (a re-send covers earlier ones).
pub async fn create(store: &Store, new: NewWebhookEndpoint) -> Result<WebhookSecret> {
    check_url(&new.url, new.allow_http)?;
    check_kinds(&new.kinds)?;
    check_site(store, new.site.as_deref()).await?;
    if let Some(d) = &new.description {
        validate::text("description", d, 500)?;
    }
    let row = WebhookRow {
        id: format!("wh_{}", hex::encode(random_bytes::<8>())),
        url: new.url,
        kinds: new.kinds,
        site: new.site,
        description: new.description,
        enabled: new.enabled.unwrap_or(true),
        disabled_reason: None,
        secret: standard::new_secret(random_bytes()),
        previous_secret: None,
        previous_until: None,
        allow_http: new.allow_http,
        cursor: store.last_event_seq().await?,
        created_at: Utc::now().timestamp_micros(),
    };
    store.create_webhook(&row).await?;
    Ok(WebhookSecret { endpoint: shown(&row), secret: row.secret })
}

pub async fn list(store: &Store) -> Result<Vec<WebhookEndpoint>> {
    Ok(store.webhooks().await?.iter().map(shown).collect())
}

pub async fn get(store: &Store, id: &str) -> Result<WebhookEndpoint> {
    Ok(shown(&store.webhook(id).await?))
}

pub async fn patch(store: &Store, id: &str, patch: WebhookEndpointPatch) -> Result<WebhookEndpoint> {
    let mut row = store.webhook(id).await?;
    if let Some(url) = patch.url {
        check_url(&url, row.allow_http)?;
        row.url = url;
    }
    if let Some(kinds) = patch.kinds {
        check_kinds(&kinds)?;
        row.kinds = kinds;
    }
    if let Some(site) = patch.site {
        check_site(store, site.as_deref()).await?;
        row.site = site;
    }
    if let Some(description) = patch.description {
        validate::text("description", &description, 500)?;
        row.description = Some(description);
    }
    if let Some(enabled) = patch.enabled {
        if enabled && !row.enabled {
            // Back from here on; what happened meanwhile is a re-send away.
            let now = store.last_event_seq().await?;
            store.queue_webhook_deliveries(id, &[], Some(now), "").await?;
            row.disabled_reason = None;
        }
        row.enabled = enabled;
    }
    store.update_webhook(&row).await?;
    Ok(shown(&row))
}

pub async fn delete(store: &Store, id: &str) -> Result<()> {
    Ok(store.delete_webhook(id).await?)
}

/// A new secret, shown once; the old one keeps signing for a day beside it.
pub async fn rotate(store: &Store, id: &str) -> Result<WebhookSecret> {
    let secret = standard::new_secret(random_bytes());
    let until = Utc::now().timestamp_micros() + i64::try_from(ROTATION_OVERLAP.as_micros()).unwrap_or(i64::MAX);
    store.rotate_webhook_secret(id, &secret, until).await?;
    Ok(WebhookSecret { endpoint: get(store, id).await?, secret })
}

pub async fn deliveries(store: &Store, id: &str, limit: i64) -> Result<Vec<WebhookDelivery>> {
    store.webhook(id).await?;
    Ok(store.webhook_deliveries(id, limit.clamp(1, 1000)).await?)
}

pub async fn replay(store: &Store, id: &str, delivery: i64) -> Result<()> {
    Ok(store.replay_webhook_delivery(id, delivery).await?)
}

/// Queues the endpoint's events of `[from, to)` again (after its outage), as new
/// deliveries with the same message ids (a receiver that has one already drops it).
pub async fn resend(store: &Store, id: &str, range: WebhookResend) -> Result<u64> {
    if range.from >= range.to {
        return Err(ServiceError::invalid("from must be before to"));
    }
    let row = store.webhook(id).await?;
    let doors = site_doors(store, &row).await?;
    let tag = format!(":resent:{}", Utc::now().timestamp_micros());
    let mut after = 0;
    let mut queued = 0;
    loop {
        let filter = EventFilter {
            after: Some(after),
            before: Some(row.cursor + 1),
            from: Some(range.from.timestamp_micros()),
            to: Some(range.to.timestamp_micros()),
            limit: PAGE,
            ..Default::default()
        };
        let events = store.events(&filter).await?;
        let Some(last) = events.last() else { break };
        after = last.id.parse().unwrap_or(i64::MAX);
        queued += store.queue_webhook_deliveries(id, &matched(&row, &events, doors.as_ref()), None, &tag).await?;
    }
    Ok(queued)
}

impl Webhooks {
    pub fn new(directory: Arc<Directory>) -> Self {
        Self { directory, sender: Sender::default() }
    }

    fn store(&self) -> &Store {
        &self.directory.store
    }

    /// Queues and sends due deliveries every second, on the node holding the lease.
    pub fn spawn_worker(self: &Arc<Self>, workers: &Workers) {
        let me = self.clone();
        let mut seconds = workers.one_node_every("webhooks", Duration::from_secs(1));
        workers.spawn(async move {
            while seconds.next().await {
                if let Err(e) = me.run_once().await {
                    tracing::warn!(error = %e, "webhooks not sent");
                }
            }
        });
    }

    /// One round: every enabled endpoint's new events queued, then its due deliveries sent.
    pub async fn run_once(&self) -> Result<()> {
        for endpoint in self.store().webhooks().await?.into_iter().filter(|e| e.enabled) {
            self.queue_new(&endpoint).await?;
            self.send_due(&endpoint).await?;
        }
        Ok(())
    }

    async fn queue_new(&self, endpoint: &WebhookRow) -> Result<()> {
        let mut cursor = endpoint.cursor;
        // Read once there are events to match (rounds run every second, most with none).
        let mut doors = None;
        loop {
            let filter = EventFilter { after: Some(cursor), limit: PAGE, ..Default::default() };
            let events = self.store().events(&filter).await?;
            let Some(last) = events.last() else { return Ok(()) };
            if doors.is_none() {
                doors = Some(site_doors(self.store(), endpoint).await?);
            }
            cursor = last.id.parse().map_err(|_| ServiceError::invalid("an event id is not a number"))?;
            let matched = matched(endpoint, &events, doors.as_ref().and_then(Option::as_ref));
            self.store().queue_webhook_deliveries(&endpoint.id, &matched, Some(cursor), "").await?;
            if events.len() < PAGE as usize {
                return Ok(());
            }
        }
    }

    async fn send_due(&self, endpoint: &WebhookRow) -> Result<()> {
        let now = Utc::now();
        let mut secrets = vec![endpoint.secret.as_str()];
        if let (Some(previous), Some(until)) = (&endpoint.previous_secret, endpoint.previous_until)
            && until > now.timestamp_micros()
        {
            secrets.push(previous);
        }
        for _ in 0..PER_ROUND {
            let Some(item) = self.store().due_webhook_delivery(&endpoint.id).await? else { return Ok(()) };
            let message_id = item.payload["message_id"].as_str().unwrap_or_default();
            let body = item.payload["body"].as_str().unwrap_or_default().to_owned();
            let answer = self
                .sender
                .send(&endpoint.url, &secrets, message_id, Utc::now().timestamp(), body)
                .await
                .map_err(|e| ServiceError::invalid(format!("webhook endpoint {}: {e}", endpoint.id)))?;
            let took = u64::try_from(answer.took.as_millis()).unwrap_or(u64::MAX);
            let outcome = match answer.status {
                Some(200..=299) => "2xx",
                Some(400..=499) => "4xx",
                Some(_) => "other",
                None => "no_answer",
            };
            metrics::counter!("lintel_webhook_attempts_total", "endpoint" => endpoint.id.clone(), "outcome" => outcome)
                .increment(1);
            self.store()
                .record_webhook_attempt(&endpoint.id, item.pk, answer.status, took, answer.excerpt.as_deref())
                .await?;
            let attempt = match answer.status {
                Some(200..=299) => Attempt::Done,
                Some(410) => {
                    self.disable(endpoint, "the endpoint answered 410 Gone").await?;
                    Attempt::Failed("410 Gone: the endpoint asked lintel to stop".into())
                }
                status => {
                    let why = match status {
                        Some(s) => format!("the endpoint answered {s}"),
                        None => answer.excerpt.clone().unwrap_or_default(),
                    };
                    let failed = ServiceError::upstream("webhook", why, true);
                    WEBHOOKS.after_failure(item.attempts, &failed)
                }
            };
            self.store().outbox_attempted(item.pk, &attempt).await?;
            match attempt {
                Attempt::Done => {}
                Attempt::Failed(_) if endpoint.enabled => {
                    self.disable(endpoint, "a delivery kept failing for its whole retry window").await?;
                    return Ok(());
                }
                _ => return Ok(()),
            }
        }
        Ok(())
    }

    async fn disable(&self, endpoint: &WebhookRow, reason: &str) -> Result<()> {
        let row = self.store().webhook(&endpoint.id).await?;
        if !row.enabled {
            return Ok(());
        }
        let row = WebhookRow { enabled: false, disabled_reason: Some(reason.to_owned()), ..row };
        self.store().update_webhook(&row).await?;
        tracing::warn!(endpoint = %row.id, reason, "webhook endpoint disabled");
        let event = NewEvent::new("webhook.disabled").with("endpoint", &row.id).with("reason", reason);
        self.directory.record(event).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_match_exactly_by_prefix_or_all() {
        let p = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(wants(&p(&["*"]), "decision"));
        assert!(wants(&p(&["door.*"]), "door.opened"));
        assert!(!wants(&p(&["door.*"]), "doorbell.rang"), "a prefix ends at a dot");
        assert!(!wants(&p(&["door.*"]), "door"));
        assert!(wants(&p(&["decision", "person.*"]), "person.offboarded"));
        assert!(!wants(&p(&["decision"]), "decisions"));
        assert!(check_kinds(&p(&["door.*", "decision", "*"])).is_ok());
        for bad in [vec![], p(&["Door"]), p(&["door*"]), p(&["*.opened"]), p(&[""])] {
            assert!(check_kinds(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn urls_are_https_or_plain_http_inside_only_when_allowed() {
        assert!(check_url("https://hooks.example.org/lintel", false).is_ok());
        assert!(check_url("http://hooks.example.org/lintel", true).is_err(), "http to the internet");
        assert!(check_url("http://127.0.0.1:9000/", false).is_err(), "http needs allow_http");
        for inside in [
            "http://127.0.0.1:9000/",
            "http://10.1.2.3/",
            "http://192.168.1.5/x",
            "http://[::1]:80/",
            "http://localhost/",
        ] {
            assert!(check_url(inside, true).is_ok(), "{inside}");
        }
        for bad in ["ftp://example.org/", "not a url", "https://"] {
            assert!(check_url(bad, true).is_err(), "{bad}");
        }
    }
}
