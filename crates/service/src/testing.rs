//! For the workflows' tests: services over a temporary SQLite file, and a scripted fake
//! of the remote systems they call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lintel_proto::{DriverConfig, NewDoor, NewPerson};
use lintel_store::{NewGrantRecord, SqliteSync, Store};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::decide::LimiterConfig;
use crate::directory::Directory;
use crate::{Config, Role, Services};

/// A new store in a temporary folder (kept as long as the folder is).
pub(crate) async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("lintel.db").display());
    (dir, Store::open(&url, SqliteSync::Normal).await.expect("store opens"))
}

/// The directory over a new store; nobody else writes to it, so it never looks for others' changes.
pub(crate) async fn directory() -> (tempfile::TempDir, Arc<Directory>) {
    let (dir, store) = store().await;
    (dir, Directory::open(store, Duration::from_secs(3600)).await.expect("directory loads"))
}

/// The services of a command (no devices, no workers) over a new database, with
/// `configure` applied to a configuration that has no integrations.
pub(crate) async fn services(configure: impl FnOnce(&mut Config)) -> (tempfile::TempDir, Services) {
    let (dir, store) = store().await;
    let mut config = Config {
        admin_token: None,
        pin_key: [1; 32],
        signing_key: [2; 32],
        follow_every: Duration::from_secs(60),
        limiter: LimiterConfig::default(),
        timezone: chrono_tz::UTC,
        public_url: None,
        photos_dir: dir.path().join("photos"),
        max_pending_deliveries: 100,
        event_retention: None,
        crm: None,
        cobot: None,
        lockcloud: None,
        smtp: None,
        sms: None,
        osdp: None,
        lookup: None,
        ldap_sync: None,
        slack: None,
        doorbell: None,
        notify: None,
        oidc: None,
        mqtt: None,
    };
    configure(&mut config);
    let services = Services::start(store, config, Role::Command).await.expect("services start");
    (dir, services)
}

pub(crate) async fn person(services: &Services, new: NewPerson) {
    let id = new.id.clone().expect("an id");
    services
        .directory
        .write(&crate::Actor::cli(), move |store| async move { store.create_person(&new, &id).await })
        .await
        .expect("person");
}

pub(crate) async fn door(services: &Services, id: &str, driver: DriverConfig) {
    let new = NewDoor {
        id: id.to_owned(),
        name: id.to_owned(),
        driver,
        fail_mode: Default::default(),
        required_skill: None,
        open_seconds: None,
        attendance: None,
        site: None,
        unlock_schedule: None,
        egress: None,
        held_open_seconds: None,
    };
    services
        .directory
        .write(&crate::Actor::cli(), move |store| async move { store.create_door(&new, 3).await })
        .await
        .expect("door");
}

/// Lets `person` through `door` at any time.
pub(crate) async fn grant(services: &Services, person: &str, door: &str) {
    let grant =
        NewGrantRecord { person_id: Some(person.to_owned()), doors: Some(vec![door.to_owned()]), ..Default::default() };
    services
        .directory
        .write(&crate::Actor::cli(), move |store| async move { store.create_grant(&grant).await })
        .await
        .expect("grant");
}

/// A remote system (a platform, a CRM, a door's HTTP endpoint) as a test scripts it: an
/// answer per `METHOD /path` (404 for any other), and every request it was sent with the
/// status it got.
pub(crate) struct FakeHttp {
    pub url: String,
    script: Arc<Mutex<Script>>,
}

#[derive(Default)]
struct Script {
    answers: HashMap<String, (u16, Value)>,
    /// `METHOD /path`, the body (JSON, or the form's fields as an object), the status.
    requests: Vec<(String, Value, u16)>,
}

impl FakeHttp {
    pub(crate) async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let script = Arc::new(Mutex::new(Script::default()));
        let answering = script.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(exchange(stream, answering.clone()));
            }
        });
        Self { url, script }
    }

    /// From now on, `request` (`METHOD /path`) is answered with `status` and `body`.
    pub(crate) fn answer(&self, request: &str, status: u16, body: Value) {
        self.script.lock().expect("script").answers.insert(request.to_owned(), (status, body));
    }

    /// The bodies of the `request`s it was sent, in order.
    pub(crate) fn requests(&self, request: &str) -> Vec<Value> {
        let script = self.script.lock().expect("script");
        script.requests.iter().filter(|(r, ..)| r == request).map(|(_, body, _)| body.clone()).collect()
    }

    /// How many `request`s it answered with `status`.
    pub(crate) fn answered(&self, request: &str, status: u16) -> usize {
        let script = self.script.lock().expect("script");
        script.requests.iter().filter(|(r, _, s)| r == request && *s == status).count()
    }
}

/// One HTTP/1.1 exchange, then the connection closes.
async fn exchange(stream: tokio::net::TcpStream, script: Arc<Mutex<Script>>) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).await.is_err() {
        return;
    }
    let mut words = line.split_whitespace();
    let (method, target) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    let request = format!("{method} {}", target.split('?').next().unwrap_or_default());
    let mut length = 0;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).await.is_err() || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).await.is_err() {
        return;
    }
    let body = serde_json::from_slice(&body).unwrap_or_else(|_| {
        let fields: HashMap<String, String> = form_fields(&body);
        if fields.is_empty() { Value::Null } else { json!(fields) }
    });
    let (status, reply) = {
        let mut script = script.lock().expect("script");
        let (status, reply) = script.answers.get(&request).cloned().unwrap_or((404, json!({"error": "not found"})));
        script.requests.push((request, body, status));
        (status, reply.to_string())
    };
    let head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        reply.len()
    );
    let mut stream = reader.into_inner();
    let _ = stream.write_all(format!("{head}{reply}").as_bytes()).await;
}

/// A form body's fields (`a=1&b=2`), for systems that are sent forms (OAuth2 token requests).
fn form_fields(body: &[u8]) -> HashMap<String, String> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.replace('+', " ")))
        .collect()
}
