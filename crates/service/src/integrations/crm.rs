//! The makerspace CRM (Amilia-style): a card carries its member's CRM id, and lintel asks
//! the CRM about the member when the card is new to it or what it knows is older than
//! `[crm] stale_after`. A member becomes the person `crm-<id>`: active while in good
//! standing (holding the configured membership), suspended otherwise, with their equipment
//! checkoffs as skills, in `[crm] group`, and with one card whose UID is the id and whose
//! revocation code is the CRM's external-id field.
//!
//! **The door never waits long.** A decision asks the CRM only for an unknown card that
//! carries a CRM id, or for a CRM member whose data is stale; everything else decides on the
//! index alone. Whether a member is stale is answered from memory: a map from person key to
//! when they were fetched, loaded from the store at start and updated on every fetch, so
//! deciding never adds a store query. Only when that map says "stale" does lintel read the
//! store's own record (another node, or the CLI, may have fetched them meanwhile), and only
//! then the CRM, for at most `timeout` (2 s by default). When the CRM fails or is slow, the
//! decision is made on what lintel has, and its event says so (`stale: true`, `crm_error`).
//! After a lookup timed out, doors do not ask again for 30 s, so that a CRM outage costs one
//! person one wait, not everyone (the pause is kept in the store, so it holds on every node).
//!
//! **Card UIDs.** The CRM's person ids are whole numbers. A card's UID is the id's decimal
//! digits, with one leading `0` when their count is odd (UIDs are whole bytes): member 1001
//! is UID `1001`, member 12345 is UID `012345`. A UID that is not such a number (a card's
//! factory serial such as `04A1B2C3`) is never looked up.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use crate::decide::{Looked, MemberLookup as Wanted, MemberSource};
use crate::directory::Actor;
use chrono::Utc;
use lintel_connectors::crm::{self, CrmError, Person as CrmPerson};
use lintel_core::credential::normalize_uid;
use lintel_core::{Decision, Index, Pk, Reason};
use lintel_proto::{CardToWrite, CredentialKind, CredentialStatus, PersonStatus, PresentedCredential};
use lintel_store::{CrmMember, StoreError};

use crate::directory::Directory;
use crate::error::{Result, ServiceError};
use crate::offboarding::{self, Departure};
use crate::people::{ExternalPerson, Identity};
use crate::photos::Photos;
use crate::{people, validate};

/// Why a member's credentials were revoked when the CRM no longer had them.
const GONE_FROM_THE_CRM: &str = "the member is gone from the CRM";

fn younger_than(fetched_at: i64, limit: Duration) -> bool {
    let age = Utc::now().timestamp_micros().saturating_sub(fetched_at);
    age < i64::try_from(limit.as_micros()).unwrap_or(i64::MAX)
}

/// The `[crm]` settings.
#[derive(Clone, Debug)]
pub struct CrmConfig {
    /// The CRM's API base (`{base_url}/persons/{id}`): the only origin asked about people.
    pub base_url: String,
    /// Where the OAuth2 token is obtained (password grant).
    pub token_url: String,
    pub username: String,
    pub password: String,
    /// The membership that means good standing (its id or name); any membership when absent.
    pub membership: Option<String>,
    /// Data older than this is looked up again when the card is presented.
    pub stale_after: Duration,
    /// Data older than this no longer opens doors while the CRM is down (`crm_unavailable`):
    /// a member who lapsed meanwhile is not let in forever.
    pub max_stale: Duration,
    /// The group members are put in (its grants open their doors).
    pub group: Option<String>,
    /// How long a door waits for the CRM.
    pub timeout: Duration,
}

/// After a lookup at a door timed out, doors do not ask the CRM for this long.
const PAUSE_AFTER_TIMEOUT: Duration = Duration::from_secs(30);
/// The CRM's pause in the store.
const PAUSE: &str = "crm";

pub struct Crm {
    pub config: CrmConfig,
    client: crm::Client,
    directory: Arc<Directory>,
    photos: Photos,
    /// Person key -> when their data was fetched (unix microseconds).
    fetched: RwLock<HashMap<Pk, i64>>,
    /// Fetched data is applied one member at a time, so two taps of a new card make one person.
    applying: tokio::sync::Mutex<()>,
}

/// The person a CRM member is in lintel.
pub fn person_id(crm_id: &str) -> String {
    format!("crm-{crm_id}")
}

/// The UID written on a member's card: the id's digits, with a leading `0` when their
/// count is odd.
pub fn card_uid(crm_id: &str) -> String {
    if crm_id.len().is_multiple_of(2) { crm_id.to_owned() } else { format!("0{crm_id}") }
}

/// The CRM id a presented card UID carries, if it is one (see the module's documentation).
pub fn crm_id_of_uid(uid: &str) -> Option<String> {
    let uid = normalize_uid(uid).ok()?;
    let id = if uid.len() > 1 && uid.starts_with('0') { &uid[1..] } else { uid.as_str() };
    (crm::valid_id(id) && card_uid(id) == uid).then(|| id.to_owned())
}

/// The person a station's card names, when it carries a CRM number (`1001` is
/// `crm-1001`); ids of lintel's own people are not numbers alone.
pub fn member_person_id(presented: &str) -> Option<String> {
    crm::valid_id(presented).then(|| person_id(presented))
}

/// The CRM member a station's card names: by number, or as their lintel person.
fn crm_id_of_member(presented: &str) -> Option<String> {
    let id = presented.strip_prefix("crm-").unwrap_or(presented);
    crm::valid_id(id).then(|| id.to_owned())
}

/// A member id as an operator may type it (`00123` is member 123).
fn member_id(typed: &str) -> Result<String> {
    let digits = typed.trim();
    let id = digits.trim_start_matches('0');
    let id = if id.is_empty() && !digits.is_empty() { "0" } else { id };
    if crm::valid_id(id) {
        Ok(id.to_owned())
    } else {
        Err(ServiceError::invalid("member must be the CRM's person id: 1 to 32 digits"))
    }
}

/// The CRM as the decider's member source: asked about an unknown card carrying a CRM id,
/// or a member whose data is stale.
impl MemberSource for Crm {
    fn name(&self) -> &'static str {
        "crm"
    }

    fn person_for_member(&self, presented: &str) -> Option<String> {
        member_person_id(presented)
    }

    fn wants(&self, index: &Index, decision: &Decision, credential: &PresentedCredential) -> Option<Wanted> {
        Crm::wants(self, index, decision, credential)
    }

    fn look_up(self: Arc<Self>, lookup: Wanted) -> futures::future::BoxFuture<'static, Looked> {
        Box::pin(async move { self.refresh(lookup).await })
    }

    fn unavailable_reason(&self) -> Reason {
        Reason::CrmUnavailable
    }

    fn unknown_member_detail(&self) -> &'static str {
        "the makerspace CRM has no member with this card's number"
    }
}

impl Crm {
    pub async fn load(config: CrmConfig, directory: Arc<Directory>, photos: Photos) -> Result<Self> {
        let client =
            crm::Client::new(&config.base_url, &config.token_url, &config.username, &config.password, config.timeout)
                .map_err(|e| ServiceError::invalid(format!("[crm] is not usable: {e}")))?;
        let fetched = directory.store.crm_fetched().await?.into_iter().collect();
        Ok(Self {
            config,
            client,
            directory,
            photos,
            fetched: RwLock::new(fetched),
            applying: tokio::sync::Mutex::new(()),
        })
    }

    fn is_fresh(&self, fetched_at: i64) -> bool {
        younger_than(fetched_at, self.config.stale_after)
    }

    /// The CRM failed: decide on what lintel has, unless that is older than `max_stale`.
    fn failed(&self, fetched_at: Option<i64>, why: String) -> Looked {
        match fetched_at {
            Some(at) if !younger_than(at, self.config.max_stale) => Looked::TooOld(why),
            _ => Looked::Failed(why),
        }
    }

    fn remember(&self, person: Pk, fetched_at: i64) {
        self.fetched.write().unwrap_or_else(PoisonError::into_inner).insert(person, fetched_at);
    }

    /// Whether this decision should ask the CRM first. Runs on every card decision when
    /// `[crm]` is configured: a prefix test, and for CRM members one look into a map.
    fn wants(&self, index: &Index, decision: &Decision, credential: &PresentedCredential) -> Option<Wanted> {
        match (credential, decision.reason) {
            (_, Reason::UnknownDoor | Reason::RateLimited) => None,
            (PresentedCredential::Card { uid, .. }, Reason::UnknownCredential) => {
                crm_id_of_uid(uid).map(|member| Wanted { member, known: None })
            }
            (PresentedCredential::Member { person_id, .. }, Reason::UnknownMember) => {
                crm_id_of_member(person_id).map(|member| Wanted { member, known: None })
            }
            (PresentedCredential::Card { .. } | PresentedCredential::Member { .. }, _) => {
                let pk = decision.person?;
                let crm_id = index.person(pk)?.id.strip_prefix("crm-")?;
                if !crm::valid_id(crm_id) {
                    return None;
                }
                let fetched = self.fetched.read().unwrap_or_else(PoisonError::into_inner).get(&pk).copied();
                let fresh = fetched.is_some_and(|at| self.is_fresh(at));
                (!fresh).then(|| Wanted { member: crm_id.to_owned(), known: Some(pk) })
            }
            _ => None,
        }
    }

    /// Why doors do not ask the CRM now, if they do not. Kept in the store: one node's
    /// timeout spares every node's doors the wait.
    async fn paused(&self) -> Option<String> {
        let store = &self.directory.store;
        store.paused(PAUSE, crate::decide::now_micros()).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "whether the CRM is left alone is not known; asking it");
            None
        })
    }

    async fn fetch(&self, crm_id: &str, within: Duration) -> Result<Option<CrmPerson>, CrmError> {
        let answer = tokio::time::timeout(within, self.client.person(crm_id)).await.unwrap_or(Err(CrmError::TimedOut));
        if answer.is_ok()
            && let Err(e) = self.directory.store.unpause(PAUSE).await
        {
            tracing::warn!(error = %e, "the CRM answers again, but its pause was not lifted");
        }
        answer
    }

    /// Asks the CRM about a member for a decision at a door (see [`Self::wants`]).
    async fn refresh(self: &Arc<Self>, wanted: Wanted) -> Looked {
        let looked = self.look_up(wanted).await;
        let outcome = match &looked {
            Looked::Fresh => "fresh",
            Looked::Found => "found",
            Looked::NotFound => "not_found",
            Looked::Failed(_) | Looked::TooOld(_) => "failed",
        };
        metrics::counter!("lintel_crm_lookups_total", "outcome" => outcome).increment(1);
        looked
    }

    async fn look_up(self: &Arc<Self>, wanted: Wanted) -> Looked {
        let store = &self.directory.store;
        let cached = store.crm_member(&wanted.member).await.ok().flatten();
        let fetched_at = cached.as_ref().map(|m| m.fetched_at);
        if let Some(m) = cached
            && self.is_fresh(m.fetched_at)
        {
            // Fetched meanwhile by another node or the CLI: what it wrote is in the store.
            if wanted.known.is_none()
                && let Err(e) = self.directory.follow().await
            {
                tracing::warn!(error = %e, "could not reload the index");
            }
            if let Ok(Some(pk)) = store.person_pk(&m.person_id).await {
                self.remember(pk, m.fetched_at);
            }
            return Looked::Fresh;
        }
        if let Some(why) = self.paused().await {
            return self.failed(fetched_at, why);
        }
        match self.fetch(&wanted.member, self.config.timeout).await {
            Ok(Some(person)) => match self.apply(&wanted.member, &person).await {
                Ok(applied) => {
                    let me = self.clone();
                    tokio::spawn(async move { me.save_photo(&applied.person_id, &applied.member).await });
                    Looked::Found
                }
                Err(e) => {
                    tracing::warn!(member = %wanted.member, error = %e, "CRM member not applied");
                    self.failed(fetched_at, format!("the CRM's answer was not applied: {e}"))
                }
            },
            Ok(None) => {
                if wanted.known.is_some()
                    && let Err(e) = self.gone(&wanted.member).await
                {
                    tracing::warn!(member = %wanted.member, error = %e, "gone CRM member not suspended");
                }
                Looked::NotFound
            }
            Err(e) => {
                if matches!(e, CrmError::TimedOut) {
                    let ms = self.config.timeout.as_millis();
                    let why = format!("the CRM did not answer within {ms} ms; not asked again for 30 s");
                    let until = crate::decide::now_micros() + PAUSE_AFTER_TIMEOUT.as_micros() as i64;
                    if let Err(e) = self.directory.store.pause(PAUSE, until, &why).await {
                        tracing::warn!(error = %e, "the CRM's pause was not kept");
                    }
                }
                tracing::warn!(member = %wanted.member, error = %e, "CRM lookup failed; deciding on cached data");
                self.failed(fetched_at, e.to_string())
            }
        }
    }

    /// Makes the directory match what the CRM says about a member. Idempotent: nothing is
    /// written when nothing changed.
    async fn apply(&self, crm_id: &str, p: &CrmPerson) -> Result<CardToWrite> {
        let code = p.external_id.clone();
        if let Some(code) = &code {
            validate::text("the CRM's external id (the revocation code)", code, 64)?;
        }
        let _one_at_a_time = self.applying.lock().await;
        let directory = &self.directory;
        let store = &directory.store;
        let good = p.holds(self.config.membership.as_deref());
        let mut member = ExternalPerson::new("crm", crm_id, Identity::Derived(person_id(crm_id)));
        member.name = Some(p.full_name());
        member.fallback_name = format!("Member {crm_id}");
        member.email = p.email.clone();
        member.status = Some(if good { PersonStatus::Active } else { PersonStatus::Suspended });
        member.skills =
            Some(p.skills.iter().filter(|s| validate::text("a skill", s, 64).is_ok()).take(100).cloned().collect());
        let upserted = people::upsert(directory, member).await?;
        let (id, groups) = (upserted.id, upserted.groups);
        if let Some(group) = self.config.group.clone()
            && !groups.contains(&group)
        {
            let pid = id.clone();
            match directory
                .write(
                    &Actor::integration("crm"),
                    move |store| async move { store.set_member(&group, &pid, true).await },
                )
                .await
            {
                Ok(_) => {}
                Err(StoreError::NotFound { what: "group", .. }) => {
                    tracing::error!(group = ?self.config.group, "the [crm] group does not exist");
                }
                Err(e) => return Err(e.into()),
            }
        }
        // The member's card: a new revocation code replaces it; a card revoked in lintel
        // stays revoked until the CRM gives it a new code (a new card), unless it was
        // revoked only because the member had left the CRM, which has them back now.
        let uid = card_uid(crm_id);
        let cards: Vec<_> = store
            .person_credentials(&id)
            .await?
            .into_iter()
            .filter(|c| c.kind == CredentialKind::Card && c.uid.as_deref() == Some(uid.as_str()))
            .collect();
        let issue = match cards.iter().find(|c| c.status == CredentialStatus::Active) {
            Some(active) => active.revocation_code != code,
            None => cards
                .iter()
                .filter(|c| c.revocation_code == code)
                .all(|c| c.status_reason.as_deref() == Some(GONE_FROM_THE_CRM)),
        };
        if issue {
            let record = crate::credentials::card(&uid, code.clone())?.record;
            let pid = id.clone();
            directory
                .write(
                    &Actor::integration("crm"),
                    move |store| async move { store.issue_credential(&pid, &record).await },
                )
                .await?;
        }
        let now = Utc::now().timestamp_micros();
        let member = CrmMember {
            crm_id: crm_id.to_owned(),
            person_id: id.clone(),
            fetched_at: now,
            in_good_standing: good,
            revocation_code: code.clone(),
        };
        store.save_crm_member(&member).await?;
        if let Some(pk) = store.person_pk(&id).await? {
            self.remember(pk, now);
        }
        Ok(CardToWrite { member: crm_id.to_owned(), uid, revocation_code: code, person_id: id, in_good_standing: good })
    }

    /// The CRM no longer has a member lintel knows: they are offboarded (their cards,
    /// secrets and signing keys revoked, out of `[crm] group`, suspended unless another
    /// source knows them). Should the CRM know them again, their card comes back.
    async fn gone(&self, crm_id: &str) -> Result<()> {
        let _one_at_a_time = self.applying.lock().await;
        let store = &self.directory.store;
        let id = person_id(crm_id);
        match store.person(&id).await {
            Ok(_) => {}
            Err(StoreError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let groups: Vec<String> = self.config.group.iter().cloned().collect();
        let departure = Departure { person_id: &id, source: "crm", reason: GONE_FROM_THE_CRM, groups: &groups };
        offboarding::offboard(&self.directory, departure).await?;
        let now = Utc::now().timestamp_micros();
        let known = store.crm_member(crm_id).await?;
        let member = CrmMember {
            crm_id: crm_id.to_owned(),
            person_id: id.clone(),
            fetched_at: now,
            in_good_standing: false,
            revocation_code: known.and_then(|k| k.revocation_code),
        };
        store.save_crm_member(&member).await?;
        if let Some(pk) = store.person_pk(&id).await? {
            self.remember(pk, now);
        }
        Ok(())
    }

    /// Looks a member up (whatever lintel knows) and brings lintel's copy up to date: what
    /// an operator does before writing a card.
    pub async fn issue_card(&self, member: &str) -> Result<CardToWrite> {
        let crm_id = member_id(member)?;
        // An operator waits longer than a door: the token may have to be fetched too.
        let person = match self.fetch(&crm_id, self.config.timeout * 3).await {
            Ok(Some(p)) => p,
            Ok(None) => {
                self.gone(&crm_id).await?;
                return Err(ServiceError::unknown(
                    "unknown-member",
                    format!("the makerspace CRM has no member {crm_id}"),
                ));
            }
            Err(e) => return Err(ServiceError::upstream("crm", e.to_string(), e.is_transient())),
        };
        let card = self.apply(&crm_id, &person).await?;
        self.save_photo(&card.person_id, &crm_id).await;
        Ok(card)
    }

    /// Fetches a member's photo into the photos folder (best effort: a failure is logged
    /// and the photo kept as it was; a photo the CRM no longer has is removed).
    async fn save_photo(&self, person_id: &str, crm_id: &str) {
        let fetched = tokio::time::timeout(self.config.timeout * 5, self.client.photo(crm_id)).await;
        let result = match fetched.unwrap_or(Err(CrmError::TimedOut)) {
            Ok(Some(jpeg)) => self.photos.save(person_id, &jpeg).await,
            Ok(None) => self.photos.remove(person_id).await,
            Err(e) => Err(e.to_string()),
        };
        if let Err(error) = result {
            tracing::warn!(person = person_id, %error, "member photo not fetched");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_uids_carry_crm_ids_and_nothing_else() {
        assert_eq!((card_uid("1001"), card_uid("12345"), card_uid("7")), ("1001".into(), "012345".into(), "07".into()));
        for id in ["1001", "12345", "7", "0", "98765432109876543210"] {
            assert_eq!(crm_id_of_uid(&card_uid(id)).as_deref(), Some(id), "{id}");
        }
        assert_eq!(crm_id_of_uid("01:23").as_deref(), Some("123"), "any accepted UID spelling");
        // A factory serial, a UID that another id's card would never carry, odd lengths.
        for uid in ["04A1B2C3", "0012", "00001001", "123", "", "1001X"] {
            assert_eq!(crm_id_of_uid(uid), None, "{uid}");
        }
    }

    #[test]
    fn station_cards_name_crm_members_by_number() {
        assert_eq!(member_person_id("1001").as_deref(), Some("crm-1001"));
        for lintel_id in ["ann", "crm-1001", "p-17", "01001", ""] {
            assert_eq!(member_person_id(lintel_id), None, "{lintel_id}");
        }
        assert_eq!(crm_id_of_member("1001").as_deref(), Some("1001"));
        assert_eq!(crm_id_of_member("crm-1001").as_deref(), Some("1001"));
        assert_eq!(crm_id_of_member("ann"), None);
    }

    #[test]
    fn typed_member_ids_are_numbers() {
        assert_eq!(member_id(" 00123 ").unwrap(), "123");
        assert_eq!(member_id("0").unwrap(), "0");
        for bad in ["", "abc", "12-3", "1/2", &"1".repeat(33)] {
            assert!(member_id(bad).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod standing {
    use lintel_proto::{CredentialKind, NewGrant, NewGroup, PresentedCredential, Reason};
    use serde_json::{Value, json};

    use super::*;
    use crate::Services;
    use crate::decide::{Ask, Source};
    use crate::testing::{self, FakeHttp};

    /// Member 1001 as the CRM describes them.
    fn ann(code: &str, maker: bool) -> Value {
        let memberships = if maker { json!([{"Id": 7, "Name": "Maker"}]) } else { json!([]) };
        json!({"Id": 1001, "FirstName": "Ann", "LastName": "Lovelace", "Email": "ann@example.org",
               "ExternalId": code, "Memberships": memberships, "Skills": [{"Name": "laser"}]})
    }

    async fn makerspace(crm: &FakeHttp) -> (tempfile::TempDir, Services) {
        crm.answer("POST /oauth/token", 200, json!({"access_token": "t-1", "expires_in": 3600}));
        let (dir, services) = testing::services(|c| {
            c.crm = Some(CrmConfig {
                base_url: format!("{}/api", crm.url),
                token_url: format!("{}/oauth/token", crm.url),
                username: "lintel".into(),
                password: "secret".into(),
                membership: Some("Maker".into()),
                stale_after: Duration::from_secs(3600),
                max_stale: Duration::from_secs(72 * 3600),
                group: Some("members".into()),
                timeout: Duration::from_secs(2),
            })
        })
        .await;
        let directory = &services.directory;
        let laser = json!({"id": "laser", "name": "Laser cutter", "required_skill": "laser"});
        directory
            .create_door(&Actor::integration("crm"), serde_json::from_value(laser).expect("a door"))
            .await
            .expect("door");
        let members = NewGroup { id: "members".into(), name: "Members".into(), doors: vec!["laser".into()] };
        directory.create_group(&Actor::integration("crm"), members).await.expect("group");
        let grant: NewGrant = serde_json::from_value(json!({"group_id": "members"})).expect("a grant");
        directory.create_grant(&Actor::integration("crm"), grant).await.expect("grant");
        (dir, services)
    }

    /// What the laser cutter says to member 1001's card with `code` (asked without
    /// recording, so the CRM is not asked again).
    async fn tap(services: &Services, code: &str) -> Reason {
        let card = PresentedCredential::Card { uid: "1001".into(), revocation_code: Some(code.into()) };
        let ask = Ask { door: "laser", credential: &card, at: None, dry_run: true, source: Source::Keypad("t".into()) };
        services.decider.decide(ask).await.expect("decided").reason
    }

    #[tokio::test]
    async fn access_follows_the_members_standing_and_their_current_card() {
        let fake = FakeHttp::start().await;
        let (_dir, services) = makerspace(&fake).await;
        let crm = services.crm.clone().expect("[crm]");

        fake.answer("GET /api/persons/1001", 200, ann("R1", true));
        let card = crm.issue_card("001001").await.expect("issued");
        assert_eq!((card.member.as_str(), card.uid.as_str(), card.person_id.as_str()), ("1001", "1001", "crm-1001"));
        assert_eq!((card.revocation_code.as_deref(), card.in_good_standing), (Some("R1"), true));
        let person = services.store().person("crm-1001").await.expect("person");
        assert_eq!((person.name.as_str(), person.skills.as_slice()), ("Ann Lovelace", ["laser".to_owned()].as_slice()));
        assert_eq!(person.groups, ["members"], "in the [crm] group");
        assert_eq!(tap(&services, "R1").await, Reason::Granted);

        fake.answer("GET /api/persons/1001", 200, ann("R1", false));
        assert!(!crm.issue_card("1001").await.expect("issued").in_good_standing);
        assert_eq!(tap(&services, "R1").await, Reason::PersonSuspended, "no membership, no entry");

        fake.answer("GET /api/persons/1001", 200, ann("R2", true));
        crm.issue_card("1001").await.expect("issued");
        assert_eq!(tap(&services, "R2").await, Reason::Granted, "the new card");
        assert_eq!(tap(&services, "R1").await, Reason::RevokedCard, "the card it replaced");
        let cards = services.store().person_credentials("crm-1001").await.expect("credentials");
        assert_eq!(cards.iter().filter(|c| c.kind == CredentialKind::Card).count(), 2, "one card per code");

        fake.answer("GET /api/persons/1001", 404, json!({"error": "not found"}));
        let gone = crm.issue_card("1001").await.expect_err("gone from the CRM");
        assert!(matches!(gone, ServiceError::NotFound { code: "unknown-member", .. }), "{gone:?}");
        assert_eq!(tap(&services, "R2").await, Reason::CredentialRevoked, "gone from the CRM, gone from the doors");
        let person = services.store().person("crm-1001").await.expect("person");
        assert_eq!((person.status, person.groups.len()), (PersonStatus::Suspended, 0), "offboarded");
        let cards = services.store().person_credentials("crm-1001").await.expect("credentials");
        assert!(cards.iter().all(|c| c.status != CredentialStatus::Active), "nothing active left: {cards:?}");
        let offboarded = services
            .store()
            .events(&lintel_store::EventFilter {
                kind: Some("person.offboarded".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("events");
        assert_eq!(offboarded.len(), 1, "one event says what was taken");
        assert_eq!(offboarded[0].data["source"], "crm");
        assert_eq!(fake.requests("POST /oauth/token").len(), 1, "one token for every call");
    }
}
