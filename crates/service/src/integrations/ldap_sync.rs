//! LDAP / Active Directory as a source of people (`[ldap.sync]`): every entry the
//! directory lists under `base` with `filter` becomes a person (external id system
//! `ldap`), with the name, email, cards and groups the mapping reads from it; people who
//! left the directory, or whose account is disabled there, are offboarded.
//!
//! **Whole answers only.** The directory is read completely (page by page) before anything
//! is written: a sync that fails midway (connection lost, deadline passed, a size limit)
//! changes nothing and offboards nobody.
//!
//! **Mass removal guard.** A directory that answers "nobody" (a renamed base, a filter
//! that no longer matches) would otherwise offboard everyone. When more than one person
//! and more than `max_departures_percent` of the people who have access from the
//! directory would lose it in one sync, the sync is refused before it writes anything,
//! unless forced (`lintel ldap sync --force`).
//!
//! **Disabled accounts.** An entry whose `userAccountControl` has the ACCOUNTDISABLE bit
//! (0x2) set is disabled (Active Directory): the directory says they must not enter, so
//! they are offboarded like people who left, and not created when new.
//!
//! **Cards.** With `card_attribute` set, the directory is where the cards of the people it
//! lists are managed: each value is a card UID; an active card the directory no longer
//! lists is revoked. A card an operator revoked stays revoked; a card revoked because its
//! holder left (or was disabled) comes back when they return.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use lintel_connectors::ldap::{LdapEntry, LdapError, LdapListing, LdapServer, ListingConfig};
use lintel_core::credential::normalize_uid;
use lintel_proto::{CredentialKind, CredentialStatus, PersonStatus};
use lintel_store::{MemberChange, NewEvent, StoreError};

use crate::directory::Actor;
use crate::directory::Directory;
use crate::error::{Result, ServiceError};
use crate::offboarding::{self, Departure};
use crate::people::{self, ExternalPerson, Identity};
use crate::workers::Workers;

/// The external-id system of people from the directory.
pub const SYSTEM: &str = "ldap";
/// The lease under which one node syncs.
const LEASE: &str = "ldap-sync";
/// Active Directory's ACCOUNTDISABLE flag in `userAccountControl`.
const ACCOUNT_DISABLE: i64 = 0x2;
const USER_ACCOUNT_CONTROL: &str = "userAccountControl";

const LEFT: &str = "gone from the LDAP directory";
const DISABLED: &str = "disabled in the LDAP directory";
const CARD_UNLISTED: &str = "the LDAP directory no longer lists this card";

/// The `[ldap.sync]` settings.
#[derive(Clone, Debug)]
pub struct LdapSyncConfig {
    pub server: LdapServer,
    pub base: String,
    pub filter: String,
    pub page_size: u32,
    /// Connecting and binding wait at most this.
    pub timeout: Duration,
    /// The whole listing's deadline.
    pub deadline: Duration,
    pub mapping: Mapping,
    pub every: Duration,
    /// See the module's mass removal guard.
    pub max_departures_percent: u32,
}

/// Which attributes say what.
#[derive(Clone, Debug)]
pub struct Mapping {
    /// The entry's stable id (`entryUUID`; `objectGUID` in Active Directory).
    pub id_attribute: String,
    pub name_attribute: String,
    pub email_attribute: Option<String>,
    pub card_attribute: Option<String>,
    /// The groups an entry is in, as DNs (`memberOf`).
    pub group_attribute: String,
    /// Directory group DN -> lintel group.
    pub groups: BTreeMap<String, String>,
}

/// A person as one entry describes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    /// Normalized card UIDs.
    pub cards: BTreeSet<String>,
    pub groups: BTreeSet<String>,
    pub disabled: bool,
}

/// What a sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LdapSyncReport {
    /// Entries the directory listed.
    pub seen: usize,
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    /// People who lost what the directory gave them (left, or disabled).
    pub offboarded: usize,
    /// Entries listed as disabled.
    pub disabled: usize,
    /// Entries without a usable id (or a second entry with the same id).
    pub skipped: usize,
    /// Entries that could not be applied (logged).
    pub failed: usize,
}

/// An entry's stable id: binary ids (`objectGUID`, any value that is not text) in
/// lowercase hex, so the same entry always gets the same id.
pub fn stable_id(entry: &LdapEntry, attribute: &str) -> Option<String> {
    let bytes = entry.first_bytes(attribute)?;
    let binary = attribute.eq_ignore_ascii_case("objectGUID") || entry.values(attribute).is_empty();
    let id = if binary { hex::encode(bytes) } else { String::from_utf8_lossy(bytes).trim().to_owned() };
    (!id.is_empty() && id.len() <= 128).then_some(id)
}

/// Whether `userAccountControl` marks the account disabled.
pub fn account_disabled(entry: &LdapEntry) -> bool {
    entry
        .values(USER_ACCOUNT_CONTROL)
        .iter()
        .any(|v| v.trim().parse::<i64>().is_ok_and(|uac| uac & ACCOUNT_DISABLE != 0))
}

/// Whether `losing` people losing access, `staying` keeping it, is more than one and more
/// than `percent` of them.
fn too_many_leave(losing: usize, staying: usize, percent: u32) -> bool {
    let with_access = (losing + staying) as u64;
    losing > 1 && losing as u64 * 100 > u64::from(percent) * with_access
}

/// A DN as compared: case and the spaces around separators do not matter.
fn dn_key(dn: &str) -> String {
    dn.split(',')
        .map(|rdn| rdn.split('=').map(str::trim).collect::<Vec<_>>().join("="))
        .collect::<Vec<_>>()
        .join(",")
        .to_lowercase()
}

impl Mapping {
    /// The attributes read from each entry.
    pub fn attributes(&self) -> Vec<String> {
        let optional = self.email_attribute.iter().chain(&self.card_attribute);
        [&self.id_attribute, &self.name_attribute, &self.group_attribute]
            .into_iter()
            .chain(optional)
            .cloned()
            .chain([USER_ACCOUNT_CONTROL.to_owned()])
            .collect()
    }

    /// The lintel groups the sync manages: members are added to and taken out of these
    /// only.
    pub fn managed_groups(&self) -> BTreeSet<&str> {
        self.groups.values().map(String::as_str).collect()
    }

    /// The person an entry describes; `None` without a usable id.
    pub fn read(&self, entry: &LdapEntry) -> Option<Listed> {
        let id = stable_id(entry, &self.id_attribute)?;
        let first = |attribute: &str| entry.values(attribute).iter().map(|v| v.trim()).find(|v| !v.is_empty());
        let by_dn: HashMap<String, &String> = self.groups.iter().map(|(dn, group)| (dn_key(dn), group)).collect();
        let groups =
            entry.values(&self.group_attribute).iter().filter_map(|dn| by_dn.get(&dn_key(dn))).map(|g| (*g).clone());
        let cards =
            self.card_attribute.iter().flat_map(|a| entry.values(a)).filter_map(|uid| match normalize_uid(uid) {
                Ok(uid) => Some(uid),
                Err(e) => {
                    tracing::warn!(dn = %entry.dn, uid = %uid, error = %e, "an LDAP card number is not a card UID");
                    None
                }
            });
        Some(Listed {
            id,
            name: first(&self.name_attribute).map(str::to_owned),
            email: self.email_attribute.as_deref().and_then(first).map(str::to_owned),
            cards: cards.collect(),
            groups: groups.collect(),
            disabled: account_disabled(entry),
        })
    }
}

pub struct LdapSync {
    pub config: LdapSyncConfig,
    listing: LdapListing,
    directory: Arc<Directory>,
}

impl LdapSync {
    pub fn new(config: LdapSyncConfig, directory: Arc<Directory>) -> Result<Self> {
        let listing = LdapListing::new(ListingConfig {
            server: config.server.clone(),
            base: config.base.clone(),
            filter: config.filter.clone(),
            attributes: config.mapping.attributes(),
            page_size: config.page_size,
            timeout: config.timeout,
            deadline: config.deadline,
        })
        .map_err(|e| ServiceError::invalid(format!("[ldap.sync] is not usable: {e}")))?;
        Ok(Self { config, listing, directory })
    }

    /// Reads the whole directory, then makes lintel match it. `progress(done, total)`:
    /// while the directory is read `total` grows with the entries read; then `done` runs
    /// up to it as they are applied. `force` passes the mass removal guard.
    pub async fn sync(&self, force: bool, progress: &(dyn Fn(usize, usize) + Sync)) -> Result<LdapSyncReport> {
        let entries = self.listing.entries(&|read| progress(0, read)).await.map_err(|e| {
            let transient = matches!(e, LdapError::Unreachable(_) | LdapError::TimedOut(_));
            ServiceError::upstream("ldap", e.to_string(), transient)
        })?;
        let mut report = LdapSyncReport { seen: entries.len(), ..Default::default() };
        let listed = self.people(&entries, &mut report);
        let departing = self.departures(&listed).await?;
        let losing_access = departing.iter().filter(|d| d.has_access).count();
        let staying = listed.values().filter(|p| !p.disabled).count();
        self.guard(losing_access, staying, force)?;

        let groups = self.existing_groups().await?;
        let total = listed.len();
        for (n, person) in listed.values().enumerate() {
            progress(n, total);
            if person.disabled {
                continue;
            }
            match self.apply(person, &groups).await {
                Ok(Applied::Created) => report.created += 1,
                Ok(Applied::Updated) => report.updated += 1,
                Ok(Applied::Unchanged) => report.unchanged += 1,
                Err(e) => {
                    tracing::warn!(id = %person.id, error = %e, "an LDAP entry was not applied");
                    report.failed += 1;
                }
            }
        }
        progress(total, total);
        let groups: Vec<String> = self.config.mapping.managed_groups().into_iter().map(str::to_owned).collect();
        for d in &departing {
            let departure = Departure { person_id: &d.person, source: SYSTEM, reason: d.reason, groups: &groups };
            if !offboarding::offboard(&self.directory, departure).await?.is_empty() {
                report.offboarded += 1;
            }
        }
        self.record(&report).await?;
        Ok(report)
    }

    /// The people the entries describe, by id; entries without a usable id, or with an id
    /// seen before, are skipped (and logged).
    fn people(&self, entries: &[LdapEntry], report: &mut LdapSyncReport) -> BTreeMap<String, Listed> {
        let mut listed = BTreeMap::new();
        for entry in entries {
            match self.config.mapping.read(entry) {
                Some(person) if !listed.contains_key(&person.id) => {
                    listed.insert(person.id.clone(), person);
                }
                Some(person) => {
                    tracing::warn!(dn = %entry.dn, id = %person.id, "skipped: another LDAP entry has the same id");
                    report.skipped += 1;
                }
                None => {
                    let attribute = &self.config.mapping.id_attribute;
                    tracing::warn!(dn = %entry.dn, %attribute, "skipped: the LDAP entry has no usable id");
                    report.skipped += 1;
                }
            }
        }
        report.disabled = listed.values().filter(|p| p.disabled).count();
        listed
    }

    /// The people synced before who left the directory or are disabled in it, and have
    /// something left to take.
    async fn departures(&self, listed: &BTreeMap<String, Listed>) -> Result<Vec<Departing>> {
        let mut departing = Vec::new();
        for (person, external_id) in self.directory.store.external_ids(SYSTEM).await? {
            let reason = match listed.get(&external_id) {
                None => LEFT,
                Some(p) if p.disabled => DISABLED,
                Some(_) => continue,
            };
            if let Some(has_access) = self.to_take(&person).await? {
                departing.push(Departing { person, reason, has_access });
            }
        }
        Ok(departing)
    }

    /// Refuses a sync that would take access from too many at once (see the module).
    fn guard(&self, losing: usize, staying: usize, force: bool) -> Result<()> {
        let limit = self.config.max_departures_percent;
        if force || !too_many_leave(losing, staying, limit) {
            return Ok(());
        }
        Err(ServiceError::Conflict(format!(
            "the LDAP sync would take access from {losing} of the {} people who have it from the directory \
             (more than max_departures_percent = {limit}); nothing was changed. Check [ldap.sync] base and \
             filter, or run `lintel ldap sync --force` if they really left",
            losing + staying
        )))
    }

    /// What offboarding would take from a person who left: `None` when nothing (gone, or
    /// offboarded before: suspended or vouched for elsewhere, with no credential or
    /// managed group left), else whether they have access (an active credential or a
    /// managed group), which the guard counts.
    async fn to_take(&self, person_id: &str) -> Result<Option<bool>> {
        let store = &self.directory.store;
        let person = match store.person(person_id).await {
            Ok(p) => p,
            Err(StoreError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let managed = self.config.mapping.managed_groups();
        let access = person.groups.iter().any(|g| managed.contains(g.as_str()))
            || store.person_credentials(person_id).await?.iter().any(|c| c.status == CredentialStatus::Active);
        let vouched_elsewhere = person.external_ids.keys().any(|system| system != SYSTEM);
        let would_suspend = person.status != PersonStatus::Suspended && !vouched_elsewhere;
        Ok((access || would_suspend).then_some(access))
    }

    /// The managed groups that exist in lintel (one named in the mapping but missing is
    /// logged once per sync, and left alone).
    async fn existing_groups(&self) -> Result<Vec<String>> {
        let mut existing = Vec::new();
        for group in self.config.mapping.managed_groups() {
            match self.directory.store.group(group).await {
                Ok(_) => existing.push(group.to_owned()),
                Err(StoreError::NotFound { .. }) => {
                    tracing::error!(group, "a group named in [ldap.sync] groups does not exist");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(existing)
    }

    /// Makes one person match their entry, in the managed `groups` that exist.
    /// Idempotent: nothing is written when nothing changed.
    async fn apply(&self, listed: &Listed, groups: &[String]) -> Result<Applied> {
        let directory = &self.directory;
        let mut person = ExternalPerson::new(SYSTEM, listed.id.clone(), Identity::External);
        person.name = listed.name.clone();
        person.fallback_name = format!("LDAP {}", listed.id);
        person.email = listed.email.clone();
        person.status = Some(PersonStatus::Active);
        let upserted = people::upsert(directory, person).await?;
        let id = upserted.id;
        let mut changed = upserted.updated;
        for group in groups {
            let member = listed.groups.contains(group);
            let (g, p) = (group.clone(), id.clone());
            let written = directory
                .write(&Actor::integration("ldap"), move |store| async move { store.set_member(&g, &p, member).await })
                .await?;
            changed |= written.value != MemberChange::Unchanged;
        }
        if self.config.mapping.card_attribute.is_some() {
            changed |= self.match_cards(&id, &listed.cards).await?;
        }
        Ok(match (upserted.created, changed) {
            (true, _) => Applied::Created,
            (false, true) => Applied::Updated,
            (false, false) => Applied::Unchanged,
        })
    }

    /// Issues the cards the directory lists that the person lacks and revokes those it no
    /// longer lists; whether anything changed.
    async fn match_cards(&self, person_id: &str, wanted: &BTreeSet<String>) -> Result<bool> {
        let directory = &self.directory;
        let cards: Vec<_> = directory
            .store
            .person_credentials(person_id)
            .await?
            .into_iter()
            .filter(|c| c.kind == CredentialKind::Card)
            .collect();
        let mut changed = false;
        for card in cards.iter().filter(|c| c.status == CredentialStatus::Active) {
            if card.uid.as_ref().is_none_or(|uid| !wanted.contains(uid)) {
                let id = card.id.clone();
                directory
                    .write(&Actor::integration("ldap"), move |store| async move {
                        store.revoke_credential(&id, CARD_UNLISTED).await
                    })
                    .await?;
                changed = true;
            }
        }
        for uid in wanted {
            let same: Vec<_> = cards.iter().filter(|c| c.uid.as_ref() == Some(uid)).collect();
            let active = same.iter().any(|c| c.status == CredentialStatus::Active);
            // Revoked by an operator (lost, stolen): it stays revoked.
            let revoked_here = same.iter().any(|c| {
                c.status != CredentialStatus::Active
                    && !matches!(c.status_reason.as_deref(), Some(LEFT | DISABLED | CARD_UNLISTED))
            });
            if active || revoked_here {
                continue;
            }
            let record = crate::credentials::card(uid, None)?.record;
            let pid = person_id.to_owned();
            directory
                .write(
                    &Actor::integration("ldap"),
                    move |store| async move { store.issue_credential(&pid, &record).await },
                )
                .await?;
            changed = true;
        }
        Ok(changed)
    }

    /// One `ldap.synced` event when the sync changed something.
    async fn record(&self, r: &LdapSyncReport) -> Result<()> {
        if r.created + r.updated + r.offboarded == 0 {
            return Ok(());
        }
        let event = NewEvent::new("ldap.synced")
            .with("seen", r.seen)
            .with("created", r.created)
            .with("updated", r.updated)
            .with("unchanged", r.unchanged)
            .with("offboarded", r.offboarded)
            .with("disabled", r.disabled)
            .with("skipped", r.skipped)
            .with("failed", r.failed);
        self.directory.record(event).await?;
        Ok(())
    }

    /// Syncs every `[ldap.sync] every` on the node holding the `ldap-sync` lease.
    pub fn spawn_worker(self: &Arc<Self>, workers: &Workers) {
        let sync = self.clone();
        let mut ticks = workers.one_node_every(LEASE, sync.config.every);
        workers.spawn(async move {
            while ticks.next().await {
                match sync.sync(false, &|_, _| {}).await {
                    Ok(r) => tracing::info!(
                        seen = r.seen,
                        created = r.created,
                        updated = r.updated,
                        offboarded = r.offboarded,
                        "LDAP sync done"
                    ),
                    Err(e) => tracing::warn!(error = %e, "LDAP sync failed; nothing was offboarded"),
                }
            }
        });
    }
}

enum Applied {
    Created,
    Updated,
    Unchanged,
}

/// Someone to offboard.
struct Departing {
    person: String,
    reason: &'static str,
    /// An active credential or a managed group (what the guard counts).
    has_access: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping() -> Mapping {
        Mapping {
            id_attribute: "entryUUID".into(),
            name_attribute: "cn".into(),
            email_attribute: Some("mail".into()),
            card_attribute: Some("employeeNumber".into()),
            group_attribute: "memberOf".into(),
            groups: [("cn=Staff,ou=groups,dc=example,dc=org".to_owned(), "staff".to_owned())].into(),
        }
    }

    fn entry(attrs: &[(&str, &[&str])]) -> LdapEntry {
        LdapEntry {
            dn: "uid=ann,ou=people,dc=example,dc=org".into(),
            text: attrs
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.iter().map(|s| s.to_string()).collect()))
                .collect(),
            binary: Default::default(),
        }
    }

    #[test]
    fn an_entry_maps_to_a_person() {
        let e = entry(&[
            ("entryuuid", &["0b2c-11"]),
            ("cn", &["  ", "Ann Lovelace"]),
            ("mail", &["ann@example.org"]),
            ("employeenumber", &["04:a1:b2:c3", "not a uid"]),
            ("memberof", &["CN=Staff, OU=Groups,DC=example,DC=org", "cn=other,dc=example,dc=org"]),
        ]);
        let listed = mapping().read(&e).unwrap();
        assert_eq!(listed.id, "0b2c-11");
        assert_eq!((listed.name.as_deref(), listed.email.as_deref()), (Some("Ann Lovelace"), Some("ann@example.org")));
        assert_eq!(listed.cards, ["04A1B2C3".to_owned()].into(), "the usable UID, normalized");
        assert_eq!(listed.groups, ["staff".to_owned()].into(), "DNs compare without case or spaces");
        assert!(!listed.disabled);
        assert_eq!(mapping().read(&entry(&[("cn", &["No id"])])), None);
        assert!(mapping().attributes().contains(&"userAccountControl".to_owned()));
    }

    #[test]
    fn the_accountdisable_bit_disables() {
        for (uac, disabled) in
            [("512", false), ("514", true), ("66050", true), ("66048", false), ("2", true), ("x", false)]
        {
            assert_eq!(account_disabled(&entry(&[("userAccountControl", &[uac])])), disabled, "{uac}");
        }
        assert!(!account_disabled(&entry(&[])), "no attribute: not disabled");
    }

    #[test]
    fn the_guard_lets_few_leave_and_stops_a_mass_departure() {
        assert!(!too_many_leave(1, 0, 25), "one person may always leave");
        assert!(!too_many_leave(0, 0, 25));
        assert!(!too_many_leave(25, 75, 25), "exactly the limit");
        assert!(too_many_leave(26, 74, 25));
        assert!(!too_many_leave(2, 0, 100), "100% allows everyone");
        assert!(too_many_leave(40, 0, 25), "an empty answer");
    }

    #[test]
    fn binary_ids_are_hex() {
        let guid = vec![0x10, 0xff, 0x00, 0x7a];
        let mut e = entry(&[]);
        e.binary.insert("objectguid".into(), vec![guid]);
        assert_eq!(stable_id(&e, "objectGUID").as_deref(), Some("10ff007a"));
        // A GUID whose bytes happen to be text is still hex: the same entry, the same id.
        let e = entry(&[("objectGUID", &["AB"])]);
        assert_eq!(stable_id(&e, "objectGUID").as_deref(), Some("4142"));
        assert_eq!(stable_id(&entry(&[("entryUUID", &[" u-1 "])]), "entryUUID").as_deref(), Some("u-1"));
        assert_eq!(stable_id(&entry(&[("entryUUID", &[""])]), "entryUUID"), None);
    }
}
