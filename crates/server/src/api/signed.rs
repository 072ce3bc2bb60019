//! Signed operations' endpoints: users' keys, lock administrators, the user directory,
//! and the operations themselves (checked and applied by [`lintel_service::operations`]).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lintel_proto::{
    OperationOutcome, OperationRequest, Page, Person, Problem, RegisterKey, RegisteredKey, ShareableLock, UserKey,
    UserLookup,
};
use lintel_service::operations::{RefusalKind, Refused, UserQuery};
use serde::Deserialize;

use crate::AppState;
use crate::auth::{Admin, Caller, Reader, User};
use crate::problem::{ApiError, ApiJson, ApiPath, ApiQuery, RawBody, parse_json};

// ---------------------------------------------------------------------------------------
// Lock administrators (set by an operator; shares with role admin add more)
// ---------------------------------------------------------------------------------------

/// Make a person an administrator of a lock: they may share it with signed operations.
#[utoipa::path(put, path = "/api/v1/doors/{id}/admins/{person_id}", tag = "signed operations", params(("id" = String, Path, description = "the door's id"), ("person_id" = String, Path, description = "the person's id")), security(("admin" = [])),
    responses((status = 204, description = "is an administrator"), (status = 404, description = "no such resource", body = Problem, content_type = "application/problem+json")))]
pub async fn add_lock_admin(
    State(s): State<AppState>,
    _: Admin,
    ApiPath((door, person)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.services().operations.set_lock_admin(&door, &person, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/doors/{id}/admins/{person_id}", tag = "signed operations", params(("id" = String, Path, description = "the door's id"), ("person_id" = String, Path, description = "the person's id")), security(("admin" = [])),
    responses((status = 204, description = "is not an administrator"), (status = 404, description = "no such resource", body = Problem, content_type = "application/problem+json")))]
pub async fn remove_lock_admin(
    State(s): State<AppState>,
    _: Admin,
    ApiPath((door, person)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.services().operations.set_lock_admin(&door, &person, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/doors/{id}/admins", tag = "signed operations", params(("id" = String, Path, description = "the door's id")), security(("admin" = [])),
    responses((status = 200, description = "`{items: [person ids]}`"), (status = 404, description = "no such resource", body = Problem, content_type = "application/problem+json")))]
pub async fn list_lock_admins(
    State(s): State<AppState>,
    _: Reader,
    ApiPath(door): ApiPath<String>,
) -> Result<Json<Page<String>>, ApiError> {
    Ok(Json(Page { items: s.services().operations.lock_admins(&door).await?, next: None }))
}

// ---------------------------------------------------------------------------------------
// The signed-in user and their keys
// ---------------------------------------------------------------------------------------

/// The signed-in user (personal secret or OpenID ID token as the bearer). An ID token
/// creates the person on first use and updates their name and contacts.
#[utoipa::path(get, path = "/api/v1/me", tag = "signed operations", security(("user" = [])),
    responses((status = 200, description = "the person", body = Person), (status = 401, description = "no or wrong credentials", body = Problem, content_type = "application/problem+json")))]
pub async fn me(State(s): State<AppState>, user: User) -> Result<Json<Person>, ApiError> {
    Ok(Json(s.store().person(&user.person_id).await?))
}

/// Register an Ed25519 public key; the answer holds the certificate chain to put in the
/// `x5c` header of operations. Registering the same key again renews its certificate.
#[utoipa::path(post, path = "/api/v1/keys", tag = "signed operations", request_body = RegisterKey, security(("user" = [])),
    responses((status = 201, description = "the registered key", body = RegisteredKey), (status = 409, description = "conflicts with what exists", body = Problem, content_type = "application/problem+json"), (status = 422, description = "fails validation", body = Problem, content_type = "application/problem+json")))]
pub async fn register_key(
    State(s): State<AppState>,
    user: User,
    ApiJson(request): ApiJson<RegisterKey>,
) -> Result<(StatusCode, Json<RegisteredKey>), ApiError> {
    let registered = s.services().operations.register_key(&user.person_id, &request).await?;
    Ok((StatusCode::CREATED, Json(registered)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct KeyQuery {
    /// Admins only: one user's keys.
    user_id: Option<String>,
}

/// A user's own keys; an admin sees everyone's (or one user's with `user_id`).
#[utoipa::path(get, path = "/api/v1/keys", tag = "signed operations", params(KeyQuery), security(("user" = []), ("admin" = [])),
    responses((status = 200, description = "`{items: [UserKey]}`")))]
pub async fn list_keys(
    State(s): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<KeyQuery>,
) -> Result<Json<Page<UserKey>>, ApiError> {
    let owner = match &caller {
        Caller::Admin => query.user_id.clone(),
        Caller::User(user) => Some(user.person_id.clone()),
    };
    Ok(Json(Page { items: s.services().operations.keys(owner.as_deref()).await?, next: None }))
}

/// Revoke a key: operations signed with it are refused from now on.
#[utoipa::path(delete, path = "/api/v1/keys/{id}", tag = "signed operations", params(("id" = String, Path, description = "the key's id")), security(("user" = []), ("admin" = [])),
    responses((status = 204, description = "revoked"), (status = 404, description = "no such resource", body = Problem, content_type = "application/problem+json")))]
pub async fn revoke_key(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let owner = match &caller {
        Caller::Admin => None,
        Caller::User(user) => Some(user.person_id.as_str()),
    };
    s.services().operations.revoke_key(&id, owner).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------
// The user directory and shareable locks
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LookupQuery {
    /// A verified email address.
    email: Option<String>,
    /// A verified telephone number.
    phone: Option<String>,
    /// The operator's own id for the person (their lintel id).
    foreign_key: Option<String>,
    /// The subject of the configured OpenID issuer.
    oidc_sub: Option<String>,
}

impl LookupQuery {
    fn only_one(self) -> Result<UserQuery, ApiError> {
        match (self.email, self.phone, self.foreign_key, self.oidc_sub) {
            (Some(email), None, None, None) => Ok(UserQuery::Email(email)),
            (None, Some(phone), None, None) => Ok(UserQuery::Phone(phone)),
            (None, None, Some(id), None) => Ok(UserQuery::ForeignKey(id)),
            (None, None, None, Some(sub)) => Ok(UserQuery::OidcSubject(sub)),
            _ => Err(ApiError::invalid("give exactly one of email, phone, foreign_key, oidc_sub")),
        }
    }
}

/// Find a user's id and public keys, to share a lock with them. Email addresses and
/// telephone numbers are found only once verified.
#[utoipa::path(get, path = "/api/v1/users/lookup", tag = "signed operations", params(LookupQuery), security(("user" = []), ("admin" = [])),
    responses((status = 200, description = "the user lookup", body = UserLookup), (status = 404, description = "no such resource", body = Problem, content_type = "application/problem+json"), (status = 422, description = "fails validation", body = Problem, content_type = "application/problem+json")))]
pub async fn lookup_user(
    State(s): State<AppState>,
    _: Caller,
    ApiQuery(query): ApiQuery<LookupQuery>,
) -> Result<Json<UserLookup>, ApiError> {
    Ok(Json(s.services().operations.find_user(&query.only_one()?).await?))
}

/// The locks the signed-in user administers, so may share.
#[utoipa::path(get, path = "/api/v1/shareable-locks", tag = "signed operations", security(("user" = [])),
    responses((status = 200, description = "the locks the user may share", body = Page<ShareableLock>)))]
pub async fn shareable_locks(State(s): State<AppState>, user: User) -> Result<Json<Page<ShareableLock>>, ApiError> {
    Ok(Json(Page { items: s.services().operations.shareable_locks(&user.person_id).await?, next: None }))
}

// ---------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------

/// A refusal as a problem document: its `reason` (and a denied unlock's
/// `decision_reason`) beside the words.
fn refusal_problem(refused: Refused) -> ApiError {
    let (status, slug) = match refused.kind {
        RefusalKind::Malformed => (StatusCode::BAD_REQUEST, "malformed-operation"),
        RefusalKind::Refused => (StatusCode::FORBIDDEN, "operation-refused"),
        RefusalKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "operation-refused"),
    };
    let mut error = ApiError::new(status, slug, refused.detail);
    error.extensions.insert("reason".into(), refused.reason.into());
    if let Some(reason) = refused.decision_reason {
        error.extensions.insert("decision_reason".into(), reason.into());
    }
    error
}

/// Apply an operation a user signed: a compact JWS (`alg: EdDSA`, the certificate chain
/// from `POST /api/v1/keys` in `x5c`), as the raw body or as `{"jws": ...}`. No other
/// authentication: the signature is it. Every refusal names its `reason`.
#[utoipa::path(post, path = "/api/v1/operations", tag = "signed operations", request_body(content = OperationRequest),
    responses((status = 200, description = "the operation outcome", body = OperationOutcome), (status = 202, body = OperationOutcome, description = "queued: the door did not answer"),
        (status = 400, description = "malformed request", body = Problem, content_type = "application/problem+json"), (status = 403, description = "not allowed", body = Problem, content_type = "application/problem+json"), (status = 413, description = "larger than max_body_bytes", body = Problem, content_type = "application/problem+json")))]
pub async fn submit_operation(
    State(s): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    let token = if is_json {
        parse_json::<OperationRequest>(&body)?.jws
    } else {
        String::from_utf8(body.to_vec()).map_err(|_| ApiError::bad_request("the operation is not UTF-8 text"))?
    };
    let outcome = s.services().operations.submit(token.trim()).await?.map_err(refusal_problem)?;
    let status = if outcome.queued { StatusCode::ACCEPTED } else { StatusCode::OK };
    Ok((status, Json(outcome)).into_response())
}
