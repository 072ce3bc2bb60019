//! Outbound webhooks as Standard Webhooks define them: the body `{"type", "timestamp",
//! "data"}`, signed with HMAC-SHA256 over `id.timestamp.body` under a `whsec_` key, sent
//! with the `webhook-id`, `webhook-timestamp` and `webhook-signature` headers.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The prefix of a signing secret; what follows is the base64 of the key.
pub const SECRET_PREFIX: &str = "whsec_";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error("a webhook secret is `whsec_` and the base64 of its key")]
    BadSecret,
}

/// A new secret: `whsec_` and 24 random bytes in base64 (the size the standard's
/// libraries make).
pub fn new_secret(random: [u8; 24]) -> String {
    format!("{SECRET_PREFIX}{}", STANDARD.encode(random))
}

/// `v1,<base64 signature>` of one message under one secret.
pub fn sign(secret: &str, message_id: &str, timestamp: i64, body: &str) -> Result<String, WebhookError> {
    let key = secret.strip_prefix(SECRET_PREFIX).ok_or(WebhookError::BadSecret)?;
    let key = STANDARD.decode(key).map_err(|_| WebhookError::BadSecret)?;
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).expect("HMAC takes keys of any length");
    mac.update(format!("{message_id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    Ok(format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes())))
}

/// What one attempt got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// None when no answer came (refused, timed out).
    pub status: Option<u16>,
    pub took: Duration,
    /// The start of the answer's body, or why there was none.
    pub excerpt: Option<String>,
}

/// How much of an answer is kept.
const EXCERPT_CHARS: usize = 200;

/// Sends signed messages; never follows redirects (a 3xx is an answer like any other).
#[derive(Clone)]
pub struct Sender {
    http: reqwest::Client,
}

impl Default for Sender {
    fn default() -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client with these settings builds");
        Self { http }
    }
}

impl Sender {
    /// POSTs `body` to `url`, signed with every secret in `secrets` (two during a
    /// rotation), with the time `timestamp` (Unix seconds).
    pub async fn send(
        &self,
        url: &str,
        secrets: &[&str],
        message_id: &str,
        timestamp: i64,
        body: String,
    ) -> Result<Answer, WebhookError> {
        let signatures =
            secrets.iter().map(|s| sign(s, message_id, timestamp, &body)).collect::<Result<Vec<_>, _>>()?.join(" ");
        let started = Instant::now();
        let sent = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", message_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signatures)
            .body(body)
            .send()
            .await;
        Ok(match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                let text = response.text().await.unwrap_or_default();
                let excerpt: String = text.chars().take(EXCERPT_CHARS).collect();
                Answer {
                    status: Some(status),
                    took: started.elapsed(),
                    excerpt: Some(excerpt).filter(|e| !e.is_empty()),
                }
            }
            Err(e) => {
                let why = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "connection failed"
                } else {
                    "request failed"
                };
                Answer { status: None, took: started.elapsed(), excerpt: Some(why.to_owned()) }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_the_standard() {
        // The example of the Standard Webhooks specification.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = r#"{"test": 2432232314}"#;
        let signature = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert_eq!(sign("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "m", 1, body), Err(WebhookError::BadSecret));
        assert_eq!(sign("whsec_not base64!", "m", 1, body), Err(WebhookError::BadSecret));
    }

    #[test]
    fn new_secrets_are_whsec_and_base64() {
        let secret = new_secret([7; 24]);
        assert!(secret.starts_with(SECRET_PREFIX));
        assert_eq!(STANDARD.decode(&secret[SECRET_PREFIX.len()..]).unwrap(), [7; 24]);
    }
}
