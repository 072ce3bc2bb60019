//! Shelly relays reached through Shelly Cloud's Control API: `POST
//! {server}/device/relay/control` with the form `id`, `auth_key`, `channel`, `turn=on`,
//! `timer`; the answer is `{"isok": true, "data": ...}` or `{"isok": false, "errors": ...}`.
//! The cloud allows about one call per second per account, so calls to one account are
//! spaced at least that far apart (per node: the cloud refuses the rest, which counts as a
//! failed opening).

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::time::Instant;

use crate::{Driver, DriverError, Opening, refused, unreachable};

pub(crate) struct ShellyCloud {
    pub client: reqwest::Client,
    pub server: String,
    pub auth_key: String,
    pub device_id: String,
    pub channel: u8,
}

const SPACING: Duration = Duration::from_millis(1000);

/// When each account (server and key) may be called next.
static NEXT_CALL: LazyLock<Mutex<HashMap<(String, String), Instant>>> = LazyLock::new(Default::default);

#[derive(serde::Deserialize)]
struct Answer {
    isok: bool,
    #[serde(default)]
    errors: Option<serde_json::Value>,
}

impl ShellyCloud {
    /// Waits for this account's turn, keeping the call after it one spacing later.
    async fn turn(&self) {
        let account = (self.server.clone(), self.auth_key.clone());
        let at = {
            let mut next = NEXT_CALL.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            let at = next.get(&account).copied().filter(|t| *t > now).unwrap_or(now);
            next.insert(account, at + SPACING);
            at
        };
        tokio::time::sleep_until(at).await;
    }

    /// `relay/control`: the relay `on` or off, back after `seconds` when given.
    async fn switch(&self, on: bool, seconds: Option<u32>) -> Result<Opening, DriverError> {
        self.turn().await;
        let channel = self.channel.to_string();
        let mut encoded = reqwest::Url::parse("http://form.invalid/").expect("a fixed URL");
        encoded.query_pairs_mut().extend_pairs([
            ("id", self.device_id.as_str()),
            ("auth_key", self.auth_key.as_str()),
            ("channel", channel.as_str()),
            ("turn", if on { "on" } else { "off" }),
        ]);
        if let Some(seconds) = seconds {
            encoded.query_pairs_mut().append_pair("timer", &seconds.to_string());
        }
        let response = self
            .client
            .post(format!("{}/device/relay/control", self.server))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encoded.query().unwrap_or_default().to_owned())
            .send()
            .await
            .map_err(unreachable)?;
        if !response.status().is_success() {
            return Err(refused(response).await);
        }
        let text = response.text().await.map_err(unreachable)?;
        let answer: Answer = serde_json::from_str(&text).map_err(|_| {
            DriverError::BadAnswer(format!("not a cloud answer: {}", text.chars().take(200).collect::<String>()))
        })?;
        if !answer.isok {
            let errors = answer.errors.map(|e| e.to_string()).unwrap_or_default();
            return Err(DriverError::Refused {
                status: 200,
                body: format!("isok false: {}", errors.chars().take(200).collect::<String>()),
            });
        }
        Ok(Opening { confirmed: true })
    }
}

impl Driver for ShellyCloud {
    fn kind(&self) -> &'static str {
        "shelly_cloud"
    }

    fn open(&self, seconds: u32) -> BoxFuture<'_, Result<Opening, DriverError>> {
        Box::pin(self.switch(true, Some(seconds)))
    }

    fn hold(&self, on: bool) -> BoxFuture<'_, Result<Opening, DriverError>> {
        Box::pin(self.switch(on, None))
    }
}
