//! lintel's side of the MQTT link to door controllers (topics in `docs/mqtt.md`): one
//! connection to the broker, the topics it listens on, and the `mqtt` door driver, which
//! sends an `open` command and waits for the controller's acknowledgement.
//!
//! The session is persistent (clean session off) and incoming messages are acknowledged
//! to the broker only when the server says it has dealt with them, so taps and offline
//! uploads that arrive while lintel is down or busy are redelivered, not lost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use lintel_proto::controller::{Ack, Action, Command, valid_id};
use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, Publish, QoS};
use tokio::sync::{mpsc, oneshot};

use crate::{Driver, DriverError, Opening};

/// How long an `open` command waits for the controller's `ack`.
const ACK_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
pub struct MqttConfig {
    /// `mqtt://[user:password@]host[:port]`.
    pub url: String,
    pub topic_prefix: String,
    pub client_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("[mqtt] url {0:?}: use mqtt://[user:password@]host[:port]")]
    Url(String),
    #[error("[mqtt] topic_prefix {0:?}: 1 to 64 of A-Z a-z 0-9 . _ - and /, no wildcards")]
    Prefix(String),
    #[error("[mqtt] client_id {0:?}: 1 to 64 of A-Z a-z 0-9 . _ -")]
    ClientId(String),
}

/// What arrived from a controller, for the server to deal with. `publish` must be handed
/// back to [`MqttLink::done`] once its effect is durable.
#[derive(Debug)]
pub struct Delivery {
    pub controller: String,
    pub topic: Topic,
    pub payload: bytes::Bytes,
    publish: Publish,
}

/// The controller topics lintel listens on (`<prefix>/c/<controller>/<topic>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Status,
    Tap,
    ListAck,
    Upload,
    Input,
}

impl Topic {
    const ALL: [(Topic, &'static str); 5] = [
        (Topic::Status, "status"),
        (Topic::Tap, "tap"),
        (Topic::ListAck, "list/ack"),
        (Topic::Upload, "upload"),
        (Topic::Input, "input"),
    ];
}

/// The link's events for the server: deliveries, and each (re)connection to the broker
/// (after which lintel publishes the lists again, in case the broker lost them).
#[derive(Debug)]
pub enum LinkEvent {
    Connected,
    Delivery(Delivery),
}

pub struct MqttLink {
    client: AsyncClient,
    prefix: String,
    /// Commands sent, waiting for their `ack`, by command id, with the controller that
    /// must answer (another controller's ack for the id does not count).
    waiting: Mutex<HashMap<String, (String, oneshot::Sender<Ack>)>>,
    /// Set by [`MqttLink::stop`]: the connection ends instead of reconnecting.
    stopping: AtomicBool,
}

/// The MQTT link while this node has it. With several nodes on one database only one
/// connects at a time (the controllers share one persistent session, which a second
/// connection with the same client id would take over): the node holding the link's lease
/// puts its link here and takes it out when the lease goes.
#[derive(Default)]
pub struct MqttSlot(RwLock<Option<Arc<MqttLink>>>);

impl MqttSlot {
    pub fn current(&self) -> Option<Arc<MqttLink>> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub fn set(&self, link: Option<Arc<MqttLink>>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = link;
    }
}

impl MqttLink {
    /// Checks the settings without connecting.
    pub fn check(config: &MqttConfig) -> Result<(), MqttError> {
        Self::options(config).map(|_| ())
    }

    /// The client's options and the topic prefix, from checked settings.
    fn options(config: &MqttConfig) -> Result<(MqttOptions, String), MqttError> {
        let url = reqwest::Url::parse(&config.url).map_err(|_| MqttError::Url("(not a URL)".into()))?;
        // Errors name the URL without its password.
        let shown = || {
            let mut shown = url.clone();
            let _ = shown.set_password(None);
            MqttError::Url(shown.to_string())
        };
        let host = url.host_str().filter(|_| url.scheme() == "mqtt").ok_or_else(shown)?;
        let prefix = config.topic_prefix.trim_end_matches('/');
        let prefix_ok = (1..=64).contains(&prefix.len())
            && prefix.split('/').all(|part| part.is_empty() || valid_id(part))
            && !prefix.starts_with('/');
        if !prefix_ok {
            return Err(MqttError::Prefix(config.topic_prefix.clone()));
        }
        if !valid_id(&config.client_id) {
            return Err(MqttError::ClientId(config.client_id.clone()));
        }
        let mut options = MqttOptions::new(config.client_id.clone(), host, url.port().unwrap_or(1883));
        options.set_keep_alive(Duration::from_secs(10));
        options.set_clean_session(false);
        options.set_manual_acks(true);
        // Allow-lists of tens of thousands of cards are a few MB.
        options.set_max_packet_size(lintel_proto::controller::MAX_PAYLOAD * 4, 16 * 1024 * 1024);
        if !url.username().is_empty() {
            let password = url.password().unwrap_or_default();
            let decode = |s: &str| percent_decode(s);
            options.set_credentials(decode(url.username()), decode(password));
        }
        options.set_last_will(LastWill::new(
            format!("{prefix}/lintel/status"),
            r#"{"online":false}"#,
            QoS::AtLeastOnce,
            true,
        ));
        Ok((options, prefix.to_owned()))
    }

    /// Connects (and keeps reconnecting until [`MqttLink::stop`]) in a task of its own;
    /// events arrive on the receiver.
    pub fn start(config: &MqttConfig) -> Result<(Arc<Self>, mpsc::Receiver<LinkEvent>), MqttError> {
        let (options, prefix) = Self::options(config)?;
        let (client, mut eventloop) = AsyncClient::new(options, 256);
        // Small messages that someone at a door waits for: no Nagle delay (with the
        // peer's delayed ACKs it added about 40 ms per hop).
        let mut network = eventloop.network_options();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        let link = Arc::new(Self { client, prefix, waiting: Mutex::default(), stopping: AtomicBool::new(false) });
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(run(link.clone(), eventloop, tx));
        Ok((link, rx))
    }

    fn topic(&self, controller: &str, name: &str) -> String {
        format!("{}/c/{controller}/{name}", self.prefix)
    }

    /// Publishes with QoS 1; `retain` for what a controller must find when it connects.
    pub async fn publish(
        &self,
        controller: &str,
        name: &str,
        payload: Vec<u8>,
        retain: bool,
    ) -> Result<(), DriverError> {
        self.client
            .publish(self.topic(controller, name), QoS::AtLeastOnce, retain, payload)
            .await
            .map_err(|e| DriverError::Unreachable(format!("MQTT: {e}")))
    }

    /// Tells the controllers that lintel answers taps now (retained; the Last Will says
    /// the opposite when the connection drops). The server calls it once it is ready to
    /// answer, after each (re)connection: earlier, taps would wait for nothing.
    pub async fn announce_online(&self) {
        let topic = format!("{}/lintel/status", self.prefix);
        if let Err(e) = self.client.publish(topic, QoS::AtLeastOnce, true, r#"{"online":true}"#).await {
            tracing::warn!(error = %e, "MQTT: could not announce lintel online");
        }
    }

    /// Ends the connection for good: lintel is announced offline (retained, as the Last
    /// Will would) and the broker keeps the session, with what was not acknowledged, for
    /// the next connection. Never waits: a broker that is down gets nothing.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        let topic = format!("{}/lintel/status", self.prefix);
        let _ = self.client.try_publish(topic, QoS::AtLeastOnce, true, r#"{"online":false}"#);
        let _ = self.client.try_disconnect();
    }

    /// Tells the broker a delivery was dealt with; until then it would deliver it again.
    pub async fn done(&self, delivery: Delivery) {
        if let Err(e) = self.client.ack(&delivery.publish).await {
            tracing::warn!(error = %e, "MQTT: could not acknowledge a message");
        }
    }

    /// Sends a command and waits for the controller's `ack`.
    pub async fn command(&self, controller: &str, door: &str, action: Action) -> Result<Ack, DriverError> {
        let id = format!("cmd-{}", random_id());
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner).insert(id.clone(), (controller.to_owned(), tx));
        let command = Command { id: id.clone(), door: door.to_owned(), action };
        let payload = serde_json::to_vec(&command).expect("a command always serializes");
        let sent = self.publish(controller, "command", payload, false).await;
        let outcome = match sent {
            Ok(()) => tokio::time::timeout(ACK_TIMEOUT, rx)
                .await
                .map_err(|_| DriverError::Unreachable("the controller did not acknowledge the command".into()))
                .and_then(|r| r.map_err(|_| DriverError::Unreachable("the MQTT link stopped".into()))),
            Err(e) => Err(e),
        };
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
        outcome
    }

    fn acknowledged(&self, controller: &str, ack: Ack) {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        if waiting.get(&ack.id).is_some_and(|(from, _)| from == controller)
            && let Some((_, tx)) = waiting.remove(&ack.id)
        {
            let _ = tx.send(ack);
        }
    }

    /// `(controller, topic)` of an incoming topic name, if it is one of ours.
    fn parse_topic<'a>(&self, name: &'a str) -> Option<(&'a str, Option<Topic>)> {
        let rest = name.strip_prefix(&self.prefix)?.strip_prefix("/c/")?;
        let (controller, what) = rest.split_once('/')?;
        if !valid_id(controller) {
            return None;
        }
        if what == "ack" {
            return Some((controller, None));
        }
        Topic::ALL.iter().find(|(_, n)| *n == what).map(|(t, _)| (controller, Some(*t)))
    }
}

async fn run(link: Arc<MqttLink>, mut eventloop: EventLoop, tx: mpsc::Sender<LinkEvent>) {
    let mut failures = 0u32;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                failures = 0;
                tracing::info!("MQTT: connected to the broker");
                for name in ["status", "tap", "ack", "list/ack", "upload", "input"] {
                    let filter = format!("{}/c/+/{name}", link.prefix);
                    if let Err(e) = link.client.subscribe(filter, QoS::AtLeastOnce).await {
                        tracing::error!(error = %e, "MQTT: could not subscribe");
                    }
                }
                if tx.send(LinkEvent::Connected).await.is_err() {
                    return;
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let name = publish.topic.clone();
                match link.parse_topic(&name) {
                    Some((controller, None)) => {
                        match Ack::parse(&publish.payload) {
                            Ok(ack) => link.acknowledged(controller, ack),
                            Err(e) => tracing::warn!(topic = %name, error = %e, "MQTT: refused an ack"),
                        }
                        let _ = link.client.ack(&publish).await;
                    }
                    Some((controller, Some(topic))) => {
                        let delivery = Delivery {
                            controller: controller.to_owned(),
                            topic,
                            payload: publish.payload.clone(),
                            publish,
                        };
                        if tx.send(LinkEvent::Delivery(delivery)).await.is_err() {
                            return;
                        }
                    }
                    None => {
                        let _ = link.client.ack(&publish).await;
                    }
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) if link.stopping.load(Ordering::Relaxed) => {
                tracing::info!("MQTT: disconnected from the broker");
                return;
            }
            Ok(_) => {}
            Err(_) if link.stopping.load(Ordering::Relaxed) => return,
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(30) {
                    tracing::warn!(error = %e, "MQTT: the broker is not reachable; retrying");
                }
                // rumqttc reconnects on the next poll; don't spin while the broker is down.
                tokio::time::sleep(Duration::from_millis(if failures < 5 { 200 } else { 1000 })).await;
            }
        }
    }
}

fn random_id() -> String {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).expect("the OS has randomness");
    hex::encode(bytes)
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// The `mqtt` driver: an `open` or `hold` command to the door's controller, confirmed by
/// its `ack`.
pub(crate) struct MqttDoor {
    pub link: Option<Arc<MqttSlot>>,
    pub controller: String,
    pub door: String,
}

impl Driver for MqttDoor {
    fn kind(&self) -> &'static str {
        "mqtt"
    }

    fn open(&self, seconds: u32) -> BoxFuture<'_, Result<Opening, DriverError>> {
        Box::pin(self.command(Action::Open { seconds }))
    }

    fn hold(&self, on: bool) -> BoxFuture<'_, Result<Opening, DriverError>> {
        Box::pin(self.command(Action::Hold { on }))
    }
}

impl MqttDoor {
    async fn command(&self, action: Action) -> Result<Opening, DriverError> {
        let link = self
            .link
            .as_ref()
            .and_then(|slot| slot.current())
            .ok_or_else(|| DriverError::Unreachable("this node does not hold the MQTT link".into()))?;
        let ack = link.command(&self.controller, &self.door, action).await?;
        if ack.ok {
            Ok(Opening { confirmed: true })
        } else {
            Err(DriverError::BadAnswer(ack.error.unwrap_or_else(|| "the controller refused".into())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bad_settings_are_refused_before_connecting() {
        let config = |url: &str, prefix: &str| MqttConfig {
            url: url.into(),
            topic_prefix: prefix.into(),
            client_id: "lintel".into(),
        };
        assert!(matches!(MqttLink::start(&config("http://127.0.0.1", "lintel")), Err(MqttError::Url(_))));
        assert!(matches!(MqttLink::start(&config("mqtt://127.0.0.1", "a/+/b")), Err(MqttError::Prefix(_))));
        assert!(matches!(MqttLink::start(&config("mqtt://127.0.0.1", "/lintel")), Err(MqttError::Prefix(_))));
        let (link, _rx) = MqttLink::start(&config("mqtt://127.0.0.1:1", "site/lintel")).unwrap();
        assert_eq!(link.parse_topic("site/lintel/c/ctl-1/tap"), Some(("ctl-1", Some(Topic::Tap))));
        assert_eq!(link.parse_topic("site/lintel/c/ctl-1/list/ack"), Some(("ctl-1", Some(Topic::ListAck))));
        assert_eq!(link.parse_topic("site/lintel/c/ctl-1/ack"), Some(("ctl-1", None)));
        assert_eq!(link.parse_topic("site/lintel/c/ctl-1/decision"), None);
        assert_eq!(link.parse_topic("other/c/ctl-1/tap"), None);
    }
}
