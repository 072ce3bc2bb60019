//! People from other systems (the membership platform, the CRM, the chat workspace, the
//! identity provider): the one upsert that keeps lintel's person in step with what the
//! other system says, writing only what changed.

use std::sync::Arc;

use lintel_proto::{NewPerson, PersonPatch, PersonStatus};
use lintel_store::{PersonFilter, StoreError};

use crate::directory::Actor;
use crate::directory::Directory;
use crate::error::Result;
use crate::{secrets, validate};

/// How the person is found and named in lintel.
#[derive(Debug, Clone)]
pub enum Identity {
    /// By a lintel id derived from the other system's (`cobot-17`, `crm-1001`).
    Derived(String),
    /// By the other system's id alone; a new person gets a generated lintel id.
    External,
}

/// A person as another system describes them. Fields left `None` are not that system's
/// to say and stay as they are.
#[derive(Debug, Clone)]
pub struct ExternalPerson {
    pub system: &'static str,
    pub external_id: String,
    pub identity: Identity,
    /// As the system has it; control characters are dropped and it is cut to 200
    /// characters; an empty name becomes `fallback_name`.
    pub name: Option<String>,
    pub fallback_name: String,
    /// Dropped when it is not an address (every system owns the email it gives).
    pub email: Option<String>,
    pub phone: Option<Option<String>>,
    pub email_verified: Option<bool>,
    pub phone_verified: Option<bool>,
    pub status: Option<PersonStatus>,
    pub skills: Option<Vec<String>>,
    /// Replaces the person's attributes when it differs.
    pub attributes: Option<serde_json::Map<String, serde_json::Value>>,
}

impl ExternalPerson {
    pub fn new(system: &'static str, external_id: impl Into<String>, identity: Identity) -> Self {
        let external_id = external_id.into();
        Self {
            system,
            fallback_name: external_id.clone(),
            external_id,
            identity,
            name: None,
            email: None,
            phone: None,
            email_verified: None,
            phone_verified: None,
            status: None,
            skills: None,
            attributes: None,
        }
    }

    /// The name lintel gives the person.
    pub fn clean_name(&self) -> String {
        let name = self.name.as_deref().map(str::trim).filter(|n| !n.is_empty()).unwrap_or(&self.fallback_name);
        name.chars().filter(|c| !c.is_control()).take(200).collect()
    }
}

/// The person after the upsert.
#[derive(Debug, Clone)]
pub struct Upserted {
    pub id: String,
    pub created: bool,
    /// Whether an existing person's fields were changed.
    pub updated: bool,
    /// The groups they were in before (for a sync that adds its own).
    pub groups: Vec<String>,
}

/// Creates the person, or brings the fields the other system owns up to date (its
/// external id included); nothing is written when nothing changed.
pub async fn upsert(directory: &Arc<Directory>, p: ExternalPerson) -> Result<Upserted> {
    let store = &directory.store;
    let name = p.clean_name();
    let email = p.email.clone().filter(|e| validate::email(e).is_ok());
    let existing = match &p.identity {
        Identity::Derived(id) => match store.person(id).await {
            Ok(person) => Some(person),
            Err(StoreError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        },
        Identity::External => {
            let filter = PersonFilter {
                external_id: Some((p.system.to_owned(), p.external_id.clone())),
                limit: 1,
                ..Default::default()
            };
            store.people(&filter).await?.0.pop()
        }
    };
    let Some(person) = existing else {
        let id = match &p.identity {
            Identity::Derived(id) => id.clone(),
            Identity::External => secrets::person_id(),
        };
        let new = NewPerson {
            id: Some(id.clone()),
            name,
            email,
            phone: p.phone.clone().flatten(),
            email_verified: p.email_verified.unwrap_or(false),
            phone_verified: p.phone_verified.unwrap_or(false),
            external_ids: [(p.system.to_owned(), p.external_id.clone())].into(),
            status: p.status.unwrap_or(PersonStatus::Active),
            skills: p.skills.clone().unwrap_or_default(),
            attributes: p.attributes.clone().unwrap_or_default(),
        };
        let pid = id.clone();
        directory
            .write(&Actor::integration(p.system), move |store| async move { store.create_person(&new, &pid).await })
            .await?;
        return Ok(Upserted { id, created: true, updated: false, groups: Vec::new() });
    };
    let mut external_ids = person.external_ids.clone();
    external_ids.insert(p.system.to_owned(), p.external_id.clone());
    let patch = PersonPatch {
        name: (person.name != name).then(|| name.clone()),
        email: (person.email != email).then(|| email.clone()),
        phone: differs(&p.phone, &person.phone),
        email_verified: differs(&p.email_verified, &person.email_verified),
        phone_verified: differs(&p.phone_verified, &person.phone_verified),
        status: differs(&p.status, &person.status),
        skills: differs(&p.skills, &person.skills),
        attributes: differs(&p.attributes, &person.attributes),
        external_ids: (person.external_ids != external_ids).then_some(external_ids),
    };
    let updated = patch != PersonPatch::default();
    if updated {
        let pid = person.id.clone();
        directory
            .write(&Actor::integration(p.system), move |store| async move { store.patch_person(&pid, &patch).await })
            .await?;
    }
    Ok(Upserted { id: person.id, created: false, updated, groups: person.groups })
}

/// What the other system says, when it says something and it is not what lintel has.
fn differs<T: PartialEq + Clone>(said: &Option<T>, kept: &T) -> Option<T> {
    said.as_ref().filter(|v| *v != kept).cloned()
}
