//! Services over a temporary SQLite file, for the workflows' tests.

use std::time::Duration;

use lintel_proto::{DriverConfig, NewDoor, NewPerson};
use lintel_store::{NewGrantRecord, SqliteSync, Store};

use crate::{Config, LimiterConfig, Role, Services};

/// The services of a command (no devices, no workers) over a new database, with
/// `configure` applied to a configuration that has no integrations.
pub(crate) async fn services(configure: impl FnOnce(&mut Config)) -> (tempfile::TempDir, Services) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("lintel.db").display());
    let store = Store::open(&url, SqliteSync::Normal).await.expect("store opens");
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
        crm: None,
        cobot: None,
        lockcloud: None,
        smtp: None,
        sms: None,
        osdp: None,
        lookup: None,
        slack: None,
        doorbell: None,
        oidc: None,
        mqtt: None,
    };
    configure(&mut config);
    let services = Services::start(store, config, Role::Command).await.expect("services start");
    (dir, services)
}

pub(crate) async fn person(services: &Services, new: NewPerson) {
    let id = new.id.clone().expect("an id");
    services.directory.write(move |store| async move { store.create_person(&new, &id).await }).await.expect("person");
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
    };
    services.directory.write(move |store| async move { store.create_door(&new, 3).await }).await.expect("door");
}

/// Lets `person` through `door` at any time.
pub(crate) async fn grant(services: &Services, person: &str, door: &str) {
    let grant =
        NewGrantRecord { person_id: Some(person.to_owned()), doors: Some(vec![door.to_owned()]), ..Default::default() };
    services.directory.write(move |store| async move { store.create_grant(&grant).await }).await.expect("grant");
}
