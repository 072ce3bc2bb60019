//! Signed operations: users register Ed25519 keys and get certificate chains from lintel's
//! authority; operations they sign (unlock, share, remove) are checked here (chain,
//! signature, window, replay, revocation, lock administration) before anything happens.
//! An unlock whose door does not answer waits in a queue until the door is back or the
//! operation's window ends. See `lintel_signed` for the trust model.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use lintel_core::Pk;
use lintel_proto::{OperationOutcome, PublicKeyRef, RegisterKey, RegisteredKey, ShareableLock, UserKey, UserLookup};
use lintel_signed::{Authority, Operation, Refusal, Role, SignedOperation, key_fingerprint, verify_operation};
use lintel_store::{NewEvent, NewGrantRecord, PersonFilter, QueuedOperation, StoreError};
use serde_json::Value;

use crate::directory::Actor;
use crate::directory::Directory;
use crate::doors::{Doors, Opener};
use crate::error::{Result, ServiceError};
use crate::integrations::oidc::OIDC_SYSTEM;
use crate::workers::Workers;

/// The grant source of shares: `share:<signer>:<jti>`.
const SHARE_SOURCE: &str = "share:";

const DEFAULT_KEY_DAYS: u32 = 30;
const MAX_KEY_DAYS: u32 = 90;

/// How often queued unlocks try their doors again.
const QUEUE_RETRY_EVERY: Duration = Duration::from_secs(1);

pub struct Operations {
    directory: Arc<Directory>,
    doors: Arc<Doors>,
    authority: Arc<Authority>,
}

/// How a refusal is to be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// The token is not an operation at all.
    Malformed,
    /// An operation lintel will not apply.
    Refused,
    /// Nothing happened: the same operation may be sent again.
    Unavailable,
}

/// Why an operation was refused: a stable `reason` for programs, words for people.
#[derive(Debug)]
pub struct Refused {
    pub reason: &'static str,
    pub kind: RefusalKind,
    pub detail: String,
    /// For a denied unlock: the decision's reason.
    pub decision_reason: Option<&'static str>,
    /// Whether the refusal is an event: only for an operation whose signature is proven
    /// and whose id was claimed now, or for its first replay, so that nobody can fill the
    /// log, neither with forgeries nor by replaying a captured token.
    recorded: bool,
}

impl Refused {
    fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        Self { reason, kind: RefusalKind::Refused, detail: detail.into(), decision_reason: None, recorded: true }
    }

    /// Nothing happened and the client may try again: not an event (its id is released).
    fn unavailable(detail: impl Into<String>) -> Self {
        Self { kind: RefusalKind::Unavailable, recorded: false, ..Self::new("unavailable", detail) }
    }
}

/// What the token itself fails: answered, never recorded (before its id is claimed, a
/// token can be replayed, and before its signature is checked, anyone can send one).
impl From<Refusal> for Refused {
    fn from(r: Refusal) -> Self {
        let kind = match r {
            Refusal::Malformed(_) => RefusalKind::Malformed,
            _ => RefusalKind::Refused,
        };
        Self { reason: r.code(), kind, detail: r.to_string(), decision_reason: None, recorded: false }
    }
}

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

/// How a user is looked up in the user directory (to share a lock with them).
#[derive(Debug, Clone)]
pub enum UserQuery {
    /// A verified email address.
    Email(String),
    /// A verified telephone number.
    Phone(String),
    /// The operator's own id for the person (their lintel id).
    ForeignKey(String),
    /// The subject of the configured OpenID issuer.
    OidcSubject(String),
}

fn op_name(op: &Operation) -> &'static str {
    match op {
        Operation::Unlock => "unlock",
        Operation::AddUser(_) => "add_user",
        Operation::RemoveUser { .. } => "remove_user",
    }
}

fn parse_public_key(text: &str) -> Result<[u8; 32]> {
    let bytes = STANDARD.decode(text.trim()).map_err(|_| ServiceError::invalid("public_key is not standard base64"))?;
    let key: [u8; 32] =
        bytes.try_into().map_err(|_| ServiceError::invalid("public_key must be the 32 bytes of an Ed25519 key"))?;
    if !lintel_signed::is_usable_key(&key) {
        return Err(ServiceError::invalid("public_key is not a usable Ed25519 key"));
    }
    Ok(key)
}

impl Operations {
    pub fn new(directory: Arc<Directory>, doors: Arc<Doors>, authority: Arc<Authority>) -> Self {
        Self { directory, doors, authority }
    }

    // -----------------------------------------------------------------------------------
    // Keys, lock administrators, the user directory
    // -----------------------------------------------------------------------------------

    /// Registers a user's Ed25519 public key and certifies it for `valid_days` (30 by
    /// default, at most 90); registering the same key again renews its certificate.
    pub async fn register_key(&self, person_id: &str, request: &RegisterKey) -> Result<RegisteredKey> {
        let public_key = parse_public_key(&request.public_key)?;
        let days = request.valid_days.unwrap_or(DEFAULT_KEY_DAYS);
        if !(1..=MAX_KEY_DAYS).contains(&days) {
            return Err(ServiceError::invalid(format!("valid_days is 1 to {MAX_KEY_DAYS}")));
        }
        let now = Utc::now();
        let not_after = now + chrono::Duration::days(days.into());
        let chain = self
            .authority
            .issue(person_id, &public_key, now - chrono::Duration::minutes(5), not_after)
            .map_err(|e| ServiceError::invalid(format!("no certificate for this key: {e}")))?;
        let id = key_fingerprint(&public_key);
        let encoded = STANDARD.encode(public_key);
        let not_after = not_after.timestamp() * 1_000_000;
        let key = self.directory.store.register_key(person_id, &id, &encoded, chain.serial(), not_after).await?;
        Ok(RegisteredKey { key, certificate_chain: chain.to_x5c() })
    }

    /// One user's keys, or everyone's.
    pub async fn keys(&self, owner: Option<&str>) -> Result<Vec<UserKey>> {
        Ok(self.directory.store.user_keys(owner).await?)
    }

    /// Revokes a key (only `owner`'s, when given): operations signed with it are refused
    /// from now on.
    pub async fn revoke_key(&self, id: &str, owner: Option<&str>) -> Result<()> {
        Ok(self.directory.store.revoke_key(id, owner).await?)
    }

    /// Makes a person an administrator of a lock (they may share it), or no longer one.
    pub async fn set_lock_admin(&self, door: &str, person: &str, admin: bool) -> Result<()> {
        Ok(self.directory.store.set_lock_admin(door, person, admin).await?)
    }

    pub async fn lock_admins(&self, door: &str) -> Result<Vec<String>> {
        let store = &self.directory.store;
        store.door(door).await?;
        Ok(store.lock_admins(door).await?)
    }

    /// The locks a person administers, so may share.
    pub async fn shareable_locks(&self, person: &str) -> Result<Vec<ShareableLock>> {
        Ok(self.directory.store.administered_locks(person).await?)
    }

    /// A user's id and unrevoked public keys. Email addresses and telephone numbers find
    /// someone only once verified.
    pub async fn find_user(&self, query: &UserQuery) -> Result<UserLookup> {
        let store = &self.directory.store;
        let person = match query {
            UserQuery::Email(email) => {
                let filter = PersonFilter { email: Some(email.trim().to_owned()), limit: 10, ..Default::default() };
                store.people(&filter).await?.0.into_iter().find(|p| p.email_verified)
            }
            UserQuery::Phone(phone) => {
                let filter = PersonFilter { phone: Some(phone.trim().to_owned()), limit: 10, ..Default::default() };
                store.people(&filter).await?.0.into_iter().find(|p| p.phone_verified)
            }
            UserQuery::ForeignKey(id) => match store.person(id).await {
                Ok(person) => Some(person),
                Err(StoreError::NotFound { .. }) => None,
                Err(e) => return Err(e.into()),
            },
            UserQuery::OidcSubject(sub) => {
                let filter = PersonFilter {
                    external_id: Some((OIDC_SYSTEM.into(), sub.clone())),
                    limit: 1,
                    ..Default::default()
                };
                store.people(&filter).await?.0.pop()
            }
        };
        let person = person.ok_or_else(|| ServiceError::not_found("no user matches"))?;
        let public_keys = store
            .user_keys(Some(&person.id))
            .await?
            .into_iter()
            .filter(|k| k.revoked_at.is_none())
            .map(|k| PublicKeyRef { id: k.id, public_key: k.public_key })
            .collect();
        Ok(UserLookup { user_id: person.id, public_keys })
    }

    // -----------------------------------------------------------------------------------
    // Operations
    // -----------------------------------------------------------------------------------

    /// Applies an operation a user signed (a compact JWS with their certificate chain in
    /// `x5c`): applied, queued for a door that did not answer (`queued`), or refused. The
    /// error is the store's alone, when a refusal could not be recorded.
    pub async fn submit(&self, token: &str) -> Result<Result<OperationOutcome, Refused>> {
        let refused = match verify_operation(token, &self.authority.verifying_key(), Utc::now()) {
            Ok(op) => match self.apply(&op).await {
                Ok(outcome) => return Ok(Ok(outcome)),
                Err(refused) if refused.recorded => {
                    let event =
                        NewEvent::new("operation.refused").with("reason", refused.reason).with("lock", &op.lock);
                    self.directory.record(event).await?;
                    refused
                }
                Err(refused) => refused,
            },
            Err(refusal) => Refused::from(refusal),
        };
        metrics::counter!("lintel_operations_refused_total", "reason" => refused.reason).increment(1);
        Ok(Err(refused))
    }

    /// The checks that need lintel's state, then the operation itself.
    async fn apply(&self, op: &SignedOperation) -> Result<OperationOutcome, Refused> {
        let store = &self.directory.store;
        let signer = &op.signer.user_id;
        // The id first: whatever the outcome, this token is used up, and sending it again is
        // a replay (recorded the first time only).
        if !store.claim_operation(signer, &op.jti, op.expires_at.timestamp_micros()).await.map_err(unavailable)? {
            let mut refused = Refused::new("replayed", "this operation (jti) was submitted before");
            refused.recorded = store.first_replay(signer, &op.jti).await.map_err(unavailable)?;
            return Err(refused);
        }
        let applied = self.apply_claimed(op).await;
        if let Err(refused) = &applied
            && refused.kind == RefusalKind::Unavailable
        {
            // Nothing happened, and the answer says "try again": the retry must not be a replay.
            if let Err(e) = store.release_operation(signer, &op.jti).await {
                tracing::error!(error = %e, "an operation id could not be released");
            }
        }
        applied
    }

    /// The operation itself, once its id is claimed: who signed it, then what it does.
    async fn apply_claimed(&self, op: &SignedOperation) -> Result<OperationOutcome, Refused> {
        let store = &self.directory.store;
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
        if self.directory.index().person(signer_pk).is_none_or(|p| p.suspended) {
            // A suspended user keeps their keys, but neither opens nor shares anything.
            return Err(Refused::new("signer_suspended", "the signer is suspended"));
        }
        if self.directory.index().door(&op.lock).is_none() {
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
            Operation::Unlock => return self.unlock(op, signer_pk, outcome).await,
            Operation::AddUser(share) => {
                self.require_lock_admin(op).await?;
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
                self.directory
                    .write(&Actor::user(signer), move |store| async move { store.create_grant(&grant).await })
                    .await
                    .map_err(unavailable)?;
                if share.role == Role::Admin {
                    store.set_lock_admin(&op.lock, &target, true).await.map_err(unavailable)?;
                }
            }
            Operation::RemoveUser { user_id } => {
                self.require_lock_admin(op).await?;
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
                    self.directory
                        .write(&Actor::user(signer), move |store| async move { store.delete_grant(&id).await })
                        .await
                        .map_err(unavailable)?;
                }
                store.set_lock_admin(&op.lock, user_id, false).await.map_err(unavailable)?;
            }
        }
        outcome.event_id = Some(self.record_applied(op).await.map_err(unavailable)?);
        Ok(outcome)
    }

    async fn require_lock_admin(&self, op: &SignedOperation) -> Result<(), Refused> {
        let admins = self.directory.store.lock_admins(&op.lock).await.map_err(unavailable)?;
        if admins.contains(&op.signer.user_id) {
            Ok(())
        } else {
            Err(Refused::new("not_lock_admin", "only an administrator of this lock may share it"))
        }
    }

    async fn record_applied(&self, op: &SignedOperation) -> Result<String, StoreError> {
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
        Ok(self.directory.record(event).await?.id)
    }

    /// An unlock: decided for the signer by their grants (recorded like every decision),
    /// then the door is driven. A door that does not answer gets the unlock queued until
    /// `exp`.
    async fn unlock(
        &self,
        op: &SignedOperation,
        signer_pk: Pk,
        mut outcome: OperationOutcome,
    ) -> Result<OperationOutcome, Refused> {
        let data = serde_json::Map::from_iter([
            ("jti".to_owned(), Value::from(op.jti.as_str())),
            ("key_id".to_owned(), Value::from(op.signer_fingerprint.as_str())),
        ]);
        let opener = Opener::Person { pk: signer_pk, via: "signed_operation", data };
        let opened = self.doors.open(&op.lock, opener, None).await.map_err(unavailable_service)?;
        let Some(driven) = opened.driven else {
            let detail = format!("the signer may not open this door now: {}", opened.decision.detail);
            let mut refused = Refused::new("denied", detail);
            refused.decision_reason = Some(opened.decision.reason.as_str());
            return Err(refused);
        };
        if driven.error.is_some() {
            let queued = QueuedOperation {
                issuer: op.signer.user_id.clone(),
                jti: op.jti.clone(),
                door_id: op.lock.clone(),
                expires_at: op.expires_at.timestamp_micros(),
            };
            self.directory.store.queue_operation(&queued).await.map_err(unavailable)?;
            outcome.applied = false;
            outcome.queued = true;
            outcome.expires_at = Some(op.expires_at);
            return Ok(outcome);
        }
        outcome.opened = Some(driven.opened);
        outcome.confirmed = Some(driven.confirmed);
        outcome.event_id = Some(self.record_applied(op).await.map_err(unavailable)?);
        Ok(outcome)
    }

    /// Retries queued unlocks every second until shutdown (see [`Self::retry_queued`]).
    pub fn spawn_queue_worker(self: &Arc<Self>, workers: &Workers) {
        let operations = self.clone();
        let mut ticks = workers.one_node_every("signed-unlocks", QUEUE_RETRY_EVERY);
        workers.spawn(async move {
            while ticks.next().await {
                if let Err(e) = operations.retry_queued().await {
                    tracing::warn!(error = %e, "queued operations could not be retried");
                }
            }
        });
    }

    /// Each queued unlock opens its door as soon as the door answers again, if its window
    /// still holds and its signer may still open it; otherwise it is dropped with an event.
    pub async fn retry_queued(&self) -> Result<(), StoreError> {
        let store = &self.directory.store;
        for op in store.queued_operations().await? {
            let now = Utc::now();
            let base = |kind: &str| NewEvent::new(kind).door(&op.door_id).person(&op.issuer).with("jti", &op.jti);
            if op.expires_at < now.timestamp_micros() {
                store.dequeue_operation(&op, base("operation.expired").with("operation", "unlock")).await?;
                continue;
            }
            let allowed = {
                let pk = store.person_pk(&op.issuer).await?;
                let index = self.directory.index();
                pk.is_some_and(|pk| index.decide_for_person(&op.door_id, pk, now).allowed())
            };
            if !allowed {
                let event = base("operation.dropped").with("operation", "unlock").with("reason", "no longer allowed");
                store.dequeue_operation(&op, event).await?;
                continue;
            }
            let driven = match self.doors.drive_quietly(&op.door_id, Some(&op.issuer)).await {
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
}

#[cfg(test)]
mod tests {

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use ed25519_dalek::{Signer, SigningKey};
    use lintel_proto::{DriverConfig, NewPerson};
    use lintel_store::EventFilter;
    use serde_json::json;

    use super::*;
    use crate::Services;
    use crate::testing::{self, FakeHttp};

    /// A door's HTTP endpoint that refuses (503) until told otherwise.
    async fn device() -> FakeHttp {
        let device = FakeHttp::start().await;
        device.answer("POST /open", 503, json!({}));
        device
    }

    fn http_driver(device: &FakeHttp) -> DriverConfig {
        DriverConfig::Http {
            url: format!("{}/open", device.url),
            method: "POST".into(),
            headers: Default::default(),
            body: None,
            success: None,
        }
    }

    /// An unlock as a user's client signs it: a compact JWS, EdDSA, the chain in `x5c`.
    fn signed_unlock(key: &SigningKey, chain: &[String], user: &str, lock: &str, jti: &str) -> String {
        let now = Utc::now().timestamp();
        let header = json!({"alg": "EdDSA", "x5c": chain});
        let claims = json!({"iss": user, "sub": lock, "iat": now, "nbf": now, "exp": now + 30, "jti": jti,
            "operation": {"type": "unlock"}});
        let message =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let signature = key.sign(message.as_bytes());
        format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    async fn events(services: &Services, kind: &str) -> Vec<lintel_proto::Event> {
        let filter = EventFilter { kind: Some(kind.into()), limit: 100, ..Default::default() };
        services.store().events(&filter).await.expect("events")
    }

    #[tokio::test]
    async fn an_unlock_for_a_door_that_does_not_answer_waits_until_it_does() {
        let (_dir, services) = testing::services(|_| {}).await;
        let device = device().await;
        testing::door(&services, "front", http_driver(&device)).await;
        testing::person(&services, NewPerson { id: Some("ann".into()), name: "Ann".into(), ..Default::default() })
            .await;
        testing::grant(&services, "ann", "front").await;
        let operations = &services.operations;
        let key = SigningKey::from_bytes(&[9; 32]);
        let public_key = STANDARD.encode(key.verifying_key().as_bytes());
        let registered =
            operations.register_key("ann", &RegisterKey { public_key, valid_days: None }).await.expect("registered");

        let unlock = signed_unlock(&key, &registered.certificate_chain, "ann", "front", "jti-1");
        let outcome = operations.submit(&unlock).await.expect("no store failure").expect("not refused");
        assert!(outcome.queued && !outcome.applied, "{outcome:?}");
        assert_eq!(services.store().queued_operations().await.expect("queue").len(), 1);

        operations.retry_queued().await.expect("retried");
        assert_eq!(services.store().queued_operations().await.expect("queue").len(), 1, "still waiting");
        assert!(events(&services, "operation.applied").await.is_empty());

        device.answer("POST /open", 200, json!({}));
        operations.retry_queued().await.expect("retried");
        assert_eq!(device.answered("POST /open", 200), 1, "the door opened once it answered");
        assert!(services.store().queued_operations().await.expect("queue").is_empty());
        let applied = events(&services, "operation.applied").await;
        assert_eq!(applied.len(), 1, "{applied:?}");
        assert_eq!((applied[0].person_id.as_deref(), &applied[0].data["queued"]), (Some("ann"), &json!(true)));
        operations.retry_queued().await.expect("retried");
        assert_eq!(device.answered("POST /open", 200), 1, "opened once, not again");

        let replayed = operations.submit(&unlock).await.expect("no store failure").expect_err("a replay");
        assert_eq!(replayed.reason, "replayed");
    }

    /// A queued unlock whose window closed, or whose signer may no longer open the door,
    /// is dropped with an event instead of opening it later.
    #[tokio::test]
    async fn queued_unlocks_that_no_longer_hold_are_dropped() {
        let (_dir, services) = testing::services(|_| {}).await;
        let device = device().await;
        device.answer("POST /open", 200, json!({}));
        testing::door(&services, "front", http_driver(&device)).await;
        for id in ["ann", "bert"] {
            testing::person(&services, NewPerson { id: Some(id.into()), name: id.into(), ..Default::default() }).await;
        }
        testing::grant(&services, "ann", "front").await;
        let in_a_minute = (Utc::now() + chrono::Duration::minutes(1)).timestamp_micros();
        let queue = |issuer: &str, jti: &str, expires_at: i64| QueuedOperation {
            issuer: issuer.into(),
            jti: jti.into(),
            door_id: "front".into(),
            expires_at,
        };
        let store = services.store();
        store.queue_operation(&queue("ann", "gone-by", Utc::now().timestamp_micros() - 1)).await.expect("queued");
        store.queue_operation(&queue("bert", "no-grant", in_a_minute)).await.expect("queued");

        services.operations.retry_queued().await.expect("retried");
        assert!(store.queued_operations().await.expect("queue").is_empty());
        assert_eq!(device.answered("POST /open", 200), 0, "neither opened the door");
        let expired = events(&services, "operation.expired").await;
        assert_eq!((expired.len(), expired[0].person_id.as_deref()), (1, Some("ann")), "{expired:?}");
        let dropped = events(&services, "operation.dropped").await;
        assert_eq!((dropped.len(), dropped[0].person_id.as_deref()), (1, Some("bert")), "{dropped:?}");
    }
}
