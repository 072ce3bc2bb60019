//! A configurable HTTP call, for lock clouds and anything else with an "unlock" endpoint.
//! In the URL and the body, `{seconds}` stands for how long the door should stay open.

use std::collections::BTreeMap;

use futures::future::BoxFuture;

use crate::{Driver, DriverError, Opening, refused, unreachable};

pub(crate) struct HttpCall {
    pub client: reqwest::Client,
    pub url: String,
    pub method: String,
    pub headers: BTreeMap<String, String>,
    pub body: Option<serde_json::Value>,
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
            if !response.status().is_success() {
                return Err(refused(response).await);
            }
            Ok(Opening { confirmed: true })
        })
    }
}
