//! Who may open which of a controller's doors, read from the snapshot for the controller's
//! offline allow-list (see `crate::offline`). The same checks as a decision, minus the
//! moment: what varies with time (validity, schedules) is left to the grants returned.

use std::collections::BTreeSet;
use std::num::NonZeroI64;
use std::sync::Arc;

use lintel_proto::{CredentialKind, CredentialStatus};

use super::{Change, DoorSet, Index, IndexDoor, IndexGrant, Pk, Subject};
use crate::Digest;

/// The doors whose offline lists a change may alter: a controller whose doors are not
/// among them keeps its list without building it again.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OfflineDoors {
    /// These doors (by id); none at all for most changes (a pass used, a PIN).
    Some(BTreeSet<Box<str>>),
    /// Any door: the doors or groups themselves changed, or the index was reloaded.
    #[default]
    All,
}

impl OfflineDoors {
    pub fn none() -> Self {
        Self::Some(BTreeSet::new())
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, Self::Some(doors) if doors.is_empty())
    }

    /// Whether a list of `doors` may change.
    pub fn concerns<'a>(&self, mut doors: impl Iterator<Item = &'a str>) -> bool {
        match self {
            Self::All => true,
            Self::Some(touched) => doors.any(|d| touched.contains(d)),
        }
    }

    /// Adds what `other` touched.
    pub fn extend(&mut self, other: OfflineDoors) {
        match (&mut *self, other) {
            (Self::All, _) => {}
            (_, Self::All) => *self = Self::All,
            (Self::Some(mine), Self::Some(theirs)) => mine.extend(theirs),
        }
    }
}

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

/// An unused backup code of an active person that some grant lets through at least one
/// of the doors asked about: a controller decides it at its keypad while offline.
#[derive(Debug, Clone)]
pub struct CodeRights {
    pub credential: Pk,
    /// The code's digest as lintel keeps it (never the code).
    pub digest: Digest,
    /// Per door asked about (by position), the grants that cover it; never empty.
    pub doors: Vec<(usize, Vec<Arc<IndexGrant>>)>,
}

/// Per door (by position), the grants that cover it.
type DoorRights = Vec<(usize, Vec<Arc<IndexGrant>>)>;

impl Index {
    /// Every card that may open one of `doors` at some time, with the grants that say
    /// when. Grants that count passes are left out (a controller cannot count them
    /// without lintel) unless their holder is checked in: then the list carries the
    /// check-in. Cards whose UID is longer than the key keeps verbatim are left out
    /// too (their key is a hash of it).
    pub fn offline_cards(&self, doors: &[&str]) -> Vec<CardRights> {
        let doors: Vec<_> = doors.iter().map(|id| self.doors_by_id.get(*id)).collect();
        let mut cards = Vec::new();
        for (key, cred) in self.credentials.iter() {
            if cred.kind != CredentialKind::Card || cred.status != CredentialStatus::Active {
                continue;
            }
            let Some(uid) = key.card_uid() else { continue };
            let Some(rights) = self.offline_rights(cred.person, &doors) else { continue };
            cards.push(CardRights {
                credential: cred.pk,
                uid: uid.into(),
                has_revocation_code: cred.revocation != 0,
                doors: rights,
            });
        }
        cards.sort_by_key(|c| c.credential);
        cards
    }

    /// Every active (so unused) backup code that may open one of `doors` at some time, on
    /// the same terms as [`Index::offline_cards`].
    pub fn offline_backup_codes(&self, doors: &[&str]) -> Vec<CodeRights> {
        let doors: Vec<_> = doors.iter().map(|id| self.doors_by_id.get(*id)).collect();
        let mut codes = Vec::new();
        for cred in self.credentials.values() {
            if cred.kind != CredentialKind::BackupCode || cred.status != CredentialStatus::Active {
                continue;
            }
            let Some(digest) = cred.digest.as_deref() else { continue };
            let Some(rights) = self.offline_rights(cred.person, &doors) else { continue };
            codes.push(CodeRights { credential: cred.pk, digest: *digest, doors: rights });
        }
        codes.sort_by_key(|c| c.credential);
        codes
    }

    /// What the credential's person, if active, may open among `doors` while offline: the
    /// grants per door that do not count passes (or whose holder is checked in), skills
    /// checked. `None` when nothing.
    fn offline_rights(&self, person: Option<NonZeroI64>, doors: &[Option<&IndexDoor>]) -> Option<DoorRights> {
        let person_pk = person?.get();
        let slot = self.people.get(person_pk);
        let person = slot.and_then(|s| s.person.as_ref()).filter(|p| !p.suspended)?;
        let mut rights = Vec::new();
        for (position, door) in doors.iter().enumerate() {
            let Some(door) = door else { continue };
            // A controller cut off from lintel keeps the lockdown: the list leaves the door out.
            if door.lockdown && !person.lockdown_exempt {
                continue;
            }
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
            grants.retain(|g| g.passes.is_none() || g.checked_in_until != i64::MIN);
            if !grants.is_empty() {
                rights.push((position, grants));
            }
        }
        (!rights.is_empty()).then_some(rights)
    }

    /// The doors whose offline lists may differ between this snapshot and `next`, which
    /// is this one with `changes` applied. Both are read: a right taken away shows only in
    /// the first, a right given only in the second.
    pub fn offline_doors_touched(&self, next: &Index, changes: &[Change]) -> OfflineDoors {
        let mut doors = BTreeSet::new();
        for change in changes {
            match change {
                // A pass used for one entry changes no list; one that checks its holder in
                // puts the check-in in the lists of the grant's doors.
                Change::PassesUsed { checked_in_until: i64::MIN, .. } => {}
                Change::PassesUsed { grant: pk, .. } => {
                    if let Some(grant) = next.grants.get(pk) {
                        next.doors_of_grant(grant, &mut doors);
                    }
                }
                Change::Credential(key, credential) => {
                    // Cards and backup codes are listed (a code leaves every list once used).
                    if key.card_uid().is_none() && credential.kind != CredentialKind::BackupCode {
                        continue;
                    }
                    let before = self.credentials.get(key).and_then(|c| c.person).map(NonZeroI64::get);
                    for person in before.into_iter().chain(credential.person) {
                        self.doors_of_person(person, &mut doors);
                        next.doors_of_person(person, &mut doors);
                    }
                }
                Change::Person(person, _) => {
                    self.doors_of_person(*person, &mut doors);
                    next.doors_of_person(*person, &mut doors);
                }
                Change::Membership { group, .. } => {
                    self.doors_of_group(*group, &mut doors);
                    next.doors_of_group(*group, &mut doors);
                }
                Change::Grant(pk, _) => {
                    for index in [self, next] {
                        if let Some(grant) = index.grants.get(pk) {
                            index.doors_of_grant(grant, &mut doors);
                        }
                    }
                }
                Change::Door(..) | Change::Group(..) => return OfflineDoors::All,
            }
        }
        let ids = doors.into_iter().filter_map(|pk| self.door_id(pk).or_else(|| next.door_id(pk))).collect();
        OfflineDoors::Some(ids)
    }

    fn door_id(&self, pk: Pk) -> Option<Box<str>> {
        self.doors_by_id.values().find(|d| d.pk == pk).map(|d| d.id.clone())
    }

    /// The doors any grant of the person, or of their groups, covers.
    fn doors_of_person(&self, person: Pk, doors: &mut BTreeSet<Pk>) {
        for pk in self.person_grants.get(&person).into_iter().flatten() {
            if let Some(grant) = self.grants.get(pk) {
                self.doors_of_grant(grant, doors);
            }
        }
        let groups = self.people.get(person).and_then(|slot| slot.groups.as_ref());
        for group in groups.into_iter().flat_map(|g| g.iter()) {
            self.doors_of_group(group, doors);
        }
    }

    /// The doors the group's grants cover.
    fn doors_of_group(&self, group: Pk, doors: &mut BTreeSet<Pk>) {
        doors.extend(self.group_grants.keys().filter(|(_, g)| *g == group).map(|(door, _)| *door));
    }

    fn doors_of_grant(&self, grant: &IndexGrant, doors: &mut BTreeSet<Pk>) {
        let group_doors = |g: &Pk| self.groups.get(g).map(|g| g.doors.to_vec()).unwrap_or_default();
        match (&grant.doors, &grant.subject) {
            (DoorSet::Doors(listed), _) => doors.extend(listed.iter().copied()),
            (DoorSet::Group(g), _) | (DoorSet::SubjectGroup, Subject::Group(g)) => doors.extend(group_doors(g)),
            (DoorSet::SubjectGroup, Subject::Person(_)) => {}
        }
    }
}
