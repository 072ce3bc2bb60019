//! Door drivers: the one thing lintel does to the physical world. A driver is asked to
//! open for some seconds and says whether the device confirmed; it never decides.

mod http;
pub mod mqtt;
pub mod osdp;
mod shelly;
mod shelly_cloud;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use lintel_proto::DriverConfig;

/// What the device said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opening {
    /// The device acknowledged the command (a relay reported its state, an API a 2xx).
    pub confirmed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("device unreachable: {0}")]
    Unreachable(String),
    #[error("device answered HTTP {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("device answered something unexpected: {0}")]
    BadAnswer(String),
    #[error("driver misconfigured: {0}")]
    Config(String),
}

pub trait Driver: Send + Sync {
    fn kind(&self) -> &'static str;
    fn open(&self, seconds: u32) -> BoxFuture<'_, Result<Opening, DriverError>>;
    /// Holds the lock released until told otherwise (`on`), or ends the hold: a door's
    /// unlock schedule, an operator's hold, an emergency release.
    fn hold(&self, on: bool) -> BoxFuture<'_, Result<Opening, DriverError>>;
}

/// Whether a driver of this kind can hold a door unlocked (an HTTP call is a pulse).
pub fn can_hold(config: &DriverConfig) -> bool {
    !matches!(config, DriverConfig::Http { .. })
}

/// Records only: there is nothing to switch.
struct NoDriver;

impl Driver for NoDriver {
    fn kind(&self) -> &'static str {
        "none"
    }

    fn open(&self, _seconds: u32) -> BoxFuture<'_, Result<Opening, DriverError>> {
        Box::pin(async { Ok(Opening { confirmed: false }) })
    }

    fn hold(&self, _on: bool) -> BoxFuture<'_, Result<Opening, DriverError>> {
        Box::pin(async { Ok(Opening { confirmed: false }) })
    }
}

/// An HTTP client fit for devices on the local network: short timeouts, no redirects
/// (a relay has no business sending lintel elsewhere).
pub fn device_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(8))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client with these settings always builds")
}

/// The connections drivers use: an HTTP client for relays and clouds, and the MQTT link
/// to door controllers when `[mqtt]` is configured.
#[derive(Clone)]
pub struct Links {
    pub http: reqwest::Client,
    pub mqtt: Option<Arc<mqtt::MqttSlot>>,
}

impl Links {
    /// The devices attached to this node now (see [`attached_device`]).
    pub fn devices_here(&self) -> Vec<String> {
        let mqtt = self.drives(MQTT_DEVICE).then(|| MQTT_DEVICE.to_owned());
        mqtt.into_iter().chain(osdp::polled().into_iter().map(|reader| format!("osdp:{reader}"))).collect()
    }

    /// Whether this node can drive `device` (see [`attached_device`]) now.
    pub fn drives(&self, device: &str) -> bool {
        match device.split_once(':') {
            None if device == MQTT_DEVICE => self.mqtt.as_ref().is_some_and(|slot| slot.current().is_some()),
            Some(("osdp", reader)) => osdp::polls(reader),
            _ => false,
        }
    }
}

const MQTT_DEVICE: &str = "mqtt";

/// The device a door's driver reaches through one node only, by name: the MQTT link
/// (`mqtt`, held by one node at a time) or an OSDP reader (`osdp:<reader>`, on the node
/// whose serial port it hangs off). `None` for drivers any node can use (HTTP devices).
pub fn attached_device(config: &DriverConfig) -> Option<String> {
    match config {
        DriverConfig::Mqtt { .. } => Some(MQTT_DEVICE.to_owned()),
        DriverConfig::Osdp { reader, .. } => Some(format!("osdp:{reader}")),
        _ => None,
    }
}

pub fn driver_for(config: &DriverConfig, door: &str, links: &Links) -> Arc<dyn Driver> {
    let client = &links.http;
    match config {
        DriverConfig::None {} => Arc::new(NoDriver),
        DriverConfig::Shelly { url, generation, channel, username, password } => Arc::new(shelly::Shelly {
            client: client.clone(),
            base: url.trim_end_matches('/').to_owned(),
            generation: *generation,
            channel: *channel,
            username: username.clone(),
            password: password.clone(),
        }),
        DriverConfig::Http { url, method, headers, body, success } => Arc::new(http::HttpCall {
            client: client.clone(),
            url: url.clone(),
            method: method.clone(),
            headers: headers.clone(),
            body: body.clone(),
            success: success.clone(),
        }),
        DriverConfig::ShellyCloud { server, auth_key, device_id, channel } => Arc::new(shelly_cloud::ShellyCloud {
            client: client.clone(),
            server: server.trim_end_matches('/').to_owned(),
            auth_key: auth_key.clone(),
            device_id: device_id.clone(),
            channel: *channel,
        }),
        DriverConfig::Mqtt { controller, .. } => {
            Arc::new(mqtt::MqttDoor { link: links.mqtt.clone(), controller: controller.clone(), door: door.to_owned() })
        }
        DriverConfig::Osdp { reader, output } => {
            Arc::new(osdp::OutputDriver { reader: reader.clone(), output: *output })
        }
    }
}

/// Checks a driver configuration before it is stored.
pub fn validate(config: &DriverConfig) -> Result<(), DriverError> {
    let check_url = |url: &str| {
        let parsed = reqwest::Url::parse(url).map_err(|e| DriverError::Config(format!("url {url:?}: {e}")))?;
        match parsed.scheme() {
            "http" | "https" => Ok(()),
            other => Err(DriverError::Config(format!("url scheme {other:?}: use http or https"))),
        }
    };
    match config {
        DriverConfig::None {} => Ok(()),
        DriverConfig::Shelly { url, generation, .. } => {
            check_url(url)?;
            if !matches!(generation, 1 | 2) {
                return Err(DriverError::Config("shelly generation is 1 (relay/N) or 2 (RPC, also Gen3/Gen4)".into()));
            }
            Ok(())
        }
        DriverConfig::Http { url, method, headers, success, .. } => {
            check_url(url)?;
            if let Some(rule) = success {
                if rule.status.as_ref().is_some_and(|s| s.is_empty() || s.iter().any(|c| !(100..=599).contains(c))) {
                    return Err(DriverError::Config("success.status: a list of HTTP status codes".into()));
                }
                if rule.field.as_ref().is_some_and(|f| !(f.is_empty() || f.starts_with('/')) || f.len() > 200) {
                    return Err(DriverError::Config("success.field: a JSON Pointer such as /result/ok".into()));
                }
                if rule.value.is_some() && rule.field.is_none() {
                    return Err(DriverError::Config("success.value needs success.field".into()));
                }
            }
            reqwest::Method::from_bytes(method.as_bytes())
                .map_err(|_| DriverError::Config(format!("method {method:?}")))?;
            for (name, value) in headers {
                reqwest::header::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| DriverError::Config(format!("header name {name:?}")))?;
                reqwest::header::HeaderValue::from_str(value)
                    .map_err(|_| DriverError::Config(format!("header {name:?} has an invalid value")))?;
            }
            Ok(())
        }
        DriverConfig::ShellyCloud { server, auth_key, device_id, .. } => {
            check_url(server)?;
            if auth_key.trim().is_empty() || auth_key.len() > 512 {
                return Err(DriverError::Config("shelly_cloud auth_key: the key from the app's user settings".into()));
            }
            if device_id.is_empty() || device_id.len() > 64 || !device_id.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(DriverError::Config("shelly_cloud device_id: the device's id (hex digits)".into()));
            }
            Ok(())
        }
        DriverConfig::Mqtt { controller, offline_max_age } => {
            if !lintel_proto::controller::valid_id(controller) {
                return Err(DriverError::Config(format!("controller {controller:?}: 1 to 64 of A-Z a-z 0-9 . _ -")));
            }
            if !(60..=30 * 86_400).contains(offline_max_age) {
                return Err(DriverError::Config("offline_max_age is 60 s to 30 days (2592000)".into()));
            }
            Ok(())
        }
        DriverConfig::Osdp { reader, .. } => {
            if reader.trim().is_empty() || reader.len() > 100 {
                return Err(DriverError::Config("osdp reader: the name of one of the [[osdp.readers]]".into()));
            }
            Ok(())
        }
    }
}

fn unreachable(e: reqwest::Error) -> DriverError {
    // Only the kind of failure: URLs may carry credentials, and errors end up in events.
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    DriverError::Unreachable(what.into())
}

async fn refused(response: reqwest::Response) -> DriverError {
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    DriverError::Refused { status, body: body.chars().take(200).collect() }
}
