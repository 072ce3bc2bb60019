//! Doorbell cameras (Netatmo-style): the webhook a camera sends when someone rings, and
//! fetching its snapshot, which is short-lived and must be fetched at once.

use std::time::Duration;

use serde::Deserialize;

/// The largest snapshot lintel keeps; a camera's JPEG is a few hundred kB.
pub const MAX_SNAPSHOT_BYTES: usize = 5 * 1024 * 1024;

/// A camera's webhook. Only the fields lintel uses; cameras send more.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct Webhook {
    #[serde(default)]
    pub push_type: Option<String>,
    #[serde(default)]
    pub event_type: Option<String>,
    #[serde(default)]
    pub device_id: Option<String>,
    #[serde(default)]
    pub snapshot_url: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

impl Webhook {
    /// A ring is an incoming call (`event_type: incoming_call`, or a push type such as
    /// `NDB-incoming_call`); cameras also report motion, connection changes and more.
    pub fn is_ring(&self) -> bool {
        self.event_type.as_deref() == Some("incoming_call")
            || self.push_type.as_deref().is_some_and(|p| p.ends_with("incoming_call"))
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotError {
    #[error("the snapshot URL is not an http(s) URL")]
    BadUrl,
    #[error("the snapshot could not be fetched: {0}")]
    Unreachable(String),
    #[error("the camera answered HTTP {0}")]
    Status(u16),
    #[error("the snapshot is not an image (content type {0:?})")]
    NotAnImage(String),
    #[error("the snapshot is larger than {MAX_SNAPSHOT_BYTES} bytes")]
    TooLarge,
}

/// An image as fetched: its content type and bytes.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// Fetches snapshots: no redirects (the URL came from outside), a short timeout (the
/// picture matters only while someone waits at the door), a size cap read as it streams.
#[derive(Clone)]
pub struct SnapshotFetcher {
    http: reqwest::Client,
}

impl Default for SnapshotFetcher {
    fn default() -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client with these settings always builds");
        Self { http }
    }
}

impl SnapshotFetcher {
    pub async fn fetch(&self, url: &str) -> Result<Snapshot, SnapshotError> {
        let url = reqwest::Url::parse(url).map_err(|_| SnapshotError::BadUrl)?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(SnapshotError::BadUrl);
        }
        let failed = |e: reqwest::Error| {
            SnapshotError::Unreachable(if e.is_timeout() { "timed out".into() } else { "request failed".into() })
        };
        let mut response = self.http.get(url).send().await.map_err(failed)?;
        if !response.status().is_success() {
            return Err(SnapshotError::Status(response.status().as_u16()));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let essence = content_type.split(';').next().unwrap_or_default().trim().to_owned();
        if !["image/jpeg", "image/png", "image/gif", "image/webp"].contains(&essence.as_str()) {
            return Err(SnapshotError::NotAnImage(content_type));
        }
        if response.content_length().is_some_and(|n| n > MAX_SNAPSHOT_BYTES as u64) {
            return Err(SnapshotError::TooLarge);
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if bytes.len() + chunk.len() > MAX_SNAPSHOT_BYTES {
                return Err(SnapshotError::TooLarge);
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Snapshot { content_type: essence, bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_are_told_from_other_camera_events() {
        let parse = |json: &str| serde_json::from_str::<Webhook>(json).unwrap();
        assert!(parse(r#"{"event_type":"incoming_call","snapshot_url":"http://x/s.jpg"}"#).is_ring());
        assert!(parse(r#"{"push_type":"NDB-incoming_call"}"#).is_ring());
        assert!(!parse(r#"{"push_type":"NDB-connection","event_type":"connection"}"#).is_ring());
        assert!(!parse(r#"{"event_type":"movement"}"#).is_ring());
        assert!(!parse("{}").is_ring());
    }
}
