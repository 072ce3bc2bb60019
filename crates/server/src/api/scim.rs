//! SCIM 2.0 (`/scim/v2`): the routes an identity provider calls to provision people and
//! groups. The protocol's own errors (`application/scim+json`, RFC 7644 §3.12) answer
//! here, not problem documents: providers read those.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lintel_service::scim::{self, ListQuery, Projection, ScimError, groups, schema, users};
use lintel_store::TokenScope;
use serde::Deserialize;
use serde_json::Value;
use utoipa::IntoParams;

use crate::AppState;

const CONTENT_TYPE: &str = "application/scim+json";

/// A SCIM answer: a resource, a list, or an error.
pub enum Scim {
    Resource(StatusCode, Value),
    NoContent,
    NotModified,
}

/// A SCIM error as the protocol answers it.
pub struct ScimFailure(pub ScimError);

impl From<ScimError> for ScimFailure {
    fn from(e: ScimError) -> Self {
        Self(e)
    }
}

impl IntoResponse for ScimFailure {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::warn!(error = %self.0.detail, "SCIM request failed");
        }
        (status, [(header::CONTENT_TYPE, CONTENT_TYPE)], self.0.body().to_string()).into_response()
    }
}

impl IntoResponse for Scim {
    fn into_response(self) -> Response {
        match self {
            Self::Resource(status, body) => {
                let mut response = (status, [(header::CONTENT_TYPE, CONTENT_TYPE)], body.to_string()).into_response();
                if let Some(v) = scim::version_of(&body).and_then(|v| HeaderValue::from_str(v).ok()) {
                    response.headers_mut().insert(header::ETAG, v);
                }
                if status == StatusCode::CREATED
                    && let Some(l) = body
                        .pointer("/meta/location")
                        .and_then(Value::as_str)
                        .and_then(|l| HeaderValue::from_str(l).ok())
                {
                    response.headers_mut().insert(header::LOCATION, l);
                }
                response
            }
            Self::NoContent => StatusCode::NO_CONTENT.into_response(),
            Self::NotModified => StatusCode::NOT_MODIFIED.into_response(),
        }
    }
}

type ScimResult = Result<Scim, ScimFailure>;

/// An identity provider: a token with the `scim` scope (or an admin's). Also where this
/// server's SCIM base URL is found, for `meta.location`.
pub struct Provisioner {
    base: String,
}

impl FromRequestParts<AppState> for Provisioner {
    type Rejection = ScimFailure;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = crate::auth::bearer(parts).ok_or_else(|| {
            ScimError::unauthorized("send a token with the scim scope as Authorization: Bearer <token>")
        })?;
        match state.services().tokens.check_scoped(token) {
            Some((_, TokenScope::Scim)) => {}
            Some((_, TokenScope::Operator(at))) if at.site.is_none() && at.role.may(lintel_core::Action::Configure) => {
            }
            _ => return Err(ScimError::unauthorized("the token is not valid for SCIM").into()),
        }
        let root = match &state.services().config.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let host = parts.headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
                format!("http://{host}")
            }
        };
        Ok(Self { base: format!("{root}/scim/v2") })
    }
}

/// A list's query (RFC 7644 §3.4.2).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// e.g. `userName eq "ann@example.org"`; `eq ne co sw ew gt ge lt le pr`, `and`, `or`, `not`.
    filter: Option<String>,
    /// The first result's 1-based index.
    #[serde(rename = "startIndex")]
    #[param(rename = "startIndex")]
    start_index: Option<String>,
    /// How many results at most (500 at most).
    count: Option<String>,
    /// Only these attributes (comma-separated).
    attributes: Option<String>,
    /// All but these attributes (comma-separated).
    #[serde(rename = "excludedAttributes")]
    #[param(rename = "excludedAttributes")]
    excluded_attributes: Option<String>,
}

/// The attributes a read returns (RFC 7644 §3.9).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReadParams {
    /// Only these attributes (comma-separated).
    attributes: Option<String>,
    /// All but these attributes (comma-separated).
    #[serde(rename = "excludedAttributes")]
    #[param(rename = "excludedAttributes")]
    excluded_attributes: Option<String>,
}

fn names(v: Option<String>) -> Vec<String> {
    v.unwrap_or_default().split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

fn number(name: &str, v: Option<String>) -> Result<Option<i64>, ScimError> {
    v.map(|v| v.trim().parse::<i64>().map_err(|_| ScimError::invalid_value(format!("{name} must be a number"))))
        .transpose()
}

fn list_query(q: Result<Query<ListParams>, QueryRejection>) -> Result<ListQuery, ScimError> {
    let Query(q) = q.map_err(|e| ScimError::invalid_syntax(e.body_text()))?;
    Ok(ListQuery {
        filter: q.filter,
        start_index: number("startIndex", q.start_index)?,
        count: number("count", q.count)?,
        attributes: names(q.attributes),
        excluded_attributes: names(q.excluded_attributes),
    })
}

fn projection(q: Result<Query<ReadParams>, QueryRejection>) -> Result<Projection, ScimError> {
    let Query(q) = q.map_err(|e| ScimError::invalid_syntax(e.body_text()))?;
    Ok(Projection { attributes: names(q.attributes), excluded_attributes: names(q.excluded_attributes) })
}

fn if_match(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok())
}

/// A read, or 304 when the caller's `If-None-Match` names its version.
fn read(resource: Value, headers: &HeaderMap) -> Scim {
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| Some(t.trim()) == scim::version_of(&resource)));
    if unchanged { Scim::NotModified } else { Scim::Resource(StatusCode::OK, resource) }
}

/// What this service provider supports.
#[utoipa::path(get, path = "/scim/v2/ServiceProviderConfig", tag = "scim", security(("scim" = [])),
    responses((status = 200, description = "the configuration", content_type = "application/scim+json", body = Object),
              (status = 401, description = "no token, or one without the scim scope", content_type = "application/scim+json", body = Object)))]
pub async fn service_provider_config(who: Provisioner) -> ScimResult {
    Ok(Scim::Resource(StatusCode::OK, schema::service_provider_config(&who.base)))
}

fn one_of(resources: Vec<Value>, id: &str, what: &str) -> ScimResult {
    resources
        .into_iter()
        .find(|r| r["id"] == id)
        .map(|r| Scim::Resource(StatusCode::OK, r))
        .ok_or_else(|| ScimError::not_found(format!("no {what} {id:?}")).into())
}

/// The resource types served: User and Group.
#[utoipa::path(get, path = "/scim/v2/ResourceTypes", tag = "scim", security(("scim" = [])),
    responses((status = 200, description = "a ListResponse", content_type = "application/scim+json", body = Object),
              (status = 401, description = "no token, or one without the scim scope", content_type = "application/scim+json", body = Object)))]
pub async fn resource_types(who: Provisioner) -> ScimResult {
    Ok(Scim::Resource(StatusCode::OK, scim::listed(schema::resource_types(&who.base))))
}

/// One resource type.
#[utoipa::path(get, path = "/scim/v2/ResourceTypes/{id}", tag = "scim", params(("id" = String, Path, description = "User or Group")), security(("scim" = [])),
    responses((status = 200, description = "the resource type", content_type = "application/scim+json", body = Object),
              (status = 401, description = "no token, or one without the scim scope", content_type = "application/scim+json", body = Object),
              (status = 404, description = "no such resource type", content_type = "application/scim+json", body = Object)))]
pub async fn resource_type(who: Provisioner, Path(id): Path<String>) -> ScimResult {
    one_of(schema::resource_types(&who.base), &id, "resource type")
}

/// The schemas: what lintel keeps of users and groups, and the discovery schemas.
#[utoipa::path(get, path = "/scim/v2/Schemas", tag = "scim", security(("scim" = [])),
    responses((status = 200, description = "a ListResponse", content_type = "application/scim+json", body = Object),
              (status = 401, description = "no token, or one without the scim scope", content_type = "application/scim+json", body = Object)))]
pub async fn schemas(who: Provisioner) -> ScimResult {
    Ok(Scim::Resource(StatusCode::OK, scim::listed(schema::schemas(&who.base))))
}

/// One schema, by its URN.
#[utoipa::path(get, path = "/scim/v2/Schemas/{id}", tag = "scim", params(("id" = String, Path, description = "the schema's URN")), security(("scim" = [])),
    responses((status = 200, description = "the schema", content_type = "application/scim+json", body = Object),
              (status = 401, description = "no token, or one without the scim scope", content_type = "application/scim+json", body = Object),
              (status = 404, description = "no such schema", content_type = "application/scim+json", body = Object)))]
pub async fn schema_by_id(who: Provisioner, Path(id): Path<String>) -> ScimResult {
    one_of(schema::schemas(&who.base), &id, "schema")
}

/// Search users and groups at once (RFC 7644 §3.4.3): the body holds the filter, paging
/// and attributes a list takes as its query.
#[utoipa::path(post, path = "/scim/v2/.search", tag = "scim", request_body(content = Object, content_type = "application/scim+json"), security(("scim" = [])),
    responses((status = 200, description = "a ListResponse", content_type = "application/scim+json", body = Object),
              (status = 400, description = "a body or filter that is not valid", content_type = "application/scim+json", body = Object),
              (status = 401, description = "no token, or one without the scim scope", content_type = "application/scim+json", body = Object),
              (status = 413, description = "larger than max_body_bytes")))]
pub async fn search_all(State(s): State<AppState>, who: Provisioner, body: Bytes) -> ScimResult {
    let query = scim::search_query(&body)?;
    Ok(Scim::Resource(StatusCode::OK, scim::search_all(s.directory(), &who.base, &query).await?))
}

macro_rules! resource_routes {
    ($module:ident, $path:literal, $item:literal, $search:literal, [$list_doc:literal, $search_doc:literal, $create_doc:literal, $get_doc:literal, $replace_doc:literal, $patch_doc:literal, $delete_doc:literal], $list:ident, $search_fn:ident, $create:ident, $get:ident, $replace:ident, $patch:ident, $delete:ident) => {
        #[doc = $list_doc]
        #[utoipa::path(get, path = $path, tag = "scim", params(ListParams), security(("scim" = [])),
            responses((status = 200, description = "a ListResponse", content_type = "application/scim+json", body = Object),
                      (status = 400, description = "a filter or number that is not valid", content_type = "application/scim+json", body = Object),
                      (status = 401, description = "no token, or one without the scim scope", content_type = "application/scim+json", body = Object)))]
        pub async fn $list(
            State(s): State<AppState>,
            who: Provisioner,
            q: Result<Query<ListParams>, QueryRejection>,
        ) -> ScimResult {
            Ok(Scim::Resource(StatusCode::OK, $module::list(s.directory(), &who.base, &list_query(q)?).await?))
        }

        #[doc = $search_doc]
        #[utoipa::path(post, path = $search, tag = "scim", request_body(content = Object, content_type = "application/scim+json"), security(("scim" = [])),
            responses((status = 200, description = "a ListResponse", content_type = "application/scim+json", body = Object),
                      (status = 400, description = "a body or filter that is not valid", content_type = "application/scim+json", body = Object),
                      (status = 401, description = "no token, or one without the scim scope", content_type = "application/scim+json", body = Object),
                      (status = 413, description = "larger than max_body_bytes")))]
        pub async fn $search_fn(State(s): State<AppState>, who: Provisioner, body: Bytes) -> ScimResult {
            Ok(Scim::Resource(StatusCode::OK, $module::list(s.directory(), &who.base, &scim::search_query(&body)?).await?))
        }

        #[doc = $create_doc]
        #[utoipa::path(post, path = $path, tag = "scim", request_body(content = Object, content_type = "application/scim+json"), security(("scim" = [])),
            responses((status = 201, description = "created", content_type = "application/scim+json", body = Object),
                      (status = 400, description = "not valid", content_type = "application/scim+json", body = Object),
                      (status = 401, description = "no token, or one without the scim scope", content_type = "application/scim+json", body = Object),
                      (status = 409, description = "the userName is taken", content_type = "application/scim+json", body = Object),
                      (status = 413, description = "larger than max_body_bytes")))]
        pub async fn $create(State(s): State<AppState>, who: Provisioner, body: Bytes) -> ScimResult {
            Ok(Scim::Resource(StatusCode::CREATED, $module::create(s.directory(), &who.base, &body).await?))
        }

        #[doc = $get_doc]
        #[utoipa::path(get, path = $item, tag = "scim", params(("id" = String, Path, description = "its id"), ReadParams), security(("scim" = [])),
            responses((status = 200, description = "the resource", content_type = "application/scim+json", body = Object),
                      (status = 304, description = "not modified since the version in If-None-Match"),
                      (status = 400, description = "a query that is not valid", content_type = "application/scim+json", body = Object),
                      (status = 401, description = "no token, or one without the scim scope", content_type = "application/scim+json", body = Object),
                      (status = 404, description = "no such resource", content_type = "application/scim+json", body = Object)))]
        pub async fn $get(
            State(s): State<AppState>,
            who: Provisioner,
            Path(id): Path<String>,
            headers: HeaderMap,
            q: Result<Query<ReadParams>, QueryRejection>,
        ) -> ScimResult {
            let resource = $module::get(s.directory(), &who.base, &id, &projection(q)?).await?;
            Ok(read(resource, &headers))
        }

        #[doc = $replace_doc]
        #[utoipa::path(put, path = $item, tag = "scim", params(("id" = String, Path, description = "its id")), request_body(content = Object, content_type = "application/scim+json"), security(("scim" = [])),
            responses((status = 200, description = "the resource", content_type = "application/scim+json", body = Object),
                      (status = 400, description = "not valid", content_type = "application/scim+json", body = Object),
                      (status = 401, description = "no token, or one without the scim scope", content_type = "application/scim+json", body = Object),
                      (status = 404, description = "no such resource", content_type = "application/scim+json", body = Object),
                      (status = 409, description = "the userName is taken", content_type = "application/scim+json", body = Object),
                      (status = 412, description = "changed since the version in If-Match", content_type = "application/scim+json", body = Object),
                      (status = 413, description = "larger than max_body_bytes")))]
        pub async fn $replace(
            State(s): State<AppState>,
            who: Provisioner,
            Path(id): Path<String>,
            headers: HeaderMap,
            body: Bytes,
        ) -> ScimResult {
            let resource = $module::replace(s.directory(), &who.base, &id, &body, if_match(&headers)).await?;
            Ok(Scim::Resource(StatusCode::OK, resource))
        }

        #[doc = $patch_doc]
        #[utoipa::path(patch, path = $item, tag = "scim", params(("id" = String, Path, description = "its id")), request_body(content = Object, content_type = "application/scim+json"), security(("scim" = [])),
            responses((status = 200, description = "the resource", content_type = "application/scim+json", body = Object),
                      (status = 400, description = "not valid", content_type = "application/scim+json", body = Object),
                      (status = 401, description = "no token, or one without the scim scope", content_type = "application/scim+json", body = Object),
                      (status = 404, description = "no such resource", content_type = "application/scim+json", body = Object),
                      (status = 409, description = "the userName is taken", content_type = "application/scim+json", body = Object),
                      (status = 412, description = "changed since the version in If-Match", content_type = "application/scim+json", body = Object),
                      (status = 413, description = "larger than max_body_bytes")))]
        pub async fn $patch(
            State(s): State<AppState>,
            who: Provisioner,
            Path(id): Path<String>,
            headers: HeaderMap,
            body: Bytes,
        ) -> ScimResult {
            let resource = $module::patch(s.directory(), &who.base, &id, &body, if_match(&headers)).await?;
            Ok(Scim::Resource(StatusCode::OK, resource))
        }

        #[doc = $delete_doc]
        #[utoipa::path(delete, path = $item, tag = "scim", params(("id" = String, Path, description = "its id")), security(("scim" = [])),
            responses((status = 204, description = "deleted"),
                      (status = 401, description = "no token, or one without the scim scope", content_type = "application/scim+json", body = Object),
                      (status = 404, description = "no such resource", content_type = "application/scim+json", body = Object),
                      (status = 412, description = "changed since the version in If-Match", content_type = "application/scim+json", body = Object)))]
        pub async fn $delete(
            State(s): State<AppState>,
            who: Provisioner,
            Path(id): Path<String>,
            headers: HeaderMap,
        ) -> ScimResult {
            $module::delete(s.directory(), &who.base, &id, if_match(&headers)).await?;
            Ok(Scim::NoContent)
        }
    };
}

resource_routes!(
    users,
    "/scim/v2/Users",
    "/scim/v2/Users/{id}",
    "/scim/v2/Users/.search",
    [
        "List users, filtered and paged.",
        "Search users (the list's query as a body).",
        "Create a user (a person in lintel).",
        "Read a user (304 when If-None-Match names its version).",
        "Replace a user (PUT: the attributes not sent are cleared).",
        "Change a user (PATCH operations: add, replace, remove); active false offboards them.",
        "Delete a user: they are offboarded and no longer provisioned; the person and their history stay."
    ],
    scim_list_users,
    scim_search_users,
    scim_create_user,
    scim_get_user,
    scim_replace_user,
    scim_patch_user,
    scim_delete_user
);
resource_routes!(
    groups,
    "/scim/v2/Groups",
    "/scim/v2/Groups/{id}",
    "/scim/v2/Groups/.search",
    [
        "List groups, filtered and paged.",
        "Search groups (the list's query as a body).",
        "Create a group (or take over the lintel group of that name no provider manages yet).",
        "Read a group (304 when If-None-Match names its version).",
        "Replace a group: its name and all its members.",
        "Change a group (PATCH operations: add, replace, remove members).",
        "Delete a group, its memberships and its grants."
    ],
    scim_list_groups,
    scim_search_groups,
    scim_create_group,
    scim_get_group,
    scim_replace_group,
    scim_patch_group,
    scim_delete_group
);

/// The answer for a path under `/scim/v2` that is no route: a SCIM 404.
pub fn not_found(path: &str) -> ScimFailure {
    ScimFailure(ScimError::not_found(format!("no SCIM resource at {path}")))
}
