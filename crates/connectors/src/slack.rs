//! Slack: request signatures (`X-Slack-Signature: v0=<hex HMAC-SHA256(secret,
//! "v0:" + timestamp + ":" + body)>`, at most 5 minutes old) and the few Web API
//! methods lintel needs.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Slack's own tolerance for a request's age.
pub const MAX_AGE_SECONDS: i64 = 300;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("the request has no X-Slack-Request-Timestamp or X-Slack-Signature")]
    Missing,
    #[error("the timestamp is not a number of seconds")]
    BadTimestamp,
    #[error("the request is more than 5 minutes old (or from the future)")]
    Stale,
    #[error("the signature does not match")]
    Mismatch,
}

fn expected(secret: &str, timestamp: &str, body: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// The `X-Slack-Signature` value for a body (what Slack sends; tests sign with it).
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    format!("v0={}", hex::encode(expected(secret, timestamp, body)))
}

/// A request that verified: its MAC (its identity, for a replay cache) and the second
/// after which its timestamp is too old to be accepted again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub mac: [u8; 32],
    pub acceptable_until: i64,
}

/// Checks a request from Slack. Only the exact form Slack sends is taken (`v0=` and 64 lower-case hex digits):
/// a MAC has one spelling, so a replay cannot pass as new by re-casing its hex. The whole
/// decoded MAC is compared in constant time: an empty or truncated signature never matches.
pub fn verify(
    secret: &str,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<Verified, SignatureError> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else { return Err(SignatureError::Missing) };
    let sent: i64 = timestamp.trim().parse().map_err(|_| SignatureError::BadTimestamp)?;
    if (now - sent).abs() > MAX_AGE_SECONDS {
        return Err(SignatureError::Stale);
    }
    let given = signature
        .strip_prefix("v0=")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .and_then(|h| <[u8; 32]>::try_from(hex::decode(h).ok()?).ok())
        .ok_or(SignatureError::Mismatch)?;
    let want = expected(secret, timestamp.trim(), body);
    if !bool::from(given.ct_eq(&want)) {
        return Err(SignatureError::Mismatch);
    }
    Ok(Verified { mac: given, acceptable_until: sent + MAX_AGE_SECONDS })
}

/// A workspace member, as `users.info` and `users.list` describe one.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct User {
    pub id: String,
    #[serde(default)]
    pub deleted: bool,
    #[serde(default)]
    pub is_bot: bool,
    /// A multi-channel guest.
    #[serde(default)]
    pub is_restricted: bool,
    /// A single-channel guest.
    #[serde(default)]
    pub is_ultra_restricted: bool,
    #[serde(default)]
    pub real_name: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub profile: Profile,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Profile {
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub real_name: Option<String>,
}

impl User {
    pub fn is_guest(&self) -> bool {
        self.is_restricted || self.is_ultra_restricted
    }

    pub fn display_name(&self) -> String {
        [self.real_name.as_deref(), self.profile.real_name.as_deref(), self.name.as_deref()]
            .into_iter()
            .flatten()
            .find(|n| !n.trim().is_empty())
            .unwrap_or(&self.id)
            .to_owned()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("Slack is unreachable: {0}")]
    Unreachable(String),
    #[error("Slack answered {0}")]
    Refused(String),
}

/// A Slack Web API client with the bot token.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

#[derive(Deserialize)]
struct Envelope<T> {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(flatten)]
    body: Option<T>,
}

#[derive(Deserialize)]
struct UserInfo {
    user: User,
}

#[derive(Deserialize)]
struct UserList {
    members: Vec<User>,
    #[serde(default)]
    response_metadata: Option<Metadata>,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct Posted {
    channel: String,
    ts: String,
}

/// Where a posted message is: what `chat.update` needs to change it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRef {
    pub channel: String,
    pub ts: String,
}

fn unreachable(e: reqwest::Error) -> ApiError {
    // The error's text may hold the URL (a response_url is a capability): keep it out.
    ApiError::Unreachable(if e.is_timeout() { "timed out".into() } else { "request failed".into() })
}

impl Client {
    /// `base` is `https://slack.com/api` in production; tests point it at a fake.
    pub fn new(base: &str, token: &str) -> Self {
        // Callers that must answer Slack within 3 seconds wait less than this and carry
        // on through the response_url.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client with these settings always builds");
        Self { http, base: base.trim_end_matches('/').to_owned(), token: token.to_owned() }
    }

    async fn call<T: serde::de::DeserializeOwned>(&self, method: &str, query: &[(&str, &str)]) -> Result<T, ApiError> {
        let request = self.http.get(format!("{}/{method}", self.base)).query(query);
        self.send(request).await
    }

    /// Methods that take a JSON body (`chat.postMessage`, `chat.update`).
    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        body: &serde_json::Value,
    ) -> Result<T, ApiError> {
        self.send(self.http.post(format!("{}/{method}", self.base)).json(body)).await
    }

    async fn send<T: serde::de::DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T, ApiError> {
        let response = request.bearer_auth(&self.token).send().await.map_err(unreachable)?;
        let envelope: Envelope<T> =
            response.json().await.map_err(|e| ApiError::Refused(format!("something unreadable: {e}")))?;
        match (envelope.ok, envelope.body) {
            (true, Some(body)) => Ok(body),
            _ => Err(ApiError::Refused(envelope.error.unwrap_or_else(|| "not ok".into()))),
        }
    }

    pub async fn user(&self, id: &str) -> Result<User, ApiError> {
        Ok(self.call::<UserInfo>("users.info", &[("user", id)]).await?.user)
    }

    /// Posts a message with Block Kit `blocks` (`text` is the notification's fallback).
    pub async fn post_message(
        &self,
        channel: &str,
        text: &str,
        blocks: &serde_json::Value,
    ) -> Result<MessageRef, ApiError> {
        let body = serde_json::json!({"channel": channel, "text": text, "blocks": blocks});
        let posted: Posted = self.post("chat.postMessage", &body).await?;
        Ok(MessageRef { channel: posted.channel, ts: posted.ts })
    }

    /// Replaces a message lintel posted.
    pub async fn update_message(
        &self,
        message: &MessageRef,
        text: &str,
        blocks: &serde_json::Value,
    ) -> Result<(), ApiError> {
        let body = serde_json::json!({"channel": message.channel, "ts": message.ts, "text": text, "blocks": blocks});
        self.post::<serde_json::Value>("chat.update", &body).await.map(drop)
    }

    /// Answers through a `response_url` (no token: the URL is the capability). The caller
    /// checks that the URL is Slack's before handing it here.
    pub async fn respond(&self, response_url: &str, message: &serde_json::Value) -> Result<(), ApiError> {
        let response = self.http.post(response_url).json(message).send().await.map_err(unreachable)?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(ApiError::Refused(format!("HTTP {}", response.status().as_u16())))
        }
    }

    /// Every member of the workspace, following the cursor.
    pub async fn users(&self) -> Result<Vec<User>, ApiError> {
        let mut all = Vec::new();
        let mut cursor = String::new();
        loop {
            let page: UserList = self.call("users.list", &[("limit", "200"), ("cursor", &cursor)]).await?;
            all.extend(page.members);
            match page.response_metadata.and_then(|m| m.next_cursor).filter(|c| !c.is_empty()) {
                Some(next) => cursor = next,
                None => return Ok(all),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

    #[test]
    fn slacks_documented_example_verifies() {
        // From Slack's documentation of request signing.
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let sig = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        assert_eq!(sign(SECRET, "1531420618", body), sig);
        assert!(verify(SECRET, Some("1531420618"), Some(sig), body, 1531420618 + 10).is_ok());
    }

    #[test]
    fn bad_signatures_are_refused() {
        let body = b"a=b";
        let ts = "1700000000";
        let now = 1_700_000_000;
        let good = sign(SECRET, ts, body);
        let verified = verify(SECRET, Some(ts), Some(&good), body, now).unwrap();
        assert_eq!(format!("v0={}", hex::encode(verified.mac)), good, "the MAC is the request's identity");
        assert_eq!(verified.acceptable_until, now + MAX_AGE_SECONDS);
        let upper = format!("v0={}", good[3..].to_ascii_uppercase());
        let spaced = format!("{good} ");
        let long = format!("{good}00");
        for bad in [
            "",
            "v0=",
            "v0=00",
            &good[..good.len() - 2],
            &good.replace("v0=", "v1="),
            &good.replace("v0=", "V0="),
            &upper,
            &spaced,
            &long,
            &sign("other", ts, body),
        ] {
            assert_eq!(verify(SECRET, Some(ts), Some(bad), body, now), Err(SignatureError::Mismatch), "{bad:?}");
        }
        assert_eq!(verify(SECRET, Some(ts), Some(&good), b"a=c", now), Err(SignatureError::Mismatch));
        assert_eq!(verify(SECRET, Some(ts), Some(&good), body, now + 301), Err(SignatureError::Stale));
        assert_eq!(verify(SECRET, Some(ts), Some(&good), body, now - 301), Err(SignatureError::Stale));
        assert_eq!(verify(SECRET, Some("soon"), Some(&good), body, now), Err(SignatureError::BadTimestamp));
        assert_eq!(verify(SECRET, None, Some(&good), body, now), Err(SignatureError::Missing));
    }
}
