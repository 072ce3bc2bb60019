//! lintel's workflows, between the store and the front-ends: deciding and recording,
//! driving doors, the directory's write path, and every integration's workflow and
//! background worker. Nothing here speaks HTTP: the server and the CLI are front-ends
//! over it, built by one composition root ([`Services`]).

pub mod attendance;
pub mod credentials;
pub mod decide;
pub mod directory;
pub mod doors;
mod error;
pub mod follow;
pub mod integrations;
pub mod outbox;
pub mod people;
pub mod retry;
pub mod secrets;
pub mod tokens;
pub mod validate;
mod workers;

use std::sync::Arc;
use std::time::Duration;

pub use credentials::CredentialBuilder;
pub use decide::{Ask, Decider, LimiterConfig, MemberSource, Source};
pub use directory::Directory;
pub use doors::{Doors, Driven, Opened, Opener};
pub use error::{Result, ServiceError};
pub use tokens::Tokens;
pub use workers::Workers;

/// What the core of lintel needs to know, resolved by the binary from flags, file and
/// environment.
#[derive(Clone)]
pub struct CoreConfig {
    /// Accepted as an admin token besides those in the store (for scripts and tests).
    pub admin_token: Option<String>,
    /// The key PINs are hashed with (HMAC); from the key file, never the database.
    pub pin_key: [u8; 32],
    /// How often to look for directory changes made by other processes.
    pub follow_every: Duration,
    pub limiter: LimiterConfig,
}

/// The parts every front-end and integration is built from.
#[derive(Clone)]
pub struct Services {
    pub directory: Arc<Directory>,
    pub decider: Arc<Decider>,
    pub doors: Arc<Doors>,
    pub tokens: Tokens,
    pub credentials: CredentialBuilder,
    pub workers: Workers,
}

impl Services {
    /// Builds the deciding and door-driving parts over a loaded directory (see
    /// [`Directory::open`]). `members` is asked by the decider before it answers (the
    /// makerspace CRM).
    pub async fn new(
        directory: Arc<Directory>,
        config: &CoreConfig,
        links: lintel_doors::Links,
        members: Option<Arc<dyn MemberSource>>,
    ) -> Result<Self> {
        let store = directory.store.clone();
        let tokens = Tokens::load(&store, config.admin_token.as_deref()).await?;
        tokens.spawn_refresher(store, config.follow_every);
        let decider = Arc::new(Decider::new(directory.clone(), config.pin_key, config.limiter).with_members(members));
        let doors = Arc::new(Doors::new(directory.clone(), decider.clone(), links));
        Ok(Self {
            directory,
            decider,
            doors,
            tokens,
            credentials: CredentialBuilder::new(config.pin_key),
            workers: Workers::new(),
        })
    }
}
