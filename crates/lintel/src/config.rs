//! Configuration: defaults, then the TOML file, then `LINTEL_*` environment variables,
//! then command-line flags. Every key of the file can be set as `LINTEL_<KEY>` (top level)
//! or `LINTEL_<SECTION>_<KEY>`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use lintel_service::integrations::cobot::CobotConfig;
use lintel_service::integrations::ldap_sync::{LdapSyncConfig, Mapping};
use lintel_service::integrations::lookup::LdapServer;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub listen: String,
    pub database_url: String,
    pub admin_token: Option<String>,
    /// Where the server's key material lives (created on first start, mode 0600).
    pub key_file: Option<PathBuf>,
    /// Where days begin and end for attendance (IANA name).
    pub timezone: String,
    pub max_body_bytes: usize,
    /// How often a server looks for directory changes made by other processes.
    pub follow_interval_ms: u64,
    pub log_format: LogFormat,
    pub sqlite: SqliteConfig,
    pub limits: LimitsConfig,
    pub events: EventsSection,
    pub http: HttpSection,
    pub slack: Option<SlackSection>,
    pub doorbell: Option<DoorbellSection>,
    pub notify: Option<NotifySection>,
    /// The address the outside world reaches lintel at, e.g. `https://doors.example.org`
    /// (links lintel hands out, such as the doorbell's picture in Slack).
    pub public_url: Option<String>,
    /// The reverse proxies (addresses or CIDRs) whose `Forwarded` / `X-Forwarded-For`
    /// name the client; nobody else's are believed.
    #[serde(deserialize_with = "list")]
    pub trusted_proxies: Vec<String>,
    pub oidc: Option<OidcSection>,
    pub cobot: Option<CobotSection>,
    pub smtp: Option<SmtpSection>,
    pub sms: Option<SmsSection>,
    pub crm: Option<CrmSection>,
    pub lockcloud: Option<LockCloudSection>,
    pub lookup: Option<LookupSection>,
    pub mqtt: Option<MqttSection>,
    pub ldap: Option<LdapSection>,
    pub osdp: Option<OsdpSection>,
}

/// `[mqtt]`: the broker MQTT door controllers hang off (docs/mqtt.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSection {
    /// `mqtt://[user:password@]host[:port]`.
    pub url: String,
    /// Topics are `<topic_prefix>/c/<controller>/...` (default `lintel`).
    #[serde(default)]
    pub topic_prefix: Option<String>,
    /// lintel's MQTT client id (default `lintel`); its session on the broker is kept
    /// under it, so taps sent while lintel is down are delivered when it is back.
    #[serde(default)]
    pub client_id: Option<String>,
}

/// `[lookup]`: the badge identity lookup (GroundControl-style).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupSection {
    /// Where the client asks, `[DATA]` standing for the raw badge id (hex):
    /// `/lookup?id=[DATA]` or `/lookup/[DATA]`.
    pub path_template: String,
    /// The conversion steps, in order: a list, or `reverse_bytes,hex_to_decimal`.
    #[serde(default, deserialize_with = "list")]
    pub conversions: Vec<String>,
    /// The field answered as `user` (default `user`).
    #[serde(default)]
    pub user_attribute: Option<String>,
    /// The fields answered besides `user`: a list, or `fullname,email`.
    #[serde(default, deserialize_with = "list")]
    pub attributes: Vec<String>,
    /// `user:password` the client must send (basic auth); none when absent.
    #[serde(default)]
    pub basic_auth: Option<String>,
}

impl Config {
    pub fn mqtt_config(&self) -> Option<lintel_doors::mqtt::MqttConfig> {
        self.mqtt.as_ref().map(|m| lintel_doors::mqtt::MqttConfig {
            url: m.url.clone(),
            topic_prefix: m.topic_prefix.clone().unwrap_or_else(|| "lintel".into()),
            client_id: m.client_id.clone().unwrap_or_else(|| "lintel".into()),
        })
    }

    /// The badge lookup's settings, checked (its route and conversion steps, and `[ldap]`).
    pub fn lookup_config(&self) -> anyhow::Result<Option<lintel_service::integrations::lookup::LookupConfig>> {
        let Some(l) = &self.lookup else {
            // `[ldap]` serves the badge lookup and the sync: with neither it would do nothing.
            if self.ldap.as_ref().is_some_and(|d| d.sync.is_none()) {
                bail!(
                    "[ldap] does nothing alone: configure [lookup] (the badge lookup, its path_template) or \
                     [ldap.sync] (people from the directory)"
                );
            }
            return Ok(None);
        };
        let config = lintel_service::integrations::lookup::LookupConfig::new(
            &l.path_template,
            &l.conversions,
            l.user_attribute.as_deref(),
            l.attributes.clone(),
            l.basic_auth.clone(),
        )
        .map_err(|e| anyhow::anyhow!("[lookup] {e}"))?;
        let Some(d) = &self.ldap else { return Ok(Some(config)) };
        let filter = match (&d.filter, &d.sync) {
            (Some(filter), _) => filter.clone(),
            // The directory is there for the sync; the lookup does not ask it.
            (None, Some(_)) => return Ok(Some(config)),
            (None, None) => bail!("[ldap] filter is needed by the badge lookup, e.g. (employeeNumber=[DATA])"),
        };
        let ldap = lintel_service::integrations::lookup::LdapDirectory::new(
            lintel_service::integrations::lookup::LdapConfig {
                server: d.server(),
                base: d.base.clone(),
                filter,
                user_attribute: d.user_attribute.clone(),
                attributes: d.attributes.clone(),
                timeout: d.timeout(),
            },
        )
        .map_err(|e| anyhow::anyhow!("[ldap] {e}"))?;
        Ok(Some(config.with_ldap(ldap)))
    }

    /// The people sync's settings (`[ldap.sync]`), on `[ldap]`'s server.
    pub fn ldap_sync_config(&self) -> anyhow::Result<Option<LdapSyncConfig>> {
        let Some(d) = &self.ldap else { return Ok(None) };
        let Some(s) = &d.sync else { return Ok(None) };
        if !(1..=100).contains(&s.max_departures_percent) {
            bail!("[ldap.sync] max_departures_percent must be 1 to 100");
        }
        let optional = |a: &Option<String>| a.clone().filter(|a| !a.trim().is_empty());
        Ok(Some(LdapSyncConfig {
            server: d.server(),
            base: s.base.clone().unwrap_or_else(|| d.base.clone()),
            filter: s.filter.clone(),
            page_size: s.page_size,
            timeout: d.timeout(),
            deadline: std::time::Duration::from_secs(s.deadline_seconds.max(1)),
            mapping: Mapping {
                id_attribute: s.id_attribute.clone(),
                name_attribute: s.name_attribute.clone(),
                email_attribute: optional(&s.email_attribute),
                card_attribute: optional(&s.card_attribute),
                group_attribute: s.group_attribute.clone(),
                groups: s.groups.clone(),
            },
            every: std::time::Duration::from_secs(s.every_minutes.max(1) * 60),
            max_departures_percent: s.max_departures_percent,
        }))
    }
}

/// `[ldap]`: an LDAP / Active Directory directory the badge lookup asks (after the
/// imported badges, before lintel's own cards), and people are synced from (`[ldap.sync]`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapSection {
    /// `ldap://host:389` or `ldaps://host:636`.
    pub url: String,
    /// Upgrade `ldap://` with StartTLS before binding.
    #[serde(default)]
    pub starttls: bool,
    /// The account lintel binds as (anonymous when absent).
    #[serde(default)]
    pub bind_dn: Option<String>,
    #[serde(default)]
    pub bind_password: Option<String>,
    /// Where the search starts (its whole subtree).
    pub base: String,
    /// The badge lookup's filter, `[DATA]` standing for the converted badge id:
    /// `(employeeNumber=[DATA])`.
    #[serde(default)]
    pub filter: Option<String>,
    /// The LDAP attribute answered as `user` (`uid`; `sAMAccountName` in Active Directory).
    #[serde(default = "default_ldap_user_attribute")]
    pub user_attribute: String,
    /// Answer attribute -> LDAP attribute: a table, or `fullname=cn,email=mail`.
    #[serde(default, deserialize_with = "pairs")]
    pub attributes: std::collections::BTreeMap<String, String>,
    /// The deadline of one query (connect, bind, search), 100 to 30000.
    #[serde(default = "default_ldap_timeout_ms")]
    pub timeout_ms: u64,
    /// CA certificates (PEM) for ldaps:// or StartTLS; the system's roots when absent.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// People from the directory.
    #[serde(default)]
    pub sync: Option<LdapSyncSection>,
}

impl LdapSection {
    fn server(&self) -> LdapServer {
        LdapServer {
            url: self.url.clone(),
            starttls: self.starttls,
            bind_dn: self.bind_dn.clone().filter(|b| !b.trim().is_empty()),
            bind_password: self.bind_password.clone().filter(|p| !p.is_empty()),
            ca_file: self.ca_file.clone(),
        }
    }

    fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.timeout_ms.clamp(100, 30_000))
    }
}

impl std::fmt::Debug for LdapSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapSection")
            .field("url", &self.url)
            .field("bind_dn", &self.bind_dn)
            .field("bind_password", &self.bind_password.as_ref().map(|_| "***"))
            .field("base", &self.base)
            .field("filter", &self.filter)
            .field("sync", &self.sync)
            .finish_non_exhaustive()
    }
}

/// `[ldap.sync]`: every entry under `base` matching `filter` is a person; see the README.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LdapSyncSection {
    /// Where the listing starts; `[ldap] base` when absent.
    pub base: Option<String>,
    pub filter: String,
    /// The entry's stable id: `entryUUID`, or `objectGUID` in Active Directory (hex).
    pub id_attribute: String,
    pub name_attribute: String,
    pub email_attribute: Option<String>,
    /// Its values are the person's card UIDs (hex); no cards from the directory when absent.
    pub card_attribute: Option<String>,
    pub group_attribute: String,
    /// Directory group DN -> lintel group: a table, or `DN=group;DN=group`.
    #[serde(deserialize_with = "dn_groups")]
    pub groups: std::collections::BTreeMap<String, String>,
    pub page_size: u32,
    pub every_minutes: u64,
    /// The deadline of a whole listing (every page).
    pub deadline_seconds: u64,
    /// A sync that would take access from more than this share of the directory's
    /// people (and more than one) is refused unless forced.
    pub max_departures_percent: u32,
}

impl Default for LdapSyncSection {
    fn default() -> Self {
        Self {
            base: None,
            filter: "(objectClass=inetOrgPerson)".into(),
            id_attribute: "entryUUID".into(),
            name_attribute: "cn".into(),
            email_attribute: Some("mail".into()),
            card_attribute: None,
            group_attribute: "memberOf".into(),
            groups: Default::default(),
            page_size: 500,
            every_minutes: 15,
            deadline_seconds: 300,
            max_departures_percent: 25,
        }
    }
}

/// Group DNs hold `=` and `,`: the text form is `DN=group;DN=group` (the last `=` splits).
fn dn_groups<'de, D: serde::Deserializer<'de>>(d: D) -> Result<std::collections::BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Groups {
        Table(std::collections::BTreeMap<String, String>),
        Text(String),
    }
    match Groups::deserialize(d)? {
        Groups::Table(t) => Ok(t),
        Groups::Text(text) => text
            .split(';')
            .filter(|p| !p.trim().is_empty())
            .map(|p| {
                let (dn, group) =
                    p.rsplit_once('=').ok_or_else(|| serde::de::Error::custom(format!("{p:?} is not DN=group")))?;
                Ok((dn.trim().to_owned(), group.trim().to_owned()))
            })
            .collect(),
    }
}

fn default_ldap_user_attribute() -> String {
    "uid".into()
}

fn default_ldap_timeout_ms() -> u64 {
    3000
}

/// `[osdp]`: OSDP readers, each a `[[osdp.readers]]` table (file only: lists of tables
/// have no environment form).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OsdpSection {
    pub readers: Vec<OsdpReaderSection>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OsdpReaderSection {
    /// How lintel calls the reader (default: its door's id).
    #[serde(default)]
    pub name: Option<String>,
    /// The door the reader stands at.
    pub door: String,
    /// The serial device, e.g. `/dev/ttyUSB0`.
    pub port: String,
    /// The reader's OSDP address (0-126).
    pub address: u8,
    #[serde(default = "default_osdp_baud")]
    pub baud: u32,
    /// The Secure Channel base key, 32 hex digits; plain text when absent.
    #[serde(default)]
    pub scbk: Option<String>,
    /// Hand `scbk` to a reader that still has the default key (once).
    #[serde(default)]
    pub install_mode: bool,
    /// The reader's output that releases the door when a card is allowed.
    #[serde(default)]
    pub output: Option<u8>,
    /// The reader's input wired to the door position switch (active: open).
    #[serde(default)]
    pub door_position_input: Option<u8>,
    /// The reader's input wired to the exit button.
    #[serde(default)]
    pub exit_input: Option<u8>,
}

fn default_osdp_baud() -> u32 {
    9600
}

impl Config {
    /// The OSDP readers, checked (keys, addresses, names) before any port is opened.
    pub fn osdp_config(&self) -> anyhow::Result<Option<lintel_service::devices::osdp::OsdpConfig>> {
        let Some(o) = &self.osdp else { return Ok(None) };
        let mut readers = Vec::with_capacity(o.readers.len());
        for r in &o.readers {
            let name = r.name.clone().unwrap_or_else(|| r.door.clone());
            let scbk = r
                .scbk
                .as_deref()
                .map(|k| lintel_doors::osdp::Scbk::parse(&name, k))
                .transpose()
                .map_err(|e| anyhow::anyhow!("[osdp] {e}"))?;
            readers.push(lintel_service::devices::osdp::ReaderAtDoor {
                reader: lintel_doors::osdp::ReaderConfig {
                    name,
                    port: r.port.clone(),
                    address: r.address,
                    baud: r.baud,
                    scbk,
                    install_mode: r.install_mode,
                },
                door: r.door.clone(),
                output: r.output,
                inputs: lintel_service::devices::osdp::ReaderInputs {
                    door_position: r.door_position_input,
                    exit_request: r.exit_input,
                },
            });
        }
        let configs: Vec<_> = readers.iter().map(|r| r.reader.clone()).collect();
        lintel_doors::osdp::check(&configs).map_err(|e| anyhow::anyhow!("[osdp] {e}"))?;
        Ok(Some(lintel_service::devices::osdp::OsdpConfig { readers }))
    }
}

/// `[lockcloud]`: a lock vendor's cloud for doors that live there.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockCloudSection {
    pub base_url: String,
    /// The header the token goes in, e.g. `X-Api-Key` or `Authorization`.
    pub token_header: String,
    pub token: String,
    /// What the cloud's webhook must carry (`?token=` or `X-Webhook-Token`).
    #[serde(default)]
    pub webhook_token: Option<String>,
    /// Door id -> the cloud's lock id: a table, or `front=L-1,studio=L-2`.
    #[serde(default, deserialize_with = "pairs")]
    pub door_locks: std::collections::BTreeMap<String, String>,
}

/// `[cobot]`: the coworking membership platform.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CobotSection {
    /// The space's API base, e.g. `https://yourspace.cobot.me`.
    pub base_url: String,
    /// The platform's API 2 (JSON:API), where external bookings' visitors are: with
    /// base_url, the only hosts lintel fetches from for the platform.
    #[serde(default = "default_cobot_api2")]
    pub api2_url: String,
    /// The OAuth2 access token.
    pub token: String,
    /// lintel's own URL for the webhook subscriptions (default: the top-level public_url).
    #[serde(default)]
    pub public_url: Option<String>,
    /// The group every member joins.
    #[serde(default)]
    pub default_group: Option<String>,
    /// Space plan id -> group: a table, or (from the environment) `42=members,43=flex`.
    #[serde(default, deserialize_with = "pairs")]
    pub plan_groups: std::collections::BTreeMap<String, String>,
    /// `"<field label>:<value>"` -> group: a table, or (from the environment)
    /// `Locker:yes=lockers,Team:Robotics=robotics`.
    #[serde(default, deserialize_with = "pairs")]
    pub custom_field_groups: std::collections::BTreeMap<String, String>,
    /// Minutes between full reconciliations.
    #[serde(default = "default_sync_minutes")]
    pub sync_minutes: u64,
    /// A booking opens its doors this long before it starts and after it ends.
    #[serde(default = "default_buffer_minutes")]
    pub buffer_minutes: i64,
    /// Resource id -> doors (the room's and those on the way): a table of lists, or (from
    /// the environment) `7=studio;front,8=lab`.
    #[serde(default, deserialize_with = "pair_lists")]
    pub resource_doors: std::collections::BTreeMap<String, Vec<String>>,
}

fn default_buffer_minutes() -> i64 {
    10
}

/// `[crm]`: the makerspace CRM (Amilia-style).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrmSection {
    /// The CRM's API base (people are `{base_url}/persons/{id}`): the only origin asked about people.
    pub base_url: String,
    /// Where the OAuth2 token is obtained (password grant with `username` and `password`).
    pub token_url: String,
    pub username: String,
    pub password: String,
    /// The membership (its id or name) that means good standing; any membership when absent.
    #[serde(default)]
    pub membership: Option<String>,
    /// Seconds after which a member's data is looked up again when their card is presented.
    #[serde(default = "default_stale_after")]
    pub stale_after: u64,
    /// Seconds after which a member's cached good standing no longer opens doors while the
    /// CRM is down.
    #[serde(default = "default_max_stale")]
    pub max_stale: u64,
    /// The group members are put in (its grants open their doors).
    #[serde(default)]
    pub group: Option<String>,
    /// Where photos are kept (default: `photos` beside the SQLite file, else `./photos`).
    #[serde(default)]
    pub photos_dir: Option<PathBuf>,
    /// How long a door waits for the CRM, in milliseconds.
    #[serde(default = "default_crm_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_stale_after() -> u64 {
    3600
}

fn default_cobot_api2() -> String {
    "https://api.cobot.me".into()
}

fn default_max_stale() -> u64 {
    72 * 3600
}

fn default_crm_timeout_ms() -> u64 {
    2000
}

impl Config {
    /// Where people's photos are kept: `[crm] photos_dir`, else `photos` beside the SQLite
    /// file (else `./photos`), with or without the CRM.
    pub fn photos_dir(&self) -> PathBuf {
        self.crm
            .as_ref()
            .and_then(|c| c.photos_dir.clone())
            .unwrap_or_else(|| crate::keys::default_path(&self.database_url).with_file_name("photos"))
    }

    /// The CRM's settings, checked.
    pub fn crm_config(&self) -> anyhow::Result<Option<lintel_service::integrations::crm::CrmConfig>> {
        let Some(c) = &self.crm else { return Ok(None) };
        for (key, url) in [("base_url", &c.base_url), ("token_url", &c.token_url)] {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                bail!("[crm] {key} must be an https:// URL");
            }
        }
        Ok(Some(lintel_service::integrations::crm::CrmConfig {
            base_url: c.base_url.clone(),
            token_url: c.token_url.clone(),
            username: c.username.clone(),
            password: c.password.clone(),
            membership: c.membership.clone().filter(|m| !m.trim().is_empty()),
            stale_after: std::time::Duration::from_secs(c.stale_after),
            max_stale: std::time::Duration::from_secs(c.max_stale),
            group: c.group.clone().filter(|g| !g.trim().is_empty()),
            timeout: std::time::Duration::from_millis(c.timeout_ms.clamp(100, 30_000)),
        }))
    }
}

/// `[smtp]`: where invitations are mailed from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSection {
    /// `smtp://host:25`, `smtps://user:pass@host:465`, `smtp://host:587?tls=required`.
    pub url: String,
    pub from: String,
}

/// `[sms]`: the SMS gateway's webhook (`POST {"to", "text"}`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsSection {
    pub webhook_url: String,
    #[serde(default)]
    pub token: Option<String>,
}

/// A table of lists of text, or `key=a;b,key=c` text.
fn pair_lists<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<std::collections::BTreeMap<String, Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Lists {
        Table(std::collections::BTreeMap<String, Vec<String>>),
        Text(String),
    }
    match Lists::deserialize(d)? {
        Lists::Table(t) => Ok(t),
        Lists::Text(text) => text
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| {
                let (k, v) =
                    p.split_once('=').ok_or_else(|| serde::de::Error::custom(format!("{p:?} is not key=a;b")))?;
                Ok((k.trim().to_owned(), v.split(';').map(|d| d.trim().to_owned()).filter(|d| !d.is_empty()).collect()))
            })
            .collect(),
    }
}

fn default_sync_minutes() -> u64 {
    15
}

/// A table of text, or `key=value,key=value` text (what an environment variable can hold).
fn pairs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<std::collections::BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Pairs {
        Table(std::collections::BTreeMap<String, String>),
        Text(String),
    }
    match Pairs::deserialize(d)? {
        Pairs::Table(t) => Ok(t),
        Pairs::Text(text) => text
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| {
                let (k, v) =
                    p.split_once('=').ok_or_else(|| serde::de::Error::custom(format!("{p:?} is not key=value")))?;
                Ok((k.trim().to_owned(), v.trim().to_owned()))
            })
            .collect(),
    }
}

/// `[oidc]`: the OpenID Connect issuer users may sign in with (for signed operations).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSection {
    pub issuer: String,
    pub jwks_url: String,
    /// The client id ID tokens must be issued for (the web UI's client id at the issuer).
    pub audience: String,
    /// The web UI's client secret, for an issuer that has lintel as a confidential
    /// client; without it lintel signs in as a public client with PKCE alone.
    pub client_secret: Option<String>,
}

/// `[doorbell]`: a doorbell camera that posts to `[slack] doorbell_channel`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoorbellSection {
    /// The camera calls `POST /hooks/doorbell?token=...`.
    pub token: String,
    /// The door its Open button opens.
    pub door: String,
    /// Hosts the snapshot may be fetched from (empty: any): a list, or `a.example,b.example`.
    #[serde(default, deserialize_with = "list")]
    pub snapshot_hosts: Vec<String>,
}

/// `[notify]`: where alarms, lockdown and emergency releases are told.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySection {
    /// A Slack channel's id (e.g. `C0SECURITY`), posted to through `[slack]`.
    #[serde(default)]
    pub slack_channel: Option<String>,
    /// Mail addresses, sent to through `[smtp]`: a list, or `a@x.org,b@x.org`.
    #[serde(default, deserialize_with = "list")]
    pub email: Vec<String>,
}

/// A list of text, or `a,b` text (what an environment variable can hold).
fn list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum List {
        Items(Vec<String>),
        Text(String),
    }
    Ok(match List::deserialize(d)? {
        List::Items(items) => items,
        List::Text(text) => text.split(',').map(|h| h.trim().to_owned()).filter(|h| !h.is_empty()).collect(),
    })
}

impl Config {
    /// The platform's settings, checked.
    pub fn cobot_config(&self, timezone: chrono_tz::Tz) -> anyhow::Result<Option<CobotConfig>> {
        let Some(c) = &self.cobot else { return Ok(None) };
        if !(c.base_url.starts_with("https://") || c.base_url.starts_with("http://")) {
            bail!("[cobot] base_url must be the space's https:// URL");
        }
        Ok(Some(CobotConfig {
            base_url: c.base_url.clone(),
            api2_url: c.api2_url.clone(),
            token: c.token.clone(),
            public_url: c.public_url.clone(),
            default_group: c.default_group.clone(),
            plan_groups: c.plan_groups.clone(),
            custom_field_groups: c
                .custom_field_groups
                .iter()
                .map(|(key, group)| match key.split_once(':') {
                    Some((label, value)) if !label.trim().is_empty() => {
                        Ok(((label.trim().to_owned(), value.trim().to_owned()), group.clone()))
                    }
                    _ => Err(anyhow::anyhow!("[cobot] custom_field_groups: {key:?} is not \"<field>:<value>\"")),
                })
                .collect::<anyhow::Result<_>>()?,
            sync_every: std::time::Duration::from_secs(c.sync_minutes.max(1) * 60),
            timezone,
            buffer_minutes: c.buffer_minutes.clamp(0, 24 * 60),
            resource_doors: c.resource_doors.clone(),
        }))
    }

    /// Where notifications go, checked (the sections they go through are checked when
    /// the services start).
    pub fn notify_config(&self) -> anyhow::Result<Option<lintel_service::notifications::NotifyConfig>> {
        let Some(n) = &self.notify else { return Ok(None) };
        if n.slack_channel.is_none() && n.email.is_empty() {
            bail!("[notify] names no place: set slack_channel or email");
        }
        if let Some(bad) = n.email.iter().find(|a| !a.contains('@')) {
            bail!("[notify] email {bad:?} is not a mail address");
        }
        Ok(Some(lintel_service::notifications::NotifyConfig {
            slack_channel: n.slack_channel.clone(),
            email: n.email.clone(),
        }))
    }

    /// The doorbell's settings, checked against the Slack section it posts through.
    pub fn doorbell_config(&self) -> anyhow::Result<Option<lintel_service::integrations::doorbell::DoorbellConfig>> {
        let Some(doorbell) = &self.doorbell else { return Ok(None) };
        // The token is all that stands between the internet and a message with an Open
        // button in the channel: it must not be guessable.
        if doorbell.token.len() < 24 {
            bail!("[doorbell] token must be at least 24 characters (e.g. `openssl rand -hex 16`)");
        }
        let channel = self.slack.as_ref().and_then(|s| s.doorbell_channel.clone());
        let Some(channel) = channel else {
            bail!("[doorbell] posts to Slack: set [slack] doorbell_channel (and the rest of [slack])");
        };
        if let Some(url) = &self.public_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            bail!("public_url must start with https:// (or http://)");
        }
        Ok(Some(lintel_service::integrations::doorbell::DoorbellConfig {
            token: doorbell.token.clone(),
            door: doorbell.door.clone(),
            channel,
            snapshot_hosts: doorbell.snapshot_hosts.clone(),
        }))
    }
}

/// `[slack]`: the Slack app (see the README for creating it).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackSection {
    pub signing_secret: String,
    pub bot_token: String,
    #[serde(default = "default_slack_api")]
    pub api_base_url: String,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub allow_guests: bool,
    /// Minutes between reconciliations with `users.list`.
    #[serde(default = "default_reconcile_minutes")]
    pub reconcile_minutes: u64,
    /// The channel the doorbell posts to (its id, e.g. `C0123456`).
    #[serde(default)]
    pub doorbell_channel: Option<String>,
}

fn default_reconcile_minutes() -> u64 {
    60
}

fn default_slack_api() -> String {
    "https://slack.com/api".into()
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqliteConfig {
    /// `normal` survives a crash of lintel; `full` also a power cut (an fsync per commit).
    pub synchronous: String,
}

/// `[http]`: timeouts, the connection limit, the shutdown grace.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// A request's head must arrive within this (from the connection's start for its
    /// first request, from the first byte for later ones).
    pub header_timeout_seconds: u64,
    /// A kept-alive connection waits this long for its next request.
    pub idle_timeout_seconds: u64,
    /// A request's body must arrive within this of its head.
    pub body_timeout_seconds: u64,
    /// At most this many connections; by default as many as the descriptor limit leaves
    /// room for (at most 16384).
    pub max_connections: Option<usize>,
    /// At shutdown, requests in flight and background work may take this long to finish.
    pub shutdown_grace_seconds: u64,
}

impl HttpSection {
    pub fn config(&self) -> lintel_server::HttpConfig {
        let secs = |s: u64| std::time::Duration::from_secs(s.max(1));
        lintel_server::HttpConfig {
            header_timeout: secs(self.header_timeout_seconds),
            idle_timeout: secs(self.idle_timeout_seconds),
            body_timeout: secs(self.body_timeout_seconds),
            max_connections: self.max_connections,
            shutdown_grace: std::time::Duration::from_secs(self.shutdown_grace_seconds),
            // A top-level setting (`trusted_proxies`), set by the caller.
            trusted_proxies: Default::default(),
        }
    }
}

impl Default for HttpSection {
    fn default() -> Self {
        let d = lintel_server::HttpConfig::default();
        Self {
            header_timeout_seconds: d.header_timeout.as_secs(),
            idle_timeout_seconds: d.idle_timeout.as_secs(),
            body_timeout_seconds: d.body_timeout.as_secs(),
            max_connections: None,
            shutdown_grace_seconds: d.shutdown_grace.as_secs(),
        }
    }
}

/// `[events]`: how long the event log is kept.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsSection {
    /// Days of events to keep; older ones are pruned (attendance keeps who entered when).
    /// Absent: keep every event.
    pub retain_days: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Wrong PINs, secrets or backup codes from one source before it is locked.
    pub free_failures: u32,
    pub first_lock_seconds: u64,
    pub max_lock_seconds: u64,
    /// The longest lock of a keypad: anyone at it can lock it, for every PIN user of the door.
    pub keypad_max_lock_seconds: u64,
    /// Webhook deliveries of one source waiting in the inbox before more get a 503.
    pub max_pending_deliveries: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            database_url: "sqlite://lintel.db".into(),
            admin_token: None,
            key_file: None,
            timezone: "UTC".into(),
            max_body_bytes: 64 * 1024,
            follow_interval_ms: 1000,
            log_format: LogFormat::Text,
            sqlite: SqliteConfig::default(),
            limits: LimitsConfig::default(),
            events: EventsSection::default(),
            http: HttpSection::default(),
            slack: None,
            doorbell: None,
            notify: None,
            public_url: None,
            trusted_proxies: Vec::new(),
            oidc: None,
            cobot: None,
            smtp: None,
            sms: None,
            crm: None,
            lockcloud: None,
            lookup: None,
            mqtt: None,
            ldap: None,
            osdp: None,
        }
    }
}

impl Default for SqliteConfig {
    fn default() -> Self {
        Self { synchronous: "normal".into() }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            free_failures: 5,
            first_lock_seconds: 30,
            max_lock_seconds: 3600,
            keypad_max_lock_seconds: 300,
            max_pending_deliveries: 10_000,
        }
    }
}

/// The keys that environment variables may set: top-level ones, then `section.key`.
const KEYS: &[&str] = &[
    "listen",
    "database_url",
    "admin_token",
    "key_file",
    "timezone",
    "max_body_bytes",
    "follow_interval_ms",
    "log_format",
    "sqlite.synchronous",
    "limits.free_failures",
    "limits.first_lock_seconds",
    "limits.max_lock_seconds",
    "limits.keypad_max_lock_seconds",
    "limits.max_pending_deliveries",
    "events.retain_days",
    "http.header_timeout_seconds",
    "http.idle_timeout_seconds",
    "http.body_timeout_seconds",
    "http.max_connections",
    "http.shutdown_grace_seconds",
    "slack.signing_secret",
    "slack.bot_token",
    "slack.api_base_url",
    "slack.group",
    "slack.allow_guests",
    "slack.reconcile_minutes",
    "slack.doorbell_channel",
    "doorbell.token",
    "doorbell.door",
    "doorbell.snapshot_hosts",
    "notify.slack_channel",
    "notify.email",
    "public_url",
    "trusted_proxies",
    "oidc.issuer",
    "oidc.jwks_url",
    "oidc.audience",
    "oidc.client_secret",
    "cobot.base_url",
    "cobot.token",
    "cobot.api2_url",
    "cobot.public_url",
    "cobot.default_group",
    "cobot.plan_groups",
    "cobot.custom_field_groups",
    "cobot.sync_minutes",
    "cobot.buffer_minutes",
    "cobot.resource_doors",
    "smtp.url",
    "smtp.from",
    "sms.webhook_url",
    "sms.token",
    "crm.base_url",
    "crm.token_url",
    "crm.username",
    "crm.password",
    "crm.membership",
    "crm.stale_after",
    "crm.max_stale",
    "crm.group",
    "crm.photos_dir",
    "crm.timeout_ms",
    "lockcloud.base_url",
    "lockcloud.token_header",
    "lockcloud.token",
    "lockcloud.webhook_token",
    "lockcloud.door_locks",
    "lookup.path_template",
    "lookup.conversions",
    "lookup.user_attribute",
    "lookup.attributes",
    "lookup.basic_auth",
    "mqtt.url",
    "mqtt.topic_prefix",
    "mqtt.client_id",
    "ldap.url",
    "ldap.starttls",
    "ldap.bind_dn",
    "ldap.bind_password",
    "ldap.base",
    "ldap.filter",
    "ldap.user_attribute",
    "ldap.attributes",
    "ldap.timeout_ms",
    "ldap.ca_file",
    "ldap.sync.base",
    "ldap.sync.filter",
    "ldap.sync.id_attribute",
    "ldap.sync.name_attribute",
    "ldap.sync.email_attribute",
    "ldap.sync.card_attribute",
    "ldap.sync.group_attribute",
    "ldap.sync.groups",
    "ldap.sync.page_size",
    "ldap.sync.every_minutes",
    "ldap.sync.deadline_seconds",
    "ldap.sync.max_departures_percent",
];

/// The keys whose values are numbers or booleans; every other key's value stays text,
/// even when it looks like a number (a token, a plan id).
const SCALAR_KEYS: &[&str] = &[
    "max_body_bytes",
    "follow_interval_ms",
    "limits.free_failures",
    "limits.first_lock_seconds",
    "limits.max_lock_seconds",
    "limits.keypad_max_lock_seconds",
    "limits.max_pending_deliveries",
    "events.retain_days",
    "http.header_timeout_seconds",
    "http.idle_timeout_seconds",
    "http.body_timeout_seconds",
    "http.max_connections",
    "http.shutdown_grace_seconds",
    "slack.allow_guests",
    "slack.reconcile_minutes",
    "cobot.sync_minutes",
    "cobot.buffer_minutes",
    "crm.stale_after",
    "crm.max_stale",
    "crm.timeout_ms",
    "ldap.starttls",
    "ldap.timeout_ms",
    "ldap.sync.page_size",
    "ldap.sync.every_minutes",
    "ldap.sync.deadline_seconds",
    "ldap.sync.max_departures_percent",
];

/// Turns an environment value into TOML: numbers and booleans as such, the rest as text.
fn env_value(raw: &str) -> toml::Value {
    if let Ok(i) = raw.parse::<i64>() {
        toml::Value::Integer(i)
    } else if let Ok(b) = raw.parse::<bool>() {
        toml::Value::Boolean(b)
    } else {
        toml::Value::String(raw.to_owned())
    }
}

pub fn load(file: Option<&Path>, env: impl Iterator<Item = (String, String)>) -> anyhow::Result<Config> {
    let mut table = match file {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading the config file {}", path.display()))?;
            text.parse::<toml::Table>().with_context(|| format!("parsing {}", path.display()))?
        }
        None => toml::Table::new(),
    };
    for (name, raw) in env {
        let Some(key) = name.strip_prefix("LINTEL_") else { continue };
        let key = key.to_ascii_lowercase();
        // `LINTEL_SECTION_KEY` names `section.key`; section names have no underscore.
        let Some(dotted) = KEYS.iter().find(|k| k.replace('.', "_") == key) else {
            // Not a setting (LINTEL_CONFIG, the tests' own variables, a typo): say so.
            if key != "config" && !key.starts_with("test_") {
                eprintln!("lintel: ignoring {name}: not a configuration key (see the README)");
            }
            continue;
        };
        let value = if SCALAR_KEYS.contains(dotted) { env_value(&raw) } else { toml::Value::String(raw) };
        // `section.key` or `section.subsection.key` (`ldap.sync.filter`).
        let (sections, field) = dotted.rsplit_once('.').unwrap_or(("", dotted));
        let mut t = &mut table;
        for section in sections.split('.').filter(|s| !s.is_empty()) {
            let entry = t.entry(section.to_owned()).or_insert_with(|| toml::Value::Table(Default::default()));
            let Some(inner) = entry.as_table_mut() else { bail!("[{sections}] in the config file must be a table") };
            t = inner;
        }
        t.insert(field.to_owned(), value);
    }
    let config: Config =
        table.try_into().context("the configuration does not fit (see the README's configuration reference)")?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_file_and_reaches_sections() {
        let dir = std::env::temp_dir().join(format!("lintel-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("lintel.toml");
        std::fs::write(&file, "listen = \"0.0.0.0:9000\"\n[sqlite]\nsynchronous = \"full\"\n").unwrap();
        let env = [
            ("LINTEL_DATABASE_URL", "postgres://x@127.0.0.1/test"),
            ("LINTEL_LIMITS_FREE_FAILURES", "3"),
            ("LINTEL_HTTP_IDLE_TIMEOUT_SECONDS", "5"),
            ("LINTEL_HTTP_MAX_CONNECTIONS", "100"),
            ("LINTEL_ADMIN_TOKEN", "12345"),
            ("PATH", "/bin"),
            ("LINTEL_TEST_POSTGRES", "skip"),
            ("LINTEL_NO_SUCH_KEY", "1"),
        ];
        let c = load(Some(&file), env.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap();
        assert_eq!(c.listen, "0.0.0.0:9000");
        assert_eq!(c.database_url, "postgres://x@127.0.0.1/test");
        assert_eq!(c.sqlite.synchronous, "full");
        assert_eq!(c.limits.free_failures, 3);
        assert_eq!((c.limits.keypad_max_lock_seconds, c.limits.max_pending_deliveries), (300, 10_000), "defaults");
        let http = c.http.config();
        assert_eq!(http.idle_timeout, std::time::Duration::from_secs(5));
        assert_eq!(http.max_connections, Some(100));
        assert_eq!(http.header_timeout, lintel_server::HttpConfig::default().header_timeout);
        assert_eq!(c.admin_token.as_deref(), Some("12345"));
    }

    #[test]
    fn lookup_from_the_environment() {
        let env = [
            ("LINTEL_LOOKUP_PATH_TEMPLATE", "/lookup?id=[DATA]"),
            ("LINTEL_LOOKUP_CONVERSIONS", "width:38, bits:0:19+bits:19:19"),
            ("LINTEL_LOOKUP_ATTRIBUTES", "fullname,email"),
            ("LINTEL_LOOKUP_BASIC_AUTH", "gc:1234"),
        ];
        let c = load(None, env.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap();
        let l = c.lookup.as_ref().unwrap();
        assert_eq!(l.conversions, ["width:38", "bits:0:19+bits:19:19"]);
        assert_eq!(l.attributes, ["fullname", "email"]);
        assert_eq!(l.basic_auth.as_deref(), Some("gc:1234"));
        assert!(c.lookup_config().unwrap().is_some());
        let env = [("LINTEL_LOOKUP_PATH_TEMPLATE", "/api/v1/lookup/[DATA]")];
        let c = load(None, env.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap();
        assert!(c.lookup_config().is_err());
        let env = [("LINTEL_LOOKUP_PATH_TEMPLATE", "/lookup/[DATA]"), ("LINTEL_LOOKUP_CONVERSIONS", "rot13")];
        let c = load(None, env.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap();
        assert!(c.lookup_config().is_err());
    }

    #[test]
    fn ldap_sync_needs_no_lookup_and_shares_the_server() {
        let ldap = [("LINTEL_LDAP_URL", "ldap://127.0.0.1:389"), ("LINTEL_LDAP_BASE", "dc=example,dc=org")];
        let env = ldap.iter().chain(&[
            ("LINTEL_LDAP_SYNC_GROUPS", "cn=Staff, ou=groups,dc=example,dc=org=staff;cn=Lab,dc=example,dc=org=lab"),
            ("LINTEL_LDAP_SYNC_PAGE_SIZE", "10"),
        ]);
        let c = load(None, env.map(|(k, v)| (k.to_string(), v.to_string()))).unwrap();
        assert!(c.lookup_config().unwrap().is_none(), "no [lookup]: no badge lookup, and no error");
        let sync = c.ldap_sync_config().unwrap().unwrap();
        assert_eq!((sync.base.as_str(), sync.filter.as_str()), ("dc=example,dc=org", "(objectClass=inetOrgPerson)"));
        assert_eq!((sync.page_size, sync.max_departures_percent), (10, 25));
        assert_eq!(sync.every, std::time::Duration::from_secs(15 * 60));
        assert_eq!(sync.mapping.id_attribute, "entryUUID");
        assert_eq!(sync.mapping.groups.get("cn=Staff, ou=groups,dc=example,dc=org").map(String::as_str), Some("staff"));
        assert_eq!(sync.mapping.groups.get("cn=Lab,dc=example,dc=org").map(String::as_str), Some("lab"));
        assert_eq!(sync.server.url, "ldap://127.0.0.1:389");

        // [ldap] that neither the lookup nor the sync uses is refused.
        let c = load(None, ldap.iter().map(|(k, v)| (k.to_string(), v.to_string()))).unwrap();
        let err = c.lookup_config().unwrap_err().to_string();
        assert!(err.contains("[lookup]") && err.contains("[ldap.sync]"), "{err}");
    }

    #[test]
    fn osdp_readers_are_checked_at_start() {
        let dir = std::env::temp_dir().join(format!("lintel-config-osdp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("lintel.toml");
        let reader = |address: u8, scbk: &str| {
            format!("[[osdp.readers]]\ndoor = \"front\"\nport = \"/dev/ttyUSB0\"\naddress = {address}\n{scbk}\n")
        };
        let config = |text: String| {
            std::fs::write(&file, text).unwrap();
            load(Some(&file), std::iter::empty()).unwrap().osdp_config()
        };
        let key = "scbk = \"4F1A9C22D07B3E58A16C0B9D72E4F385\"";
        let readers = config(reader(1, key)).unwrap().unwrap().readers;
        assert_eq!((readers[0].reader.name.as_str(), readers[0].reader.baud), ("front", 9600));
        assert!(readers[0].reader.scbk.is_some());
        let error = |text: String| config(text).unwrap_err().to_string();
        assert!(error(reader(1, "scbk = \"303132333435363738393A3B3C3D3E3F\"")).contains("SCBK-D"));
        assert!(error(reader(1, "scbk = \"4F1A\"")).contains("32 hex digits"));
        let second = reader(1, key).replace("door = \"front\"", "door = \"back\"");
        assert!(error(reader(1, key) + &second).contains("both have address 1"));
        assert!(config(reader(1, key) + &second.replace("address = 1", "address = 2")).is_ok());
    }

    #[test]
    fn scalar_keys_are_settable_keys() {
        for key in SCALAR_KEYS {
            assert!(KEYS.contains(key), "{key} is not in KEYS");
        }
    }

    #[test]
    fn typos_in_the_file_are_errors() {
        let dir = std::env::temp_dir().join(format!("lintel-config-typo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("lintel.toml");
        std::fs::write(&file, "listne = \"0.0.0.0:9000\"\n").unwrap();
        assert!(load(Some(&file), std::iter::empty()).is_err());
    }
}
