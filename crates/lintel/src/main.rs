//! The `lintel` binary: the server and the operator's commands.

mod backup;
mod badges;
mod bench;
mod config;
mod controller_sim;
mod import;
mod keys;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use config::{Config, LogFormat};
use lintel_server::ServerConfig;
use lintel_service::LimiterConfig;
use lintel_service::integrations::invitations::{SmsConfig, SmtpConfig};
use lintel_service::integrations::lockcloud::LockCloudConfig;
use lintel_store::{SqliteSync, Store};

/// lintel: the self-hosted access-control hub. It keeps people, credentials, doors,
/// groups and grants; decides whether a credential may open a door now; drives the door;
/// and records every decision.
#[derive(Parser)]
#[command(
    name = "lintel",
    version,
    about,
    after_help = "Getting started:\n  lintel serve                       start on 127.0.0.1:8080 with ./lintel.db (SQLite)\n  lintel token create --name me      print an admin token for the API\n  lintel import people.csv           bring in people and their cards\n\nThe HTTP API is described at GET /openapi.json; the README has a walk-through."
)]
struct Cli {
    /// A TOML config file; every key can also be set as LINTEL_<SECTION>_<KEY>.
    #[arg(long, global = true, env = "LINTEL_CONFIG")]
    config: Option<PathBuf>,
    /// sqlite://FILE (default sqlite://lintel.db) or postgres://USER@HOST/DB.
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// Log as text (default) or JSON lines, on standard error.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the database and its key files (as the first `serve` would), and say where.
    Init,
    /// Back up a SQLite database and both its key files into one archive (tar), while
    /// lintel runs. With PostgreSQL: pg_dump, and copy the key files (see the README).
    Backup { file: PathBuf },
    /// Put a backup made by `lintel backup` in place of the database and its key files;
    /// refuses a backup whose key is not its database's.
    Restore {
        file: PathBuf,
        /// Replace an existing database and key files (stop lintel first).
        #[arg(long)]
        replace: bool,
    },
    /// Start the server (creates the database and key file on first start).
    Serve {
        /// Address to listen on (default 127.0.0.1:8080; port 0 picks a free one).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Manage admin tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Guest passes: a visitor's link to chosen doors for a while.
    Guests {
        #[command(subcommand)]
        command: GuestsCommand,
    },
    /// Manage outbound webhook endpoints (Standard Webhooks).
    Webhooks {
        #[command(subcommand)]
        command: WebhooksCommand,
    },
    /// Import people and their cards from CSV: a header row with id,name,email,card_uid
    /// and optionally revocation_code, groups (`;`-separated group ids) and status. A file
    /// whose header has a `badge` column (and no card_uid) is a badge system's export for
    /// the badge lookup: badge,user,... (it replaces the badges imported before).
    Import {
        file: PathBuf,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// The file is a badge export (badge,user,...), whatever its header says.
        #[arg(long)]
        badges: bool,
    },
    /// Print single-use backup codes for a door (each opens it once, typed at a keypad or
    /// sent as the bearer token of POST /open/{door}).
    BackupCodes {
        #[arg(long)]
        door: String,
        #[arg(long, default_value_t = 10)]
        count: u32,
    },
    /// The coworking membership platform ([cobot] in the config).
    Cobot {
        #[command(subcommand)]
        command: CobotCommand,
    },
    /// People from the LDAP / Active Directory directory ([ldap.sync] in the config).
    Ldap {
        #[command(subcommand)]
        command: LdapCommand,
    },
    /// People in the directory.
    Person {
        #[command(subcommand)]
        command: PersonCommand,
    },
    /// Members' cards from the makerspace CRM ([crm] in the config).
    Card {
        #[command(subcommand)]
        command: CardCommand,
    },
    /// Calls to other systems: list what is pending or failed (and why), or retry the failed.
    Outbox {
        #[command(subcommand)]
        command: Option<OutboxCommand>,
        /// Only entries in this state: pending, done or failed.
        #[arg(long)]
        state: Option<String>,
    },
    /// MQTT door controllers: their state and allow-list versions (as GET /api/v1/controllers).
    Controllers,
    /// Put a site or doors in lockdown (`on`), or lift it (`off`): every credential is
    /// refused but those of people exempt from lockdown. A running server follows at once.
    Lockdown {
        #[arg(value_parser = ["on", "off"])]
        state: String,
        /// Every door of this site.
        #[arg(long, conflicts_with = "door")]
        site: Option<String>,
        /// This door (repeat for several).
        #[arg(long, required_unless_present = "site")]
        door: Vec<String>,
    },
    /// Raise an emergency release of a site (`on`: its exit-route doors are held open,
    /// over lockdown) or reset it (`off`).
    Emergency {
        #[arg(value_parser = ["on", "off"])]
        state: String,
        #[arg(long, default_value = "main")]
        site: String,
        /// What raised it, for the record.
        #[arg(long)]
        why: Option<String>,
    },
    /// The open alarms (with --all, every alarm), or acknowledge one with a note.
    Alarms {
        #[command(subcommand)]
        command: Option<AlarmCommand>,
        /// Every alarm, those cleared and acknowledged too.
        #[arg(long)]
        all: bool,
    },
    /// Hold a door unlocked (`unlocked`) or keep it secure through its unlock schedule
    /// (`secure`) for a while, or end its hold (`end`). A running server follows within a
    /// second.
    Hold {
        door: String,
        #[arg(value_parser = ["unlocked", "secure", "end"])]
        state: String,
        /// For how many minutes (at most 7 days).
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=10_080))]
        minutes: u32,
    },
    /// A site's holidays, on which its doors' unlock schedules do not apply: list them,
    /// add one, load an iCalendar (.ics) file, or remove one.
    Holidays {
        #[command(subcommand)]
        command: Option<HolidayCommand>,
        /// The site (default `main`).
        #[arg(long, default_value = "main", global = true)]
        site: String,
    },
    /// Anti-passback zones: list them with who is inside, set one up, remove one, or
    /// forgive a person (or everyone) inside.
    Zones {
        #[command(subcommand)]
        command: Option<ZoneCommand>,
    },
    /// Print lintel's public key (hex), which controllers are given to verify their lists.
    ControllerKey,
    /// A reference MQTT door controller (docs/mqtt.md): taps from standard input
    /// (`tap DOOR UID [CODE]`), events as JSON lines; decides offline from its signed list.
    ControllerSim(controller_sim::Args),
    /// Measure decision latency, HTTP throughput, import speed, index memory and
    /// write-to-decision delay, and print a table.
    Bench(bench::Args),
    /// The benchmark's floor: a trivial server that answers a fixed 60-byte JSON.
    #[command(hide = true)]
    Floor(bench::FloorArgs),
}

#[derive(Subcommand)]
enum AlarmCommand {
    /// Acknowledge an alarm: it leaves the open alarms once its condition cleared too.
    Ack {
        id: String,
        /// What you found or did, for the record.
        #[arg(long)]
        note: Option<String>,
    },
}

#[derive(Subcommand)]
enum HolidayCommand {
    /// Add a day (or days through --to).
    Add {
        name: String,
        /// The first day, YYYY-MM-DD.
        from: chrono::NaiveDate,
        /// The last day, YYYY-MM-DD (default: the first).
        #[arg(long)]
        to: Option<chrono::NaiveDate>,
    },
    /// Load every event of an iCalendar file (a region's public holidays); loading it
    /// again adds only what is new.
    Import { file: PathBuf },
    /// Remove one by its id.
    Remove { id: String },
}

#[derive(Subcommand)]
enum ZoneCommand {
    /// Make or replace a zone whole.
    Set {
        id: String,
        #[arg(long)]
        name: String,
        /// The doors whose readers lead in, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        entry: Vec<String>,
        /// The doors whose readers lead out, comma-separated.
        #[arg(long, value_delimiter = ',')]
        exit: Vec<String>,
        /// `hard` refuses a second entry; `soft` lets them in and raises an alarm.
        #[arg(long, default_value = "hard", value_parser = ["hard", "soft"])]
        strictness: String,
        /// A person inside counts as outside again after this many minutes.
        #[arg(long, default_value_t = lintel_service::zones::DEFAULT_RESET_MINUTES)]
        reset_minutes: u32,
    },
    /// Remove a zone.
    Remove { id: String },
    /// Let a person (or, without --person, everyone) inside the zone enter again.
    Forgive {
        id: String,
        #[arg(long)]
        person: Option<String>,
    },
}

#[derive(Subcommand)]
enum CobotCommand {
    /// Create the webhook subscriptions lintel needs, pointing at its public_url.
    Subscribe,
    /// Reconcile now: every membership, plan and time pass, with progress.
    Sync {
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
}

#[derive(Subcommand)]
enum LdapCommand {
    /// Sync now: read the whole directory, create and update its people, offboard those
    /// who left or are disabled; with progress.
    Sync {
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// Offboard even more people than [ldap.sync] max_departures_percent allows.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum PersonCommand {
    /// Erase a person: their credentials, contacts and links to other systems go, their
    /// events keep a random token in place of their id, and the erasure is recorded.
    Forget { id: String },
}

#[derive(Subcommand)]
enum CardCommand {
    /// Look a member up in the CRM (updating lintel's copy) and print, as JSON, what to
    /// write on their card: the UID and the current revocation code.
    Issue {
        /// The member's CRM person id.
        #[arg(long)]
        member: String,
    },
}

#[derive(Subcommand)]
enum OutboxCommand {
    /// Queue every failed call again (after fixing what made it fail).
    Retry,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it once; only its SHA-256 is stored.
    Create {
        #[arg(long)]
        name: String,
        /// `admin` (an operator's: what its `--role` allows), `decisions` (only ask
        /// decisions: a station's token) or `scim` (only the SCIM provisioning API: an
        /// identity provider's token).
        #[arg(long, default_value = "admin", value_parser = ["admin", "decisions", "scim"])]
        scope: String,
        /// With `--scope admin`: `owner` (everything), `admin` (everything but tokens and
        /// roles), `front_desk` (people, credentials, opening doors), `viewer` (reads only),
        /// `display` (the facility display only) or `building` (a building system: raises an
        /// emergency release and reports door inputs, nothing else).
        #[arg(long, default_value = "owner", value_parser = ["owner", "admin", "front_desk", "viewer", "display", "building"])]
        role: String,
        /// With `--scope decisions`: the only door the token may ask about.
        #[arg(long)]
        door: Option<String>,
        /// With `--scope admin`: the one site the role holds at (its doors, its events);
        /// every site when left out. Not for an owner.
        #[arg(long)]
        site: Option<String>,
    },
    /// List token names (with their scope).
    List,
    /// Revoke a token by name.
    Revoke {
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum GuestsCommand {
    /// The passes, newest first.
    List {
        /// Only those neither over nor revoked.
        #[arg(long)]
        open: bool,
    },
    /// Issue a pass; prints its link (without `public_url`, its secret) once. With an
    /// email and `[smtp]`, the running server mails the link too.
    Add {
        #[arg(long)]
        name: String,
        #[arg(long)]
        email: Option<String>,
        /// A door it opens; repeat for several.
        #[arg(long = "door", required = true)]
        doors: Vec<String>,
        /// RFC 3339, e.g. 2026-12-08T09:00:00+01:00 (default: now).
        #[arg(long)]
        from: Option<chrono::DateTime<chrono::Utc>>,
        /// RFC 3339.
        #[arg(long)]
        until: chrono::DateTime<chrono::Utc>,
        /// Do not mail the link (only print it).
        #[arg(long)]
        no_mail: bool,
    },
    /// Revoke a pass: its link stops working at once.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum WebhooksCommand {
    /// List the endpoints.
    List,
    /// Register an endpoint and print its signing secret once.
    Add {
        #[arg(long)]
        url: String,
        /// An event kind it receives (`decision`, `door.*`, `*`); repeat for several.
        #[arg(long = "kind", required = true)]
        kinds: Vec<String>,
        #[arg(long)]
        description: Option<String>,
        /// Only the events at this site's doors.
        #[arg(long)]
        site: Option<String>,
        /// Allow plain http, to a loopback or private address only.
        #[arg(long)]
        allow_http: bool,
    },
    /// A new signing secret, printed once; the old one signs beside it for a day.
    Rotate {
        id: String,
    },
    /// Enable an endpoint (lintel disables one that answered 410 or kept failing).
    Enable {
        id: String,
    },
    Disable {
        id: String,
    },
    Remove {
        id: String,
    },
}

async fn run_guests(services: &lintel_service::Services, command: GuestsCommand) -> anyhow::Result<()> {
    let guests = &services.guests;
    let by = lintel_service::Actor::cli();
    match command {
        GuestsCommand::List { open } => {
            for p in guests.list(open, 500).await? {
                let (from, until) = (p.valid_from.to_rfc3339(), p.valid_until.to_rfc3339());
                println!("{}\t{}\t{}\t{from}\t{until}\t{}", p.id, p.name, p.doors.join(","), p.state);
            }
        }
        GuestsCommand::Add { name, email, doors, from, until, no_mail } => {
            let send = no_mail.then_some(false);
            let pass = lintel_proto::NewGuestPass { name, email, doors, valid_from: from, valid_until: until, send };
            let issued = guests.issue(&by, pass).await?;
            println!("{}", issued.link.as_deref().or(issued.secret.as_deref()).unwrap_or_default());
            let mailed = if issued.emailed == Some(true) { ", and mailed" } else { "" };
            eprintln!("pass {} issued ({}){mailed}; the link is shown only this once", issued.id, issued.state);
        }
        GuestsCommand::Revoke { id } => {
            let pass = guests.revoke(&by, id).await?;
            eprintln!("pass {} of {} revoked", pass.id, pass.name);
        }
    }
    Ok(())
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    // A log that cannot be written (a full disk, a file-size limit) loses lines; reporting
    // that on stderr would panic (eprintln!) in whatever task was logging, a request's.
    // Colours only on a terminal: not in journald or a log file.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .log_internal_errors(false);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Whether a command may create the database: only `serve` and `init` do, so that a
/// command run in the wrong folder says so instead of working on a new, empty database.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Open {
    OrCreate,
    Existing,
}

async fn open_store(config: &Config, open: Open) -> anyhow::Result<Store> {
    let sync = match config.sqlite.synchronous.as_str() {
        "normal" => SqliteSync::Normal,
        "full" => SqliteSync::Full,
        other => anyhow::bail!("[sqlite] synchronous = {other:?}: use normal or full"),
    };
    let url = &config.database_url;
    let opened = match open {
        Open::OrCreate => Store::open(url, sync).await.map_err(anyhow::Error::from),
        Open::Existing => Store::open_existing(url, sync).await.with_context(|| {
            "only `lintel serve` and `lintel init` create a database; run this where lintel's database is, \
             or give its URL (--database-url, LINTEL_DATABASE_URL, database_url in --config)"
        }),
    };
    opened.with_context(|| format!("opening the database {}", lintel_store::redact_url(url)))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

/// A file-size limit (`ulimit -f`, systemd's `LimitFSIZE=`) kills a process with SIGXFSZ
/// by default. Handled, the write fails instead, as on a full disk: lintel refuses what it
/// cannot record, says so in `/readyz`, and recovers once the limit is raised.
#[cfg(unix)]
fn survive_file_size_limit() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::from_raw(libc::SIGXFSZ)) {
        Ok(mut reached) => {
            tokio::spawn(async move {
                while reached.recv().await.is_some() {
                    tracing::error!("a file reached this process's file-size limit (RLIMIT_FSIZE); writes fail");
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "SIGXFSZ cannot be handled; a file-size limit would end lintel"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut config = config::load(cli.config.as_deref(), std::env::vars())?;
    if let Some(url) = cli.database_url {
        config.database_url = url;
    }
    if let Some(format) = cli.log_format {
        config.log_format = format;
    }
    init_logs(config.log_format);
    match cli.command {
        Command::Serve { listen } => {
            #[cfg(unix)]
            survive_file_size_limit();
            if let Some(listen) = listen {
                config.listen = listen;
            }
            let (store, server) = open_server(&config, Open::OrCreate).await?;
            lintel_server::serve(store, server, shutdown_signal()).await?;
        }
        Command::Init => {
            let (store, _) = open_server(&config, Open::OrCreate).await?;
            store.close().await;
            let key_file = key_file(&config);
            println!("lintel's database is ready at {}", lintel_store::redact_url(&config.database_url));
            println!("key files: {} and {}", key_file.display(), keys::signing_key_path(&key_file).display());
            eprintln!("back up the database and both key files together: one without the others is useless");
        }
        Command::Backup { file } => {
            let store = open_store(&config, Open::Existing).await?;
            let made = backup::create(&store, &key_file(&config), &file).await;
            store.close().await;
            let bytes = made?;
            println!("backed up the database and its key files to {} ({bytes} bytes)", file.display());
        }
        Command::Restore { file, replace } => {
            let database = keys::sqlite_file(&config.database_url)
                .context("lintel restore puts back a SQLite database; with PostgreSQL use pg_restore or psql")?;
            backup::restore(&file, &database, &key_file(&config), replace).await?;
            println!("restored {} from {}; start lintel", database.display(), file.display());
        }
        Command::Cobot { command } => {
            let (store, server) = open_server(&config, Open::Existing).await?;
            let services =
                lintel_service::Services::start(store.clone(), server.services, lintel_service::Role::Command).await?;
            let ran = run_cobot(&services, command).await;
            store.close().await;
            ran?;
        }
        Command::Ldap { command: LdapCommand::Sync { quiet, force } } => {
            let (store, server) = open_server(&config, Open::Existing).await?;
            let services =
                lintel_service::Services::start(store.clone(), server.services, lintel_service::Role::Command).await?;
            let ran = run_ldap_sync(&services, quiet, force).await;
            store.close().await;
            ran?;
        }
        Command::Person { command: PersonCommand::Forget { id } } => {
            let (store, server) = open_server(&config, Open::Existing).await?;
            let services =
                lintel_service::Services::start(store.clone(), server.services, lintel_service::Role::Command).await?;
            let settle = services.config.follow_every + Duration::from_secs(1);
            let forgotten = services.directory.forget_person(&lintel_service::Actor::cli(), id.clone(), settle).await;
            store.close().await;
            let (token, events) = forgotten?;
            println!("{token}");
            eprintln!("person {id:?} forgotten; their {events} events now carry the token above");
        }
        Command::Card { command: CardCommand::Issue { member } } => {
            let (store, server) = open_server(&config, Open::Existing).await?;
            let services =
                lintel_service::Services::start(store.clone(), server.services, lintel_service::Role::Command).await?;
            let crm = services.crm.as_ref().context("the makerspace CRM is not configured ([crm] in the config)")?;
            let card = crm.issue_card(&member).await;
            store.close().await;
            let card = card?;
            println!("{}", serde_json::to_string(&card)?);
            let code = card.revocation_code.as_deref().map_or("no revocation code".into(), |c| format!("code {c:?}"));
            eprintln!("member {}: write UID {} with {code} on the card", card.member, card.uid);
            if !card.in_good_standing {
                eprintln!("note: member {} does not hold the membership; the card will be refused", card.member);
            }
        }
        Command::Outbox { command, state } => {
            let store = open_store(&config, Open::Existing).await?;
            match command {
                Some(OutboxCommand::Retry) => {
                    println!("{} failed calls queued again", store.retry_failed_outbox().await?)
                }
                None => {
                    let state = state
                        .as_deref()
                        .map(|s| lintel_proto::WorkState::parse(s).context("--state is pending, done or failed"))
                        .transpose()?;
                    let (inbox_pending, inbox_failed, pending, failed) = store.work_backlog().await?;
                    println!(
                        "outbox: {pending} pending, {failed} failed; inbox: {inbox_pending} pending, {inbox_failed} failed"
                    );
                    for e in store.outbox(state, 100).await? {
                        let why = e.last_error.as_deref().unwrap_or("");
                        println!(
                            "{}\t{}\t{}\t{}\t{} attempts\t{}\t{why}",
                            e.id,
                            e.state.as_str(),
                            e.target,
                            e.kind,
                            e.attempts,
                            e.idempotency_key
                        );
                    }
                }
            }
            store.close().await;
        }
        Command::Token { command } => {
            let store = open_store(&config, Open::Existing).await?.acting_as(lintel_service::Actor::cli().as_str());
            match command {
                TokenCommand::Create { name, scope, role, door, site } => {
                    let role = lintel_core::Role::parse(&role).context("a role clap accepted")?;
                    if site.is_some() && scope != "admin" {
                        anyhow::bail!("--site goes with --scope admin");
                    }
                    let scope = match (scope.as_str(), door) {
                        ("admin", None) => lintel_store::TokenScope::Operator(lintel_core::RoleAt { role, site }),
                        ("scim", None) => lintel_store::TokenScope::Scim,
                        ("admin" | "scim", Some(_)) => anyhow::bail!("--door goes with --scope decisions"),
                        (_, door) => lintel_store::TokenScope::Decisions { door },
                    };
                    let token = lintel_service::tokens::create(&store, &name, &scope).await?;
                    println!("{token}");
                    eprintln!("token {name:?} created; it is shown only this once");
                }
                TokenCommand::List => {
                    for t in store.tokens().await? {
                        let at = chrono::DateTime::from_timestamp_micros(t.created_at)
                            .map(|t| t.to_rfc3339())
                            .unwrap_or_default();
                        println!("{}\t{at}\t{}", t.name, t.scope.label());
                    }
                }
                TokenCommand::Revoke { name } => {
                    store.revoke_token(&name).await?;
                    println!("token {name:?} revoked");
                }
            }
            store.close().await;
        }
        Command::Guests { command } => {
            let (store, server) = open_server(&config, Open::Existing).await?;
            let services =
                lintel_service::Services::start(store.clone(), server.services, lintel_service::Role::Command).await?;
            let ran = run_guests(&services, command).await;
            store.close().await;
            ran?;
        }
        Command::Webhooks { command } => {
            use lintel_service::webhooks;
            let store = open_store(&config, Open::Existing).await?.acting_as(lintel_service::Actor::cli().as_str());
            let enabled = |enabled| lintel_proto::WebhookEndpointPatch { enabled: Some(enabled), ..Default::default() };
            match command {
                WebhooksCommand::List => {
                    for e in webhooks::list(&store).await? {
                        let state = match (&e.enabled, &e.disabled_reason) {
                            (true, _) => "enabled".to_owned(),
                            (false, Some(why)) => format!("disabled: {why}"),
                            (false, None) => "disabled".to_owned(),
                        };
                        let site = e.site.as_deref().unwrap_or("every site");
                        println!("{}\t{}\t{}\t{site}\t{state}", e.id, e.url, e.kinds.join(","));
                    }
                }
                WebhooksCommand::Add { url, kinds, description, site, allow_http } => {
                    let new =
                        lintel_proto::NewWebhookEndpoint { url, kinds, site, description, enabled: None, allow_http };
                    let made = webhooks::create(&store, new).await?;
                    println!("{}", made.secret);
                    eprintln!("endpoint {} registered; its secret is shown only this once", made.endpoint.id);
                }
                WebhooksCommand::Rotate { id } => {
                    println!("{}", webhooks::rotate(&store, &id).await?.secret);
                    eprintln!("the old secret keeps signing beside it for a day");
                }
                WebhooksCommand::Enable { id } => drop(webhooks::patch(&store, &id, enabled(true)).await?),
                WebhooksCommand::Disable { id } => drop(webhooks::patch(&store, &id, enabled(false)).await?),
                WebhooksCommand::Remove { id } => webhooks::delete(&store, &id).await?,
            }
            store.close().await;
        }
        Command::Import { file, quiet, badges } => {
            import::check_file(&file)?;
            if badges || badges::is_badge_file(&file)? {
                let store = open_store(&config, Open::Existing).await?;
                let report = badges::run(&store, &file, quiet).await;
                store.close().await;
                let report = report?;
                badges::print(&report);
                if !report.rejected.is_empty() {
                    std::process::exit(1);
                }
                return Ok(());
            }
            let store = open_store(&config, Open::Existing).await?;
            let report = import::run(&store, &file, quiet).await?;
            store.close().await;
            import::print(&report);
            if !report.rejected.is_empty() {
                std::process::exit(1);
            }
        }
        Command::BackupCodes { door, count } => {
            let store = open_store(&config, Open::Existing).await?;
            let codes = lintel_service::backup_codes::issue(&store, &door, count).await;
            store.close().await;
            let codes = codes?;
            for code in codes {
                println!("{code}");
            }
            eprintln!("{count} single-use codes for door {door:?}; each works once. Keep them somewhere safe.");
        }
        Command::Lockdown { state, site, door } => {
            let (store, server) = open_server(&config, Open::Existing).await?;
            let services =
                lintel_service::Services::start(store.clone(), server.services, lintel_service::Role::Command).await?;
            let scope = match site {
                Some(site) => lintel_store::LockdownScope::Site(site),
                None => lintel_store::LockdownScope::Doors(door),
            };
            let on = state == "on";
            let changed =
                lintel_service::lockdown::set(&services.directory, &lintel_service::Actor::cli(), scope, on).await;
            store.close().await;
            let changed = changed?;
            let what = if on { "in lockdown now" } else { "out of lockdown now" };
            match changed.is_empty() {
                true => println!("no door changed: they were {what} already"),
                false => println!("{} {what}", changed.join(", ")),
            }
        }
        Command::Alarms { command, all } => {
            let (store, server) = open_server(&config, Open::Existing).await?;
            let services =
                lintel_service::Services::start(store.clone(), server.services, lintel_service::Role::Command).await?;
            let done: anyhow::Result<()> = async {
                match command {
                    None => {
                        for a in services.store().alarms(all, None).await? {
                            let state = match (a.cleared_at, &a.acked_by) {
                                (Some(_), Some(by)) => format!("cleared, acknowledged by {by}"),
                                (None, Some(by)) => format!("acknowledged by {by}, not cleared"),
                                (Some(_), None) => "cleared, not acknowledged".to_owned(),
                                (None, None) => "open".to_owned(),
                            };
                            println!("{}\t{}\t{}\t{}\t{state}", a.id, a.raised_at.to_rfc3339(), a.door, a.kind);
                        }
                    }
                    Some(AlarmCommand::Ack { id, note }) => {
                        let by = lintel_service::Actor::cli();
                        let a = lintel_service::alarms::acknowledge(&services.directory, &by, id, note).await?;
                        println!("{} acknowledged ({} at {})", a.id, a.kind, a.door);
                    }
                }
                Ok(())
            }
            .await;
            store.close().await;
            done?;
        }
        Command::Emergency { state, site, why } => {
            let (store, server) = open_server(&config, Open::Existing).await?;
            let services =
                lintel_service::Services::start(store.clone(), server.services, lintel_service::Role::Command).await?;
            let on = state == "on";
            let by = lintel_service::Actor::cli();
            let changed = lintel_service::door_modes::emergency(&services.directory, &by, site.clone(), on, why).await;
            store.close().await;
            let what = if on { "under an emergency release" } else { "out of its emergency release" };
            match changed? {
                true => println!("{site} is {what} now; a running server follows within a second"),
                false => println!("{site} was {what} already"),
            }
        }
        Command::Hold { door, state, minutes } => {
            let (store, server) = open_server(&config, Open::Existing).await?;
            let services =
                lintel_service::Services::start(store.clone(), server.services, lintel_service::Role::Command).await?;
            let until = chrono::Utc::now() + chrono::Duration::minutes(i64::from(minutes));
            let hold = match state.as_str() {
                "unlocked" => Some(lintel_proto::NewHold { state: lintel_proto::HoldState::Unlocked, until }),
                "secure" => Some(lintel_proto::NewHold { state: lintel_proto::HoldState::Secure, until }),
                _ => None,
            };
            let by = lintel_service::Actor::cli();
            let done = lintel_service::door_modes::set_hold(&services.directory, &by, door.clone(), hold).await;
            store.close().await;
            match done?.state.hold {
                Some(hold) => println!("{door}: held {} until {}", hold.state.as_str(), hold.until.to_rfc3339()),
                None => println!("{door}: no hold; it follows its schedule"),
            }
        }
        Command::Holidays { command, site } => {
            let (store, server) = open_server(&config, Open::Existing).await?;
            let services =
                lintel_service::Services::start(store.clone(), server.services, lintel_service::Role::Command).await?;
            let (directory, by) = (&services.directory, lintel_service::Actor::cli());
            let done: anyhow::Result<()> = async {
                use lintel_service::door_modes;
                match command {
                    None => {
                        for h in door_modes::holidays(directory, &by, &site).await? {
                            println!("{}\t{}\t{}\t{}", h.id, h.from, h.to, h.name);
                        }
                    }
                    Some(HolidayCommand::Add { name, from, to }) => {
                        let new = lintel_proto::NewHoliday { name, from, to };
                        let h = door_modes::add_holiday(directory, &by, site, new).await?;
                        println!("added {} ({} to {})", h.id, h.from, h.to);
                    }
                    Some(HolidayCommand::Import { file }) => {
                        let text =
                            std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
                        let report = door_modes::import_holidays(directory, &by, site, &text).await?;
                        println!("{} added, {} there already", report.added, report.unchanged);
                    }
                    Some(HolidayCommand::Remove { id }) => {
                        door_modes::delete_holiday(directory, &by, site, id.clone()).await?;
                        println!("removed {id}");
                    }
                }
                Ok(())
            }
            .await;
            store.close().await;
            done?;
        }
        Command::Zones { command } => {
            let (store, server) = open_server(&config, Open::Existing).await?;
            let services =
                lintel_service::Services::start(store.clone(), server.services, lintel_service::Role::Command).await?;
            let (directory, by) = (&services.directory, lintel_service::Actor::cli());
            let done: anyhow::Result<()> = async {
                use lintel_service::zones;
                match command {
                    None => {
                        for z in directory.store.zones().await? {
                            let inside: Vec<&str> = z.inside.iter().map(|p| p.person_id.as_str()).collect();
                            println!(
                                "{}\t{}\t{}, reset after {} min\tin: {}\tout: {}\tinside ({}): {}",
                                z.id,
                                z.name,
                                z.strictness,
                                z.reset_minutes,
                                z.entry.join(","),
                                z.exit.join(","),
                                inside.len(),
                                inside.join(",")
                            );
                        }
                    }
                    Some(ZoneCommand::Set { id, name, entry, exit, strictness, reset_minutes }) => {
                        let spec = lintel_proto::ZoneSpec {
                            name,
                            strictness: Some(strictness),
                            reset_minutes: Some(reset_minutes),
                            entry,
                            exit,
                        };
                        let (zone, made) = zones::put(directory, &by, id, spec).await?;
                        println!("{} zone {} ({})", if made { "made" } else { "replaced" }, zone.id, zone.strictness);
                    }
                    Some(ZoneCommand::Remove { id }) => {
                        zones::delete(directory, &by, id.clone()).await?;
                        println!("removed zone {id}");
                    }
                    Some(ZoneCommand::Forgive { id, person }) => {
                        let forgiven = zones::forgive(directory, &by, id.clone(), person).await?;
                        println!("{forgiven} forgiven in zone {id}");
                    }
                }
                Ok(())
            }
            .await;
            store.close().await;
            done?;
        }
        Command::Controllers => {
            let (store, server) = open_server(&config, Open::Existing).await?;
            let services =
                lintel_service::Services::start(store.clone(), server.services, lintel_service::Role::Command).await?;
            let controllers = lintel_service::devices::controllers::overview(services.store()).await;
            store.close().await;
            for c in controllers? {
                let online = match c.online {
                    Some(true) => "online",
                    Some(false) => "offline",
                    None => "never seen",
                };
                let drift = if c.drift { "  DRIFT: not acknowledged yet" } else { "" };
                let refused = c.refused.map(|r| format!("  refused: {r}")).unwrap_or_default();
                println!(
                    "{}  {online}  doors {}  list v{} ({} cards), acknowledged v{}{drift}{refused}",
                    c.id,
                    c.doors.join(","),
                    c.list_version,
                    c.cards,
                    c.acknowledged_version
                );
            }
        }
        Command::ControllerKey => {
            let (store, server) = open_server(&config, Open::Existing).await?;
            store.close().await;
            let authority = lintel_signed::Authority::from_secret_bytes(&server.services.signing_key)?;
            println!("{}", hex::encode(authority.verifying_key().as_bytes()));
        }
        Command::ControllerSim(args) => controller_sim::run(args).await?,
        Command::Bench(args) => bench::run(args).await?,
        Command::Floor(args) => bench::floor(args).await?,
    }
    Ok(())
}

fn key_file(config: &Config) -> PathBuf {
    config.key_file.clone().unwrap_or_else(|| keys::default_path(&config.database_url))
}

/// The store and the server's configuration, with key material loaded. The database is
/// opened first: key files are made only for a database lintel has just set up, never
/// beside a file that is not lintel's.
async fn open_server(config: &Config, open: Open) -> anyhow::Result<(Store, ServerConfig)> {
    let listen: SocketAddr = config.listen.parse().with_context(|| format!("listen address {:?}", config.listen))?;
    let timezone =
        config.timezone.parse().map_err(|_| anyhow::anyhow!("timezone {:?} is not an IANA name", config.timezone))?;
    let key_file = key_file(config);
    let store = open_store(config, open).await?;
    let pin_key = match store.key_fingerprint().await? {
        // Set up before: its key file must be there; a new one would never match.
        Some(_) => keys::load(&key_file)?,
        None => keys::load_or_create(&key_file)?,
    };
    if !store.check_key_fingerprint(keys::fingerprint(&pin_key)).await? {
        anyhow::bail!(
            "the key file {} is not the one this database was set up with; PINs would all be unknown. \
             Use the original key file (set key_file / LINTEL_KEY_FILE), or restore it from your backup",
            key_file.display()
        );
    }
    let services = lintel_service::Config {
        admin_token: config.admin_token.clone().filter(|t| !t.is_empty()),
        pin_key,
        signing_key: keys::load_or_create(&keys::signing_key_path(&key_file))?,
        follow_every: Duration::from_millis(config.follow_interval_ms.max(50)),
        limiter: LimiterConfig {
            free_failures: config.limits.free_failures,
            first_lock: Duration::from_secs(config.limits.first_lock_seconds),
            max_lock: Duration::from_secs(config.limits.max_lock_seconds),
            keypad_max_lock: Duration::from_secs(config.limits.keypad_max_lock_seconds),
            ..LimiterConfig::default()
        },
        timezone,
        public_url: config.public_url.clone(),
        photos_dir: config.photos_dir(),
        max_pending_deliveries: i64::from(config.limits.max_pending_deliveries.max(1)),
        event_retention: config.events.retain_days.map(|days| Duration::from_secs(u64::from(days.max(1)) * 86_400)),
        crm: config.crm_config()?,
        cobot: config.cobot_config(timezone)?,
        lockcloud: config.lockcloud.clone().map(|c| LockCloudConfig {
            base_url: c.base_url,
            token_header: c.token_header,
            token: c.token,
            webhook_token: c.webhook_token,
            door_locks: c.door_locks,
        }),
        smtp: config.smtp.clone().map(|m| SmtpConfig { url: m.url, from: m.from }),
        sms: config.sms.clone().map(|m| SmsConfig { webhook_url: m.webhook_url, token: m.token }),
        mqtt: config.mqtt_config(),
        osdp: config.osdp_config()?,
        lookup: config.lookup_config()?,
        ldap_sync: config.ldap_sync_config()?,
        slack: config.slack.clone().map(|s| lintel_service::integrations::slack::SlackConfig {
            signing_secret: s.signing_secret,
            bot_token: s.bot_token,
            api_base_url: s.api_base_url,
            group: s.group,
            allow_guests: s.allow_guests,
            reconcile_every: Duration::from_secs(s.reconcile_minutes.max(1) * 60),
            doorbell_channel: s.doorbell_channel,
        }),
        doorbell: config.doorbell_config()?,
        notify: config.notify_config()?,
        oidc: config.oidc.clone().map(|o| lintel_service::integrations::oidc::OidcConfig {
            issuer: o.issuer,
            jwks_url: o.jwks_url,
            audience: o.audience,
            client_secret: o.client_secret,
        }),
    };
    let mut http = config.http.config();
    http.trusted_proxies = lintel_server::TrustedProxies::parse(&config.trusted_proxies)?;
    let server = ServerConfig { listen, max_body_bytes: config.max_body_bytes, http, services };
    Ok((store, server))
}

async fn run_cobot(services: &lintel_service::Services, command: CobotCommand) -> anyhow::Result<()> {
    let cobot = services.cobot.as_ref().context("the membership platform is not configured ([cobot] in the config)")?;
    match command {
        CobotCommand::Subscribe => {
            for callback in cobot.subscribe().await? {
                println!("subscribed: {callback}");
            }
        }
        CobotCommand::Sync { quiet } => {
            let bar = progress_bar(quiet, "memberships");
            let report = cobot.sync(&advance(&bar)).await?;
            bar.finish_and_clear();
            println!(
                "{} memberships: {} new, {} without access now, {} with time passes; {} gone from the platform",
                report.memberships, report.created, report.inactive, report.with_passes, report.gone
            );
        }
    }
    Ok(())
}

async fn run_ldap_sync(services: &lintel_service::Services, quiet: bool, force: bool) -> anyhow::Result<()> {
    let ldap = services.ldap_sync.as_ref().context("the LDAP sync is not configured ([ldap.sync] in the config)")?;
    let bar = progress_bar(quiet, "entries");
    let report = ldap.sync(force, &advance(&bar)).await?;
    bar.finish_and_clear();
    println!(
        "{} entries: {} new, {} updated, {} unchanged; {} offboarded; {} disabled, {} skipped, {} failed",
        report.seen,
        report.created,
        report.updated,
        report.unchanged,
        report.offboarded,
        report.disabled,
        report.skipped,
        report.failed
    );
    Ok(())
}

/// A sync's progress report (done of total) shown on `bar`.
fn advance(bar: &indicatif::ProgressBar) -> impl Fn(usize, usize) + Sync + '_ {
    |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    }
}

fn progress_bar(quiet: bool, what: &str) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(0);
    let template = format!("{{bar:40}} {{pos}}/{{len}} {what} ({{eta}} left)");
    if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
