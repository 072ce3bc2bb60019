//! Every entry under a base that matches a filter, read page by page (RFC 2696 simple
//! paged results), for the people sync.
//!
//! **All or nothing.** The listing is whole or an error: a connection lost midway, a page
//! refused, a server that stops at its size limit or the sync's deadline passing all end
//! it as [`LdapError`], never as a shorter list. The sync decides who left from what is
//! missing, so a partial answer must never look like a complete one.
//!
//! **Time.** Connecting and binding wait at most the server's operation timeout; the whole
//! listing, every page, has its own, longer deadline.

use std::collections::BTreeMap;
use std::time::Duration;

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{Scope, SearchEntry};

use super::{Connection, LdapError, LdapServer, attribute_name, failure};

/// What to list.
#[derive(Clone, Debug)]
pub struct ListingConfig {
    pub server: LdapServer,
    /// Where the search starts (the whole subtree below it).
    pub base: String,
    /// Which entries, e.g. `(objectClass=inetOrgPerson)`.
    pub filter: String,
    /// The attributes read from each entry.
    pub attributes: Vec<String>,
    /// Entries asked per page.
    pub page_size: u32,
    /// Connecting and binding wait at most this.
    pub timeout: Duration,
    /// The whole listing's deadline.
    pub deadline: Duration,
}

/// One entry: its DN and the attributes read (names lowercased, as LDAP compares them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LdapEntry {
    pub dn: String,
    /// Values that are UTF-8 text.
    pub text: BTreeMap<String, Vec<String>>,
    /// Attributes with a value that is not text (`objectGUID`): all their values, as bytes.
    pub binary: BTreeMap<String, Vec<Vec<u8>>>,
}

impl LdapEntry {
    /// The text values of an attribute (none when absent or binary).
    pub fn values(&self, attribute: &str) -> &[String] {
        self.text.get(&attribute.to_ascii_lowercase()).map(Vec::as_slice).unwrap_or_default()
    }

    /// The first value of an attribute as bytes, whether it came as text or not.
    pub fn first_bytes(&self, attribute: &str) -> Option<&[u8]> {
        let name = attribute.to_ascii_lowercase();
        match self.binary.get(&name) {
            Some(values) => values.first().map(Vec::as_slice),
            None => self.text.get(&name)?.first().map(String::as_bytes),
        }
    }

    fn from_search(entry: SearchEntry) -> Self {
        let lower = |name: String| name.to_ascii_lowercase();
        Self {
            dn: entry.dn,
            text: entry.attrs.into_iter().map(|(k, v)| (lower(k), v)).collect(),
            binary: entry.bin_attrs.into_iter().map(|(k, v)| (lower(k), v)).collect(),
        }
    }
}

/// A checked listing, ready to run.
#[derive(Clone, Debug)]
pub struct LdapListing {
    config: ListingConfig,
    connection: Connection,
}

impl LdapListing {
    /// Checks the settings once, at start.
    pub fn new(config: ListingConfig) -> Result<Self, LdapError> {
        let bad = |what: String| Err(LdapError::Config(what));
        let connection = Connection::new(config.server.clone())?;
        if config.base.trim().is_empty() {
            return bad("base must name the subtree to list, e.g. ou=people,dc=example,dc=org".into());
        }
        if ldap3::parse_filter(&config.filter).is_err() {
            return bad(format!("filter {:?} is not an LDAP filter, e.g. (objectClass=inetOrgPerson)", config.filter));
        }
        if let Some(name) = config.attributes.iter().find(|name| !attribute_name(name)) {
            return bad(format!("{name:?} is not an LDAP attribute name"));
        }
        if !(1..=i32::MAX as u32).contains(&config.page_size) {
            return bad("page_size must be positive".into());
        }
        if config.timeout.is_zero() || config.deadline.is_zero() {
            return bad("the timeout and the deadline must be positive".into());
        }
        Ok(Self { config, connection })
    }

    /// Every matching entry, within the deadline; `progress(entries so far)` after each.
    pub async fn entries(&self, progress: &(dyn Fn(usize) + Sync)) -> Result<Vec<LdapEntry>, LdapError> {
        let deadline = self.config.deadline;
        let this = self.clone();
        let (sender, mut received) = tokio::sync::mpsc::unbounded_channel();
        // Its own task: ldap3 panics on an entry it cannot parse (a hostile or broken
        // server); that must end this listing only.
        let mut listing = tokio::spawn(async move { this.list(sender).await });
        let mut count = 0;
        let finished = tokio::time::timeout(deadline, async {
            loop {
                tokio::select! {
                    Some(()) = received.recv() => {
                        count += 1;
                        progress(count);
                    }
                    done = &mut listing => return done,
                }
            }
        })
        .await;
        match finished {
            Err(_) => {
                listing.abort(); // drops its connection too
                Err(LdapError::TimedOut(deadline))
            }
            Ok(Err(join)) => Err(LdapError::Search(format!("the directory's answer broke the client: {join}"))),
            Ok(Ok(result)) => result,
        }
    }

    async fn list(&self, read: tokio::sync::mpsc::UnboundedSender<()>) -> Result<Vec<LdapEntry>, LdapError> {
        let c = &self.config;
        let mut ldap = self.connection.open(c.timeout).await?;
        // Pages may take long; the deadline over the whole listing bounds them.
        ldap.with_timeout(c.deadline);
        let failed = failure(c.deadline);
        let page_size = i32::try_from(c.page_size).unwrap_or(i32::MAX);
        let adapters: Vec<Box<dyn Adapter<_, _>>> =
            vec![Box::new(EntriesOnly::new()), Box::new(PagedResults::new(page_size))];
        let mut search = ldap
            .streaming_search_with(adapters, &c.base, Scope::Subtree, &c.filter, c.attributes.clone())
            .await
            .map_err(&failed)?;
        let mut entries = Vec::new();
        while let Some(entry) = search.next().await.map_err(&failed)? {
            entries.push(LdapEntry::from_search(SearchEntry::construct(entry)));
            let _ = read.send(());
        }
        // Anything but success (a size or time limit, a refused page) is not the whole list.
        let done = search.finish().await;
        if done.rc != 0 {
            return Err(LdapError::Search(done.to_string()));
        }
        let _ = ldap.unbind().await;
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::server;
    use super::*;

    fn config() -> ListingConfig {
        ListingConfig {
            server: server(),
            base: "ou=people,dc=example,dc=org".into(),
            filter: "(objectClass=inetOrgPerson)".into(),
            attributes: vec!["entryUUID".into(), "cn".into()],
            page_size: 500,
            timeout: Duration::from_secs(3),
            deadline: Duration::from_secs(120),
        }
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(LdapListing::new(config()).is_ok());
        for bad in [
            ListingConfig { base: "".into(), ..config() },
            ListingConfig { filter: "objectClass=inetOrgPerson)(".into(), ..config() },
            ListingConfig { attributes: vec!["(cn)".into()], ..config() },
            ListingConfig { page_size: 0, ..config() },
            ListingConfig { deadline: Duration::ZERO, ..config() },
            ListingConfig { server: LdapServer { url: "http://dir".into(), ..server() }, ..config() },
        ] {
            let shown = format!("{bad:?}");
            assert!(LdapListing::new(bad).is_err(), "{shown}");
        }
    }

    #[test]
    fn values_are_found_whatever_the_case_of_their_name_and_binary_ones_as_bytes() {
        let entry = LdapEntry::from_search(SearchEntry {
            dn: "uid=ann".into(),
            attrs: [("CN".to_owned(), vec!["Ann".to_owned()])].into(),
            bin_attrs: [("objectGUID".to_owned(), vec![vec![0xff, 0x00]])].into(),
        });
        assert_eq!(entry.values("cn"), ["Ann"]);
        assert_eq!(entry.first_bytes("cn"), Some(&b"Ann"[..]));
        assert_eq!(entry.first_bytes("objectguid"), Some(&[0xff, 0x00][..]));
        assert!(entry.values("objectGUID").is_empty() && entry.first_bytes("mail").is_none());
    }
}
