//! Leaving means leaving: when the source a person came from says they are gone (a chat
//! user deleted or made a guest, a membership ended), they lose everything that source
//! gave: every credential, every registered signing key (a signed unlock stops at once,
//! not when its certificate expires), the source's groups, and, when no other source
//! knows them, their active status. One `person.offboarded` event says what was taken.
//!
//! Each step is its own write and a repeat finds nothing left to take, so a step that
//! failed is completed by the next run (the next event or reconciliation).

use std::sync::Arc;

use lintel_proto::{CredentialKind, CredentialStatus, Person, PersonPatch, PersonStatus};
use lintel_store::{NewEvent, Store, StoreError};

use crate::directory::Actor;
use crate::directory::Directory;
use crate::error::Result;

/// Who leaves, and what their source gave them.
pub struct Departure<'a> {
    pub person_id: &'a str,
    /// The external-id system of the source (`slack`, `cobot`, `crm`).
    pub source: &'a str,
    pub reason: &'a str,
    /// The groups that source put them in.
    pub groups: &'a [String],
}

/// What was taken away.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Offboarded {
    pub credentials: Vec<String>,
    pub keys: Vec<String>,
    pub groups: Vec<String>,
    pub suspended: bool,
}

impl Offboarded {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

pub async fn offboard(directory: &Arc<Directory>, d: Departure<'_>) -> Result<Offboarded> {
    let store = &directory.store;
    let Some(person) = person(store, d.person_id).await? else { return Ok(Offboarded::default()) };
    let mut taken = Offboarded::default();
    let (id, reason) = (d.person_id.to_owned(), d.reason.to_owned());
    let revoked = directory
        .write(&Actor::integration(d.source), move |store| async move {
            store.revoke_person_credentials(&id, None, &reason).await
        })
        .await?;
    taken.credentials = revoked.value.into_iter().map(|c| c.id).collect();
    taken.keys = revoke_keys(directory, d.person_id).await?;
    for group in d.groups.iter().filter(|g| person.groups.contains(g)) {
        let (g, p) = (group.clone(), d.person_id.to_owned());
        directory
            .write(&Actor::integration(d.source), move |store| async move { store.set_member(&g, &p, false).await })
            .await?;
        taken.groups.push(group.clone());
    }
    // Known from nowhere else: nothing vouches for them any more.
    if !d.known_elsewhere(&person) && person.status != PersonStatus::Suspended {
        let patch = PersonPatch { status: Some(PersonStatus::Suspended), ..Default::default() };
        let id = d.person_id.to_owned();
        directory
            .write(&Actor::integration(d.source), move |store| async move { store.patch_person(&id, &patch).await })
            .await?;
        taken.suspended = true;
    }
    record(directory, &d, &taken).await?;
    Ok(taken)
}

/// A membership that ended but may come back (canceled, lapsed): the person is suspended
/// by their source and keeps their cards for a return, but, when no other source knows
/// them, no personal secret or signing key stays active (those work away from the doors'
/// person checks, and are enrolled again on return). One `person.offboarded` event when
/// something was taken.
pub async fn lapse(directory: &Arc<Directory>, d: Departure<'_>) -> Result<Offboarded> {
    let store = &directory.store;
    let Some(person) = person(store, d.person_id).await? else { return Ok(Offboarded::default()) };
    if d.known_elsewhere(&person) {
        return Ok(Offboarded::default());
    }
    let mut taken = Offboarded::default();
    // Most syncs find nothing to take: write only when there is.
    let active_secret = store
        .person_credentials(d.person_id)
        .await?
        .iter()
        .any(|c| c.kind == CredentialKind::Secret && c.status == CredentialStatus::Active);
    if active_secret {
        let (id, reason) = (d.person_id.to_owned(), d.reason.to_owned());
        let secrets = directory
            .write(&Actor::integration(d.source), move |store| async move {
                store.revoke_person_credentials(&id, Some(CredentialKind::Secret), &reason).await
            })
            .await?;
        taken.credentials = secrets.value.into_iter().map(|c| c.id).collect();
    }
    taken.keys = revoke_keys(directory, d.person_id).await?;
    record(directory, &d, &taken).await?;
    Ok(taken)
}

impl Departure<'_> {
    /// Whether another source than the departing one knows the person (then it still
    /// vouches for them). A system `source:name` is one more id the source keeps
    /// (`scim:userName` is the identity provider's).
    fn known_elsewhere(&self, person: &Person) -> bool {
        person.external_ids.keys().any(|system| system.split(':').next() != Some(self.source))
    }
}

/// The person, or none when they are gone already (nothing left to take).
async fn person(store: &Store, id: &str) -> Result<Option<Person>> {
    match store.person(id).await {
        Ok(p) => Ok(Some(p)),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The one `person.offboarded` event that says what was taken, when anything was.
async fn record(directory: &Arc<Directory>, d: &Departure<'_>, taken: &Offboarded) -> Result<()> {
    if taken.is_empty() {
        return Ok(());
    }
    let event = NewEvent::new("person.offboarded")
        .person(d.person_id)
        .with("source", d.source)
        .with("reason", d.reason)
        .with("credentials", &taken.credentials)
        .with("keys", &taken.keys)
        .with("groups", &taken.groups)
        .with("suspended", taken.suspended);
    directory.record(event).await?;
    Ok(())
}

/// Revokes the person's registered signing keys; their ids.
async fn revoke_keys(directory: &Arc<Directory>, person_id: &str) -> Result<Vec<String>> {
    let mut revoked = Vec::new();
    for key in directory.store.user_keys(Some(person_id)).await?.into_iter().filter(|k| k.revoked_at.is_none()) {
        directory.store.revoke_key(&key.id, None).await?;
        revoked.push(key.id);
    }
    Ok(revoked)
}
