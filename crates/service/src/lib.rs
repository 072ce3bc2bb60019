//! lintel's workflows, between the store and the front-ends: deciding and recording,
//! driving doors, the directory's write path, and every integration's workflow and
//! background worker. Nothing here speaks HTTP: the server and the CLI are front-ends
//! over it, built by one composition root ([`Services`]).

pub mod alarms;
pub mod attendance;
pub mod backup_codes;
pub mod credentials;
pub mod decide;
pub mod devices;
pub mod directory;
pub mod door_modes;
pub mod doors;
pub mod edits;
pub mod enrolments;
mod error;
pub mod follow;
pub mod guests;
pub mod import;
pub mod integrations;
pub mod leases;
pub mod lockdown;
pub mod metrics;
pub mod notifications;
pub mod offboarding;
pub mod operations;
pub mod outbox;
pub mod people;
pub mod photos;
pub mod retry;
pub mod scim;
pub mod secrets;
pub mod sessions;
pub mod site_limits;
#[cfg(test)]
mod testing;
pub mod tokens;
pub mod validate;
pub mod webhooks;
mod workers;
pub mod zones;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;
use lintel_store::Store;

pub use credentials::CredentialBuilder;
pub use decide::{Ask, Decider, LimiterConfig, MemberSource, Source};
use devices::controllers::Controllers;
pub use directory::{Actor, Directory};
use door_modes::DoorModes;
pub use doors::{Doors, Driven, Opened, Opener};
pub use error::{Result, ServiceError};
use guests::Guests;
use integrations::cobot::Cobot;
use integrations::crm::Crm;
use integrations::doorbell::Doorbell;
use integrations::invitations::Invitations;
use integrations::ldap_sync::LdapSync;
use integrations::lockcloud::LockCloud;
use integrations::lookup::Lookup;
use integrations::oidc::Oidc;
use integrations::slack::Slack;
use lintel_signed::Authority;
use operations::Operations;
use photos::Photos;
use sessions::Sessions;
pub use tokens::Tokens;
use webhooks::Webhooks;
pub use workers::Workers;

/// Events removed per transaction by the retention pruner.
const PRUNE_BATCH: i64 = 1_000;

/// What lintel's workflows need to know, resolved by the binary from flags, file and
/// environment. An integration is `None` when its section is not configured.
#[derive(Clone)]
pub struct Config {
    /// Accepted as an admin token besides those in the store (for scripts and tests).
    pub admin_token: Option<String>,
    /// The key PINs are hashed with (HMAC); from the key file, never the database.
    pub pin_key: [u8; 32],
    /// lintel's Ed25519 signing key (the authority of users' certificates and of
    /// controllers' lists), from its own key file, never the database.
    pub signing_key: [u8; 32],
    /// How often to look for directory changes made by other processes.
    pub follow_every: Duration,
    pub limiter: LimiterConfig,
    /// Where a day begins and ends (attendance, cancellation dates, messages).
    pub timezone: Tz,
    /// The address the outside world reaches lintel at (for links lintel hands out).
    pub public_url: Option<String>,
    /// Where people's photos are kept as `<person id>.jpg`.
    pub photos_dir: PathBuf,
    /// Webhook deliveries of one source that may wait in the inbox.
    pub max_pending_deliveries: i64,
    /// How long events are kept (`[events] retain_days`); `None` keeps them all.
    pub event_retention: Option<Duration>,
    /// The makerspace CRM (`[crm]`).
    pub crm: Option<integrations::crm::CrmConfig>,
    /// The coworking membership platform (`[cobot]`).
    pub cobot: Option<integrations::cobot::CobotConfig>,
    /// A lock vendor's cloud (`[lockcloud]`).
    pub lockcloud: Option<integrations::lockcloud::LockCloudConfig>,
    /// Where invitations are mailed from (`[smtp]`).
    pub smtp: Option<integrations::invitations::SmtpConfig>,
    /// The SMS gateway invitations are texted through (`[sms]`).
    pub sms: Option<integrations::invitations::SmsConfig>,
    /// The Slack app (`[slack]`).
    pub slack: Option<integrations::slack::SlackConfig>,
    /// The doorbell camera (`[doorbell]`); it posts through the Slack app.
    pub doorbell: Option<integrations::doorbell::DoorbellConfig>,
    /// Where alarms, lockdown and emergencies are told (`[notify]`).
    pub notify: Option<notifications::NotifyConfig>,
    /// The OpenID Connect issuer users may sign in with (`[oidc]`).
    pub oidc: Option<integrations::oidc::OidcConfig>,
    /// The MQTT broker door controllers hang off (`[mqtt]`).
    pub mqtt: Option<lintel_doors::mqtt::MqttConfig>,
    /// The OSDP readers (`[osdp]`).
    pub osdp: Option<devices::osdp::OsdpConfig>,
    /// The badge identity lookup (`[lookup]`, with `[ldap]`).
    pub lookup: Option<integrations::lookup::LookupConfig>,
    /// People from the LDAP / Active Directory directory (`[ldap.sync]`).
    pub ldap_sync: Option<integrations::ldap_sync::LdapSyncConfig>,
}

/// What a process built from [`Services`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `lintel serve`: it takes the device links (the MQTT session, OSDP ports) and runs
    /// the background workers.
    Server,
    /// An operator's command: the workflows alone; devices and workers stay with the
    /// server, which may be running beside it.
    Command,
}

/// The one composition root: the parts every front-end and integration is built from,
/// for `lintel serve` and the CLI alike.
#[derive(Clone)]
pub struct Services {
    pub config: Arc<Config>,
    pub role: Role,
    pub directory: Arc<Directory>,
    pub decider: Arc<Decider>,
    pub doors: Arc<Doors>,
    pub door_modes: Arc<DoorModes>,
    pub tokens: Tokens,
    /// The web UI's sessions.
    pub sessions: Arc<Sessions>,
    pub credentials: CredentialBuilder,
    pub workers: Workers,
    pub photos: Photos,
    /// lintel's signing authority: users' certificates, controllers' allow-lists.
    pub authority: Arc<Authority>,
    pub operations: Arc<Operations>,
    pub crm: Option<Arc<Crm>>,
    pub cobot: Option<Arc<Cobot>>,
    pub lockcloud: Option<Arc<LockCloud>>,
    /// Sends visitors their invitations, when `[smtp]` or `[sms]` is configured.
    pub invitations: Option<Arc<Invitations>>,
    pub lookup: Option<Arc<Lookup>>,
    pub ldap_sync: Option<Arc<LdapSync>>,
    /// The MQTT door controllers (a server with `[mqtt]` only).
    pub controllers: Option<Arc<Controllers>>,
    pub slack: Option<Arc<Slack>>,
    pub doorbell: Option<Arc<Doorbell>>,
    pub notifier: Option<Arc<notifications::Notifier>>,
    pub oidc: Option<Arc<Oidc>>,
    pub webhooks: Arc<Webhooks>,
    pub guests: Arc<Guests>,
}

impl Services {
    /// Loads the directory from `store` and builds every configured workflow for `role`.
    pub async fn start(store: Store, config: Config, role: Role) -> Result<Self> {
        let directory = Directory::open(store, config.follow_every).await?;
        let photos = Photos::new(config.photos_dir.clone());
        let crm = match config.crm.clone() {
            Some(c) => Some(Arc::new(Crm::load(c, directory.clone(), photos.clone()).await?)),
            None => None,
        };
        let lockcloud = match config.lockcloud.clone() {
            Some(c) => Some(Arc::new(LockCloud::new(c, directory.clone())?)),
            None => None,
        };
        let invitations = (config.smtp.is_some() || config.sms.is_some()).then(|| {
            let store = directory.store.clone();
            Arc::new(Invitations::new(
                config.smtp.clone(),
                config.sms.clone(),
                store,
                config.timezone,
                config.public_url.clone(),
            ))
        });
        let cobot = match config.cobot.clone() {
            Some(c) => {
                let (cloud, invitations, url) = (lockcloud.clone(), invitations.clone(), config.public_url.clone());
                Some(Arc::new(Cobot::new(c, directory.clone(), cloud, invitations, url)?))
            }
            None => None,
        };
        // The MQTT session is a server's (the one holding its lease): a command must not
        // take it over; its doors are opened through the server.
        let mqtt = match (&config.mqtt, role) {
            (Some(mqtt), Role::Server) => {
                lintel_doors::mqtt::MqttLink::check(mqtt)
                    .map_err(|e| ServiceError::invalid(format!("[mqtt] is not usable: {e}")))?;
                Some((mqtt.clone(), Arc::new(lintel_doors::mqtt::MqttSlot::default())))
            }
            _ => None,
        };
        let links = lintel_doors::Links {
            http: lintel_doors::device_client(),
            mqtt: mqtt.as_ref().map(|(_, slot)| slot.clone()),
        };
        let members = crm.clone().map(|crm| crm as Arc<dyn MemberSource>);
        let tokens = Tokens::load(&directory.store, config.admin_token.as_deref()).await?;
        tokens.spawn_refresher(directory.store.clone(), config.follow_every);
        let decider = Arc::new(Decider::new(directory.clone(), config.pin_key, config.limiter).with_members(members));
        let authority = Arc::new(
            Authority::from_secret_bytes(&config.signing_key)
                .map_err(|e| ServiceError::invalid(format!("the signing key is not usable: {e}")))?,
        );
        let workers = Workers::new(directory.store.clone());
        let controllers = mqtt.map(|(config, slot)| {
            let (directory, decider, authority, workers) =
                (directory.clone(), decider.clone(), authority.clone(), workers.clone());
            Arc::new(Controllers::new(config, slot, directory, decider, authority, workers))
        });
        let door_modes = Arc::new(DoorModes::new(directory.clone(), links.clone()));
        let doors = Arc::new(Doors::new(directory.clone(), decider.clone(), links));
        let lookup = config.lookup.clone().map(|c| Arc::new(Lookup::new(c, directory.store.clone(), config.limiter)));
        let ldap_sync = match config.ldap_sync.clone() {
            Some(c) => Some(Arc::new(LdapSync::new(c, directory.clone())?)),
            None => None,
        };
        let operations = Arc::new(Operations::new(directory.clone(), doors.clone(), authority.clone()));
        let slack = config.slack.clone().map(|c| {
            let url = config.public_url.clone();
            Arc::new(Slack::new(c, directory.clone(), doors.clone(), workers.clone(), config.timezone, url))
        });
        let doorbell = match (config.doorbell.clone(), &slack) {
            (Some(c), Some(slack)) => Some(Arc::new(Doorbell::new(
                c,
                slack.clone(),
                directory.clone(),
                config.timezone,
                config.public_url.clone(),
            ))),
            (Some(_), None) => return Err(ServiceError::invalid("[doorbell] posts through [slack]: configure it")),
            (None, _) => None,
        };
        let notifier = match config.notify.clone() {
            Some(c) => Some(Arc::new(notifications::Notifier::new(
                c,
                directory.clone(),
                slack.clone(),
                config.smtp.clone(),
                config.timezone,
            )?)),
            None => None,
        };
        let oidc = config.oidc.clone().map(|c| Arc::new(Oidc::new(c, directory.clone())));
        let sessions = Arc::new(Sessions::new(directory.store.clone(), tokens.clone()));
        let webhooks = Arc::new(Webhooks::new(directory.clone()));
        let guests = Arc::new(Guests::new(directory.clone(), invitations.clone(), config.public_url.clone()));
        Ok(Self {
            sessions,
            credentials: CredentialBuilder::new(config.pin_key),
            config: Arc::new(config),
            role,
            directory,
            decider,
            doors,
            door_modes,
            tokens,
            workers,
            photos,
            authority,
            operations,
            crm,
            cobot,
            lockcloud,
            invitations,
            lookup,
            ldap_sync,
            controllers,
            slack,
            doorbell,
            notifier,
            oidc,
            webhooks,
            guests,
        })
    }

    pub fn store(&self) -> &Store {
        &self.directory.store
    }

    /// Starts the background work of every configured integration and device link (for
    /// [`Role::Server`]).
    pub async fn spawn_workers(&self) -> Result<()> {
        debug_assert_eq!(self.role, Role::Server);
        self.workers.spawn_lease_keeper();
        self.spawn_session_pruner();
        self.spawn_event_pruner();
        if let Some(cobot) = &self.cobot {
            cobot.spawn_workers(&self.workers);
        }
        if let Some(cloud) = &self.lockcloud {
            cloud.spawn_workers(&self.workers);
        }
        if let Some(invitations) = &self.invitations {
            invitations.spawn_sender(&self.workers);
        }
        if let Some(controllers) = &self.controllers {
            controllers.spawn();
        }
        if let Some(osdp) = self.config.osdp.clone() {
            let (directory, decider, doors) = (self.directory.clone(), self.decider.clone(), self.doors.clone());
            devices::osdp::start(osdp, directory, decider, doors, &self.workers).await?;
        }
        self.doors.spawn_command_taker(&self.workers);
        self.door_modes.spawn(&self.workers);
        self.operations.spawn_queue_worker(&self.workers);
        if let Some(slack) = &self.slack {
            slack.spawn_reconciler(&self.workers);
        }
        if let Some(ldap) = &self.ldap_sync {
            ldap.spawn_worker(&self.workers);
        }
        self.webhooks.spawn_worker(&self.workers);
        if let Some(notifier) = &self.notifier {
            notifier.spawn(&self.workers);
        }
        self.guests.spawn_closer(&self.workers);
        Ok(())
    }

    /// Forgets expired sessions every hour (on one node).
    fn spawn_session_pruner(&self) {
        let (sessions, mut hours) =
            (self.sessions.clone(), self.workers.one_node_every("sessions", Duration::from_secs(3600)));
        self.workers.spawn(async move {
            while hours.next().await {
                if let Err(e) = sessions.prune().await {
                    tracing::warn!(error = %e, "expired sessions not forgotten");
                }
            }
        });
    }

    /// Prunes the events older than `[events] retain_days` every minute (on one node), in
    /// batches of [`PRUNE_BATCH`], each its own short transaction.
    fn spawn_event_pruner(&self) {
        let Some(keep) = self.config.event_retention else { return };
        let (store, workers) = (self.store().clone(), self.workers.clone());
        let mut minutes = self.workers.one_node_every("events-retention", Duration::from_secs(60));
        self.workers.spawn(async move {
            while minutes.next().await {
                let before = decide::now_micros() - i64::try_from(keep.as_micros()).unwrap_or(i64::MAX);
                let mut pruned = 0;
                loop {
                    match workers.unless_stopping(store.prune_events(before, PRUNE_BATCH)).await {
                        Some(Ok(0)) | None => break,
                        Some(Ok(n)) => pruned += n,
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "old events not pruned");
                            break;
                        }
                    }
                }
                if pruned > 0 {
                    tracing::info!(pruned, "pruned the events older than [events] retain_days");
                }
            }
        });
    }

    /// Stops the workers (within `deadline`) and closes the store.
    pub async fn stop(&self, deadline: tokio::time::Instant) {
        self.workers.stop();
        self.workers.finished_by(deadline).await;
        self.store().close().await;
    }
}
