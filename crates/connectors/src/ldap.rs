//! An LDAP / Active Directory directory, asked who carries a badge, and listed whole for
//! the people sync ([`LdapListing`]); both connect and bind through one path.
//!
//! **One query.** Each lookup opens its own connection (`ldap://`, `ldap://` with StartTLS,
//! or `ldaps://`), binds as the configured account (or anonymously), searches the subtree
//! under `base` with the operator's filter, in which `[DATA]` stands for the converted badge
//! id, escaped per RFC 4515 (`*`, `(`, `)`, `\` and NUL become `\2a`, `\28`, `\29`, `\5c`,
//! `\00`), and unbinds. A connection per query keeps nothing to go stale (a restarted
//! directory, an idle connection cut by a firewall); badge lookups are rare enough that a
//! bind each is cheap.
//!
//! **Time.** The whole query (connect, TLS, bind, search) has one deadline, 3 s by default:
//! a door must not hang on a directory that is down or slow.
//!
//! **Answers.** No entry is [`None`]; one entry gives the value of `user_attribute` and of
//! each mapped attribute (attribute names compare case-insensitively, as LDAP's do); two or
//! more entries are [`LdapError::Ambiguous`]: a badge that names two people names none.
//! Values that are not UTF-8 text (`jpegPhoto`, `objectGUID`) are left out.
//!
//! **TLS.** rustls with aws-lc-rs (no OpenSSL). The server's certificate is checked against
//! `ca_file` (PEM) when given, else against the system's roots; there is no switch to skip
//! the check.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry, SearchOptions};
pub use listing::{LdapEntry, LdapListing, ListingConfig};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

mod listing;

/// What stands for the converted badge id in the filter.
pub const PLACEHOLDER: &str = "[DATA]";

/// How lintel reaches the directory and who it binds as: shared by the badge lookup and
/// the people sync, so both connect the same way.
#[derive(Clone)]
pub struct LdapServer {
    /// `ldap://host:389` or `ldaps://host:636`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS before binding.
    pub starttls: bool,
    /// The account lintel binds as; anonymous when absent.
    pub bind_dn: Option<String>,
    pub bind_password: Option<String>,
    /// The CA certificates (PEM) the server's certificate must chain to.
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for LdapServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapServer")
            .field("url", &self.url)
            .field("starttls", &self.starttls)
            .field("bind_dn", &self.bind_dn)
            .field("bind_password", &self.bind_password.as_ref().map(|_| "***"))
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// The directory and how to ask it about a badge.
#[derive(Clone, Debug)]
pub struct LdapConfig {
    pub server: LdapServer,
    /// Where the search starts (the whole subtree below it is searched).
    pub base: String,
    /// An LDAP filter with [`PLACEHOLDER`] once, e.g. `(employeeNumber=[DATA])`.
    pub filter: String,
    /// The LDAP attribute answered as `user`.
    pub user_attribute: String,
    /// Answer attribute -> LDAP attribute, e.g. `fullname` -> `cn`.
    pub attributes: BTreeMap<String, String>,
    /// The deadline of one whole query.
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LdapError {
    #[error("the LDAP setting is not usable: {0}")]
    Config(String),
    #[error("the directory is unreachable: {0}")]
    Unreachable(String),
    #[error("the directory did not answer within {0:?}")]
    TimedOut(Duration),
    #[error("the directory refused lintel's bind as {dn:?}: {reason}")]
    Bind { dn: String, reason: String },
    #[error("the directory refused the search: {0}")]
    Search(String),
    #[error("{count} directory entries match the badge ({dns})")]
    Ambiguous { count: usize, dns: String },
}

/// The entry found for a badge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdapMatch {
    pub dn: String,
    /// The first value of `user_attribute`.
    pub user: String,
    /// Answer attribute -> the LDAP attribute's values (only attributes the entry has).
    pub attributes: BTreeMap<String, Vec<String>>,
}

/// A configured, checked directory.
#[derive(Clone)]
pub struct LdapDirectory {
    config: LdapConfig,
    /// The filter around the placeholder.
    filter: (String, String),
    connection: Connection,
}

impl std::fmt::Debug for LdapDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.config.fmt(f)
    }
}

/// Attribute names as LDAP writes them: a letter, then letters, digits and `-`.
pub(crate) fn attribute_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

impl LdapDirectory {
    /// Checks the configuration (URL, filter, attribute names, CA file) once, at start.
    pub fn new(config: LdapConfig) -> Result<Self, LdapError> {
        let bad = |what: String| Err(LdapError::Config(what));
        let connection = Connection::new(config.server.clone())?;
        if config.base.trim().is_empty() {
            return bad("base must name the subtree to search, e.g. ou=people,dc=example,dc=org".into());
        }
        let Some((before, after)) = config.filter.split_once(PLACEHOLDER) else {
            return bad(format!("filter {:?} must contain {PLACEHOLDER}", config.filter));
        };
        if after.contains(PLACEHOLDER) {
            return bad(format!("filter {:?} must contain {PLACEHOLDER} once", config.filter));
        }
        if ldap3::parse_filter(format!("{before}x{after}")).is_err() {
            return bad(format!(
                "filter {:?} is not an LDAP filter, e.g. (employeeNumber={PLACEHOLDER})",
                config.filter
            ));
        }
        for name in std::iter::once(&config.user_attribute).chain(config.attributes.values()) {
            if !attribute_name(name) {
                return bad(format!("{name:?} is not an LDAP attribute name"));
            }
        }
        if config.attributes.keys().any(|answer| answer.trim().is_empty() || answer == "user") {
            return bad(
                "the attribute mapping's names must not be empty or `user` (user_attribute answers `user`)".into()
            );
        }
        if config.timeout.is_zero() {
            return bad("the timeout must be positive".into());
        }
        let filter = (before.to_owned(), after.to_owned());
        Ok(Self { config, filter, connection })
    }

    /// The search filter for a converted badge id, the id escaped so it can only be a value.
    pub fn filter_for(&self, id: &str) -> String {
        format!("{}{}{}", self.filter.0, ldap3::ldap_escape(id), self.filter.1)
    }

    /// Who carries the badge `id` (already converted), within the configured deadline.
    pub async fn find(&self, id: &str) -> Result<Option<LdapMatch>, LdapError> {
        let timeout = self.config.timeout;
        let this = self.clone();
        let filter = self.filter_for(id);
        // Its own task: ldap3 panics on an entry it cannot parse (a hostile or broken
        // server); that must end this query only.
        let mut query = tokio::spawn(async move { this.query(&filter).await });
        match tokio::time::timeout(timeout, &mut query).await {
            Err(_) => {
                query.abort(); // drops its connection too
                Err(LdapError::TimedOut(timeout))
            }
            Ok(Err(join)) => Err(LdapError::Search(format!("the directory's answer broke the client: {join}"))),
            Ok(Ok(result)) => result,
        }
    }

    async fn query(&self, filter: &str) -> Result<Option<LdapMatch>, LdapError> {
        let c = &self.config;
        let mut ldap = self.connection.open(c.timeout).await?;
        let failed = failure(c.timeout);
        let wanted: Vec<&str> =
            std::iter::once(c.user_attribute.as_str()).chain(c.attributes.values().map(String::as_str)).collect();
        // Two entries are enough to know the badge is ambiguous.
        let result = ldap
            .with_search_options(SearchOptions::new().sizelimit(2))
            .with_timeout(c.timeout)
            .search(&c.base, Scope::Subtree, filter, wanted)
            .await
            .map_err(failed)?;
        let _ = ldap.unbind().await;
        let entries: Vec<SearchEntry> = result.0.into_iter().map(SearchEntry::construct).collect();
        const SIZE_LIMIT_EXCEEDED: u32 = 4;
        if entries.len() > 1 || result.1.rc == SIZE_LIMIT_EXCEEDED {
            let dns = entries.iter().map(|e| e.dn.as_str()).collect::<Vec<_>>().join("; ");
            return Err(LdapError::Ambiguous { count: entries.len().max(2), dns });
        }
        if result.1.rc != 0 {
            return Err(LdapError::Search(result.1.to_string()));
        }
        let Some(entry) = entries.into_iter().next() else { return Ok(None) };
        let values = |name: &str| {
            entry.attrs.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone()).unwrap_or_default()
        };
        let Some(user) = values(&c.user_attribute).into_iter().find(|u| !u.is_empty()) else {
            return Ok(None);
        };
        let attributes = c
            .attributes
            .iter()
            .map(|(answer, name)| (answer.clone(), values(name)))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        Ok(Some(LdapMatch { dn: entry.dn.clone(), user, attributes }))
    }
}

/// A checked [`LdapServer`]: the one way lintel connects and binds, for the lookup and the
/// sync alike.
#[derive(Clone, Debug)]
pub(crate) struct Connection {
    server: LdapServer,
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// An ldap3 failure as lintel names it (`timeout` is the deadline that was set).
pub(crate) fn failure(timeout: Duration) -> impl Fn(ldap3::LdapError) -> LdapError {
    move |e| match e {
        ldap3::LdapError::Timeout { .. } => LdapError::TimedOut(timeout),
        e => LdapError::Unreachable(e.to_string()),
    }
}

impl Connection {
    /// Checks the URL, the bind account and the CA file once, at start.
    pub(crate) fn new(server: LdapServer) -> Result<Self, LdapError> {
        let bad = |what: String| Err(LdapError::Config(what));
        let url = server.url.trim();
        let tls_url = match url.split_once("://").map(|(scheme, _)| scheme.to_ascii_lowercase()) {
            Some(s) if s == "ldap" => false,
            Some(s) if s == "ldaps" => true,
            _ => return bad(format!("url {url:?} must be ldap://host[:port] or ldaps://host[:port]")),
        };
        if tls_url && server.starttls {
            return bad("starttls is for ldap:// URLs (ldaps:// is TLS from the start)".into());
        }
        if server.bind_dn.is_some() != server.bind_password.is_some() {
            return bad("bind_dn and bind_password go together (neither for an anonymous bind)".into());
        }
        let tls = if tls_url || server.starttls { Some(tls_config(server.ca_file.as_ref())?) } else { None };
        Ok(Self { server, tls })
    }

    /// A connection, bound; each operation on it (connect and bind included) waits at
    /// most `timeout`.
    pub(crate) async fn open(&self, timeout: Duration) -> Result<ldap3::Ldap, LdapError> {
        let s = &self.server;
        let mut settings = LdapConnSettings::new().set_conn_timeout(timeout).set_starttls(s.starttls);
        if let Some(tls) = &self.tls {
            settings = settings.set_config(tls.clone());
        }
        let failed = failure(timeout);
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, s.url.trim()).await.map_err(&failed)?;
        // The connection's I/O runs beside the operations; its errors surface through them.
        tokio::spawn(async move {
            let _ = conn.drive().await;
        });
        ldap.with_timeout(timeout);
        if let (Some(dn), Some(password)) = (&s.bind_dn, &s.bind_password) {
            let bind = ldap.simple_bind(dn, password).await.map_err(&failed)?;
            if bind.rc != 0 {
                return Err(LdapError::Bind { dn: dn.clone(), reason: bind.to_string() });
            }
        }
        Ok(ldap)
    }
}

/// rustls with aws-lc-rs named explicitly, so that another provider in the build (MQTT
/// brings ring) cannot make the choice ambiguous.
fn tls_config(ca_file: Option<&PathBuf>) -> Result<Arc<rustls::ClientConfig>, LdapError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| LdapError::Config(format!("ca_file {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(LdapError::Config(format!("ca_file {} holds no certificate", path.display())));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| LdapError::Config(format!("ca_file {}: {e}", path.display())))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                // A system certificate rustls cannot use is one fewer root, not a failure.
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| LdapError::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LdapConfig {
        LdapConfig {
            server: server(),
            base: "dc=example,dc=org".into(),
            filter: "(&(objectClass=inetOrgPerson)(employeeNumber=[DATA]))".into(),
            user_attribute: "uid".into(),
            attributes: BTreeMap::from([("fullname".into(), "cn".into()), ("email".into(), "mail".into())]),
            timeout: Duration::from_secs(3),
        }
    }

    pub(crate) fn server() -> LdapServer {
        LdapServer {
            url: "ldap://127.0.0.1:389".into(),
            starttls: false,
            bind_dn: Some("cn=lintel,dc=example,dc=org".into()),
            bind_password: Some("hunter2-secret".into()),
            ca_file: None,
        }
    }

    fn on(server: LdapServer) -> LdapConfig {
        LdapConfig { server, ..config() }
    }

    #[test]
    fn the_badge_id_is_escaped_per_rfc_4515() {
        let d = LdapDirectory::new(config()).unwrap();
        assert_eq!(d.filter_for("1001"), "(&(objectClass=inetOrgPerson)(employeeNumber=1001))");
        assert_eq!(d.filter_for("*)(uid=*"), "(&(objectClass=inetOrgPerson)(employeeNumber=\\2a\\29\\28uid=\\2a))");
        assert_eq!(d.filter_for("a\\b\0"), "(&(objectClass=inetOrgPerson)(employeeNumber=a\\5cb\\00))");
        // Whatever the id, the filter stays one equality test.
        for id in ["*", ")(", "*)(|(uid=*", "\\", "x)(objectClass=*"] {
            assert!(ldap3::parse_filter(d.filter_for(id)).is_ok(), "{id:?}");
            assert!(!d.filter_for(id)[..].contains("=*"), "{id:?}");
        }
    }

    proptest::proptest! {
        /// Whatever the id, the filter is one equality test whose value is the id, byte for
        /// byte (compared with the same filter written with every byte escaped).
        #[test]
        fn any_id_is_one_value(id in "(?s:.{1,40})") {
            let d = LdapDirectory::new(LdapConfig { filter: "(employeeNumber=[DATA])".into(), ..config() }).unwrap();
            let every_byte_escaped: String = id.bytes().map(|b| format!("\\{b:02x}")).collect();
            let expected = ldap3::parse_filter(format!("(employeeNumber={every_byte_escaped})"));
            proptest::prop_assert!(expected.is_ok());
            proptest::prop_assert_eq!(ldap3::parse_filter(d.filter_for(&id)), expected);
        }
    }

    #[test]
    fn bad_settings_are_refused() {
        let bad = [
            on(LdapServer { url: "http://dir".into(), ..server() }),
            on(LdapServer { url: "ldaps://dir".into(), starttls: true, ..server() }),
            on(LdapServer { bind_password: None, ..server() }),
            LdapConfig { base: " ".into(), ..config() },
            LdapConfig { filter: "(employeeNumber=1)".into(), ..config() },
            LdapConfig { filter: "(|(a=[DATA])(b=[DATA]))".into(), ..config() },
            LdapConfig { filter: "(employeeNumber=[DATA]".into(), ..config() },
            LdapConfig { user_attribute: "u id".into(), ..config() },
            LdapConfig { attributes: BTreeMap::from([("user".into(), "cn".into())]), ..config() },
            LdapConfig { attributes: BTreeMap::from([("x".into(), "(cn)".into())]), ..config() },
            LdapConfig { timeout: Duration::ZERO, ..config() },
            on(LdapServer { url: "ldaps://dir".into(), ca_file: Some("/nonexistent/ca.pem".into()), ..server() }),
        ];
        for c in bad {
            let shown = format!("{c:?}");
            assert!(LdapDirectory::new(c).is_err(), "{shown}");
        }
        assert!(LdapDirectory::new(on(LdapServer { bind_dn: None, bind_password: None, ..server() })).is_ok());
        assert!(LdapDirectory::new(on(LdapServer { url: "ldaps://dir:636".into(), ..server() })).is_ok());
    }

    #[test]
    fn the_bind_password_stays_out_of_debug_output() {
        let d = LdapDirectory::new(config()).unwrap();
        assert!(!format!("{d:?}").contains("hunter2"));
        assert!(format!("{d:?}").contains("cn=lintel"));
    }

    #[tokio::test]
    async fn a_directory_that_is_not_there_is_an_error_not_an_answer() {
        // A port nothing listens on (bound, then released).
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let d = LdapDirectory::new(on(LdapServer { url: format!("ldap://127.0.0.1:{port}"), ..server() })).unwrap();
        assert!(matches!(d.find("1001").await, Err(LdapError::Unreachable(_))));
    }
}
