//! A configurable HTTP call, for lock clouds and anything else with an "unlock" endpoint.
//! In the URL and the body, `{seconds}` stands for how long the door should stay open.

use std::collections::BTreeMap;

use futures::future::BoxFuture;

use lintel_proto::SuccessRule;

use crate::{Driver, DriverError, Opening, refused, unreachable};

pub(crate) struct HttpCall {
    pub client: reqwest::Client,
    pub url: String,
    pub method: String,
    pub headers: BTreeMap<String, String>,
    pub body: Option<serde_json::Value>,
    pub success: Option<SuccessRule>,
}

impl Driver for HttpCall {
    fn kind(&self) -> &'static str {
        "http"
    }

    fn open(&self, seconds: u32) -> BoxFuture<'_, Result<Opening, DriverError>> {
        Box::pin(async move {
            let method = reqwest::Method::from_bytes(self.method.as_bytes())
                .map_err(|_| DriverError::Config(format!("method {:?}", self.method)))?;
            let url = self.url.replace("{seconds}", &seconds.to_string());
            let mut request = self.client.request(method, url);
            for (name, value) in &self.headers {
                request = request.header(name, value);
            }
            if let Some(body) = &self.body {
                let text = body.to_string().replace("{seconds}", &seconds.to_string());
                request = request.header("content-type", "application/json").body(text);
            }
            let response = request.send().await.map_err(unreachable)?;
            let Some(rule) = &self.success else {
                if !response.status().is_success() {
                    return Err(refused(response).await);
                }
                return Ok(Opening { confirmed: true });
            };
            let status = response.status().as_u16();
            let status_ok = match &rule.status {
                Some(statuses) => statuses.contains(&status),
                None => response.status().is_success(),
            };
            if !status_ok {
                return Err(refused(response).await);
            }
            if let Some(field) = &rule.field {
                // A 200 that carries an error is no opening.
                let text = response.text().await.map_err(unreachable)?;
                let body: serde_json::Value = serde_json::from_str(&text).map_err(|_| {
                    DriverError::BadAnswer(format!("not JSON: {}", text.chars().take(200).collect::<String>()))
                })?;
                let found = body.pointer(field);
                let matches = match &rule.value {
                    Some(value) => found == Some(value),
                    None => found.is_some_and(|v| !v.is_null()),
                };
                if !matches {
                    return Err(DriverError::Refused { status, body: text.chars().take(200).collect() });
                }
            }
            Ok(Opening { confirmed: true })
        })
    }

    fn hold(&self, _on: bool) -> BoxFuture<'_, Result<Opening, DriverError>> {
        Box::pin(async { Err(DriverError::Config("an http driver makes one call and cannot hold a door".into())) })
    }
}
