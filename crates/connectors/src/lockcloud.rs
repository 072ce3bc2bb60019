//! A lock vendor's cloud (SmartLock-style) for doors that live there: lintel registers
//! people with it (by email), deactivates them, and creates and deletes temporary access
//! groups for bookings. The token goes in a header whose name the vendor chooses.
//!
//! The calls lintel makes (JSON, under the configured base URL):
//! - `PUT /users/{id}` `{"email", "name", "active"}`: create or update a user;
//! - `PUT /access-groups/{id}` `{"name", "locks": [..], "users": [..], "starts_at", "ends_at"}`;
//! - `DELETE /access-groups/{id}` (a 404 counts as done).
//!
//! The cloud calls lintel back with `{"id", "event": "lock.opened", "lock_id", "user_id", "at"}`.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    #[error("the lock cloud is unreachable: {0}")]
    Unreachable(String),
    #[error("the lock cloud answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("the lock cloud is misconfigured: {0}")]
    Config(String),
}

impl CloudError {
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable(_) => true,
            Self::Status { status, .. } => *status == 429 || *status >= 500,
            Self::Config(_) => false,
        }
    }
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    header: reqwest::header::HeaderName,
    token: reqwest::header::HeaderValue,
}

impl Client {
    pub fn new(base: &str, token_header: &str, token: &str) -> Result<Self, CloudError> {
        let parsed = reqwest::Url::parse(base).map_err(|e| CloudError::Config(format!("base_url: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(CloudError::Config("base_url must be http(s)".into()));
        }
        let header = reqwest::header::HeaderName::from_bytes(token_header.as_bytes())
            .map_err(|_| CloudError::Config(format!("token_header {token_header:?} is not a header name")))?;
        let mut token = reqwest::header::HeaderValue::from_str(token)
            .map_err(|_| CloudError::Config("the token is not a valid header value".into()))?;
        token.set_sensitive(true);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client with these settings always builds");
        Ok(Self { http, base: base.trim_end_matches('/').to_owned(), header, token })
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<(), CloudError> {
        let mut request = self.http.request(method.clone(), format!("{}{path}", self.base));
        request = request.header(self.header.clone(), self.token.clone());
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| {
            CloudError::Unreachable(if e.is_timeout() { "timed out".into() } else { "request failed".into() })
        })?;
        let status = response.status();
        if status.is_success() || (method == reqwest::Method::DELETE && status.as_u16() == 404) {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default().chars().filter(|c| !c.is_control()).take(200).collect();
        Err(CloudError::Status { status: status.as_u16(), body })
    }

    pub async fn put_user(&self, id: &str, email: &str, name: &str, active: bool) -> Result<(), CloudError> {
        let body = json!({"email": email, "name": name, "active": active});
        self.send(reqwest::Method::PUT, &format!("/users/{id}"), Some(&body)).await
    }

    pub async fn put_group(&self, id: &str, group: &Value) -> Result<(), CloudError> {
        self.send(reqwest::Method::PUT, &format!("/access-groups/{id}"), Some(group)).await
    }

    pub async fn delete_group(&self, id: &str) -> Result<(), CloudError> {
        self.send(reqwest::Method::DELETE, &format!("/access-groups/{id}"), None).await
    }
}

/// The cloud's webhook: a lock was opened.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct LockEvent {
    pub id: String,
    pub event: String,
    pub lock_id: String,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub at: Option<chrono::DateTime<chrono::Utc>>,
}
