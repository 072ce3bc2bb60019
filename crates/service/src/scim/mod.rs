//! SCIM 2.0 provisioning (RFC 7643, RFC 7644): an identity provider (Okta, Entra ID,
//! Google, JumpCloud) creates, changes, deactivates and removes people and groups in lintel.
//!
//! A SCIM user is a lintel person: its attributes are kept whole in the person's
//! `attributes.scim` (so what the provider sent is what it reads back), and lintel's own
//! fields follow from them (the name, the primary email and phone, `externalId` as the
//! external id `scim`, the userName, lower-cased, as `scim:userName`, which the store keeps
//! unique). `active: false` and `DELETE` offboard the person (see [`crate::offboarding`]);
//! a deleted user is no longer a SCIM user but the person and their history stay. A SCIM
//! group is a lintel group and its membership.

mod document;
pub mod groups;
pub mod schema;
pub mod users;

use std::fmt;

use scim_v2::filter::Filter;
use serde_json::{Value, json};

use crate::error::ServiceError;

/// A SCIM error (RFC 7644 §3.12): an HTTP status and, for a 400, the `scimType`.
#[derive(Debug, thiserror::Error)]
#[error("{detail}")]
pub struct ScimError {
    pub status: u16,
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

impl ScimError {
    fn new(status: u16, scim_type: Option<&'static str>, detail: impl fmt::Display) -> Self {
        Self { status, scim_type, detail: detail.to_string() }
    }
    pub fn invalid_value(detail: impl fmt::Display) -> Self {
        Self::new(400, Some("invalidValue"), detail)
    }
    pub fn invalid_syntax(detail: impl fmt::Display) -> Self {
        Self::new(400, Some("invalidSyntax"), detail)
    }
    pub fn invalid_filter(detail: impl fmt::Display) -> Self {
        Self::new(400, Some("invalidFilter"), detail)
    }
    pub fn invalid_path(detail: impl fmt::Display) -> Self {
        Self::new(400, Some("invalidPath"), detail)
    }
    pub fn no_target(detail: impl fmt::Display) -> Self {
        Self::new(400, Some("noTarget"), detail)
    }
    pub fn mutability(detail: impl fmt::Display) -> Self {
        Self::new(400, Some("mutability"), detail)
    }
    pub fn uniqueness(detail: impl fmt::Display) -> Self {
        Self::new(409, Some("uniqueness"), detail)
    }
    pub fn not_found(detail: impl fmt::Display) -> Self {
        Self::new(404, None, detail)
    }
    pub fn unauthorized(detail: impl fmt::Display) -> Self {
        Self::new(401, None, detail)
    }
    fn precondition_failed() -> Self {
        Self::new(412, None, "the resource changed since the version in If-Match")
    }

    /// The error document.
    pub fn body(&self) -> Value {
        let mut v = json!({"schemas": [schema::ERROR], "status": self.status.to_string(), "detail": self.detail});
        if let Some(t) = self.scim_type {
            v["scimType"] = json!(t);
        }
        v
    }
}

impl From<ServiceError> for ScimError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound { detail, .. } => Self::not_found(detail),
            ServiceError::Invalid(d) => Self::invalid_value(d),
            ServiceError::Conflict(d) => Self::uniqueness(d),
            ServiceError::Unauthorized(d) => Self::unauthorized(d),
            ServiceError::Forbidden { detail, .. } => Self::new(403, None, detail),
            ServiceError::RateLimited { detail, .. } => Self::new(429, None, detail),
            e @ (ServiceError::NotConfigured(_) | ServiceError::Unavailable(_) | ServiceError::Upstream { .. }) => {
                Self::new(503, None, e)
            }
        }
    }
}

impl From<lintel_store::StoreError> for ScimError {
    fn from(e: lintel_store::StoreError) -> Self {
        ServiceError::from(e).into()
    }
}

pub type Result<T> = std::result::Result<T, ScimError>;

/// A list request: `filter`, `startIndex` (1-based), `count`, and the attributes returned.
#[derive(Debug, Default, Clone)]
pub struct ListQuery {
    pub filter: Option<String>,
    pub start_index: Option<i64>,
    pub count: Option<i64>,
    pub attributes: Vec<String>,
    pub excluded_attributes: Vec<String>,
}

impl ListQuery {
    fn filter(&self) -> Result<Option<Filter>> {
        let Some(raw) = self.filter.as_deref().map(str::trim).filter(|f| !f.is_empty()) else { return Ok(None) };
        raw.parse::<Filter>().map(Some).map_err(|e| ScimError::invalid_filter(format!("{raw:?}: {e}")))
    }

    /// The page of `matching` asked for, as a ListResponse.
    fn page(&self, matching: Vec<Value>) -> Value {
        let total = matching.len();
        let start = usize::try_from(self.start_index.unwrap_or(1).max(1)).unwrap_or(usize::MAX);
        let count = self.count.unwrap_or(100).clamp(0, schema::MAX_RESULTS as i64) as usize;
        let resources: Vec<Value> = matching
            .into_iter()
            .skip(start.saturating_sub(1))
            .take(count)
            .map(|r| document::project(r, &self.attributes, &self.excluded_attributes))
            .collect();
        json!({
            "schemas": [schema::LIST],
            "totalResults": total,
            "startIndex": start,
            "itemsPerPage": resources.len(),
            "Resources": resources,
        })
    }
}

/// A search (`POST .search`, RFC 7644 §3.4.3): its body read into a list query.
pub fn search_query(body: &[u8]) -> Result<ListQuery> {
    let map = object(body)?;
    let text = |key: &str| -> Result<Option<String>> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ScimError::invalid_value(format!("{key} must be a string"))),
        }
    };
    let number = |key: &str| -> Result<Option<i64>> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => {
                v.as_i64().map(Some).ok_or_else(|| ScimError::invalid_value(format!("{key} must be an integer")))
            }
        }
    };
    let names = |key: &str| -> Result<Vec<String>> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| ScimError::invalid_value(format!("{key} lists strings")))
                })
                .collect(),
            Some(_) => Err(ScimError::invalid_value(format!("{key} must be a list of attribute names"))),
        }
    };
    Ok(ListQuery {
        filter: text("filter")?,
        start_index: number("startIndex")?,
        count: number("count")?,
        attributes: names("attributes")?,
        excluded_attributes: names("excludedAttributes")?,
    })
}

/// A search over users and groups at once (`POST /.search` at the root).
pub async fn search_all(directory: &std::sync::Arc<crate::Directory>, base: &str, query: &ListQuery) -> Result<Value> {
    let filter = query.filter()?;
    let mut found = users::matching(directory, base, filter.as_ref()).await?;
    found.extend(groups::matching(directory, base, filter.as_ref()).await?);
    Ok(query.page(found))
}

/// Resources in one ListResponse, unfiltered (the discovery endpoints' lists).
pub fn listed(resources: Vec<Value>) -> Value {
    ListQuery::default().page(resources)
}

/// Which attributes a read returns.
#[derive(Debug, Default, Clone)]
pub struct Projection {
    pub attributes: Vec<String>,
    pub excluded_attributes: Vec<String>,
}

impl Projection {
    pub fn apply(&self, resource: Value) -> Value {
        document::project(resource, &self.attributes, &self.excluded_attributes)
    }
}

/// The version a resource is at (its `ETag`), from its `meta`.
pub fn version_of(resource: &Value) -> Option<&str> {
    resource.pointer("/meta/version").and_then(Value::as_str)
}

/// Refuses a change when the caller's `If-Match` names another version.
fn check_version(resource: &Value, if_match: Option<&str>) -> Result<()> {
    match if_match.map(str::trim) {
        None | Some("*") => Ok(()),
        Some(wanted) if wanted.split(',').any(|w| Some(w.trim()) == version_of(resource)) => Ok(()),
        Some(_) => Err(ScimError::precondition_failed()),
    }
}

/// Puts `meta` on a resource, its version computed over everything else.
fn with_meta(mut resource: Value, resource_type: &str, location: String, times: Option<(String, String)>) -> Value {
    let version = document::version(&resource);
    let mut meta = json!({"resourceType": resource_type, "location": location, "version": version});
    if let Some((created, modified)) = times {
        meta["created"] = json!(created);
        meta["lastModified"] = json!(modified);
    }
    resource["meta"] = meta;
    resource
}

/// A request body as a JSON object, or `invalidSyntax`.
pub fn object(body: &[u8]) -> Result<serde_json::Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ScimError::invalid_syntax("the body must be a JSON object")),
        Err(e) => Err(ScimError::invalid_syntax(format!("the body is not JSON: {e}"))),
    }
}

/// A PATCH body (RFC 7644 §3.5.2), or `invalidSyntax` / `invalidPath`.
fn patch_op(body: &[u8]) -> Result<scim_v2::models::others::PatchOp> {
    let map = object(body)?;
    if !map.get("schemas").and_then(Value::as_array).is_some_and(|s| s.iter().any(|s| s == schema::PATCH_OP)) {
        return Err(ScimError::invalid_syntax(format!("a PATCH body's schemas must list {}", schema::PATCH_OP)));
    }
    serde_json::from_value(Value::Object(map)).map_err(|e| {
        let detail = e.to_string();
        if detail.contains("invalid SCIM path") {
            ScimError::invalid_path(detail)
        } else {
            ScimError::invalid_syntax(detail)
        }
    })
}

fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
