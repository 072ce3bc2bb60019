//! The offline allow-list of an MQTT door controller: what it may decide on its own while
//! it cannot reach lintel (cards, and backup codes typed at its keypad), and how it
//! decides. lintel builds the list here, signs it (`lintel-signed`), and the controller
//! (`lintel controller-sim` is the reference) verifies it and decides with
//! [`InstalledList`].
//!
//! Schedules and validity windows become plain `[from, until)` intervals in Unix seconds,
//! expanded by lintel up to the moment the list lapses: a controller needs a clock, but
//! no time-zone database and no schedule logic, and it cannot get summer time wrong. The
//! intervals come from [`crate::CompiledSchedule::open_windows`], which walks the schedule from
//! one change to the next by the same rule online decisions use.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use lintel_proto::controller::{AllowList, ListZone, OfflineCard, OfflineCode, OfflineDoor};
use lintel_proto::{FailMode, Reason};
use sha2::{Digest as _, Sha256};

use crate::Digest;
use crate::credential::backup_code_digest;
use crate::index::{CardRights, CodeRights, IndexGrant, Pk};

/// One of the controller's doors, with what the list needs to know of it.
#[derive(Debug, Clone)]
pub struct ListDoor {
    pub id: String,
    pub fail_mode: FailMode,
    pub open_seconds: u32,
    /// How long after `issued_at` the list holds for this door.
    pub max_age_seconds: i64,
    pub zone: Option<ListZone>,
}

/// Everything a list is made of; the caller gathers it (the snapshot's [`CardRights`],
/// the revocation codes from the store) and supplies randomness and the clock.
pub struct ListInput<'a> {
    pub controller: &'a str,
    pub version: u64,
    pub issued_at: i64,
    pub salt: [u8; 16],
    pub doors: &'a [ListDoor],
    pub cards: &'a [CardRights],
    /// Revocation codes of the cards that carry one, by credential.
    pub revocation_codes: &'a HashMap<i64, String>,
    /// The unused backup codes that open one of the doors (the snapshot's [`CodeRights`]).
    pub codes: &'a [CodeRights],
    /// How a credential is named outside lintel (`c-17`): an upload names a used code so.
    pub credential_id: fn(Pk) -> String,
}

pub fn card_hash(salt: &[u8], uid: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(uid);
    hex::encode(h.finalize())
}

pub fn revocation_code_hash(salt: &[u8], code: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(b"revocation:");
    h.update(code.as_bytes());
    hex::encode(h.finalize())
}

/// A backup code in a list: keyed by the digest lintel keeps (never the code), salted per
/// controller like the cards, and tagged so that it can never equal a card's hash.
pub fn backup_code_hash(salt: &[u8], digest: &Digest) -> String {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(b"backup-code:");
    h.update(digest);
    hex::encode(h.finalize())
}

/// How finely a list's horizon moves: a quarter of the shortest `max_age_seconds`, between
/// a minute and an hour. Lists made within one such period have the same content.
pub fn period(doors: &[ListDoor]) -> i64 {
    (doors.iter().map(|d| d.max_age_seconds).min().unwrap_or(3600) / 4).clamp(60, 3600)
}

/// Builds the list. Its windows start at the beginning of the current [`period`], and each
/// door's list lapses `max_age_seconds` after that (so between one period early and on
/// time): a list made again within the period has the same content.
pub fn build_list(input: &ListInput<'_>) -> AllowList {
    let period = period(input.doors);
    let start = input.issued_at - input.issued_at.rem_euclid(period);
    let lapses: Vec<i64> = input.doors.iter().map(|d| start + d.max_age_seconds.max(period)).collect();
    let end = lapses.iter().copied().max().unwrap_or(start);
    let mut windows = Windows { start, end, lapses: &lapses, doors: input.doors, ..Windows::default() };
    let mut cards = Vec::with_capacity(input.cards.len());
    for card in input.cards {
        let doors = windows.doors_of(&card.doors);
        if doors.is_empty() {
            continue;
        }
        let revocation = match (card.has_revocation_code, input.revocation_codes.get(&card.credential)) {
            (false, _) => None,
            (true, Some(code)) => Some(revocation_code_hash(&input.salt, code)),
            // The store and the snapshot disagree (a write in between): leave the card
            // out rather than let it in without its code.
            (true, None) => continue,
        };
        cards.push(OfflineCard { hash: card_hash(&input.salt, &card.uid), revocation, doors });
    }
    cards.sort_by(|a, b| a.hash.cmp(&b.hash));
    let mut codes: Vec<OfflineCode> = input
        .codes
        .iter()
        .filter_map(|code| {
            let doors = windows.doors_of(&code.doors);
            (!doors.is_empty()).then(|| OfflineCode {
                hash: backup_code_hash(&input.salt, &code.digest),
                credential: (input.credential_id)(code.credential),
                doors,
            })
        })
        .collect();
    codes.sort_by(|a, b| a.hash.cmp(&b.hash));
    AllowList {
        controller: input.controller.to_owned(),
        version: input.version,
        issued_at: input.issued_at,
        salt: hex::encode(input.salt),
        doors: input
            .doors
            .iter()
            .zip(&lapses)
            .map(|(d, lapses_at)| {
                (
                    d.id.clone(),
                    OfflineDoor {
                        lapses_at: *lapses_at,
                        fail_mode: d.fail_mode,
                        open_seconds: d.open_seconds,
                        zone: d.zone.clone(),
                    },
                )
            })
            .collect(),
        windows: windows.sets,
        cards,
        codes,
    }
}

/// The window sets of a list as it is built: each grant's windows worked out once, and
/// each distinct set stored once (cards and codes refer to them by index).
#[derive(Default)]
struct Windows<'a> {
    start: i64,
    end: i64,
    /// When each door's part of the list lapses, by position.
    lapses: &'a [i64],
    doors: &'a [ListDoor],
    by_grant: HashMap<i64, Vec<[i64; 2]>>,
    sets: Vec<Vec<[i64; 2]>>,
    set_index: HashMap<Vec<[i64; 2]>, usize>,
}

impl Windows<'_> {
    /// Door id -> window set, for a credential's grants per door (by position); doors
    /// whose grants leave no window before the list lapses are left out.
    fn doors_of(&mut self, rights: &[(usize, Vec<Arc<IndexGrant>>)]) -> BTreeMap<String, usize> {
        let mut doors = BTreeMap::new();
        for (position, grants) in rights {
            let Some(door) = self.doors.get(*position) else { continue };
            let mut union = Vec::new();
            for grant in grants {
                let (start, end) = (self.start, self.end);
                let w = self.by_grant.entry(grant.pk).or_insert_with(|| windows(grant, start, end));
                union.extend_from_slice(w);
            }
            let union = clip(merge(union), self.lapses[*position]);
            if union.is_empty() {
                continue;
            }
            let next = self.sets.len();
            let sets = &mut self.sets;
            let i = *self.set_index.entry(union.clone()).or_insert_with(|| {
                sets.push(union);
                next
            });
            doors.insert(door.id.clone(), i);
        }
        doors
    }
}

/// A digest of what a list grants, without its version and issue time: lintel issues a
/// new version only when this changes.
pub fn content_digest(list: &AllowList) -> String {
    let mut content = list.clone();
    content.version = 0;
    content.issued_at = 0;
    let bytes = serde_json::to_vec(&content).expect("a list always serializes");
    hex::encode(Sha256::digest(bytes))
}

/// The `[from, until)` seconds within `[start, end)` in which a grant allows entry. A
/// grant that counts passes is in a list only while its holder is checked in: then the
/// check-in is its one window, whatever its schedule.
fn windows(grant: &Arc<IndexGrant>, start: i64, end: i64) -> Vec<[i64; 2]> {
    let (ends, schedule) = match grant.passes {
        Some(_) => (grant.checked_in_until.min(grant.valid_until), None),
        None => (grant.valid_until, grant.schedule.as_ref()),
    };
    // Validity is in microseconds: whole seconds inside it, never a fraction outside.
    let from = start.max(grant.valid_from.saturating_add(999_999).div_euclid(1_000_000));
    let until = end.min(ends.div_euclid(1_000_000));
    if from >= until {
        return Vec::new();
    }
    match schedule {
        Some(schedule) => schedule.open_windows(from, until),
        None => vec![[from, until]],
    }
}

fn merge(mut windows: Vec<[i64; 2]>) -> Vec<[i64; 2]> {
    windows.sort_unstable();
    let mut out: Vec<[i64; 2]> = Vec::with_capacity(windows.len());
    for w in windows {
        match out.last_mut() {
            Some(last) if w[0] <= last[1] => last[1] = last[1].max(w[1]),
            _ => out.push(w),
        }
    }
    out
}

fn clip(windows: Vec<[i64; 2]>, lapses_at: i64) -> Vec<[i64; 2]> {
    windows.into_iter().filter(|w| w[0] < lapses_at).map(|w| [w[0], w[1].min(lapses_at)]).collect()
}

/// What a controller decided on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfflineVerdict {
    pub allowed: bool,
    pub reason: Reason,
    /// Let in only because the door is fail-safe and its list lapsed.
    pub fail_safe: bool,
}

impl OfflineVerdict {
    fn deny(reason: Reason) -> Self {
        Self { allowed: false, reason, fail_safe: false }
    }
}

/// A list made ready for look-ups: card and code hashes in maps.
pub struct InstalledList {
    pub list: AllowList,
    salt: Vec<u8>,
    by_hash: HashMap<String, usize>,
    codes_by_hash: HashMap<String, usize>,
}

/// What a controller decided on its own about a keypad entry, and the listed backup code
/// it was, if any (its credential id: the upload names it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeypadVerdict {
    pub verdict: OfflineVerdict,
    pub backup_code: Option<String>,
}

impl InstalledList {
    pub fn new(list: AllowList) -> Self {
        let salt = hex::decode(&list.salt).unwrap_or_default();
        let by_hash = list.cards.iter().enumerate().map(|(i, c)| (c.hash.clone(), i)).collect();
        let codes_by_hash = list.codes.iter().enumerate().map(|(i, c)| (c.hash.clone(), i)).collect();
        Self { list, salt, by_hash, codes_by_hash }
    }

    /// The door's verdict when its list has lapsed, if it has.
    fn lapsed(&self, door: &str, now: i64) -> Option<OfflineVerdict> {
        let Some(d) = self.list.doors.get(door) else { return Some(OfflineVerdict::deny(Reason::UnknownDoor)) };
        (now >= d.lapses_at).then(|| match d.fail_mode {
            FailMode::Secure => OfflineVerdict::deny(Reason::ListExpired),
            FailMode::Safe => OfflineVerdict { allowed: true, reason: Reason::Granted, fail_safe: true },
        })
    }

    /// Decides an entry at the door's keypad at `now` while offline. Only backup codes are
    /// listed (PINs need lintel): the entry must be one, not among the codes this
    /// controller let in before (`used`, by credential id: a code opens once), the code
    /// must open this door, and one of its windows must hold `now`.
    pub fn decide_keypad(&self, door: &str, entry: &str, used: &[String], now: i64) -> KeypadVerdict {
        let plain = |verdict| KeypadVerdict { verdict, backup_code: None };
        if let Some(verdict) = self.lapsed(door, now) {
            return plain(verdict);
        }
        let hash = backup_code_hash(&self.salt, &backup_code_digest(entry));
        let Some(code) = self.codes_by_hash.get(&hash).map(|i| &self.list.codes[*i]) else {
            return plain(OfflineVerdict::deny(Reason::UnknownCredential));
        };
        let named = |verdict| KeypadVerdict { verdict, backup_code: Some(code.credential.clone()) };
        if used.contains(&code.credential) {
            return named(OfflineVerdict::deny(Reason::CredentialRevoked));
        }
        let Some(set) = code.doors.get(door).and_then(|i| self.list.windows.get(*i)) else {
            return named(OfflineVerdict::deny(Reason::NoGrant));
        };
        named(within(set, now))
    }

    /// Decides a card tap at `now` (Unix seconds) as the controller must while offline:
    /// the door's list must not have lapsed (a lapsed list lets everyone in at a fail-safe
    /// door and nobody at a fail-secure one), the card must be listed with its current
    /// revocation code, and one of its windows for the door must hold `now`.
    pub fn decide(&self, door: &str, uid: &[u8], revocation_code: Option<&str>, now: i64) -> OfflineVerdict {
        if let Some(verdict) = self.lapsed(door, now) {
            return verdict;
        }
        let Some(card) = self.by_hash.get(&card_hash(&self.salt, uid)).map(|i| &self.list.cards[*i]) else {
            return OfflineVerdict::deny(Reason::UnknownCredential);
        };
        if let Some(expected) = &card.revocation
            && revocation_code.map(|c| revocation_code_hash(&self.salt, c)).as_ref() != Some(expected)
        {
            return OfflineVerdict::deny(Reason::RevokedCard);
        }
        let Some(set) = card.doors.get(door).and_then(|i| self.list.windows.get(*i)) else {
            return OfflineVerdict::deny(Reason::NoGrant);
        };
        within(set, now)
    }
}

fn within(set: &[[i64; 2]], now: i64) -> OfflineVerdict {
    if set.iter().any(|w| w[0] <= now && now < w[1]) {
        OfflineVerdict { allowed: true, reason: Reason::Granted, fail_safe: false }
    } else {
        OfflineVerdict::deny(Reason::OutsideSchedule)
    }
}

#[cfg(test)]
mod tests;
