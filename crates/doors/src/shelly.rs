//! Shelly relays. Gen2+ speak JSON-RPC (`Switch.Set`, with `toggle_after` for an opening,
//! without it for a hold) and protect it
//! with HTTP digest auth (SHA-256, user `admin`); Gen1 take `relay/N?turn=on&timer=S`
//! (`turn=on|off` alone to hold)
//! with basic auth.

use futures::future::BoxFuture;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, WWW_AUTHENTICATE};

use crate::{Driver, DriverError, Opening, refused, unreachable};

pub(crate) struct Shelly {
    pub client: reqwest::Client,
    pub base: String,
    pub generation: u8,
    pub channel: u8,
    pub username: Option<String>,
    pub password: Option<String>,
}

#[derive(serde::Deserialize)]
struct Gen1Answer {
    ison: bool,
}

impl Shelly {
    /// Switches the relay (`on`), back after `seconds` when given.
    async fn switch(&self, on: bool, seconds: Option<u32>) -> Result<Opening, DriverError> {
        match self.generation {
            1 => self.switch_gen1(on, seconds).await,
            _ => self.switch_gen2(on, seconds).await,
        }
    }

    async fn switch_gen2(&self, on: bool, seconds: Option<u32>) -> Result<Opening, DriverError> {
        let path = "/rpc/Switch.Set";
        let mut body = serde_json::json!({"id": self.channel, "on": on});
        if let Some(seconds) = seconds {
            body["toggle_after"] = seconds.into();
        }
        let body = body.to_string();
        let send = |auth: Option<String>| {
            let mut request = self
                .client
                .post(format!("{}{path}", self.base))
                .header("content-type", "application/json")
                .body(body.clone());
            if let Some(auth) = auth {
                request = request.header(AUTHORIZATION, auth);
            }
            request.send()
        };
        let mut response = send(None).await.map_err(unreachable)?;
        if response.status() == StatusCode::UNAUTHORIZED {
            let Some(password) = &self.password else {
                return Err(DriverError::Config("the relay asks for a password and none is configured".into()));
            };
            let challenge = response
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| DriverError::BadAnswer("401 without a digest challenge".into()))?
                .to_owned();
            let mut prompt =
                digest_auth::parse(&challenge).map_err(|e| DriverError::BadAnswer(format!("digest challenge: {e}")))?;
            let user = self.username.as_deref().unwrap_or("admin");
            let context = digest_auth::AuthContext::new_post(user, password, path, Some(body.as_bytes()));
            let answer = prompt.respond(&context).map_err(|e| DriverError::BadAnswer(format!("digest: {e}")))?;
            response = send(Some(answer.to_header_string())).await.map_err(unreachable)?;
        }
        if !response.status().is_success() {
            return Err(refused(response).await);
        }
        // `{"was_on": false}`: the relay reports its previous state, so it switched.
        let answer: serde_json::Value = response.json().await.map_err(|e| DriverError::BadAnswer(e.to_string()))?;
        Ok(Opening { confirmed: answer.get("was_on").is_some_and(|v| v.is_boolean()) })
    }

    async fn switch_gen1(&self, on: bool, seconds: Option<u32>) -> Result<Opening, DriverError> {
        let mut request = self
            .client
            .get(format!("{}/relay/{}", self.base, self.channel))
            .query(&[("turn", if on { "on" } else { "off" })]);
        if let Some(seconds) = seconds {
            request = request.query(&[("timer", seconds)]);
        }
        if let Some(user) = &self.username {
            request = request.basic_auth(user, self.password.as_deref());
        }
        let response = request.send().await.map_err(unreachable)?;
        if !response.status().is_success() {
            return Err(refused(response).await);
        }
        let answer: Gen1Answer = response.json().await.map_err(|e| DriverError::BadAnswer(e.to_string()))?;
        Ok(Opening { confirmed: answer.ison == on })
    }
}

impl Driver for Shelly {
    fn kind(&self) -> &'static str {
        "shelly"
    }

    fn open(&self, seconds: u32) -> BoxFuture<'_, Result<Opening, DriverError>> {
        Box::pin(self.switch(true, Some(seconds)))
    }

    /// On without `toggle_after` (or a Gen1 timer): held until switched off.
    fn hold(&self, on: bool) -> BoxFuture<'_, Result<Opening, DriverError>> {
        Box::pin(self.switch(on, None))
    }
}
