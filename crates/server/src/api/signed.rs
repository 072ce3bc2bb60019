//! Signed operations: users register Ed25519 keys and get certificate chains; operations
//! they sign (unlock, share, remove) are checked here (chain, signature, window, replay,
//! revocation, lock administration) before anything happens. See `lintel_signed` for the
//! trust model.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use lintel_proto::{
    OperationOutcome, OperationRequest, Page, Person, Problem, PublicKeyRef, RegisterKey, RegisteredKey, ShareableLock,
    UserKey, UserLookup,
};
use lintel_signed::{Operation, Refusal, Role, SignedOperation, key_fingerprint, verify_operation};
use lintel_store::{NewEvent, NewGrantRecord, PersonFilter, QueuedOperation, StoreError};
use serde::Deserialize;
use serde_json::Value;

use crate::AppState;
use crate::auth::Admin;
use crate::problem::{ApiError, ApiJson, ApiPath, ApiQuery, RawBody, parse_json};
use crate::users::{Caller, OIDC_SYSTEM, User};
use lintel_service::ServiceError;

/// The grant source of shares: `share:<signer>:<jti>`.
const SHARE_SOURCE: &str = "share:";

// ---------------------------------------------------------------------------------------
// Lock administrators (set by an operator; shares with role admin add more)
// ---------------------------------------------------------------------------------------

/// Make a person an administrator of a lock: they may share it with signed operations.
#[utoipa::path(put, path = "/api/v1/doors/{id}/admins/{person_id}", tag = "signed operations", security(("admin" = [])),
    responses((status = 204, description = "is an administrator"), (status = 404, body = Problem)))]
pub async fn add_lock_admin(
    State(s): State<AppState>,
    _: Admin,
    ApiPath((door, person)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.store().set_lock_admin(&door, &person, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/doors/{id}/admins/{person_id}", tag = "signed operations", security(("admin" = [])),
    responses((status = 204, description = "is not an administrator"), (status = 404, body = Problem)))]
pub async fn remove_lock_admin(
    State(s): State<AppState>,
    _: Admin,
    ApiPath((door, person)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.store().set_lock_admin(&door, &person, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/doors/{id}/admins", tag = "signed operations", security(("admin" = [])),
    responses((status = 200, description = "`{items: [person ids]}`"), (status = 404, body = Problem)))]
pub async fn list_lock_admins(
    State(s): State<AppState>,
    _: Admin,
    ApiPath(door): ApiPath<String>,
) -> Result<Json<Page<String>>, ApiError> {
    s.store().door(&door).await?;
    Ok(Json(Page { items: s.store().lock_admins(&door).await?, next: None }))
}

// ---------------------------------------------------------------------------------------
// The signed-in user and their keys
// ---------------------------------------------------------------------------------------

/// The signed-in user (personal secret or OpenID ID token as the bearer). An ID token
/// creates the person on first use and updates their name and contacts.
#[utoipa::path(get, path = "/api/v1/me", tag = "signed operations", security(("user" = [])),
    responses((status = 200, body = Person), (status = 401, body = Problem)))]
pub async fn me(State(s): State<AppState>, user: User) -> Result<Json<Person>, ApiError> {
    Ok(Json(s.store().person(&user.person_id).await?))
}

const DEFAULT_KEY_DAYS: u32 = 30;
const MAX_KEY_DAYS: u32 = 90;

/// Register an Ed25519 public key; the answer holds the certificate chain to put in the
/// `x5c` header of operations. Registering the same key again renews its certificate.
#[utoipa::path(post, path = "/api/v1/keys", tag = "signed operations", request_body = RegisterKey, security(("user" = [])),
    responses((status = 201, body = RegisteredKey), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn register_key(
    State(s): State<AppState>,
    user: User,
    ApiJson(request): ApiJson<RegisterKey>,
) -> Result<(StatusCode, Json<RegisteredKey>), ApiError> {
    let public_key = parse_public_key(&request.public_key)?;
    let days = request.valid_days.unwrap_or(DEFAULT_KEY_DAYS);
    if !(1..=MAX_KEY_DAYS).contains(&days) {
        return Err(ApiError::invalid(format!("valid_days is 1 to {MAX_KEY_DAYS}")));
    }
    let now = Utc::now();
    let chain = s
        .services()
        .authority
        .issue(
            &user.person_id,
            &public_key,
            now - chrono::Duration::minutes(5),
            now + chrono::Duration::days(days.into()),
        )
        .map_err(|e| ApiError::invalid(format!("no certificate for this key: {e}")))?;
    let id = key_fingerprint(&public_key);
    let not_after = (now + chrono::Duration::days(days.into())).timestamp() * 1_000_000;
    let key =
        s.store().register_key(&user.person_id, &id, &STANDARD.encode(public_key), chain.serial(), not_after).await?;
    Ok((StatusCode::CREATED, Json(RegisteredKey { key, certificate_chain: chain.to_x5c() })))
}

fn parse_public_key(text: &str) -> Result<[u8; 32], ApiError> {
    let bytes = STANDARD.decode(text.trim()).map_err(|_| ApiError::invalid("public_key is not standard base64"))?;
    let key: [u8; 32] =
        bytes.try_into().map_err(|_| ApiError::invalid("public_key must be the 32 bytes of an Ed25519 key"))?;
    ed25519_dalek::VerifyingKey::from_bytes(&key)
        .ok()
        .filter(|k| !k.is_weak())
        .ok_or_else(|| ApiError::invalid("public_key is not a usable Ed25519 key"))?;
    Ok(key)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
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
    Ok(Json(Page { items: s.store().user_keys(owner.as_deref()).await?, next: None }))
}

/// Revoke a key: operations signed with it are refused from now on.
#[utoipa::path(delete, path = "/api/v1/keys/{id}", tag = "signed operations", security(("user" = []), ("admin" = [])),
    responses((status = 204, description = "revoked"), (status = 404, body = Problem)))]
pub async fn revoke_key(
    State(s): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let owner = match &caller {
        Caller::Admin => None,
        Caller::User(user) => Some(user.person_id.as_str()),
    };
    s.store().revoke_key(&id, owner).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------
// The user directory and shareable locks
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, utoipa::IntoParams)]
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

/// Find a user's id and public keys, to share a lock with them. Email addresses and
/// telephone numbers are found only once verified.
#[utoipa::path(get, path = "/api/v1/users/lookup", tag = "signed operations", params(LookupQuery), security(("user" = []), ("admin" = [])),
    responses((status = 200, body = UserLookup), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn lookup_user(
    State(s): State<AppState>,
    _: Caller,
    ApiQuery(query): ApiQuery<LookupQuery>,
) -> Result<Json<UserLookup>, ApiError> {
    let store = &s.store();
    let not_found = || ApiError::not_found("no user matches");
    let given =
        [&query.email, &query.phone, &query.foreign_key, &query.oidc_sub].iter().filter(|v| v.is_some()).count();
    if given != 1 {
        return Err(ApiError::invalid("give exactly one of email, phone, foreign_key, oidc_sub"));
    }
    let person = if let Some(email) = &query.email {
        let filter = PersonFilter { email: Some(email.trim().to_owned()), limit: 10, ..Default::default() };
        store.people(&filter).await?.0.into_iter().find(|p| p.email_verified)
    } else if let Some(phone) = &query.phone {
        let filter = PersonFilter { phone: Some(phone.trim().to_owned()), limit: 10, ..Default::default() };
        store.people(&filter).await?.0.into_iter().find(|p| p.phone_verified)
    } else if let Some(id) = &query.foreign_key {
        match store.person(id).await {
            Ok(person) => Some(person),
            Err(StoreError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        }
    } else {
        let sub = query.oidc_sub.clone().unwrap_or_default();
        let filter = PersonFilter { external_id: Some((OIDC_SYSTEM.into(), sub)), limit: 1, ..Default::default() };
        store.people(&filter).await?.0.pop()
    };
    let person = person.ok_or_else(not_found)?;
    let public_keys = store
        .user_keys(Some(&person.id))
        .await?
        .into_iter()
        .filter(|k| k.revoked_at.is_none())
        .map(|k| PublicKeyRef { id: k.id, public_key: k.public_key })
        .collect();
    Ok(Json(UserLookup { user_id: person.id, public_keys }))
}

/// The locks the signed-in user administers, so may share.
#[utoipa::path(get, path = "/api/v1/shareable-locks", tag = "signed operations", security(("user" = [])),
    responses((status = 200, description = "`{items: [ShareableLock]}`")))]
pub async fn shareable_locks(State(s): State<AppState>, user: User) -> Result<Json<Page<ShareableLock>>, ApiError> {
    Ok(Json(Page { items: s.store().administered_locks(&user.person_id).await?, next: None }))
}

// ---------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------

/// A store failure while applying: the operation's own mistakes (a share that ends before
/// it starts) are refusals; anything else means "try again".
fn unavailable(e: StoreError) -> Refused {
    match e {
        StoreError::Invalid(m) | StoreError::Conflict(m) => Refused::new("bad_operation", m),
        other => {
            tracing::error!(error = %other, "store failure while applying an operation");
            Refused::unavailable("the operation could not be applied now; try again")
        }
    }
}

fn unavailable_service(e: ServiceError) -> Refused {
    match e {
        ServiceError::Unavailable(detail) | ServiceError::Upstream { detail, .. } => Refused::unavailable(detail),
        other => Refused::new("bad_operation", other.to_string()),
    }
}

/// Why an operation was refused: the API's `reason`, a status and words for people.
struct Refused {
    reason: &'static str,
    status: StatusCode,
    detail: String,
    decision_reason: Option<&'static str>,
    /// Whether the refusal is an event: only for an operation whose signature is proven
    /// and whose id was claimed now, or for its first replay, so that nobody can fill the
    /// log, neither with forgeries nor by replaying a captured token.
    recorded: bool,
}

impl Refused {
    fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        Self { reason, status: StatusCode::FORBIDDEN, detail: detail.into(), decision_reason: None, recorded: true }
    }

    /// Nothing happened and the client may try again: not an event (its id is released).
    fn unavailable(detail: impl Into<String>) -> Self {
        Self { status: StatusCode::SERVICE_UNAVAILABLE, recorded: false, ..Self::new("unavailable", detail) }
    }

    fn into_problem(self) -> ApiError {
        let slug = if self.status == StatusCode::BAD_REQUEST { "malformed-operation" } else { "operation-refused" };
        let mut error = ApiError::new(self.status, slug, self.detail);
        error.extensions.insert("reason".into(), self.reason.into());
        if let Some(reason) = self.decision_reason {
            error.extensions.insert("decision_reason".into(), reason.into());
        }
        error
    }
}

/// What the token itself fails: answered, never recorded (before its id is claimed, a
/// token can be replayed, and before its signature is checked, anyone can send one).
impl From<Refusal> for Refused {
    fn from(r: Refusal) -> Self {
        let status = match r {
            Refusal::Malformed(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::FORBIDDEN,
        };
        Self { reason: r.code(), status, detail: r.to_string(), decision_reason: None, recorded: false }
    }
}

/// Apply an operation a user signed: a compact JWS (`alg: EdDSA`, the certificate chain
/// from `POST /api/v1/keys` in `x5c`), as the raw body or as `{"jws": ...}`. No other
/// authentication: the signature is it. Every refusal names its `reason`.
#[utoipa::path(post, path = "/api/v1/operations", tag = "signed operations", request_body(content = OperationRequest),
    responses((status = 200, body = OperationOutcome), (status = 202, body = OperationOutcome, description = "queued: the door did not answer"),
        (status = 400, body = Problem), (status = 403, body = Problem), (status = 413, body = Problem, description = "larger than max_body_bytes")))]
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
    let token = token.trim();
    let refused = match verify_operation(token, &s.services().authority.verifying_key(), Utc::now()) {
        Ok(op) => match apply(&s, &op).await {
            Ok((status, outcome)) => return Ok((status, Json(outcome)).into_response()),
            Err(refused) if refused.recorded => {
                let event = NewEvent::new("operation.refused").with("reason", refused.reason).with("lock", &op.lock);
                let recorded = s.store().append_events(&[event]).await?;
                s.directory().publish(&recorded);
                refused
            }
            Err(refused) => refused,
        },
        Err(refusal) => Refused::from(refusal),
    };
    metrics::counter!("lintel_operations_refused_total", "reason" => refused.reason).increment(1);
    Err(refused.into_problem())
}

fn op_name(op: &Operation) -> &'static str {
    match op {
        Operation::Unlock => "unlock",
        Operation::AddUser(_) => "add_user",
        Operation::RemoveUser { .. } => "remove_user",
    }
}

/// The checks that need lintel's state, then the operation itself.
async fn apply(s: &AppState, op: &SignedOperation) -> Result<(StatusCode, OperationOutcome), Refused> {
    let store = &s.store();
    let signer = &op.signer.user_id;
    // The id first: whatever the outcome, this token is used up, and sending it again is
    // a replay (recorded the first time only).
    if !store.claim_operation(signer, &op.jti, op.expires_at.timestamp_micros()).await.map_err(unavailable)? {
        let mut refused = Refused::new("replayed", "this operation (jti) was submitted before");
        refused.recorded = store.first_replay(signer, &op.jti).await.map_err(unavailable)?;
        return Err(refused);
    }
    let applied = apply_claimed(s, op).await;
    if let Err(refused) = &applied
        && refused.status == StatusCode::SERVICE_UNAVAILABLE
    {
        // Nothing happened, and the answer says "try again": the retry must not be a replay.
        if let Err(e) = store.release_operation(signer, &op.jti).await {
            tracing::error!(error = %e, "an operation id could not be released");
        }
    }
    applied
}

/// The operation itself, once its id is claimed: who signed it, then what it does.
async fn apply_claimed(s: &AppState, op: &SignedOperation) -> Result<(StatusCode, OperationOutcome), Refused> {
    let store = &s.store();
    let signer = &op.signer.user_id;
    let key = store.user_key(&op.signer_fingerprint).await.map_err(unavailable)?;
    match key {
        None => return Err(Refused::new("unknown_key", "this key is not registered")),
        Some(k) if k.user_id != *signer => return Err(Refused::new("unknown_key", "this key is not the signer's")),
        Some(k) if k.revoked_at.is_some() => return Err(Refused::new("key_revoked", "this key has been revoked")),
        Some(_) => {}
    }
    let signer_pk = store
        .person_pk(signer)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| Refused::new("unknown_user", "the signer is not a user here"))?;
    if s.directory().index().person(signer_pk).is_none_or(|p| p.suspended) {
        // A suspended user keeps their keys, but neither opens nor shares anything.
        return Err(Refused::new("signer_suspended", "the signer is suspended"));
    }
    if s.directory().index().door(&op.lock).is_none() {
        return Err(Refused::new("unknown_lock", format!("no lock has the id {:?}", op.lock)));
    }
    let mut outcome = OperationOutcome {
        operation: op_name(&op.operation).into(),
        lock: op.lock.clone(),
        user_id: signer.clone(),
        applied: true,
        queued: false,
        event_id: None,
        opened: None,
        confirmed: None,
        expires_at: None,
    };
    match &op.operation {
        Operation::Unlock => return unlock(s, op, signer_pk, outcome).await,
        Operation::AddUser(share) => {
            require_lock_admin(s, op).await?;
            let target = share.user_id.clone();
            let target_key = key_fingerprint(&share.public_key);
            match store.user_key(&target_key).await.map_err(unavailable)? {
                _ if store.person_pk(&target).await.map_err(unavailable)?.is_none() => {
                    return Err(Refused::new("unknown_user", format!("no user has the id {target:?}")));
                }
                Some(k) if k.user_id == target && k.revoked_at.is_none() => {}
                _ => {
                    return Err(Refused::new(
                        "target_key_mismatch",
                        "public_key is not a registered key of that user (look them up again)",
                    ));
                }
            }
            let grant = NewGrantRecord {
                person_id: Some(target.clone()),
                doors: Some(vec![op.lock.clone()]),
                valid_from: share.start.map(|t| t.timestamp_micros()),
                valid_until: share.end.map(|t| t.timestamp_micros()),
                source: Some(format!("{SHARE_SOURCE}{signer}:{}", op.jti)),
                ..Default::default()
            };
            s.directory()
                .write(move |store| async move { store.create_grant(&grant).await })
                .await
                .map_err(unavailable)?;
            if share.role == Role::Admin {
                store.set_lock_admin(&op.lock, &target, true).await.map_err(unavailable)?;
            }
        }
        Operation::RemoveUser { user_id } => {
            require_lock_admin(s, op).await?;
            if store.person_pk(user_id).await.map_err(unavailable)?.is_none() {
                return Err(Refused::new("unknown_user", format!("no user has the id {user_id:?}")));
            }
            let shares: Vec<String> = store
                .grants(Some(user_id))
                .await
                .map_err(unavailable)?
                .into_iter()
                .filter(|g| g.source.as_deref().is_some_and(|src| src.starts_with(SHARE_SOURCE)))
                .filter(|g| g.doors.as_deref() == Some(std::slice::from_ref(&op.lock)))
                .map(|g| g.id)
                .collect();
            for id in shares {
                s.directory()
                    .write(move |store| async move { store.delete_grant(&id).await })
                    .await
                    .map_err(unavailable)?;
            }
            store.set_lock_admin(&op.lock, user_id, false).await.map_err(unavailable)?;
        }
    }
    outcome.event_id = Some(record_applied(s, op, None).await.map_err(unavailable)?);
    Ok((StatusCode::OK, outcome))
}

async fn require_lock_admin(s: &AppState, op: &SignedOperation) -> Result<(), Refused> {
    let admins = s.store().lock_admins(&op.lock).await.map_err(unavailable)?;
    if admins.contains(&op.signer.user_id) {
        Ok(())
    } else {
        Err(Refused::new("not_lock_admin", "only an administrator of this lock may share it"))
    }
}

async fn record_applied(
    s: &AppState,
    op: &SignedOperation,
    extra: Option<(&str, Value)>,
) -> Result<String, StoreError> {
    let mut event = NewEvent::new("operation.applied")
        .door(&op.lock)
        .person(&op.signer.user_id)
        .with("operation", op_name(&op.operation))
        .with("jti", &op.jti)
        .with("key_id", &op.signer_fingerprint);
    match &op.operation {
        Operation::AddUser(share) => {
            event = event
                .with("target", &share.user_id)
                .with("role", if share.role == Role::Admin { "admin" } else { "user" })
        }
        Operation::RemoveUser { user_id } => event = event.with("target", user_id),
        Operation::Unlock => {}
    }
    if let Some((k, v)) = extra {
        event = event.with(k, v);
    }
    let recorded = s.store().append_events(&[event]).await?;
    s.directory().publish(&recorded);
    Ok(recorded.first().map(|e| e.id.clone()).unwrap_or_default())
}

/// An unlock: decided for the signer by their grants (recorded like every decision), then
/// the door is driven. A door that does not answer gets the unlock queued until `exp`.
async fn unlock(
    s: &AppState,
    op: &SignedOperation,
    signer_pk: lintel_core::Pk,
    mut outcome: OperationOutcome,
) -> Result<(StatusCode, OperationOutcome), Refused> {
    let data = serde_json::Map::from_iter([
        ("jti".to_owned(), Value::from(op.jti.as_str())),
        ("key_id".to_owned(), Value::from(op.signer_fingerprint.as_str())),
    ]);
    let decision = s
        .services()
        .decider
        .decide_for_person(&op.lock, signer_pk, "signed_operation", data)
        .await
        .map_err(unavailable_service)?;
    if !decision.allowed {
        let mut refused = Refused::new("denied", format!("the signer may not open this door now: {}", decision.detail));
        refused.decision_reason = Some(decision.reason.as_str());
        return Err(refused);
    }
    let driven =
        s.services().doors.drive(&op.lock, None, Some(&op.signer.user_id)).await.map_err(unavailable_service)?;
    if driven.error.is_some() {
        let queued = QueuedOperation {
            issuer: op.signer.user_id.clone(),
            jti: op.jti.clone(),
            door_id: op.lock.clone(),
            expires_at: op.expires_at.timestamp_micros(),
        };
        s.store().queue_operation(&queued).await.map_err(unavailable)?;
        outcome.applied = false;
        outcome.queued = true;
        outcome.expires_at = Some(op.expires_at);
        return Ok((StatusCode::ACCEPTED, outcome));
    }
    outcome.opened = Some(driven.opened);
    outcome.confirmed = Some(driven.confirmed);
    outcome.event_id = Some(record_applied(s, op, None).await.map_err(unavailable)?);
    Ok((StatusCode::OK, outcome))
}

/// Retries queued unlocks while the server runs: each one opens its door as soon as the
/// door answers again, if its window still holds and its signer may still open it;
/// otherwise it is dropped with an event.
pub fn spawn_queue_worker(s: AppState, every: std::time::Duration) {
    s.clone().spawn_worker(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while s.unless_stopping(tick.tick()).await.is_some() {
            if let Err(e) = retry_queued(&s).await {
                tracing::warn!(error = %e, "queued operations could not be retried");
            }
        }
    });
}

async fn retry_queued(s: &AppState) -> Result<(), StoreError> {
    let store = &s.store();
    for op in store.queued_operations().await? {
        let now = Utc::now();
        let base = |kind: &str| NewEvent::new(kind).door(&op.door_id).person(&op.issuer).with("jti", &op.jti);
        if op.expires_at < now.timestamp_micros() {
            store.dequeue_operation(&op, base("operation.expired").with("operation", "unlock")).await?;
            continue;
        }
        let allowed = {
            let index = s.directory().index();
            let pk = store.person_pk(&op.issuer).await?;
            pk.is_some_and(|pk| index.decide_for_person(&op.door_id, pk, now).allowed())
        };
        if !allowed {
            let event = base("operation.dropped").with("operation", "unlock").with("reason", "no longer allowed");
            store.dequeue_operation(&op, event).await?;
            continue;
        }
        let driven = match s.services().doors.drive_quietly(&op.door_id, Some(&op.issuer)).await {
            Ok(driven) => driven,
            Err(e) => {
                tracing::warn!(error = %e, "a queued unlock could not be driven");
                continue;
            }
        };
        if driven.error.is_none() {
            let event = base("operation.applied").with("operation", "unlock").with("queued", true);
            store.dequeue_operation(&op, event).await?;
        }
    }
    Ok(())
}
