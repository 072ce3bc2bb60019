//! Asking the question: turn the presented credential into its key, hold back guessers,
//! let the core decide on the current snapshot (asking a member source first when one
//! wants it), and record the decision durably (through the group commit) before anyone
//! hears the answer.

mod limiter;
mod members;

pub use limiter::{FailureLimiter, now_micros};
pub use limiter::{LimiterConfig, Source};
pub use members::{Looked, MemberLookup, MemberSource};

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use lintel_core::credential::{normalize_uid, pin_digest, validate_pin};
use lintel_core::{CredentialKey, Decision, Digest, Index, MemberQuery, Query, Reason};
use lintel_proto::{DecisionResponse, PresentedCredential};
use lintel_store::{NewEvent, PassUse, PendingDecision, credential_id, grant_id};

use crate::directory::Directory;
use crate::error::{Result, ServiceError};
use crate::secrets;
use limiter::{Lock, Locked};

/// How far a recorded decision's `at` may be from the server's clock (readers' clocks drift).
const AT_TOLERANCE: chrono::TimeDelta = chrono::TimeDelta::seconds(5);

pub struct Decider {
    directory: Arc<Directory>,
    limiter: FailureLimiter,
    pin_key: [u8; 32],
    /// Asked about unknown cards and stale members (the makerspace CRM).
    members: Option<Arc<dyn MemberSource>>,
}

/// A question as it arrives, with where it came from (for guessing protection).
pub struct Ask<'a> {
    pub door: &'a str,
    pub credential: &'a PresentedCredential,
    pub at: Option<DateTime<Utc>>,
    pub dry_run: bool,
    /// e.g. the keypad `door:front`, the client `ip:192.0.2.7`.
    pub source: Source,
}

enum Presented {
    /// Found by its key in the index.
    Keyed {
        key: CredentialKey,
        digest: Option<Digest>,
        revocation_code: Option<String>,
        /// Short or typed credentials are what a guesser would try.
        guessable: bool,
    },
    /// A station's card: the person (as lintel names them) and the card's revocation code.
    /// Not counted as guessing, like a card: a station reads what its card carries.
    Member { person_id: String, revocation_code: String },
}

impl Presented {
    fn guessable(&self) -> bool {
        matches!(self, Self::Keyed { guessable: true, .. })
    }

    fn decide(&self, index: &Index, door: &str, at: DateTime<Utc>) -> Decision {
        match self {
            Self::Keyed { key, digest, revocation_code, .. } => index.decide(&Query {
                door,
                key: *key,
                digest: digest.as_ref(),
                revocation_code: revocation_code.as_deref(),
                at,
            }),
            Self::Member { person_id, revocation_code } => {
                index.decide_member(&MemberQuery { door, person_id, revocation_code, at })
            }
        }
    }
}

impl Decider {
    pub fn new(directory: Arc<Directory>, pin_key: [u8; 32], limiter: LimiterConfig) -> Self {
        let limiter = FailureLimiter::for_store(limiter, &directory.store);
        Self { directory, limiter, pin_key, members: None }
    }

    pub fn with_members(self, members: Option<Arc<dyn MemberSource>>) -> Self {
        Self { members, ..self }
    }

    fn present(&self, credential: &PresentedCredential) -> Result<Presented> {
        Ok(match credential {
            PresentedCredential::Card { uid, revocation_code } => {
                let key = CredentialKey::card(uid).map_err(|e| ServiceError::invalid(e.to_string()))?;
                Presented::Keyed { key, digest: None, revocation_code: revocation_code.clone(), guessable: false }
            }
            PresentedCredential::Pin { pin } => {
                validate_pin(pin).map_err(|e| ServiceError::invalid(e.to_string()))?;
                let d = pin_digest(&self.pin_key, pin);
                Presented::Keyed {
                    key: CredentialKey::pin(&d),
                    digest: Some(d),
                    revocation_code: None,
                    guessable: true,
                }
            }
            PresentedCredential::Secret { secret } => {
                let d = secrets::digest(secret);
                Presented::Keyed {
                    key: CredentialKey::secret(&d),
                    digest: Some(d),
                    revocation_code: None,
                    guessable: true,
                }
            }
            PresentedCredential::BackupCode { code } => {
                let d = secrets::backup_code_digest(code);
                Presented::Keyed {
                    key: CredentialKey::backup_code(&d),
                    digest: Some(d),
                    revocation_code: None,
                    guessable: true,
                }
            }
            PresentedCredential::Member { person_id, revocation_code } => {
                crate::validate::id("person_id", person_id)?;
                crate::validate::text("revocation_code", revocation_code, 64)?;
                // A member source's card carries the member's number there.
                let person_id = self
                    .members
                    .as_ref()
                    .and_then(|m| m.person_for_member(person_id))
                    .unwrap_or_else(|| person_id.clone());
                Presented::Member { person_id, revocation_code: revocation_code.clone() }
            }
        })
    }

    pub async fn decide(&self, ask: Ask<'_>) -> Result<DecisionResponse> {
        self.decide_noting(ask, serde_json::Map::new()).await
    }

    /// [`Decider::decide`], adding `note` to the decision's event (e.g. which reader asked).
    pub async fn decide_noting(
        &self,
        ask: Ask<'_>,
        note: serde_json::Map<String, serde_json::Value>,
    ) -> Result<DecisionResponse> {
        let credential = typed(ask.credential);
        let presented = self.present(&credential)?;
        let at = match ask.at {
            // Asking about another moment is a question: recording it would put an entry
            // into attendance that never happened (or use up a pass in advance).
            Some(at) if !ask.dry_run && (at - Utc::now()).abs() > AT_TOLERANCE => {
                return Err(ServiceError::invalid(
                    "`at` more than a few seconds from now is a question: ask it with \"dry_run\": true",
                ));
            }
            Some(at) => at,
            None => Utc::now(),
        };
        let now = limiter::now_micros();
        let lock = match presented.guessable() {
            true => self.limiter.locked(&ask.source, now).await,
            false => None,
        };
        let mut index = self.directory.index();
        let started = Instant::now();
        let mut decision = match lock {
            Some(Lock { wait, .. }) => Decision {
                reason: Reason::RateLimited,
                detail: format!("too many wrong attempts from here; try again in {} s", wait.as_secs().max(1)).into(),
                door: index.door(ask.door).map(|d| d.pk),
                credential: None,
                person: None,
                grant: None,
                consume: Default::default(),
                pass_grants: Vec::new(),
                checked_in_until: None,
            },
            None => presented.decide(&index, ask.door, at),
        };
        metrics::histogram!("lintel_decision_seconds").record(started.elapsed().as_secs_f64());
        // A member source is asked first about an unknown card that carries a member's id,
        // or about a member whose data is stale; no other decision waits for it.
        let mut looked = None;
        if let Some(members) = self.members.as_ref().filter(|_| lock.is_none() && !ask.dry_run)
            && let Some(lookup) = members.wants(&index, &decision, &credential)
        {
            drop(index);
            let outcome = members.clone().look_up(lookup).await;
            index = self.directory.index();
            decision = outcome.adjust(&**members, presented.decide(&index, ask.door, at));
            looked = Some((members, outcome));
        }
        // A wrong guess, or a probe for door ids, counts against the source.
        let locked =
            if presented.guessable() && matches!(decision.reason, Reason::UnknownCredential | Reason::UnknownDoor) {
                self.limiter.failure(&ask.source, now).await
            } else {
                None
            };
        let mut response = response_for(&index, &decision);
        response.retry_after = lock.map(|l| l.wait.as_secs().max(1));
        drop(index);
        if ask.dry_run || lock.is_some_and(|l| !l.first_refusal) {
            if !ask.dry_run {
                let door = door_label(decision.door.is_some(), ask.door.to_owned());
                metrics::counter!("lintel_decisions_total", "door" => door, "result" => "denied", "reason" => Reason::RateLimited.as_str())
                    .increment(1);
            }
            if matches!(presented, Presented::Member { .. }) {
                response.name = self.name_of(decision.person).await;
            }
            self.record_keypad_lock(ask.door, &ask.source, locked).await;
            return Ok(response);
        }
        let mut event = decision_event(ask.door, at, &response, &decision);
        event.data["credential_kind"] = credential_kind(&credential).into();
        // An unknown card's UID is what an operator needs to enrol it.
        if let PresentedCredential::Card { uid, .. } = &*credential
            && decision.credential.is_none()
        {
            event.data["uid"] = normalize_uid(uid).unwrap_or_default().into();
        }
        // Likewise the id a station's card named when nobody has it.
        if let Presented::Member { person_id, .. } = &presented
            && decision.person.is_none()
        {
            event.data["member"] = person_id.as_str().into();
        }
        if let Some((members, looked)) = &looked {
            looked.annotate(&***members, &mut event.data);
        }
        if let serde_json::Value::Object(fields) = &mut event.data {
            fields.extend(note);
        }
        if !matches!(presented, Presented::Member { .. }) {
            let recorded = self.record(decision, event, response).await;
            // After the decision it follows from.
            self.record_keypad_lock(ask.door, &ask.source, locked).await;
            return recorded;
        }
        // A station shows the person's name. Names are not in the index (they would cost
        // every credential memory), so station asks alone read it, beside the commit.
        let person = decision.person;
        let (recorded, name) = tokio::join!(self.record(decision, event, response), self.name_of(person));
        recorded.map(|response| DecisionResponse { name, ..response })
    }

    /// A keypad just locked: someone is guessing PINs there, and every PIN user of the door
    /// waits meanwhile. Worth an alarm, so it is an event of its own, once per lock.
    async fn record_keypad_lock(&self, door: &str, source: &Source, locked: Option<Locked>) {
        let (Some(locked), Source::Keypad(_)) = (locked, source) else { return };
        let event = NewEvent::new("keypad.locked")
            .door(door)
            .with("source", source.to_string())
            .with("failures", locked.failures)
            .with("lock_seconds", locked.lock.as_secs().max(1));
        if let Err(e) = self.directory.record(event).await {
            // The decision stands either way; the lock is in force.
            tracing::error!(door, %source, error = %e, "a keypad's lock was not recorded");
        }
    }

    /// What a station shows for the person it asked about (nothing when unknown).
    async fn name_of(&self, person: Option<lintel_core::Pk>) -> Option<String> {
        let pk = person?;
        self.directory.store.person_name(pk).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "person's name not read for a station");
            None
        })
    }

    /// The holder of a personal secret, for signing in outside of any door. Wrong
    /// secrets count against the source like wrong guesses at a door.
    pub async fn authenticate(&self, key: &CredentialKey, digest: &Digest, source: &Source) -> Result<lintel_core::Pk> {
        let now = limiter::now_micros();
        if let Some(Lock { wait, .. }) = self.limiter.locked(source, now).await {
            let seconds = wait.as_secs().max(1);
            return Err(ServiceError::RateLimited {
                detail: format!("too many wrong attempts from here; try again in {seconds} s"),
                retry_after_seconds: seconds,
            });
        }
        let holder = self.directory.index().secret_holder(key, digest);
        match holder {
            Some(pk) => Ok(pk),
            None => {
                self.limiter.failure(source, now).await;
                Err(ServiceError::unauthorized("this secret is not valid"))
            }
        }
    }

    /// May this person open this door now, on their own authority (a button in chat, a
    /// signed operation)? `via` names the channel in the event, e.g. `slack`; `data` is
    /// added to the event. Recorded like every decision.
    pub async fn decide_for_person(
        &self,
        door: &str,
        person: lintel_core::Pk,
        via: &str,
        data: serde_json::Map<String, serde_json::Value>,
    ) -> Result<DecisionResponse> {
        let at = Utc::now();
        let index = self.directory.index();
        let decision = index.decide_for_person(door, person, at);
        let response = response_for(&index, &decision);
        drop(index);
        let mut event = decision_event(door, at, &response, &decision);
        event.data["credential_kind"] = via.into();
        if let serde_json::Value::Object(fields) = &mut event.data {
            fields.extend(data);
        }
        self.record(decision, event, response).await
    }

    /// Commits the decision's event and what it used up (through the group commit), then
    /// answers with what was committed.
    async fn record(
        &self,
        decision: Decision,
        event: NewEvent,
        mut response: DecisionResponse,
    ) -> Result<DecisionResponse> {
        let pending = PendingDecision {
            event,
            pass_grants: if decision.consume.pass { decision.pass_grants.clone() } else { Vec::new() },
            backup_code: decision.consume.backup_code.then_some(decision.credential).flatten(),
        };
        // A task of its own, so that a client hanging up cannot leave what the decision
        // used up out of the index.
        let directory = self.directory.clone();
        let recorded = tokio::spawn(async move {
            let committed = directory.store.commit_decision(pending).await?;
            if let Some(version) = committed.version {
                // Passes and backup codes used up: the next decision must see it.
                directory.lock().await.apply_at(&committed.changes, version);
            }
            directory.publish(std::slice::from_ref(&committed.event));
            if crate::alarms::is_passback_violation(&committed.event) {
                let (directory, event) = (directory.clone(), committed.event.clone());
                // After the answer's event is durable; the alarm never delays the door.
                tokio::spawn(async move {
                    if let Err(e) = crate::alarms::passback_violation(&directory, &event).await {
                        tracing::warn!(error = %e, "anti-passback alarm not raised");
                    }
                });
            }
            Ok::<_, lintel_store::StoreError>(committed)
        });
        let committed = match recorded.await {
            Ok(Ok(committed)) => committed,
            outcome => {
                let error =
                    outcome.map_or_else(|e| e.to_string(), |r| r.err().map(|e| e.to_string()).unwrap_or_default());
                tracing::error!(%error, "decision not recorded; refusing it");
                return Err(ServiceError::unavailable("the decision could not be recorded, so the door stays shut"));
            }
        };
        let event = committed.event;
        // The commit may have turned an allowance into a denial (a pass used up meanwhile).
        response.allowed = event.allowed == Some(true);
        response.reason = event.reason.unwrap_or(response.reason);
        response.grant_id = event.grant_id;
        if let Some(detail) = event.data.get("detail").and_then(|d| d.as_str()) {
            response.detail = detail.to_owned();
        }
        response.event_id = Some(event.id);
        let result = if response.allowed { "allowed" } else { "denied" };
        let door = door_label(decision.door.is_some(), event.door.unwrap_or_default());
        metrics::counter!("lintel_decisions_total", "door" => door, "result" => result, "reason" => response.reason.as_str())
            .increment(1);
        Ok(response)
    }
}

/// The door a decision is counted under: its id when lintel has the door, else `unknown`,
/// so that a probe for made-up door ids cannot grow the metrics without bound.
fn door_label(known: bool, door: String) -> metrics::SharedString {
    if known { door.into() } else { metrics::SharedString::const_str("unknown") }
}

fn response_for(index: &lintel_core::Index, decision: &Decision) -> DecisionResponse {
    DecisionResponse {
        allowed: decision.allowed(),
        reason: decision.reason,
        detail: decision.detail.to_string(),
        person_id: decision.person.and_then(|pk| index.person(pk)).map(|p| p.id.to_string()),
        grant_id: decision.grant.map(grant_id),
        event_id: None,
        retry_after: None,
        name: None,
    }
}

fn decision_event(door: &str, at: DateTime<Utc>, response: &DecisionResponse, decision: &Decision) -> NewEvent {
    let mut event = NewEvent::new("decision").door(door).with("detail", &response.detail);
    event.at = at.timestamp_micros();
    event.allowed = Some(response.allowed);
    event.reason = Some(response.reason);
    event.person_id = response.person_id.clone();
    event.credential_id = decision.credential.map(credential_id);
    event.grant_id = response.grant_id.clone();
    if let Some(until) = decision.checked_in_until.and_then(DateTime::from_timestamp_micros) {
        event.pass_use = Some(PassUse::CheckedIn);
        event = event.with("checked_in_until", until.to_rfc3339());
    }
    event
}

/// What was typed at a keypad, which sends digits as a `pin` (OSDP readers, MQTT
/// controllers): 4 to 12 digits are a PIN, a backup code's 20 digits are that code. A
/// keypad has no other way to enter one.
pub fn typed(credential: &PresentedCredential) -> Cow<'_, PresentedCredential> {
    match credential {
        PresentedCredential::Pin { pin } if secrets::typed_backup_code(pin) => {
            Cow::Owned(PresentedCredential::BackupCode { code: pin.clone() })
        }
        other => Cow::Borrowed(other),
    }
}

pub fn credential_kind(c: &PresentedCredential) -> &'static str {
    match c {
        PresentedCredential::Card { .. } => "card",
        PresentedCredential::Pin { .. } => "pin",
        PresentedCredential::Secret { .. } => "secret",
        PresentedCredential::BackupCode { .. } => "backup_code",
        PresentedCredential::Member { .. } => "member",
    }
}
