//! The decision index: an immutable snapshot of everything a decision needs, laid out for
//! memory (about 150 bytes per card at a million) and for speed (a decision is a handful
//! of hash look-ups). Changes produce a new snapshot that shares all untouched parts with
//! the old one: maps are split into shards behind `Arc`s and a patch copies one shard,
//! so a write costs microseconds even at a million credentials and readers never wait.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use compact_str::CompactString;
use lintel_proto::{CredentialKind, CredentialStatus, PassLasts, Reason};
use std::num::NonZeroI64;

use crate::credential::{CredentialKey, Digest, digests_equal};
use crate::schedule::CompiledSchedule;

/// A row's primary key in the store; people's keys also index a dense table here.
pub type Pk = i64;

const SHARDS: usize = 256;
const CHUNK: usize = 4096;

#[derive(Debug, Clone, PartialEq)]
pub struct IndexPerson {
    /// Short ids (up to 24 bytes) are kept inline, without an allocation.
    pub id: CompactString,
    pub suspended: bool,
    /// Opens doors in lockdown too (security staff, first responders).
    pub lockdown_exempt: bool,
    pub skills: Box<[Box<str>]>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IndexCredential {
    pub pk: Pk,
    /// `None` once its person was deleted.
    pub person: Option<Pk>,
    pub kind: CredentialKind,
    pub status: CredentialStatus,
    /// Hash of the revocation code the card must carry (see [`revocation_hash`]); 0 = none.
    pub revocation: u64,
    /// Full digest of a secret, PIN or backup code, compared in constant time.
    pub digest: Option<Box<Digest>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IndexDoor {
    pub pk: Pk,
    pub id: Box<str>,
    pub required_skill: Option<Box<str>>,
    /// In lockdown: it refuses everyone but the people exempt from it.
    pub lockdown: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IndexGroup {
    pub id: Box<str>,
    pub doors: Box<[Pk]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Person(Pk),
    Group(Pk),
}

#[derive(Debug, Clone, PartialEq)]
pub enum DoorSet {
    Doors(Box<[Pk]>),
    Group(Pk),
    /// A group grant without doors: the subject group's own doors.
    SubjectGroup,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IndexGrant {
    pub pk: Pk,
    pub subject: Subject,
    pub doors: DoorSet,
    pub schedule: Option<CompiledSchedule>,
    /// Unix microseconds; `i64::MIN` when open-ended.
    pub valid_from: i64,
    /// Unix microseconds, exclusive; `i64::MAX` when open-ended.
    pub valid_until: i64,
    pub passes: Option<u32>,
    pub passes_used: u32,
    pub pass_lasts: PassLasts,
    /// Unix microseconds, exclusive: the holder is checked in until then and enters
    /// without using a pass; `i64::MIN` when not checked in.
    pub checked_in_until: i64,
}

impl IndexGrant {
    /// Whether the holder is checked in at `micros`: the pass used earlier still covers them.
    pub fn checked_in(&self, micros: i64) -> bool {
        self.passes.is_some() && micros < self.checked_in_until
    }

    /// Until when (Unix microseconds, exclusive) a pass used at `at` checks its holder in;
    /// `i64::MIN` when a pass covers one entry only. Never past the grant's validity.
    pub fn pass_ends(&self, at: DateTime<Utc>) -> i64 {
        let micros = at.timestamp_micros();
        let end = match self.pass_lasts {
            PassLasts::Entry => return i64::MIN,
            PassLasts::Minutes(m) => micros.saturating_add(i64::from(m) * 60_000_000),
            // The span the entry falls in, looked for within a day (a day pass is the
            // longest span; a schedule open around the clock checks in for a day).
            PassLasts::Span => {
                let second = at.timestamp();
                let Some(schedule) = &self.schedule else { return i64::MIN };
                match schedule.open_windows(second, second + 86_400).first() {
                    Some([from, until]) if *from <= second => until.saturating_mul(1_000_000),
                    _ => return i64::MIN,
                }
            }
        };
        end.min(self.valid_until)
    }

    /// Whether an entry at `micros` would use one of this grant's passes.
    fn costs_a_pass(&self, micros: i64) -> bool {
        self.passes.is_some() && !self.checked_in(micros)
    }
}

/// A credential as the index keeps it: [`IndexCredential`] in 40 bytes.
#[derive(Debug, Clone, PartialEq)]
struct StoredCredential {
    pk: Pk,
    person: Option<NonZeroI64>,
    revocation: u64,
    digest: Option<Box<Digest>>,
    kind: CredentialKind,
    status: CredentialStatus,
}

impl From<IndexCredential> for StoredCredential {
    fn from(c: IndexCredential) -> Self {
        Self {
            pk: c.pk,
            person: c.person.and_then(NonZeroI64::new),
            revocation: c.revocation,
            digest: c.digest,
            kind: c.kind,
            status: c.status,
        }
    }
}

/// A person's slot in the dense table: the person and their groups side by side, so a
/// decision finds both in one place.
#[derive(Debug, Clone, Default)]
struct PersonSlot {
    person: Option<IndexPerson>,
    groups: Option<GroupList>,
}

impl PersonSlot {
    fn occupied(self) -> Option<Self> {
        (self.person.is_some() || self.groups.is_some()).then_some(self)
    }
}

/// A person's newest card that carries a revocation code: what a station's `member` ask
/// is checked against. Only holders of such cards have one, so people without them cost
/// nothing. Its code is the person's *current* one: every older card's code stops working
/// for stations when a newer card is issued, and when this card is revoked the person has
/// no current code until the next card (an older card never comes back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MemberCard {
    person: Pk,
    credential: Pk,
    /// [`revocation_hash`] of the card's code (never 0: only cards with a code count).
    revocation: u64,
    active: bool,
}

impl MemberCard {
    /// The card a credential is, if it is one that carries a revocation code.
    fn of(cred: &IndexCredential) -> Option<(Pk, Self)> {
        let person = cred.person?;
        (cred.kind == CredentialKind::Card && cred.revocation != 0).then_some((
            person,
            Self {
                person,
                credential: cred.pk,
                revocation: cred.revocation,
                active: cred.status == CredentialStatus::Active,
            },
        ))
    }

    /// The newest card wins, whatever its status (see the type's documentation).
    fn supersedes(&self, other: &Self) -> bool {
        other.person != self.person || self.credential >= other.credential
    }
}

/// Stations name people by id; the member-card table is keyed by a 64-bit hash of the id
/// (8 bytes instead of the id itself) and every hit is checked against the person's id.
fn person_id_hash(id: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

/// The hash kept for a revocation code: codes are not secret, so a 64-bit SipHash (with
/// fixed keys) saves memory; finding another code with the same hash would take about
/// 2^64 tries, and knowing the current code is needed to aim at it.
pub fn revocation_hash(code: Option<&str>) -> u64 {
    match code {
        None => 0,
        Some(code) => {
            let mut h = std::hash::DefaultHasher::new();
            code.hash(&mut h);
            h.finish() | 1
        }
    }
}

/// One change to apply to a snapshot, read back from the store after it committed.
#[derive(Debug, Clone)]
pub enum Change {
    Person(Pk, Option<IndexPerson>),
    Credential(CredentialKey, IndexCredential),
    Door(Pk, Option<IndexDoor>),
    Group(Pk, Option<IndexGroup>),
    Membership {
        group: Pk,
        person: Pk,
        member: bool,
    },
    Grant(Pk, Option<IndexGrant>),
    /// Passes used up by entries, and the check-in the last one opened (`i64::MIN`: none).
    PassesUsed {
        grant: Pk,
        used: u32,
        checked_in_until: i64,
    },
}

/// A grant whose pass an allowed decision would use, and until when that checks the
/// holder in (`i64::MIN`: one entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassGrant {
    pub grant: Pk,
    pub checked_in_until: i64,
}

/// What an allowed decision uses up; the store applies it atomically with its event, and
/// turns the decision into a denial if someone else used it up first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Consume {
    /// One pass of the decision's grant.
    pub pass: bool,
    /// The decision's credential, a single-use backup code.
    pub backup_code: bool,
}

/// A station's question: the person and revocation code written on its card.
#[derive(Debug, Clone, Copy)]
pub struct MemberQuery<'a> {
    pub door: &'a str,
    pub person_id: &'a str,
    pub revocation_code: &'a str,
    pub at: DateTime<Utc>,
}

/// The question, with the credential already turned into its key.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    pub door: &'a str,
    pub key: CredentialKey,
    /// For secrets, PINs and backup codes: the full digest to compare.
    pub digest: Option<&'a Digest>,
    pub revocation_code: Option<&'a str>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub reason: Reason,
    pub detail: Cow<'static, str>,
    pub door: Option<Pk>,
    pub credential: Option<Pk>,
    pub person: Option<Pk>,
    pub grant: Option<Pk>,
    pub consume: Consume,
    /// When `consume.pass`: the chosen grant, then the other pass grants that allow entry
    /// now, in order of preference (the store falls back on them when the chosen grant's
    /// last pass went meanwhile).
    pub pass_grants: Vec<PassGrant>,
    /// Set when the entry uses no pass because the holder is checked in until then
    /// (Unix microseconds).
    pub checked_in_until: Option<i64>,
}

impl Decision {
    pub fn allowed(&self) -> bool {
        self.reason == Reason::Granted
    }

    /// This decision, turned into a denial because the system that knows the member has
    /// no such member (`detail` says which system).
    pub fn unknown_member(mut self, detail: &'static str) -> Self {
        self.reason = Reason::UnknownMember;
        self.detail = detail.into();
        self.grant = None;
        self.consume = Consume::default();
        self.pass_grants.clear();
        self.checked_in_until = None;
        self
    }

    /// An allowed decision whose member source cannot vouch for the member any more (down,
    /// and what lintel has is too old) becomes `reason`; a denial stays what it is.
    pub fn unvouched(mut self, reason: Reason, detail: String) -> Self {
        if self.reason == Reason::Granted {
            self.reason = reason;
            self.detail = detail.into();
            self.grant = None;
            self.consume = Consume::default();
            self.pass_grants.clear();
            self.checked_in_until = None;
        }
        self
    }

    fn deny(reason: Reason, detail: impl Into<Cow<'static, str>>) -> Self {
        Self {
            reason,
            detail: detail.into(),
            door: None,
            credential: None,
            person: None,
            grant: None,
            consume: Consume::default(),
            pass_grants: Vec::new(),
            checked_in_until: None,
        }
    }
}

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// How a key picks its shard: cheap, and independent of the maps' own hashing.
trait ShardKey {
    fn shard(&self) -> usize;
}

fn mix(x: u64) -> usize {
    (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as usize % SHARDS
}

impl ShardKey for CredentialKey {
    fn shard(&self) -> usize {
        let v = u128::from_le_bytes(self.bytes());
        mix((v as u64) ^ ((v >> 64) as u64))
    }
}

impl ShardKey for Pk {
    fn shard(&self) -> usize {
        mix(*self as u64)
    }
}

impl ShardKey for u64 {
    fn shard(&self) -> usize {
        mix(*self)
    }
}

/// A map split into shards that are shared between snapshots until written.
#[derive(Clone)]
struct Sharded<K, V> {
    shards: Arc<[Arc<FastMap<K, V>>]>,
}

impl<K: ShardKey + Hash + Eq + Clone, V: Clone> Sharded<K, V> {
    fn new() -> Self {
        Self::from_shards((0..SHARDS).map(|_| FastMap::default()).collect())
    }

    fn from_shards(shards: Vec<FastMap<K, V>>) -> Self {
        Self {
            shards: shards
                .into_iter()
                .map(|mut s| {
                    s.shrink_to_fit();
                    Arc::new(s)
                })
                .collect(),
        }
    }

    fn get(&self, key: &K) -> Option<&V> {
        self.shards[key.shard()].get(key)
    }

    fn shard_mut(&mut self, key: &K) -> &mut FastMap<K, V> {
        let shards = Arc::make_mut(&mut self.shards);
        Arc::make_mut(&mut shards[key.shard()])
    }

    fn insert(&mut self, key: K, value: V) {
        self.shard_mut(&key).insert(key, value);
    }

    fn remove(&mut self, key: &K) {
        if self.get(key).is_some() {
            self.shard_mut(key).remove(key);
        }
    }

    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.len()).sum()
    }

    fn values(&self) -> impl Iterator<Item = &V> {
        self.shards.iter().flat_map(|s| s.values())
    }

    fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.shards.iter().flat_map(|s| s.iter())
    }
}

/// A dense table indexed by primary key, in chunks shared between snapshots.
#[derive(Clone)]
struct Chunked<T> {
    /// `Arc<[_]>` rather than `Arc<Vec<_>>`: one pointer less to follow per look-up.
    chunks: Vec<Arc<[Option<T>]>>,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Self { chunks: Vec::new() }
    }
}

impl<T: Clone> Chunked<T> {
    fn get(&self, pk: Pk) -> Option<&T> {
        let i = usize::try_from(pk).ok()?;
        self.chunks.get(i / CHUNK)?.get(i % CHUNK)?.as_ref()
    }

    fn set(&mut self, pk: Pk, value: Option<T>) {
        let Ok(i) = usize::try_from(pk) else { return };
        while self.chunks.len() <= i / CHUNK {
            self.chunks.push(std::iter::repeat_n(None, CHUNK).collect());
        }
        Arc::make_mut(&mut self.chunks[i / CHUNK])[i % CHUNK] = value;
    }

    fn count(&self, counts: impl Fn(&T) -> bool) -> usize {
        self.chunks.iter().map(|c| c.iter().flatten().filter(|v| counts(v)).count()).sum()
    }
}

/// The groups of one person: most people are in one to three, kept inline.
#[derive(Debug, Clone, PartialEq, Eq)]
enum GroupList {
    Few {
        len: u8,
        groups: [u32; 3],
    },
    // A thin pointer keeps the whole list at 16 bytes per person.
    #[allow(clippy::box_collection)]
    Many(Box<Vec<Pk>>),
}

impl GroupList {
    fn iter(&self) -> impl Iterator<Item = Pk> + '_ {
        let (few, many): (&[u32], &[Pk]) = match self {
            Self::Few { len, groups } => (&groups[..*len as usize], &[]),
            Self::Many(v) => (&[], v),
        };
        few.iter().map(|g| Pk::from(*g)).chain(many.iter().copied())
    }

    fn from_iter(groups: impl IntoIterator<Item = Pk>) -> Option<Self> {
        let mut all: Vec<Pk> = groups.into_iter().collect();
        all.sort_unstable();
        all.dedup();
        if all.is_empty() {
            return None;
        }
        if all.len() <= 3 && all.iter().all(|g| u32::try_from(*g).is_ok()) {
            let mut groups = [0u32; 3];
            for (slot, g) in groups.iter_mut().zip(&all) {
                *slot = *g as u32;
            }
            Some(Self::Few { len: all.len() as u8, groups })
        } else {
            Some(Self::Many(Box::new(all)))
        }
    }
}

/// Group grants by (door, group).
type GroupGrants = FastMap<(Pk, Pk), Box<[Arc<IndexGrant>]>>;

/// The snapshot. Cheap to clone (shards are shared); build it with [`IndexBuilder`].
#[derive(Clone)]
pub struct Index {
    doors_by_id: Arc<FastMap<Box<str>, IndexDoor>>,
    groups: Arc<FastMap<Pk, IndexGroup>>,
    /// Grants whose subject is a group, by (door, group) (derived, rebuilt on change).
    group_grants: Arc<GroupGrants>,
    people: Chunked<PersonSlot>,
    credentials: Sharded<CredentialKey, StoredCredential>,
    grants: Sharded<Pk, Arc<IndexGrant>>,
    person_grants: Sharded<Pk, Box<[Pk]>>,
    /// By [`person_id_hash`] of the holder's id.
    member_cards: Sharded<u64, MemberCard>,
}

impl Default for Index {
    fn default() -> Self {
        Self {
            doors_by_id: Default::default(),
            groups: Default::default(),
            group_grants: Default::default(),
            people: Default::default(),
            credentials: Sharded::new(),
            grants: Sharded::new(),
            person_grants: Sharded::new(),
            member_cards: Sharded::new(),
        }
    }
}

/// Sizes of a snapshot, for `/metrics` and the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexStats {
    pub people: usize,
    pub credentials: usize,
    pub doors: usize,
    pub groups: usize,
    pub grants: usize,
}

/// Collects a whole snapshot at once (start-up, full reloads), sizing every map exactly.
pub struct IndexBuilder {
    people: Vec<(Pk, IndexPerson)>,
    credentials: Vec<FastMap<CredentialKey, StoredCredential>>,
    doors: Vec<IndexDoor>,
    groups: FastMap<Pk, IndexGroup>,
    memberships: FastMap<Pk, Vec<Pk>>,
    grants: Vec<IndexGrant>,
    /// By person key until the people's ids are known.
    member_cards: FastMap<Pk, MemberCard>,
}

impl Default for IndexBuilder {
    fn default() -> Self {
        Self {
            people: Vec::new(),
            credentials: (0..SHARDS).map(|_| FastMap::default()).collect(),
            doors: Vec::new(),
            groups: FastMap::default(),
            memberships: FastMap::default(),
            grants: Vec::new(),
            member_cards: FastMap::default(),
        }
    }
}

impl IndexBuilder {
    pub fn person(&mut self, pk: Pk, person: IndexPerson) {
        self.people.push((pk, person));
    }

    pub fn credential(&mut self, key: CredentialKey, credential: IndexCredential) {
        if let Some((person, card)) = MemberCard::of(&credential) {
            let slot = self.member_cards.entry(person).or_insert(card);
            if card.supersedes(slot) {
                *slot = card;
            }
        }
        upsert_credential(&mut self.credentials[key.shard()], key, credential.into());
    }

    pub fn door(&mut self, door: IndexDoor) {
        self.doors.push(door);
    }

    pub fn group(&mut self, pk: Pk, group: IndexGroup) {
        self.groups.insert(pk, group);
    }

    pub fn member(&mut self, group: Pk, person: Pk) {
        self.memberships.entry(person).or_default().push(group);
    }

    pub fn grant(&mut self, grant: IndexGrant) {
        self.grants.push(grant);
    }

    pub fn build(self) -> Index {
        let mut memberships = self.memberships;
        let mut people = Chunked::default();
        for (pk, person) in self.people {
            let groups = memberships.remove(&pk).and_then(GroupList::from_iter);
            people.set(pk, PersonSlot { person: Some(person), groups }.occupied());
        }
        for (pk, groups) in memberships {
            people.set(pk, PersonSlot { person: None, groups: GroupList::from_iter(groups) }.occupied());
        }
        let mut index = Index {
            doors_by_id: Arc::new(self.doors.into_iter().map(|d| (d.id.clone(), d)).collect()),
            groups: Arc::new(self.groups),
            group_grants: Default::default(),
            people,
            credentials: Sharded::from_shards(self.credentials),
            grants: Sharded::new(),
            person_grants: Sharded::new(),
            member_cards: Sharded::new(),
        };
        for (person, card) in self.member_cards {
            if let Some(p) = index.person(person) {
                index.member_cards.insert(person_id_hash(&p.id), card);
            }
        }
        for grant in self.grants {
            index.put_grant(grant);
        }
        index.derive_group_grants();
        index
    }
}

/// Two credentials may share a key (a revoked card and its re-issued successor): the
/// active one wins, so a revoked row never shadows a live card.
fn upsert_credential(
    map: &mut FastMap<CredentialKey, StoredCredential>,
    key: CredentialKey,
    credential: StoredCredential,
) {
    match map.get(&key) {
        Some(existing)
            if existing.pk != credential.pk
                && existing.status == CredentialStatus::Active
                && credential.status != CredentialStatus::Active => {}
        _ => {
            map.insert(key, credential);
        }
    }
}

/// Why a decision is denied when every pass of its grant is used (also when the commit
/// finds the last one gone meanwhile).
pub const NO_PASSES_LEFT: &str = "every pass of the grant has been used";

/// Why a backup code is refused once used (also when the commit finds it used meanwhile).
pub const BACKUP_CODE_USED: &str = "the backup code has already been used";

const ANY_GRANT_FAILURE: [Reason; 4] =
    [Reason::NoPassesLeft, Reason::OutsideSchedule, Reason::NotYetValid, Reason::Expired];

/// When no grant allows entry, the answer names the failure closest to success.
fn failure_rank(reason: Reason) -> usize {
    ANY_GRANT_FAILURE.len() - ANY_GRANT_FAILURE.iter().position(|r| *r == reason).unwrap_or(ANY_GRANT_FAILURE.len())
}

fn failure_detail(reason: Reason) -> &'static str {
    match reason {
        Reason::NoPassesLeft => NO_PASSES_LEFT,
        Reason::OutsideSchedule => "the grant's schedule does not include this time",
        Reason::NotYetValid => "the grant is not valid yet",
        Reason::Expired => "the grant has expired",
        _ => "no grant covers this door",
    }
}

/// Checks one grant at one moment: validity first, then a check-in still running (it
/// lasts its pass's time, schedule or not), then schedule, then passes.
pub fn grant_allows(grant: &IndexGrant, at: DateTime<Utc>) -> Result<(), Reason> {
    let micros = at.timestamp_micros();
    if micros < grant.valid_from {
        Err(Reason::NotYetValid)
    } else if micros >= grant.valid_until {
        Err(Reason::Expired)
    } else if grant.checked_in(micros) {
        Ok(())
    } else if grant.schedule.as_ref().is_some_and(|s| !s.contains(at)) {
        Err(Reason::OutsideSchedule)
    } else if grant.passes.is_some_and(|p| grant.passes_used >= p) {
        Err(Reason::NoPassesLeft)
    } else {
        Ok(())
    }
}

impl Index {
    pub fn stats(&self) -> IndexStats {
        IndexStats {
            people: self.people.count(|slot| slot.person.is_some()),
            credentials: self.credentials.len(),
            doors: self.doors_by_id.len(),
            groups: self.groups.len(),
            grants: self.grants.len(),
        }
    }

    pub fn door(&self, id: &str) -> Option<&IndexDoor> {
        self.doors_by_id.get(id)
    }

    pub fn person(&self, pk: Pk) -> Option<&IndexPerson> {
        self.people.get(pk).and_then(|slot| slot.person.as_ref())
    }

    pub fn grant(&self, pk: Pk) -> Option<&IndexGrant> {
        self.grants.get(&pk).map(|g| &**g)
    }

    /// The person holding this active personal secret, unless suspended: users sign in
    /// with it to manage their keys, outside of any door.
    pub fn secret_holder(&self, key: &CredentialKey, digest: &Digest) -> Option<Pk> {
        let cred = self.credentials.get(key)?;
        let matches = cred.digest.as_ref().is_some_and(|stored| digests_equal(stored, digest));
        if !matches || cred.kind != CredentialKind::Secret || cred.status != CredentialStatus::Active {
            return None;
        }
        let pk = cred.person.map(NonZeroI64::get)?;
        self.person(pk).filter(|p| !p.suspended).map(|_| pk)
    }

    /// May this credential open this door at this moment? Pure: the caller records the
    /// decision and applies its `consume`.
    pub fn decide(&self, q: &Query<'_>) -> Decision {
        let Some(door) = self.doors_by_id.get(q.door) else {
            return Decision::deny(Reason::UnknownDoor, "no door has this id");
        };
        let mut d = self.decide_at_door(door, q);
        d.door = Some(door.pk);
        d
    }

    fn decide_at_door(&self, door: &IndexDoor, q: &Query<'_>) -> Decision {
        let Some(cred) = self.credentials.get(&q.key) else {
            return Decision::deny(Reason::UnknownCredential, "no credential matches");
        };
        // A credential kept by digest matches only with that very digest.
        if let Some(stored) = &cred.digest
            && !q.digest.is_some_and(|given| digests_equal(stored, given))
        {
            return Decision::deny(Reason::UnknownCredential, "no credential matches");
        }
        let mut d = Decision::deny(Reason::CredentialRevoked, "");
        d.credential = Some(cred.pk);
        d.person = cred.person.map(NonZeroI64::get);
        match cred.status {
            CredentialStatus::Active => {}
            CredentialStatus::Revoked => {
                d.detail = "the credential has been revoked".into();
                return d;
            }
            CredentialStatus::Used => {
                d.detail = BACKUP_CODE_USED.into();
                return d;
            }
        }
        if cred.kind == CredentialKind::Card
            && cred.revocation != 0
            && revocation_hash(q.revocation_code) != cred.revocation
        {
            d.reason = Reason::RevokedCard;
            d.detail = "the card's revocation code is not the current one".into();
            return d;
        }
        let Some(person_pk) = cred.person.map(NonZeroI64::get) else {
            d.detail = "the credential's person was deleted".into();
            return d;
        };
        self.decide_person_at_door(d, door, person_pk, q.at, cred.kind == CredentialKind::BackupCode)
    }

    /// May the person a station's card names check in at this door (or use this tool)?
    /// Unknown person, then suspended, then the card's revocation code against the
    /// person's current one, then skill and grants as for any credential. Pure, like
    /// [`Self::decide`]; the decision names the person's current card.
    pub fn decide_member(&self, q: &MemberQuery<'_>) -> Decision {
        let Some(door) = self.doors_by_id.get(q.door) else {
            return Decision::deny(Reason::UnknownDoor, "no door has this id");
        };
        let card = self
            .member_cards
            .get(&person_id_hash(q.person_id))
            .filter(|card| self.person(card.person).is_some_and(|p| p.id == q.person_id));
        let Some(card) = card else {
            let mut d = Decision::deny(Reason::UnknownMember, "nobody with this id holds a card");
            d.door = Some(door.pk);
            return d;
        };
        let mut d = Decision::deny(Reason::PersonSuspended, "the person is suspended");
        d.door = Some(door.pk);
        d.person = Some(card.person);
        d.credential = Some(card.credential);
        if self.person(card.person).is_some_and(|p| p.suspended) {
            return d;
        }
        if revocation_hash(Some(q.revocation_code)) != card.revocation {
            d.reason = Reason::RevokedCard;
            d.detail = "the card's revocation code is not the person's current one".into();
            return d;
        }
        if !card.active {
            d.reason = Reason::CredentialRevoked;
            d.detail = "the person's current card has been revoked".into();
            return d;
        }
        self.decide_person_at_door(d, door, card.person, q.at, false)
    }

    /// May this person open this door at this moment, on their own authority rather than
    /// a presented credential (a button in chat, a signed operation)? Pure, like [`Self::decide`].
    pub fn decide_for_person(&self, door: &str, person: Pk, at: DateTime<Utc>) -> Decision {
        let Some(door) = self.doors_by_id.get(door) else {
            return Decision::deny(Reason::UnknownDoor, "no door has this id");
        };
        let mut d = Decision::deny(Reason::UnknownCredential, "no such person");
        d.door = Some(door.pk);
        if self.person(person).is_none() {
            return d;
        }
        d.person = Some(person);
        self.decide_person_at_door(d, door, person, at, false)
    }

    /// The checks after the credential: the person, the door's skill, then the grants.
    /// `d` arrives as a denial naming the credential and person.
    fn decide_person_at_door(
        &self,
        mut d: Decision,
        door: &IndexDoor,
        person_pk: Pk,
        at: DateTime<Utc>,
        backup_code: bool,
    ) -> Decision {
        let slot = self.people.get(person_pk);
        let Some(person) = slot.and_then(|s| s.person.as_ref()) else {
            d.reason = Reason::CredentialRevoked;
            d.detail = "the credential's person was deleted".into();
            return d;
        };
        if person.suspended {
            d.reason = Reason::PersonSuspended;
            d.detail = "the person is suspended".into();
            return d;
        }
        if door.lockdown && !person.lockdown_exempt {
            d.reason = Reason::Lockdown;
            d.detail = "the door is in lockdown".into();
            return d;
        }
        if let Some(skill) = &door.required_skill
            && !person.skills.iter().any(|s| s == skill)
        {
            d.reason = Reason::MissingSkill;
            d.detail = format!("this door needs the skill {skill:?}").into();
            return d;
        }
        let mut best = Best { at: at.timestamp_micros(), ..Best::default() };
        if let Some(pks) = self.person_grants.get(&person_pk) {
            for grant in pks.iter().filter_map(|pk| self.grants.get(pk)) {
                if self.covers(grant, door.pk) {
                    best.consider(grant, at);
                }
            }
        }
        if let Some(groups) = slot.and_then(|s| s.groups.as_ref()) {
            for group in groups.iter() {
                for grant in self.group_grants.get(&(door.pk, group)).into_iter().flatten() {
                    best.consider(grant, at);
                }
            }
        }
        let Best { allowed: best_allowed, mut with_passes, failure: best_failure, at: micros } = best;
        match (best_allowed, best_failure) {
            (Some(grant), _) => {
                d.reason = Reason::Granted;
                d.detail = "a grant allows entry now".into();
                d.grant = Some(grant.pk);
                let pass = grant.costs_a_pass(micros);
                d.consume = Consume { pass, backup_code };
                if pass {
                    with_passes.sort_by_key(|g| preference(g, micros));
                    d.pass_grants = with_passes
                        .iter()
                        .map(|g| PassGrant { grant: g.pk, checked_in_until: g.pass_ends(at) })
                        .collect();
                } else if grant.checked_in(micros) {
                    d.detail = "checked in with a pass used earlier".into();
                    d.checked_in_until = Some(grant.checked_in_until);
                }
            }
            (None, Some(reason)) => {
                d.reason = reason;
                d.detail = failure_detail(reason).into();
            }
            (None, None) => {
                d.reason = Reason::NoGrant;
                d.detail = failure_detail(Reason::NoGrant).into();
            }
        }
        d
    }

    fn covers(&self, grant: &IndexGrant, door: Pk) -> bool {
        match &grant.doors {
            DoorSet::Doors(doors) => doors.contains(&door),
            DoorSet::Group(g) => self.groups.get(g).is_some_and(|g| g.doors.contains(&door)),
            DoorSet::SubjectGroup => match grant.subject {
                Subject::Group(g) => self.groups.get(&g).is_some_and(|g| g.doors.contains(&door)),
                Subject::Person(_) => false,
            },
        }
    }

    /// Applies committed changes, returning the next snapshot; `self` stays untouched.
    pub fn apply(&self, changes: &[Change]) -> Index {
        let mut next = self.clone();
        let mut group_grants_changed = false;
        for change in changes {
            match change {
                Change::Person(pk, person) => {
                    if person.is_none() {
                        next.forget_member_card(*pk);
                    }
                    let groups = next.people.get(*pk).and_then(|slot| slot.groups.clone());
                    next.people.set(*pk, PersonSlot { person: person.clone(), groups }.occupied());
                }
                Change::Credential(key, cred) => {
                    next.note_member_card(cred);
                    upsert_credential(next.credentials.shard_mut(key), *key, cred.clone().into())
                }
                Change::Door(pk, door) => {
                    let doors = Arc::make_mut(&mut next.doors_by_id);
                    doors.retain(|_, d| d.pk != *pk);
                    if let Some(door) = door {
                        doors.insert(door.id.clone(), door.clone());
                    }
                    group_grants_changed = true;
                }
                Change::Group(pk, group) => {
                    let groups = Arc::make_mut(&mut next.groups);
                    match group {
                        Some(group) => {
                            groups.insert(*pk, group.clone());
                        }
                        None => {
                            groups.remove(pk);
                            next.forget_group(*pk);
                        }
                    }
                    group_grants_changed = true;
                }
                Change::Membership { group, person, member } => {
                    let mut slot = next.people.get(*person).cloned().unwrap_or_default();
                    let current: Vec<Pk> = slot.groups.iter().flat_map(|g| g.iter()).collect();
                    let updated = current.into_iter().filter(|g| g != group).chain(member.then_some(*group));
                    slot.groups = GroupList::from_iter(updated);
                    next.people.set(*person, slot.occupied());
                }
                Change::Grant(pk, grant) => {
                    if let Some(old) = next.grants.get(pk).cloned() {
                        group_grants_changed |= matches!(old.subject, Subject::Group(_));
                        next.drop_grant(&old);
                    }
                    if let Some(grant) = grant {
                        group_grants_changed |= matches!(grant.subject, Subject::Group(_));
                        next.put_grant(grant.clone());
                    }
                }
                Change::PassesUsed { grant, used, checked_in_until } => {
                    if let Some(old) = next.grants.get(grant) {
                        // Passes only ever get used up: a late, older read never gives one back.
                        if *used > old.passes_used {
                            let mut g = (**old).clone();
                            g.passes_used = *used;
                            g.checked_in_until = g.checked_in_until.max(*checked_in_until);
                            group_grants_changed |= matches!(g.subject, Subject::Group(_));
                            next.grants.insert(*grant, Arc::new(g));
                        }
                    }
                }
            }
        }
        if group_grants_changed {
            next.derive_group_grants();
        }
        next
    }

    fn note_member_card(&mut self, cred: &IndexCredential) {
        let Some((person, card)) = MemberCard::of(cred) else { return };
        let Some(id) = self.person(person).map(|p| person_id_hash(&p.id)) else { return };
        if self.member_cards.get(&id).is_none_or(|old| card.supersedes(old)) {
            self.member_cards.insert(id, card);
        }
    }

    fn forget_member_card(&mut self, person: Pk) {
        let Some(id) = self.person(person).map(|p| person_id_hash(&p.id)) else { return };
        if self.member_cards.get(&id).is_some_and(|card| card.person == person) {
            self.member_cards.remove(&id);
        }
    }

    fn put_grant(&mut self, grant: IndexGrant) {
        if let Subject::Person(p) = grant.subject {
            let list = self.person_grants.get(&p).map(|l| l.to_vec()).unwrap_or_default();
            let mut list: Vec<Pk> = list.into_iter().filter(|g| *g != grant.pk).collect();
            list.push(grant.pk);
            self.person_grants.insert(p, list.into_boxed_slice());
        }
        self.grants.insert(grant.pk, Arc::new(grant));
    }

    fn drop_grant(&mut self, grant: &IndexGrant) {
        if let Subject::Person(p) = grant.subject
            && let Some(list) = self.person_grants.get(&p)
        {
            let rest: Vec<Pk> = list.iter().copied().filter(|g| *g != grant.pk).collect();
            if rest.is_empty() {
                self.person_grants.remove(&p);
            } else {
                self.person_grants.insert(p, rest.into_boxed_slice());
            }
        }
        self.grants.remove(&grant.pk);
    }

    /// What the store's cascade does when a group is deleted: its memberships and the
    /// grants of or to it go with it (a rare path: the server reloads instead).
    fn forget_group(&mut self, group: Pk) {
        let doomed: Vec<Arc<IndexGrant>> = self
            .grants
            .values()
            .filter(|g| g.subject == Subject::Group(group) || g.doors == DoorSet::Group(group))
            .cloned()
            .collect();
        for grant in doomed {
            self.drop_grant(&grant);
        }
        let member = |slot: &PersonSlot| slot.groups.as_ref().is_some_and(|l| l.iter().any(|g| g == group));
        for chunk in &mut self.people.chunks {
            if chunk.iter().flatten().any(member) {
                for entry in Arc::make_mut(chunk).iter_mut() {
                    if let Some(slot) = entry.take() {
                        let groups =
                            slot.groups.as_ref().and_then(|l| GroupList::from_iter(l.iter().filter(|g| *g != group)));
                        *entry = PersonSlot { person: slot.person, groups }.occupied();
                    }
                }
            }
        }
    }

    fn derive_group_grants(&mut self) {
        let mut by_door: FastMap<(Pk, Pk), Vec<Arc<IndexGrant>>> = FastMap::default();
        for grant in self.grants.values() {
            let Subject::Group(subject) = grant.subject else { continue };
            let doors: &[Pk] = match &grant.doors {
                DoorSet::Doors(d) => d,
                DoorSet::Group(g) => self.groups.get(g).map(|g| &*g.doors).unwrap_or(&[]),
                DoorSet::SubjectGroup => self.groups.get(&subject).map(|g| &*g.doors).unwrap_or(&[]),
            };
            for door in doors {
                by_door.entry((*door, subject)).or_default().push(grant.clone());
            }
        }
        self.group_grants = Arc::new(
            by_door
                .into_iter()
                .map(|(k, mut g)| {
                    g.sort_unstable_by_key(|g| g.pk);
                    (k, g.into_boxed_slice())
                })
                .collect(),
        );
    }
}

/// The best grant seen so far, or the failure closest to success.
#[derive(Default)]
struct Best<'a> {
    allowed: Option<&'a IndexGrant>,
    /// Every allowing grant that would use a pass (rarely more than one).
    with_passes: Vec<&'a IndexGrant>,
    failure: Option<Reason>,
    /// The moment asked about, in Unix microseconds.
    at: i64,
}

impl<'a> Best<'a> {
    fn consider(&mut self, grant: &'a IndexGrant, at: DateTime<Utc>) {
        match grant_allows(grant, at) {
            Ok(()) => {
                if self.allowed.is_none_or(|b| preference(grant, self.at) < preference(b, self.at)) {
                    self.allowed = Some(grant);
                }
                if grant.costs_a_pass(self.at) {
                    self.with_passes.push(grant);
                }
            }
            Err(r) => {
                if self.failure.is_none_or(|b| failure_rank(r) > failure_rank(b)) {
                    self.failure = Some(r);
                }
            }
        }
    }
}

/// Among grants that allow entry, spend nothing when possible: unlimited grants and
/// check-ins still running first, then the pass grant that expires first; ties go to the
/// oldest grant.
fn preference(g: &IndexGrant, at: i64) -> (bool, i64, Pk) {
    (g.costs_a_pass(at), g.valid_until, g.pk)
}

mod offline;
pub use offline::{CardRights, CodeRights, OfflineDoors};

#[cfg(test)]
mod tests;
