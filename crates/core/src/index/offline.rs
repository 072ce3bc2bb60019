//! Who may open which of a controller's doors, read from the snapshot for the controller's
//! offline allow-list (see `crate::offline`). The same checks as a decision, minus the
//! moment: what varies with time (validity, schedules) is left to the grants returned.

use std::num::NonZeroI64;
use std::sync::Arc;

use lintel_proto::{CredentialKind, CredentialStatus};

use super::{Index, IndexGrant, Pk};

/// An active card of an active person that some grant lets through at least one of the
/// doors asked about.
#[derive(Debug, Clone)]
pub struct CardRights {
    pub credential: Pk,
    pub uid: Box<[u8]>,
    /// The card must carry a revocation code (the store knows which).
    pub has_revocation_code: bool,
    /// Per door asked about (by position), the grants that cover it; never empty.
    pub doors: Vec<(usize, Vec<Arc<IndexGrant>>)>,
}

impl Index {
    /// Every card that may open one of `doors` at some time, with the grants that say
    /// when. Grants that count passes are left out: a controller cannot count them
    /// without lintel. Cards whose UID is longer than the key keeps verbatim are left out
    /// too (their key is a hash of it).
    pub fn offline_cards(&self, doors: &[&str]) -> Vec<CardRights> {
        let doors: Vec<_> = doors.iter().map(|id| self.doors_by_id.get(*id)).collect();
        let mut cards = Vec::new();
        for (key, cred) in self.credentials.iter() {
            if cred.kind != CredentialKind::Card || cred.status != CredentialStatus::Active {
                continue;
            }
            let Some(uid) = key.card_uid() else { continue };
            let Some(person_pk) = cred.person.map(NonZeroI64::get) else { continue };
            let slot = self.people.get(person_pk);
            let Some(person) = slot.and_then(|s| s.person.as_ref()).filter(|p| !p.suspended) else { continue };
            let mut rights = Vec::new();
            for (position, door) in doors.iter().enumerate() {
                let Some(door) = door else { continue };
                if door.required_skill.as_ref().is_some_and(|skill| !person.skills.iter().any(|s| s == skill)) {
                    continue;
                }
                let mut grants: Vec<Arc<IndexGrant>> = Vec::new();
                if let Some(pks) = self.person_grants.get(&person_pk) {
                    grants.extend(
                        pks.iter().filter_map(|pk| self.grants.get(pk)).filter(|g| self.covers(g, door.pk)).cloned(),
                    );
                }
                if let Some(groups) = slot.and_then(|s| s.groups.as_ref()) {
                    for group in groups.iter() {
                        grants.extend(self.group_grants.get(&(door.pk, group)).into_iter().flatten().cloned());
                    }
                }
                grants.retain(|g| g.passes.is_none());
                if !grants.is_empty() {
                    rights.push((position, grants));
                }
            }
            if !rights.is_empty() {
                cards.push(CardRights {
                    credential: cred.pk,
                    uid: uid.into(),
                    has_revocation_code: cred.revocation != 0,
                    doors: rights,
                });
            }
        }
        cards.sort_by_key(|c| c.credential);
        cards
    }
}
