//! lintel's storage. One set of SQL serves SQLite (the default: a file in WAL mode) and
//! PostgreSQL (for several nodes) through sqlx: both speak `$1` placeholders, `RETURNING`
//! and `ON CONFLICT`, and only the DDL differs (see `migrations/`). Every directory write
//! is one transaction that also appends its events and bumps the directory version, and
//! returns the index changes read back inside that transaction. The one exception is the
//! hot path of decisions on SQLite (`decision_log`), which has a connection of its own.

mod alarms;
mod badges;
mod changes;
mod cobot;
mod commands;
mod controllers;
mod crm;
mod decision_log;
mod directory;
mod door_modes;
mod enrolments;
mod events;
mod guesses;
mod guests;
mod import;
mod index_load;
mod leases;
mod lockcloud;
mod lockdown;
mod oidc_sign_ins;
mod pauses;
mod replays;
mod rows;
mod scim;
mod sessions;
mod signed;
mod sites;
mod snapshots;
#[cfg(test)]
mod tests;
mod tokens;
mod webhooks;
mod work;
mod zones;
pub use alarms::OpenDoor;
pub use door_modes::{HolidayRecord, ModedDoor};
pub use lockdown::LockdownScope;
pub use rows::LOCKDOWN_EXEMPT_ATTRIBUTE;
pub use tokens::{TokenInfo, TokenScope};
pub use zones::ZoneRecord;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, ConnectOptions, Connection, Executor, Transaction};

pub use badges::{BadgeRow, CardHolder, normalize_badge};
pub use changes::Feed;
pub use cobot::{CobotMember, valid_membership_id};
pub use commands::{CommandState, DoorCommand};
pub use controllers::{ControllerRow, OfflineRecord, RecordedOffline};
pub use crm::CrmMember;
pub use decision_log::{CommittedDecision, PendingDecision};
pub use directory::{MemberChange, NewCredentialRecord, NewGrantRecord, PersonFilter};
pub use enrolments::EnrolmentRow;
pub use events::{EventFilter, NewEvent, PassUse};
pub use guesses::GuessRecord;
pub use guests::NewGuestPassRecord;
pub use import::{ImportReport, ImportRow, RejectedRow};
pub use lintel_core::Change;
pub use lintel_proto::redact_url;
pub use oidc_sign_ins::OidcSignIn;
pub use rows::{credential_id, grant_id, parse_credential_id, parse_grant_id};
pub use scim::{ScimGroupRecord, ScimGroupRow};
pub use sessions::StoredSession;
pub use signed::QueuedOperation;
pub use sites::DEFAULT_SITE;
pub use webhooks::{WebhookRow, webhook_target};
pub use work::{Attempt, WorkItem};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} {id:?} not found")]
    NotFound { what: &'static str, id: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored data is not readable: {0}")]
    Corrupt(String),
}

impl StoreError {
    fn not_found(what: &'static str, id: impl Into<String>) -> Self {
        Self::NotFound { what, id: id.into() }
    }
}

/// Unique-constraint violations are the caller's conflict, not a server fault.
fn conflict_on_unique(e: sqlx::Error, message: impl FnOnce() -> String) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(message()),
        _ => StoreError::Database(e),
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// How SQLite makes a commit durable. `Normal` (WAL) survives a crash or `kill -9` of
/// lintel; `Full` also survives a power cut, at the cost of an fsync per group commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SqliteSync {
    #[default]
    Normal,
    Full,
}

/// What a directory write did: the changes for the decision index (or the need to reload
/// it whole) and the events it appended.
#[derive(Debug)]
pub struct Written<T> {
    pub value: T,
    pub index: IndexUpdate,
    pub events: Vec<lintel_proto::Event>,
    /// The directory version this write produced.
    pub version: i64,
}

#[derive(Debug)]
pub enum IndexUpdate {
    Patch(Vec<Change>),
    /// A structural change (a door or group removed) that is simpler to reload than patch.
    Reload,
}

/// For writes outside the decision index (door modes, holds, holidays, alarms): they
/// change what devices are told, not who may open a door.
pub(crate) const NOTHING_INDEXED: IndexUpdate = IndexUpdate::Patch(Vec::new());

#[derive(Clone)]
pub struct Store {
    /// Directory writes go through here; on SQLite this pool holds one connection.
    write: AnyPool,
    read: AnyPool,
    backend: Backend,
    decisions: decision_log::DecisionLog,
    /// Indexes events by person every second (see [`Store::index_event_people`]).
    indexer: std::sync::Arc<std::sync::OnceLock<tokio::task::AbortHandle>>,
    /// This process's name among the nodes on one database (random, per start): what its
    /// notifications carry, so that it can tell them from other nodes'.
    node: std::sync::Arc<str>,
    /// Where a PostgreSQL listener connects (it needs a connection of its own).
    url: std::sync::Arc<str>,
    /// Who the directory writes through this handle are made by (see [`Store::acting_as`]).
    actor: Option<std::sync::Arc<str>>,
}

/// What other nodes tell through PostgreSQL's notifications (see [`Store::notifications`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// A new directory version (the change feed has it).
    Directory,
    /// New events in the log.
    Events,
    /// Door commands asked or done (see [`DoorCommand`]).
    Commands,
}

impl Channel {
    fn name(self) -> &'static str {
        match self {
            Self::Directory => "lintel_directory",
            Self::Events => "lintel_events",
            Self::Commands => "lintel_commands",
        }
    }
}

/// PostgreSQL advisory locks: writes that append events; writes to the inbox; indexing
/// events by person; making sessions (their number is bounded).
pub(crate) const EVENTS_LOCK: i64 = 7152;
pub(crate) const INBOX_LOCK: i64 = 7153;
pub(crate) const EVENT_PEOPLE_LOCK: i64 = 7154;
pub(crate) const SESSIONS_LOCK: i64 = 7155;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Two pages' worth: the probe needs pages of its own, as a growing table does.
const WRITE_PROBE_BYTES: usize = 8192;

pub(crate) fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

impl Store {
    /// This store, with the directory writes made through it recorded as `actor`'s (the
    /// audit trail: the events of those writes carry it).
    pub fn acting_as(&self, actor: &str) -> Self {
        Self { actor: Some(actor.into()), ..self.clone() }
    }

    /// Opens (creating when needed) the database at `url` and applies the migrations.
    pub async fn open(url: &str, sqlite_sync: SqliteSync) -> Result<Self> {
        Self::connect(url, sqlite_sync, true).await
    }

    /// Opens a database lintel has set up before (and applies newer migrations); refuses
    /// a missing SQLite file, or a database without lintel's tables, instead of creating one.
    pub async fn open_existing(url: &str, sqlite_sync: SqliteSync) -> Result<Self> {
        Self::connect(url, sqlite_sync, false).await
    }

    async fn connect(url: &str, sqlite_sync: SqliteSync, create: bool) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::Invalid(format!(
                "unsupported database URL {:?}: use sqlite://FILE or postgres://...",
                redact_url(url)
            )));
        };
        if backend == Backend::Sqlite && !create {
            let file = sqlite_path(url)?;
            if !file.exists() {
                return Err(StoreError::Invalid(format!("no lintel database at {}", file.display())));
            }
        }
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                format!("{url}{}mode={}", if url.contains('?') { '&' } else { '?' }, if create { "rwc" } else { "rw" })
            }
            _ => url.to_owned(),
        };
        let options = AnyConnectOptions::from_str(&url)?.disable_statement_logging();
        // One connection first: a database that cannot be opened fails now with its cause,
        // not with the pool's timeout after 10 s of retrying.
        let mut first = sqlx::AnyConnection::connect_with(&options).await?;
        if backend == Backend::Sqlite {
            // SQLite reads the file only when asked something: a file that is not a database.
            sqlx::query("SELECT 1 FROM sqlite_master LIMIT 1").fetch_optional(&mut first).await?;
        }
        if !create && sqlx::query("SELECT 1 FROM _sqlx_migrations").fetch_optional(&mut first).await.is_err() {
            return Err(StoreError::Invalid(format!("{} has no lintel tables", redact_url(&url))));
        }
        first.close().await?;
        let sync = match sqlite_sync {
            SqliteSync::Normal => "PRAGMA synchronous = NORMAL",
            SqliteSync::Full => "PRAGMA synchronous = FULL",
        };
        let node: std::sync::Arc<str> = hex::encode(getrandom::u64().unwrap_or_default().to_be_bytes()).into();
        let set_node: std::sync::Arc<str> = format!("SET lintel.node = '{node}'").into();
        let pool = |max: u32| {
            let set_node = set_node.clone();
            AnyPoolOptions::new()
                .max_connections(max)
                .acquire_timeout(Duration::from_secs(10))
                .after_connect(move |conn, _| {
                    let set_node = set_node.clone();
                    Box::pin(async move {
                        if conn.backend_name().eq_ignore_ascii_case("postgresql") {
                            // Named in the notifications its commits send (see 0013_changes.sql).
                            sqlx::raw_sql(sqlx::AssertSqlSafe(set_node.to_string())).execute(&mut *conn).await?;
                        }
                        if conn.backend_name().eq_ignore_ascii_case("sqlite") {
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute(sync).await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                            conn.execute("PRAGMA busy_timeout = 10000").await?;
                            conn.execute("PRAGMA journal_size_limit = 16777216").await?;
                        }
                        Ok(())
                    })
                })
                .after_release(|conn, _| {
                    Box::pin(async move {
                        if !conn.backend_name().eq_ignore_ascii_case("sqlite") {
                            return Ok(true);
                        }
                        // SQLite rolls a transaction back by itself when a COMMIT fails (a
                        // full disk); sqlx's ROLLBACK then fails and the connection believes
                        // it is still inside one, refusing every later BEGIN. The ping runs
                        // the queued rollback; a connection still "in" a transaction after it
                        // is closed, and the pool opens a fresh one.
                        conn.ping().await?;
                        Ok(!conn.is_in_transaction())
                    })
                })
        };
        let (write, read) = match backend {
            Backend::Sqlite => (pool(1).connect_with(options.clone()).await?, pool(4).connect_with(options).await?),
            Backend::Postgres => (pool(8).connect_with(options.clone()).await?, pool(8).connect_with(options).await?),
        };
        let decisions = match backend {
            Backend::Sqlite => {
                SQLITE_MIGRATIONS.run(&write).await?;
                decision_log::DecisionLog::sqlite(sqlite_path(&url)?, sqlite_sync)?
            }
            Backend::Postgres => {
                POSTGRES_MIGRATIONS.run(&write).await?;
                decision_log::DecisionLog::postgres(write.clone())
            }
        };
        let store = Self {
            write,
            read,
            backend,
            decisions,
            indexer: Default::default(),
            node,
            url: url.as_str().into(),
            actor: None,
        };
        let indexer = tokio::spawn({
            let store = store.clone();
            async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    if let Err(e) = store.index_event_people().await {
                        tracing::warn!(error = %e, "events not indexed by person");
                    }
                }
            }
        });
        let _ = store.indexer.set(indexer.abort_handle());
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// This process's name among the nodes on the database.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// A wake-up each time another node commits something to `channel`, and after the
    /// listening connection was lost and found again (something may have been missed: read
    /// the table). `None` on SQLite, which has no notifications: poll it.
    pub fn notifications(&self, channel: Channel) -> Option<tokio::sync::mpsc::Receiver<()>> {
        if self.backend != Backend::Postgres {
            return None;
        }
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let (url, node) = (self.url.clone(), self.node.clone());
        tokio::spawn(async move {
            loop {
                match listen(&url, channel, &node, &tx).await {
                    // Nobody listens any more.
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(channel = channel.name(), error = %e, "not listening; trying again in 1 s")
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                // Whatever came meanwhile was missed.
                if tx.try_send(()).is_err() && tx.is_closed() {
                    return;
                }
            }
        });
        Some(rx)
    }

    /// A consistent copy of the SQLite database as it is now, taken while it is in use
    /// (`VACUUM INTO`: one read transaction, so writers carry on).
    pub async fn copy_sqlite_to(&self, file: &std::path::Path) -> Result<()> {
        if self.backend != Backend::Sqlite {
            return Err(StoreError::Invalid("only a SQLite database is copied this way; use pg_dump".into()));
        }
        let file = file.to_str().ok_or_else(|| StoreError::Invalid("the copy's path is not UTF-8".into()))?;
        sqlx::query("VACUUM INTO $1").bind(file).execute(&self.read).await?;
        Ok(())
    }

    /// Answers when the database does.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    /// Whether the store can write now: a row big enough to need new pages is written and
    /// removed again, so a full disk (or a database at its size limit) shows here before
    /// a revocation fails on it.
    pub async fn check_writable(&self) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO write_probe (data) VALUES ($1)")
            .bind(vec![0u8; WRITE_PROBE_BYTES])
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM write_probe").execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records the decisions still queued, then closes every connection (on SQLite the
    /// WAL is checkpointed and removed with the last one).
    pub async fn close(&self) {
        if let Some(indexer) = self.indexer.get() {
            indexer.abort();
        }
        self.decisions.close().await;
        self.write.close().await;
        self.read.close().await;
    }

    /// A write transaction. On SQLite it takes the write lock up front, so it never fails
    /// half-way with "database is locked" when another process (the CLI) writes too.
    pub(crate) async fn begin(&self) -> Result<Transaction<'static, Any>> {
        // Event sequence numbers must become visible in order, or a reader following the
        // log with a cursor could skip one that commits late.
        self.begin_under(EVENTS_LOCK).await
    }

    /// A write transaction that every node serialises on: SQLite's write lock, taken up
    /// front, or this PostgreSQL advisory lock (held to the commit).
    pub(crate) async fn begin_under(&self, lock: i64) -> Result<Transaction<'static, Any>> {
        let mut tx = match self.backend {
            Backend::Sqlite => self.write.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.write.begin().await?,
        };
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(lock).execute(&mut *tx).await?;
        }
        Ok(tx)
    }

    /// The version of the directory, bumped by every directory write of any process.
    pub async fn directory_version(&self) -> Result<i64> {
        let v: i64 =
            sqlx::query_scalar("SELECT value FROM meta WHERE name = 'directory_version'").fetch_one(&self.read).await?;
        Ok(v)
    }
}

/// Forwards `channel`'s notifications from other nodes to `wake` until nobody listens.
async fn listen(url: &str, channel: Channel, node: &str, wake: &tokio::sync::mpsc::Sender<()>) -> Result<()> {
    let mut listener = sqlx::postgres::PgListener::connect(url).await?;
    listener.listen(channel.name()).await?;
    loop {
        let notified = tokio::select! {
            notified = listener.try_recv() => notified?,
            () = wake.closed() => return Ok(()),
        };
        match notified {
            Some(n) if n.payload() == node => continue,
            // Another node's commit, or a lost connection (reconnected by the listener).
            _ => {
                let _ = wake.try_send(());
            }
        }
    }
}

/// The file of a `sqlite:` URL (`sqlite://lintel.db`, `sqlite:///abs/path.db?mode=rwc`).
fn sqlite_path(url: &str) -> Result<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
    let file = rest.split('?').next().unwrap_or(rest);
    if file.is_empty() || file.contains(":memory:") {
        return Err(StoreError::Invalid(
            "lintel needs a database file (sqlite://FILE), not an in-memory database".into(),
        ));
    }
    Ok(std::path::PathBuf::from(file))
}

impl Store {
    /// Records one decision through the group commit; answers once it is durable. The
    /// event may come back as a denial when what the decision would use up is gone.
    pub async fn commit_decision(&self, decision: PendingDecision) -> Result<CommittedDecision> {
        self.decisions.commit(decision).await
    }
}

pub(crate) use changes::bump_version;
