//! The badge identity lookup (GroundControl-style): `GET` on an operator-defined path
//! with the reader's raw badge id (hex) in the query or a path segment, answered with
//! `200 {"user": ..., attributes}` or a `404` problem document.
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
//! lookup with `503`: a later source might answer differently from the one that could not.
//! A card's fields are `id` (also `user`), `name` (also `fullname`), `email` and `status`;
//! a badge's are its CSV columns.

use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Extension;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
pub use lintel_connectors::ldap::{LdapConfig, LdapDirectory};
use lintel_connectors::ldap::{LdapError, LdapMatch};
use lintel_core::badge::{ConvertError, Pipeline};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::problem::{ApiError, ApiPath};
use lintel_service::decide::{FailureLimiter, Source};

/// Where the endpoint listens and how the id is read from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupRoute {
    /// `/lookup?id=[DATA]`: the path and the query parameter's name.
    Query { path: String, param: String },
    /// `/lookup/[DATA]`: an axum route with `{data}` in place of `[DATA]`.
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
const RESERVED: &[&str] =
    &["/api/", "/hooks/", "/ui", "/open", "/visit", "/visit.js", "/openapi.json", "/healthz", "/readyz", "/metrics"];

/// Whether a path is `/` or lies under one of lintel's own routes.
fn reserved(path: &str) -> bool {
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

/// Wrong basic auth per client address: guessing the password is slowed like guessing PINs.
#[derive(Clone)]
struct Failures(Arc<FailureLimiter>);

/// The lookup's route, when configured.
pub(crate) fn router(state: &AppState) -> Router<AppState> {
    let Some(lookup) = state.inner.config.lookup.as_ref() else { return Router::new() };
    let router = match &lookup.route {
        LookupRoute::Query { path, .. } => Router::new().route(path, axum::routing::get(by_query)),
        LookupRoute::Segment { route } => Router::new().route(route, axum::routing::get(by_segment)),
    };
    router.layer(Extension(Failures(Arc::new(FailureLimiter::new(state.inner.services.config.limiter)))))
}

/// Who asks: the client's address (for the failure limiter) and its headers.
struct Asker {
    headers: HeaderMap,
    source: Source,
    failures: Failures,
}

async fn by_query(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    Extension(failures): Extension<Failures>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let asker = Asker { headers, source: source(peer), failures };
    let Some(lookup) = state.inner.config.lookup.as_ref() else {
        return ApiError::not_found("no lookup").into_response();
    };
    let LookupRoute::Query { param, .. } = &lookup.route else {
        return ApiError::not_found("no lookup").into_response();
    };
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.as_deref().unwrap_or("")).unwrap_or_default();
    let raw = pairs.into_iter().find(|(k, _)| k == param).map(|(_, v)| v);
    let Some(raw) = raw else {
        return answer_error(
            lookup,
            &asker,
            ApiError::bad_request(format!("the badge id is the query parameter {param:?}")),
        );
    };
    respond(&state, lookup, &asker, &raw).await
}

async fn by_segment(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    Extension(failures): Extension<Failures>,
    headers: HeaderMap,
    ApiPath(raw): ApiPath<String>,
) -> Response {
    let asker = Asker { headers, source: source(peer), failures };
    let Some(lookup) = state.inner.config.lookup.as_ref() else {
        return ApiError::not_found("no lookup").into_response();
    };
    respond(&state, lookup, &asker, &raw).await
}

fn source(peer: Option<Extension<ConnectInfo<SocketAddr>>>) -> Source {
    Source::Client(match peer {
        Some(Extension(ConnectInfo(addr))) => format!("lookup:{}", addr.ip()),
        None => "lookup".to_owned(),
    })
}

/// Whether the request carries the configured basic auth (compared in constant time).
fn credentials_match(expected: &str, headers: &HeaderMap) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic ")))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
        .unwrap_or_default();
    // Digests first, so that lengths take no part in the comparison.
    let a = Sha256::digest(&given);
    let b = Sha256::digest(expected.as_bytes());
    bool::from(a.as_slice().ct_eq(b.as_slice()))
}

fn unauthorized() -> Response {
    let mut response = ApiError::unauthorized("the lookup needs basic auth").into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"lintel lookup\", charset=\"UTF-8\""));
    response
}

/// The refusal when the asker may not look up, if any: locked after too many wrong
/// passwords (429), or without the right credentials (401, counted when some were sent).
fn refusal(lookup: &LookupConfig, asker: &Asker) -> Option<Response> {
    let expected = lookup.basic_auth.as_deref()?;
    let now = Instant::now();
    if let Some(lock) = asker.failures.0.locked(&asker.source, now) {
        let wait = lock.wait.as_secs().max(1);
        let detail = format!("too many wrong passwords; try again in {wait} s");
        let mut response = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "locked", detail).into_response();
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return Some(response);
    }
    if credentials_match(expected, &asker.headers) {
        return None;
    }
    if asker.headers.contains_key(header::AUTHORIZATION) {
        asker.failures.0.failure(&asker.source, now);
    }
    Some(unauthorized())
}

/// Errors before the lookup: the credentials come first, so that nothing is learnt without them.
fn answer_error(lookup: &LookupConfig, asker: &Asker, error: ApiError) -> Response {
    refusal(lookup, asker).unwrap_or_else(|| error.into_response())
}

async fn respond(state: &AppState, lookup: &LookupConfig, asker: &Asker, raw: &str) -> Response {
    if let Some(refused) = refusal(lookup, asker) {
        return refused;
    }
    match find(state, lookup, raw).await {
        Ok(Some(body)) => (StatusCode::OK, axum::Json(Value::Object(body))).into_response(),
        Ok(None) => ApiError::not_found("no user has this badge").into_response(),
        Err(e) => e.into_response(),
    }
}

fn convert_error(e: ConvertError) -> ApiError {
    ApiError::bad_request(format!("badge id: {e}"))
}

/// The answer for a raw id: `user` and the configured attributes, or `None`.
async fn find(state: &AppState, lookup: &LookupConfig, raw: &str) -> Result<Option<Map<String, Value>>, ApiError> {
    let raw = lintel_core::badge::normalize_raw(raw).map_err(convert_error)?;
    let converted = lookup.conversions.convert(&raw).map_err(convert_error)?;
    let store = &state.store();
    if let Some(record) = store.badge(&converted).await? {
        return Ok(answer(lookup, &record));
    }
    if let Some(ldap) = &lookup.ldap {
        match ldap.find(&converted).await {
            Ok(Some(found)) => {
                tracing::debug!(dn = %found.dn, "badge lookup: found in the LDAP directory");
                return Ok(Some(ldap_answer(found)));
            }
            Ok(None) => {}
            Err(e) => return Err(ldap_error(e)),
        }
    }
    if raw.len() % 2 == 1 {
        return Ok(None);
    }
    let Some(holder) = store.card_holder(&raw).await? else { return Ok(None) };
    let mut record = Map::new();
    record.insert("id".into(), holder.id.clone().into());
    record.insert("user".into(), holder.id.into());
    record.insert("name".into(), holder.name.clone().into());
    record.insert("fullname".into(), holder.name.into());
    if let Some(email) = holder.email {
        record.insert("email".into(), email.into());
    }
    record.insert("status".into(), holder.status.into());
    Ok(answer(lookup, &record))
}

/// A badge's or card's record as answered: the configured `user_attribute` as `user`, and
/// the configured attributes the record has; `None` without a user.
fn answer(lookup: &LookupConfig, record: &Map<String, Value>) -> Option<Map<String, Value>> {
    let user = record.get(&lookup.user_attribute).filter(|u| !u.is_null() && *u != "")?;
    let mut body = Map::new();
    body.insert("user".into(), user.clone());
    for attribute in &lookup.attributes {
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

/// The directory's failure as the client sees it: the details (hosts, DNs, the server's
/// words) go to the log, never to the door; never counted as a wrong guess.
fn ldap_error(e: LdapError) -> ApiError {
    match e {
        LdapError::Ambiguous { .. } => {
            tracing::warn!(error = %e, "badge lookup: the badge is ambiguous in the LDAP directory");
            ApiError::new(StatusCode::CONFLICT, "conflict", "several directory entries carry this badge")
        }
        e => {
            tracing::error!(error = %e, "badge lookup: the LDAP directory could not be asked");
            ApiError::unavailable("the badge directory (LDAP) is not available; try again later")
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

    /// Every route of the API lies under a reserved path, so that no template can collide with
    /// one (axum would refuse the router).
    #[test]
    fn reserved_paths_cover_the_api() {
        let (_, openapi) = crate::api::router().split_for_parts();
        for path in openapi.paths.paths.keys() {
            assert!(reserved(path), "{path} is not covered by RESERVED in lookup.rs");
        }
        assert!(reserved("/openapi.json") && reserved("/ui/people") && reserved("/visit.js"));
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
