//! The badge identity lookup (GroundControl-style): who holds a badge, from the raw id
//! a reader sent (hex), answered as `user` and the configured attributes.
//!
//! The raw id passes the configured conversion pipeline, then the sources are asked in
//! order, the first that knows the badge answering:
//!
//! 1. the imported badges (`lintel import badges.csv`), matched by the converted id;
//! 2. the LDAP / Active Directory directory, when `[ldap]` is configured, searched with
//!    the converted id (its answer is `user` and the attributes `[ldap]` maps);
//! 3. lintel's own active cards, matched by the raw id (normalized hex), since their
//!    UIDs are stored as readers send them.
//!
//! A source that fails (the directory down, slow, or refusing lintel's bind) ends the
//! lookup as unavailable: a later source might answer differently from the one that could
//! not. A card's fields are `id` (also `user`), `name` (also `fullname`), `email` and
//! `status`; a badge's are its CSV columns.

use std::time::Duration;

pub use lintel_connectors::ldap::{LdapConfig, LdapDirectory, LdapServer};
use lintel_connectors::ldap::{LdapError, LdapMatch};
use lintel_core::badge::{ConvertError, Pipeline};
use lintel_store::Store;
use serde_json::{Map, Value};

use crate::decide::{FailureLimiter, LimiterConfig, Source};
use crate::error::{Result, ServiceError};

/// Where the endpoint listens and how the id is read from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupRoute {
    /// `/lookup?id=[DATA]`: the path and the query parameter's name.
    Query { path: String, param: String },
    /// `/lookup/[DATA]`: the route, with `{data}` in place of `[DATA]`.
    Segment { route: String },
}

#[derive(Clone)]
pub struct LookupConfig {
    pub route: LookupRoute,
    pub conversions: Pipeline,
    /// The field answered as `user`.
    pub user_attribute: String,
    /// The fields answered besides `user` (when the record has them).
    pub attributes: Vec<String>,
    /// `user:password` the client must send as basic auth.
    pub basic_auth: Option<String>,
    /// The directory asked after the imported badges, when `[ldap]` is configured.
    pub ldap: Option<LdapDirectory>,
}

impl std::fmt::Debug for LookupConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LookupConfig")
            .field("route", &self.route)
            .field("conversions", &self.conversions.to_string())
            .field("user_attribute", &self.user_attribute)
            .field("attributes", &self.attributes)
            .field("basic_auth", &self.basic_auth.as_ref().map(|_| "***"))
            .field("ldap", &self.ldap)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupConfigError {
    #[error("path_template {0:?} must contain [DATA] exactly once")]
    NoData(String),
    #[error("path_template {0:?} must start with / (or http://host/)")]
    NotAPath(String),
    #[error("path_template {0:?} would shadow lintel's own routes (/api/, /hooks/, /ui, /open, /visit, ...)")]
    Shadows(String),
    #[error("path_template {0:?}: [DATA] must be a whole path segment or a query parameter's whole value")]
    Placement(String),
    #[error("path_template {0:?} has characters that are not allowed in a path")]
    BadCharacters(String),
    #[error("basic_auth must be user:password")]
    BasicAuth,
    #[error(transparent)]
    Conversion(#[from] lintel_core::badge::StepError),
}

/// Paths (and prefixes ending in `/`) that belong to lintel.
const RESERVED: &[&str] = &[
    "/api/",
    "/hooks/",
    "/scim/",
    "/ui",
    "/open",
    "/visit",
    "/visit.js",
    "/openapi.json",
    "/healthz",
    "/readyz",
    "/metrics",
];

/// Whether a path is `/` or lies under one of lintel's own routes.
pub fn reserved(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower == "/"
        || RESERVED.iter().any(|r| {
            lower.starts_with(r) && (r.ends_with('/') || lower.len() == r.len() || lower[r.len()..].starts_with('/'))
        })
}

impl LookupRoute {
    /// Parses `/lookup?id=[DATA]`, `/lookup/[DATA]`, or either behind `http(s)://host`.
    pub fn parse(template: &str) -> Result<Self, LookupConfigError> {
        let t = template.trim();
        if t.matches("[DATA]").count() != 1 {
            return Err(LookupConfigError::NoData(t.to_owned()));
        }
        // A full URL as the client is configured with: keep the path.
        let t = match t.strip_prefix("http://").or_else(|| t.strip_prefix("https://")) {
            Some(rest) => {
                rest.find('/').map(|i| &rest[i..]).ok_or_else(|| LookupConfigError::NotAPath(t.to_owned()))?
            }
            None => t,
        };
        if !t.starts_with('/') {
            return Err(LookupConfigError::NotAPath(t.to_owned()));
        }
        let (path, query) = match t.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (t, None),
        };
        let ok_char = |c: char| c.is_ascii_alphanumeric() || "/-_.~[]".contains(c);
        if !path.chars().all(ok_char) || path.contains("//") || path.contains('{') {
            return Err(LookupConfigError::BadCharacters(template.to_owned()));
        }
        if path.replace("[DATA]", "").contains(['[', ']']) {
            return Err(LookupConfigError::BadCharacters(template.to_owned()));
        }
        if reserved(path) {
            return Err(LookupConfigError::Shadows(template.to_owned()));
        }
        match query {
            Some(q) => {
                let Some(param) = q.strip_suffix("=[DATA]") else {
                    return Err(LookupConfigError::Placement(template.to_owned()));
                };
                if param.is_empty() || !param.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
                    return Err(LookupConfigError::Placement(template.to_owned()));
                }
                if path.contains("[DATA]") {
                    return Err(LookupConfigError::Placement(template.to_owned()));
                }
                Ok(Self::Query { path: path.to_owned(), param: param.to_owned() })
            }
            None => {
                if !path.split('/').any(|segment| segment == "[DATA]") {
                    return Err(LookupConfigError::Placement(template.to_owned()));
                }
                Ok(Self::Segment { route: path.replace("[DATA]", "{data}") })
            }
        }
    }
}

impl LookupConfig {
    pub fn new(
        path_template: &str,
        conversions: &[String],
        user_attribute: Option<&str>,
        attributes: Vec<String>,
        basic_auth: Option<String>,
    ) -> Result<Self, LookupConfigError> {
        let basic_auth = basic_auth.filter(|b| !b.is_empty());
        if basic_auth.as_deref().is_some_and(|b| !b.contains(':')) {
            return Err(LookupConfigError::BasicAuth);
        }
        Ok(Self {
            route: LookupRoute::parse(path_template)?,
            conversions: Pipeline::parse(conversions)?,
            user_attribute: user_attribute.map(str::trim).filter(|u| !u.is_empty()).unwrap_or("user").to_owned(),
            attributes: attributes.into_iter().map(|a| a.trim().to_owned()).filter(|a| !a.is_empty()).collect(),
            basic_auth,
            ldap: None,
        })
    }

    /// Asks this directory after the imported badges.
    pub fn with_ldap(self, ldap: LdapDirectory) -> Self {
        Self { ldap: Some(ldap), ..self }
    }
}

/// The lookup's sources, and the asking clients' wrong passwords.
pub struct Lookup {
    config: LookupConfig,
    store: Store,
    /// Wrong basic auth per client: guessing the password is slowed like guessing PINs.
    wrong_passwords: FailureLimiter,
}

/// A raw badge id as read, and as the conversion pipeline made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadgeId {
    raw: String,
    converted: String,
}

/// What the asker sent for the lookup's basic auth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Password {
    Right,
    Wrong,
    /// Nothing: not counted as a guess.
    Missing,
}

/// Whether an asker may look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// Too many wrong passwords: refused whatever it sends, for `wait`.
    Locked {
        wait: Duration,
    },
    Refused,
}

impl Lookup {
    pub fn new(config: LookupConfig, store: Store, limiter: LimiterConfig) -> Self {
        let wrong_passwords = FailureLimiter::for_store(limiter, &store);
        Self { config, store, wrong_passwords }
    }

    pub fn config(&self) -> &LookupConfig {
        &self.config
    }

    /// Whether `asker`, who sent `password`, may look up: a lock after too many wrong
    /// passwords holds even against the right one.
    pub async fn admit(&self, asker: &Source, password: Password) -> Admission {
        let now = crate::decide::now_micros();
        if let Some(lock) = self.wrong_passwords.locked(asker, now).await {
            return Admission::Locked { wait: lock.wait };
        }
        match password {
            Password::Right => Admission::Admitted,
            Password::Wrong => {
                self.wrong_passwords.failure(asker, now).await;
                Admission::Refused
            }
            Password::Missing => Admission::Refused,
        }
    }

    /// Reads a raw id (hex, with or without separators) through the conversion pipeline.
    pub fn read(&self, raw: &str) -> Result<BadgeId, ConvertError> {
        let raw = lintel_core::badge::normalize_raw(raw)?;
        let converted = self.config.conversions.convert(&raw)?;
        Ok(BadgeId { raw, converted })
    }

    /// Who holds the badge: `user` and the configured attributes, or `None`.
    pub async fn find(&self, id: &BadgeId) -> Result<Option<Map<String, Value>>> {
        if let Some(record) = self.store.badge(&id.converted).await? {
            return Ok(answer(&self.config, &record));
        }
        if let Some(ldap) = &self.config.ldap {
            match ldap.find(&id.converted).await {
                Ok(Some(found)) => {
                    tracing::debug!(dn = %found.dn, "badge lookup: found in the LDAP directory");
                    return Ok(Some(ldap_answer(found)));
                }
                Ok(None) => {}
                Err(e) => return Err(ldap_error(e)),
            }
        }
        // lintel's cards are whole bytes.
        if id.raw.len() % 2 == 1 {
            return Ok(None);
        }
        let Some(holder) = self.store.card_holder(&id.raw).await? else { return Ok(None) };
        let mut record = Map::new();
        record.insert("id".into(), holder.id.clone().into());
        record.insert("user".into(), holder.id.into());
        record.insert("name".into(), holder.name.clone().into());
        record.insert("fullname".into(), holder.name.into());
        if let Some(email) = holder.email {
            record.insert("email".into(), email.into());
        }
        record.insert("status".into(), holder.status.into());
        Ok(answer(&self.config, &record))
    }
}

/// A badge's or card's record as answered: the configured `user_attribute` as `user`, and
/// the configured attributes the record has; `None` without a user.
fn answer(config: &LookupConfig, record: &Map<String, Value>) -> Option<Map<String, Value>> {
    let user = record.get(&config.user_attribute).filter(|u| !u.is_null() && *u != "")?;
    let mut body = Map::new();
    body.insert("user".into(), user.clone());
    for attribute in &config.attributes {
        if attribute == "user" {
            continue;
        }
        if let Some(value) = record.get(attribute) {
            body.insert(attribute.clone(), value.clone());
        }
    }
    Some(body)
}

/// A directory entry as answered: `user`, and each mapped attribute as text (one value) or
/// a list (several, such as `memberOf`).
fn ldap_answer(found: LdapMatch) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("user".into(), found.user.into());
    for (name, mut values) in found.attributes {
        let value = if values.len() == 1 { values.remove(0).into() } else { values.into() };
        body.insert(name, value);
    }
    body
}

/// The directory's failure as the asker sees it: the details (hosts, DNs, the server's
/// words) go to the log, never to the door.
fn ldap_error(e: LdapError) -> ServiceError {
    match e {
        LdapError::Ambiguous { .. } => {
            tracing::warn!(error = %e, "badge lookup: the badge is ambiguous in the LDAP directory");
            ServiceError::Conflict("several directory entries carry this badge".into())
        }
        e => {
            tracing::error!(error = %e, "badge lookup: the LDAP directory could not be asked");
            ServiceError::unavailable("the badge directory (LDAP) is not available; try again later")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        assert_eq!(
            LookupRoute::parse("/lookup?id=[DATA]").unwrap(),
            LookupRoute::Query { path: "/lookup".into(), param: "id".into() }
        );
        assert_eq!(
            LookupRoute::parse("http://10.1.1.1:8080/badges/lookup?badge_id=[DATA]").unwrap(),
            LookupRoute::Query { path: "/badges/lookup".into(), param: "badge_id".into() }
        );
        assert_eq!(
            LookupRoute::parse("/lookup/[DATA]").unwrap(),
            LookupRoute::Segment { route: "/lookup/{data}".into() }
        );
        assert_eq!(
            LookupRoute::parse("/badge/[DATA]/user").unwrap(),
            LookupRoute::Segment { route: "/badge/{data}/user".into() }
        );
        for bad in [
            "/lookup",
            "/lookup?id=[DATA]&x=[DATA]",
            "lookup/[DATA]",
            "/api/v1/lookup/[DATA]",
            "/hooks/[DATA]",
            "/ui/[DATA]",
            "/ui?id=[DATA]",
            "/healthz?id=[DATA]",
            "/open/[DATA]",
            "/?id=[DATA]",
            "/lookup/x[DATA]",
            "/lookup?id=x[DATA]",
            "/lookup?[DATA]",
            "/look up/[DATA]",
            "/lookup/{x}/[DATA]",
            "/a[b]/[DATA]",
        ] {
            assert!(LookupRoute::parse(bad).is_err(), "{bad:?} should be refused");
        }
        // Not reserved: only prefixes at a segment boundary are.
        assert!(LookupRoute::parse("/openings/[DATA]").is_ok());
        assert!(LookupRoute::parse("/uid?id=[DATA]").is_ok());
    }

    #[test]
    fn config() {
        let c =
            LookupConfig::new("/lookup/[DATA]", &["reverse_bytes".into()], None, vec![], Some("a:b".into())).unwrap();
        assert_eq!(c.user_attribute, "user");
        assert!(!format!("{c:?}").contains("a:b"), "the password stays out of logs");
        assert!(LookupConfig::new("/lookup/[DATA]", &[], None, vec![], Some("nocolon".into())).is_err());
        assert!(LookupConfig::new("/lookup/[DATA]", &["frobnicate".into()], None, vec![], None).is_err());
    }
}
