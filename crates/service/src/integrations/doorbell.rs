//! The doorbell: a camera's webhook posts the visitor's picture to the Slack channel with
//! an **Open door** button (the click is Slack's: [`super::slack::Slack::interaction`]).
//! The picture is kept by lintel and served to Slack at an unguessable URL for a day.

use std::sync::Arc;

use chrono_tz::Tz;
use lintel_connectors::doorbell::{Snapshot, SnapshotFetcher, Webhook};
use lintel_core::Digest;
use lintel_core::credential::digests_equal;
use lintel_store::NewEvent;

use super::slack::Slack;
use crate::directory::Directory;
use crate::error::Result;
use crate::secrets;

/// How long a snapshot stays reachable.
const KEEP_SNAPSHOTS_MICROS: i64 = 24 * 3600 * 1_000_000;

/// The `[doorbell]` settings, with the channel from `[slack] doorbell_channel`.
#[derive(Clone, Debug)]
pub struct DoorbellConfig {
    pub token: String,
    /// The door the button opens.
    pub door: String,
    pub channel: String,
    /// Hosts snapshots may be fetched from (empty: any). The URL comes from the webhook,
    /// so this keeps lintel from fetching anywhere a leaked token points it at.
    pub snapshot_hosts: Vec<String>,
}

pub struct Doorbell {
    config: DoorbellConfig,
    token_digest: Digest,
    fetcher: SnapshotFetcher,
    slack: Arc<Slack>,
    directory: Arc<Directory>,
    timezone: Tz,
    /// Where Slack fetches the picture from; without it the message has none.
    public_url: Option<String>,
}

/// A ring, recorded as the event `event_id`.
pub struct Ring {
    pub event_id: String,
    /// Whether the camera's snapshot is in the message.
    pub snapshot: bool,
    /// Why the message did not reach the channel, if it did not.
    pub not_posted: Option<String>,
}

impl Doorbell {
    pub fn new(
        config: DoorbellConfig,
        slack: Arc<Slack>,
        directory: Arc<Directory>,
        timezone: Tz,
        public_url: Option<String>,
    ) -> Self {
        let token_digest = secrets::digest(&config.token);
        Self { config, token_digest, fetcher: SnapshotFetcher::default(), slack, directory, timezone, public_url }
    }

    /// Whether `given` is the doorbell's token. Digests are compared in constant time: the
    /// comparison says nothing about the token.
    pub fn admits(&self, given: Option<&str>) -> bool {
        given.is_some_and(|g| digests_equal(&secrets::digest(g), &self.token_digest))
    }

    fn snapshot_host_allowed(&self, url: &str) -> bool {
        let hosts = &self.config.snapshot_hosts;
        hosts.is_empty()
            || reqwest::Url::parse(url)
                .is_ok_and(|u| u.host_str().is_some_and(|h| hosts.iter().any(|a| a.eq_ignore_ascii_case(h))))
    }

    async fn fetch_snapshot(&self, webhook: &Webhook) -> Option<Snapshot> {
        let url = webhook.snapshot_url.as_deref()?;
        if !self.snapshot_host_allowed(url) {
            tracing::warn!("doorbell snapshot URL is not on [doorbell] snapshot_hosts; posting without it");
            return None;
        }
        self.fetcher
            .fetch(url)
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "doorbell snapshot not fetched; posting without it"))
            .ok()
    }

    /// Someone rang (`webhook.is_ring()`): the camera's snapshot is fetched at once (it is
    /// short-lived) and kept, the ring recorded, and the channel told, with the picture
    /// and the button. A ring Slack did not take is still recorded.
    pub async fn ring(&self, webhook: &Webhook) -> Result<Ring> {
        let store = &self.directory.store;
        let snapshot = self.fetch_snapshot(webhook).await;
        let image_url = match (&snapshot, &self.public_url) {
            (Some(snapshot), Some(public)) => {
                let id = secrets::generate("snap_");
                store.save_snapshot(&id, &snapshot.content_type, &snapshot.bytes, KEEP_SNAPSHOTS_MICROS).await?;
                Some(format!("{}/hooks/doorbell/snapshots/{id}", public.trim_end_matches('/')))
            }
            (Some(_), None) => {
                tracing::warn!("set public_url so that Slack can show the doorbell's picture");
                None
            }
            _ => None,
        };
        let door = &self.config.door;
        let mut event = NewEvent::new("doorbell.rang").door(door).with("snapshot", image_url.is_some());
        if let Some(device) = &webhook.device_id {
            event = event.with("device_id", device.chars().take(100).collect::<String>());
        }
        let event_id = self.directory.record(event).await?.id;

        let door_name = store.door(door).await.map(|d| d.name).unwrap_or(door.clone());
        let at = chrono::Utc::now().with_timezone(&self.timezone).format("%H:%M");
        let text = format!(":bell: Someone is at the {door_name} ({at})");
        let posted = self.slack.post_ring(&self.config.channel, &text, image_url.as_deref(), door).await;
        let not_posted = posted.err().map(|e| {
            tracing::warn!(error = %e, "doorbell message not posted");
            e.to_string()
        });
        Ok(Ring { event_id, snapshot: image_url.is_some(), not_posted })
    }

    /// A kept snapshot (content type, image); `None` when unknown or older than a day.
    /// The id is the capability (256 random bits).
    pub async fn snapshot(&self, id: &str) -> Result<Option<(String, Vec<u8>)>> {
        if !id.starts_with("snap_") || id.len() > 64 {
            return Ok(None);
        }
        Ok(self.directory.store.snapshot(id, KEEP_SNAPSHOTS_MICROS).await?)
    }
}
