//! The coworking membership platform (Cobot-style): members become people whose access
//! follows their membership (plan -> groups, cancellation date, time passes), and every
//! entry at a door that counts attendance becomes a check-in on the platform.
//!
//! Everything here is reconciliation: a webhook only says "look at this membership", and
//! lintel fetches it and makes its directory match. So the same delivery twice, a missed
//! delivery healed by the periodic sync, and a delivery arriving late all end in the same
//! state. Calls to the platform go through the outbox.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use lintel_connectors::cobot::{self, Booking, CobotError, CustomField, Membership, PassType, Plan, UnusedPass};
use lintel_proto::{PassLasts, PersonPatch, PersonStatus, Schedule, ScheduleRule, SyncReport, Weekday};
use lintel_store::{CobotMember, NewGrantRecord, StoreError, WorkItem, valid_membership_id};
use serde_json::{Value, json};

use super::invitations::{Invitation, Invitations};
use super::lockcloud::LockCloud;
use crate::directory::Actor;
use crate::directory::Directory;
use crate::error::{Result, ServiceError};
use crate::offboarding::{self, Departure};
use crate::people::{ExternalPerson, Identity};
use crate::workers::Workers;
use crate::{credentials, outbox, people, secrets, validate};

/// The `[cobot]` settings.
#[derive(Clone, Debug)]
pub struct CobotConfig {
    /// The space's API base, e.g. `https://space.cobot.me`: the only origin lintel fetches.
    pub base_url: String,
    /// The platform's JSON:API (API 2), where external bookings' visitors are: the only
    /// other origin lintel fetches for the platform.
    pub api2_url: String,
    pub token: String,
    /// lintel's own URL, for webhook subscriptions.
    pub public_url: Option<String>,
    /// The group every member joins (all doors of the space, typically).
    pub default_group: Option<String>,
    /// Space plan id -> group.
    pub plan_groups: BTreeMap<String, String>,
    /// (custom field label, value) -> group: a member whose field has that value joins it.
    pub custom_field_groups: BTreeMap<(String, String), String>,
    pub sync_every: Duration,
    /// The space's time zone: cancellation dates and pass timespans are local to it.
    pub timezone: Tz,
    /// A booking opens its doors this long before it starts and after it ends.
    pub buffer_minutes: i64,
    /// Resource id -> the room's door and the doors on the way to it.
    pub resource_doors: BTreeMap<String, Vec<String>>,
}

pub struct Cobot {
    pub config: CobotConfig,
    client: cobot::Client,
    directory: Arc<Directory>,
    /// Where booked doors that live in the lock cloud are mirrored.
    lockcloud: Option<Arc<LockCloud>>,
    /// How visitors of external bookings learn their secret.
    invitations: Option<Arc<Invitations>>,
    /// Where the platform calls lintel back: `[cobot] public_url`, else lintel's own.
    public_url: Option<String>,
}

/// The platform's failure as the workflows see it: a refusal is not tried again.
fn platform(e: CobotError) -> ServiceError {
    ServiceError::upstream("platform", e.to_string(), e.is_transient())
}

fn person_id(membership_id: &str) -> String {
    format!("cobot-{membership_id}")
}

/// The source of the grants that carry a member's time passes.
fn pass_source(membership_id: &str) -> String {
    format!("cobot-passes:{membership_id}")
}

/// The source of a booking's grant.
fn booking_source(booking_id: &str) -> String {
    format!("cobot-booking:{booking_id}")
}

/// Whether a membership gives access on `today`, and until when (end of the last day).
fn access(m: &Membership, today: NaiveDate, tz: Tz) -> (bool, Option<i64>) {
    let started = m.starts_at.is_none_or(|d| d <= today);
    let until = m.canceled_to.and_then(|d| d.succ_opt()).and_then(|next| {
        // Midnight may not exist (a DST change at 00:00): then the first instant after it.
        let midnight = next.and_hms_opt(0, 0, 0)?;
        let start = tz
            .from_local_datetime(&midnight)
            .earliest()
            .or_else(|| tz.from_local_datetime(&(midnight + chrono::Duration::hours(1))).earliest());
        start.map(|t| t.with_timezone(&Utc).timestamp_micros())
    });
    let ended = m.canceled_to.is_some_and(|d| d < today);
    (started && !ended, until)
}

fn weekday(name: &str) -> Option<Weekday> {
    let short: String = name.trim().to_ascii_lowercase().chars().take(3).collect();
    serde_json::from_value(Value::String(short)).ok()
}

/// A pass type's timespans as a lintel schedule. A type without timespans is the
/// platform's day pass: the space's day, from 04:00 to 03:59 the next morning.
fn pass_schedule(pass: &PassType, tz: Tz) -> Schedule {
    let rules: Vec<ScheduleRule> = pass
        .parsed_timespans
        .iter()
        .map(|t| ScheduleRule {
            weekdays: t.weekdays.iter().filter_map(|d| weekday(d)).collect(),
            from: format!("{:02}:{:02}", t.from_hour.min(24), t.from_minute.min(59)),
            to: format!("{:02}:{:02}", t.to_hour.min(24), t.to_minute.min(59)),
        })
        .filter(|r| !r.weekdays.is_empty() && r.from != r.to)
        .collect();
    let rules = match rules.is_empty() {
        false => rules,
        true => {
            let every_day = serde_json::from_value(json!(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]))
                .expect("weekday names");
            vec![ScheduleRule { weekdays: every_day, from: "04:00".into(), to: "03:59".into() }]
        }
    };
    Schedule { tz: tz.name().to_owned(), rules }
}

/// How long a check-in with a pass of this type lasts.
fn pass_lasts(pass: &PassType) -> PassLasts {
    match pass.duration_in_minutes {
        Some(minutes) if minutes > 0 => PassLasts::Minutes(minutes.min(PassLasts::MAX_MINUTES)),
        _ => PassLasts::Span,
    }
}

/// What applying one membership did.
struct Applied {
    created: bool,
    active: bool,
    passes: bool,
}

/// The kinds of resource a delivery may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resource {
    Membership,
    Booking,
    CheckIn,
}

impl Resource {
    fn path(self) -> &'static str {
        match self {
            Self::Membership => "memberships",
            Self::Booking => "bookings",
            Self::CheckIn => "check_ins",
        }
    }
}

impl Cobot {
    /// `lintel_url` is where lintel is reached, for when `[cobot] public_url` is not set.
    pub fn new(
        config: CobotConfig,
        directory: Arc<Directory>,
        lockcloud: Option<Arc<LockCloud>>,
        invitations: Option<Arc<Invitations>>,
        lintel_url: Option<String>,
    ) -> Result<Self> {
        let client = cobot::Client::new(&config.base_url, &config.api2_url, &config.token)
            .map_err(|e| ServiceError::invalid(format!("[cobot] is not usable: {e}")))?;
        let public_url = config.public_url.clone().or(lintel_url);
        Ok(Self { config, client, directory, lockcloud, invitations, public_url })
    }

    /// Groups lintel manages for members: a member is taken out of those their plan no
    /// longer maps to, and never touched in any other.
    fn managed_groups(&self) -> BTreeSet<&str> {
        let fields = self.config.custom_field_groups.values();
        self.config
            .default_group
            .iter()
            .chain(self.config.plan_groups.values())
            .chain(fields)
            .map(String::as_str)
            .collect()
    }

    fn groups_for(&self, m: &Membership, fields: &[CustomField]) -> BTreeSet<String> {
        let plan = self.config.plan_groups.get(m.plan.space_plan_id());
        let by_field = self.config.custom_field_groups.iter().filter_map(|((label, value), group)| {
            fields
                .iter()
                .any(|f| f.label.trim().eq_ignore_ascii_case(label) && f.value.trim().eq_ignore_ascii_case(value))
                .then_some(group)
        });
        self.config.default_group.iter().chain(plan).chain(by_field).cloned().collect()
    }

    /// Makes lintel's directory match one membership. Idempotent.
    async fn apply_membership(&self, m: &Membership, plans: &HashMap<String, Plan>) -> Result<Applied> {
        if !valid_membership_id(&m.id) {
            return Err(ServiceError::invalid(format!("membership id {:?} is not usable", m.id)));
        }
        let directory = &self.directory;
        let store = &directory.store;
        let tz = self.config.timezone;
        let today = Utc::now().with_timezone(&tz).date_naive();
        let (active, access_until) = access(m, today, tz);
        let known = store.cobot_member(&m.id).await?;
        let mut member = ExternalPerson::new("cobot", m.id.clone(), Identity::Derived(person_id(&m.id)));
        member.name = m.name.clone();
        member.fallback_name = format!("Member {}", m.id);
        member.email = m.email.clone();
        member.status = Some(if active { PersonStatus::Active } else { PersonStatus::Suspended });
        let upserted = people::upsert(directory, member).await?;
        let id = upserted.id;
        if !active {
            self.lapsed(&id).await?;
        }

        // A plan with time passes gives access only through its passes; any other plan
        // through the member's groups.
        let plan = plans.get(m.plan.space_plan_id());
        let pass_types: &[PassType] = plan.map(|p| p.time_passes.as_slice()).unwrap_or_default();
        // Fields are asked for only when some map to groups.
        let fields = if self.config.custom_field_groups.is_empty() {
            Vec::new()
        } else {
            self.client.custom_fields(&m.id).await.map_err(platform)?
        };
        let targets = self.groups_for(m, &fields);
        let in_groups = if pass_types.is_empty() { targets.clone() } else { BTreeSet::new() };
        for group in self.managed_groups() {
            let member = in_groups.contains(group);
            let (g, p) = (group.to_owned(), id.clone());
            match directory
                .write(&Actor::integration("cobot"), move |store| async move { store.set_member(&g, &p, member).await })
                .await
            {
                Ok(_) => {}
                Err(StoreError::NotFound { .. }) => tracing::error!(group, "a [cobot] group does not exist"),
                Err(e) => return Err(e.into()),
            }
        }
        // Asked before the count is fetched: check-ins done after it may not be in it.
        let asked_at = Utc::now().timestamp_micros();
        let unused = if pass_types.is_empty() {
            Vec::new()
        } else {
            self.client.unused_passes(&m.id).await.map_err(platform)?
        };
        self.replace_pass_grants(&m.id, &id, pass_types, &unused, &targets, asked_at).await?;

        let token = known.as_ref().map_or_else(|| secrets::generate("lct_"), |k| k.check_in_token.clone());
        let record = CobotMember {
            membership_id: m.id.clone(),
            person_id: id,
            plan_id: m.plan.space_plan_id().to_owned(),
            access_until,
            check_in_token: token.clone(),
            token_registered: known.as_ref().is_some_and(|k| k.token_registered),
        };
        store.save_cobot_member(&record).await?;
        if !record.token_registered {
            // The platform learns the token it will be checked in with; the key makes it once.
            let payload = json!({"membership_id": m.id, "token": token});
            store.enqueue("cobot", "check_in_token", &format!("cobot-token:{}", m.id), &payload).await?;
        }
        Ok(Applied { created: upserted.created, active, passes: !pass_types.is_empty() })
    }

    /// A member's pass grants: one per pass type with unused passes, over the doors of the
    /// member's groups, with the type's timespans; a pass checks the member in for its
    /// time. Updated in place, with the platform's count less the passes used here that it
    /// has not counted yet (see [`lintel_store::Store::replace_cobot_pass_grants`]).
    async fn replace_pass_grants(
        &self,
        membership_id: &str,
        person: &str,
        pass_types: &[PassType],
        unused: &[UnusedPass],
        groups: &BTreeSet<String>,
        asked_at: i64,
    ) -> Result<()> {
        let store = &self.directory.store;
        let source = pass_source(membership_id);
        let mut wanted: Vec<NewGrantRecord> = Vec::new();
        if !pass_types.is_empty() {
            let mut doors = BTreeSet::new();
            for g in groups {
                if let Ok(group) = store.group(g).await {
                    doors.extend(group.doors);
                }
            }
            for pass in pass_types {
                // An unused pass that does not say its type counts for the plan's first type.
                let count = unused
                    .iter()
                    .filter(|u| match &u.time_pass_id {
                        Some(t) => *t == pass.id,
                        None => pass.id == pass_types[0].id,
                    })
                    .count();
                // A type with no pass left keeps its grant: the member's check-in with the
                // last one still runs.
                if doors.is_empty() {
                    continue;
                }
                wanted.push(NewGrantRecord {
                    person_id: Some(person.to_owned()),
                    doors: Some(doors.iter().cloned().collect()),
                    schedule: Some(pass_schedule(pass, self.config.timezone)),
                    passes: Some(u32::try_from(count).unwrap_or(u32::MAX)),
                    pass_lasts: pass_lasts(pass),
                    source: Some(format!("{source}:{}", pass.id)),
                    ..Default::default()
                });
            }
        }
        let person = person.to_owned();
        self.directory
            .write(&Actor::integration("cobot"), move |store| async move {
                store.replace_cobot_pass_grants(&person, &source, &wanted, asked_at).await
            })
            .await?;
        Ok(())
    }

    /// Takes a member's access away when the membership is gone from the platform.
    /// A membership gone from the platform: the member is offboarded (credentials, keys,
    /// the platform's groups; suspended unless another source knows them).
    async fn gone(&self, person: &str) -> Result<()> {
        let groups: Vec<String> = self.managed_groups().into_iter().map(str::to_owned).collect();
        let reason = "the membership is gone from the platform";
        let departure = Departure { person_id: person, source: "cobot", reason, groups: &groups };
        offboarding::offboard(&self.directory, departure).await.map(drop)
    }

    async fn suspend(&self, person: &str) -> Result<()> {
        match self.directory.store.person(person).await {
            Ok(p) if p.status != PersonStatus::Suspended => {
                let patch = PersonPatch { status: Some(PersonStatus::Suspended), ..Default::default() };
                let id = person.to_owned();
                self.directory
                    .write(
                        &Actor::integration("cobot"),
                        move |store| async move { store.patch_person(&id, &patch).await },
                    )
                    .await?;
            }
            Ok(_) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.lapsed(person).await
    }

    /// A membership that ended but may come back: suspended with its cards kept, and no
    /// personal secret or signing key left active (see [`offboarding::lapse`]).
    async fn lapsed(&self, person: &str) -> Result<()> {
        let reason = "the membership has ended";
        let departure = Departure { person_id: person, source: "cobot", reason, groups: &[] };
        offboarding::lapse(&self.directory, departure).await.map(drop)
    }

    async fn plans_by_id(&self) -> Result<HashMap<String, Plan>> {
        Ok(self.client.plans().await.map_err(platform)?.into_iter().map(|p| (p.id.clone(), p)).collect())
    }

    /// A full reconciliation: every membership and plan. `progress(done, total)` is called
    /// as it goes (the CLI draws a bar with it).
    pub async fn sync(&self, progress: &(dyn Fn(usize, usize) + Sync)) -> Result<SyncReport> {
        let plans = self.plans_by_id().await?;
        let memberships = self.client.memberships().await.map_err(platform)?;
        let mut report = SyncReport { memberships: memberships.len(), ..Default::default() };
        let mut listed = BTreeSet::new();
        for (n, m) in memberships.iter().enumerate() {
            match self.apply_membership(m, &plans).await {
                Ok(applied) => {
                    report.created += usize::from(applied.created);
                    report.inactive += usize::from(!applied.active);
                    report.with_passes += usize::from(applied.passes);
                }
                Err(e) => tracing::warn!(membership = %m.id, error = %e, "membership not applied"),
            }
            listed.insert(m.id.clone());
            progress(n + 1, memberships.len());
        }
        if !self.config.resource_doors.is_empty() {
            let today = Utc::now().with_timezone(&self.config.timezone).date_naive();
            let upcoming = self.client.bookings(today, today + chrono::Days::new(31)).await.map_err(platform)?;
            for booking in &upcoming {
                match self.apply_booking(booking).await {
                    Ok(()) => report.bookings += 1,
                    Err(e) => tracing::warn!(booking = %booking.id, error = %e, "booking not applied"),
                }
            }
        }
        for member in self.directory.store.cobot_members().await? {
            if !listed.contains(&member.membership_id) {
                report.gone += 1;
                self.gone(&member.person_id).await?;
            }
        }
        Ok(report)
    }

    /// Creates the webhook subscriptions lintel needs, pointing at its public URL.
    pub async fn subscribe(&self) -> Result<Vec<String>> {
        let public = self.public_url.as_deref().ok_or_else(|| {
            ServiceError::invalid("set public_url (or [cobot] public_url): the platform calls lintel there")
        })?;
        let mut made = Vec::new();
        for event in cobot::EVENTS {
            let callback = format!("{}/hooks/cobot/{event}", public.trim_end_matches('/'));
            self.client.subscribe(event, &callback).await.map_err(platform)?;
            made.push(callback);
        }
        Ok(made)
    }

    /// What a delivery names: a resource kind and id, or why it names nothing lintel follows.
    /// Nothing else of a delivery is trusted: the resource is fetched from its canonical URL on
    /// the space, and only that answer (or its 404) counts. A URL must be exactly
    /// `<base_url>/api/<kind>/<id>`; a deleted resource arrives whole, and only its id is taken.
    /// The webhook stores only deliveries this accepts, and the processor reads them with it.
    fn named(&self, event: &str, payload: &Value) -> Result<(Resource, String), &'static str> {
        let fields = payload.as_object().ok_or("the delivery is a JSON object")?;
        let (resource, id) = match fields.get("url") {
            Some(Value::String(url)) => {
                if !self.client.owns(url) {
                    return Err("refusing a URL outside the configured space (base_url)");
                }
                let not_followed = "the URL is not <base_url>/api/<memberships|bookings|check_ins>/<id>";
                let path = reqwest::Url::parse(url).map_err(|_| not_followed)?.path().to_owned();
                let base = reqwest::Url::parse(&self.config.base_url).map_err(|_| not_followed)?;
                let rest = path
                    .strip_prefix(base.path().trim_end_matches('/'))
                    .and_then(|rest| rest.strip_prefix("/api/"))
                    .ok_or(not_followed)?;
                let (kind, id) = rest.split_once('/').ok_or(not_followed)?;
                // `updated_custom_field` names the membership's fields: the membership changed.
                let id = match kind {
                    "memberships" => id.strip_suffix("/custom_fields").unwrap_or(id),
                    _ => id,
                };
                let resource = [Resource::Membership, Resource::Booking, Resource::CheckIn]
                    .into_iter()
                    .find(|r| r.path() == kind)
                    .ok_or(not_followed)?;
                (resource, id.to_owned())
            }
            Some(_) => return Err("url is a string"),
            None => {
                let id = match fields.get("id") {
                    Some(Value::String(id)) => id.clone(),
                    Some(Value::Number(id)) => id.to_string(),
                    Some(_) => return Err("id is a string or a number"),
                    None => return Err("the delivery has neither url nor id"),
                };
                let resource = if event.contains("booking") { Resource::Booking } else { Resource::Membership };
                (resource, id)
            }
        };
        if !valid_membership_id(&id) {
            return Err("the id is 1 to 64 letters, digits, - or _");
        }
        Ok((resource, id))
    }

    /// Stores a webhook delivery for the workers, as the inbox keeps it: only what
    /// [`Self::named`] reads (the canonical URL, or the id of a deleted resource), so that
    /// every stored delivery is one the processor takes, and each is small. `None` when
    /// `max_pending` deliveries already wait.
    pub async fn receive(&self, event: &str, payload: &Value, max_pending: i64) -> Result<Option<i64>> {
        let (resource, id) = self.named(event, payload).map_err(ServiceError::invalid)?;
        let delivery = if payload.get("url").is_some() {
            json!({"url": self.client.url(&format!("/api/{}/{id}", resource.path()))})
        } else {
            json!({"id": id})
        };
        Ok(self.directory.store.receive("cobot", event, &delivery, max_pending).await?)
    }

    /// Processes one inbox delivery. `Err` with a transient cause is retried.
    async fn process(&self, item: &WorkItem) -> Result<()> {
        let (resource, id) = self.named(&item.kind, &item.payload).map_err(ServiceError::invalid)?;
        match resource {
            Resource::Membership => self.reconcile_membership(&id).await,
            Resource::CheckIn => {
                let url = self.client.url(&format!("/api/check_ins/{id}"));
                let check_in: cobot::CheckIn = self.client.fetch(&url).await.map_err(platform)?;
                match check_in.membership() {
                    Some(membership) if valid_membership_id(membership) => self.reconcile_membership(membership).await,
                    _ => Ok(()),
                }
            }
            Resource::Booking => {
                let url = self.client.url(&format!("/api/bookings/{id}"));
                match self.client.fetch::<Booking>(&url).await {
                    Ok(b) if b.id == id => {
                        let buffer = chrono::Duration::minutes(self.config.buffer_minutes);
                        // Over is over, whatever the event said; not over is applied.
                        if b.to + buffer <= Utc::now() {
                            self.end_booking(&id).await
                        } else {
                            self.apply_booking(&b).await
                        }
                    }
                    Ok(_) => {
                        Err(ServiceError::upstream("platform", "the platform answered with another booking", false))
                    }
                    Err(CobotError::Status { status: 404 | 410, .. }) => self.end_booking(&id).await,
                    Err(e) => Err(platform(e)),
                }
            }
        }
    }

    /// Fetches a membership from its canonical URL and applies it; gone (404) suspends.
    async fn reconcile_membership(&self, id: &str) -> Result<()> {
        match self.client.membership(id).await {
            Ok(m) if m.id == id => self.apply_membership(&m, &self.plans_by_id().await?).await.map(drop),
            Ok(_) => Err(ServiceError::upstream("platform", "the platform answered with another membership", false)),
            Err(CobotError::Status { status: 404 | 410, .. }) => self.gone(&person_id(id)).await,
            Err(e) => Err(platform(e)),
        }
    }

    /// A booking of a room with a door: its booker (a member, or a visitor lintel creates
    /// and invites) may open the room's door and the doors on the way, from the start minus
    /// the buffer to the end plus the buffer. A moved booking moves the grant. Idempotent.
    async fn apply_booking(&self, b: &Booking) -> Result<()> {
        let Some(doors) = self.config.resource_doors.get(&b.resource.id) else { return Ok(()) };
        if !valid_membership_id(&b.id) {
            return Err(ServiceError::invalid(format!("booking id {:?} is not usable", b.id)));
        }
        let buffer = chrono::Duration::minutes(self.config.buffer_minutes);
        let (from, until) = ((b.from - buffer).timestamp_micros(), (b.to + buffer).timestamp_micros());
        if until <= Utc::now().timestamp_micros() {
            // Over already (the sync also lists today's past bookings): nothing to open.
            return Ok(());
        }
        let directory = &self.directory;
        let store = &directory.store;
        let (person, visitor) = match &b.membership {
            Some(m) if valid_membership_id(&m.id) => {
                let id = person_id(&m.id);
                if store.person_pk(&id).await?.is_none() {
                    let membership = self.client.membership(&m.id).await.map_err(platform)?;
                    self.apply_membership(&membership, &self.plans_by_id().await?).await?;
                }
                (id, false)
            }
            Some(m) => return Err(ServiceError::invalid(format!("membership id {:?} is not usable", m.id))),
            None => (self.visitor(b, doors).await?, true),
        };
        let source = booking_source(&b.id);
        let wanted = NewGrantRecord {
            person_id: Some(person.clone()),
            doors: Some(doors.clone()),
            valid_from: Some(from),
            valid_until: Some(until),
            source: Some(source.clone()),
            ..Default::default()
        };
        let existing: Vec<_> =
            store.grants(Some(&person)).await?.into_iter().filter(|g| g.source.as_deref() == Some(&source)).collect();
        let sorted = |d: &[String]| d.iter().cloned().collect::<BTreeSet<_>>();
        let same = existing.len() == 1
            && existing[0].valid_from.map(|t| t.timestamp_micros()) == Some(from)
            && existing[0].valid_until.map(|t| t.timestamp_micros()) == Some(until)
            && existing[0].doors.as_deref().map(sorted) == Some(sorted(doors));
        if !same {
            for grant in existing {
                directory
                    .write(
                        &Actor::integration("cobot"),
                        move |store| async move { store.delete_grant(&grant.id).await },
                    )
                    .await?;
            }
            directory
                .write(&Actor::integration("cobot"), move |store| async move { store.create_grant(&wanted).await })
                .await?;
        }
        if let Some(cloud) = &self.lockcloud {
            cloud.booking_changed(&b.id, &person, doors, from, until).await?;
        }
        store.save_cobot_booking(&b.id, &person, visitor, until).await?;
        Ok(())
    }

    /// The visitor of an external booking: created (with a personal secret, sent to them as
    /// an invitation) the first time the booking is seen.
    async fn visitor(&self, b: &Booking, doors: &[String]) -> Result<String> {
        let directory = &self.directory;
        let id = format!("cobot-visitor-{}", b.id);
        if directory.store.person_pk(&id).await?.is_some() {
            return Ok(id);
        }
        let contact = self.client.external_contact(&b.id).await.map_err(platform)?;
        let Some(contact) = contact else {
            return Err(ServiceError::invalid("a booking without a membership has no external booking either"));
        };
        let email = contact.email.clone().filter(|e| validate::email(e).is_ok());
        let phone =
            contact.phone.clone().map(|p| p.chars().filter(|c| c.is_ascii_digit() || *c == '+').collect::<String>());
        let phone = phone.filter(|p| (6..=20).contains(&p.len()));
        if email.is_none() && phone.is_none() {
            return Err(ServiceError::invalid("an external booking needs an email address or a phone number"));
        }
        let mut visitor = ExternalPerson::new("cobot-booking", b.id.clone(), Identity::Derived(id.clone()));
        visitor.name = contact.name.clone().filter(|n| !n.trim().is_empty()).or_else(|| email.clone());
        visitor.fallback_name = format!("Visitor {}", b.id);
        visitor.email = email.clone();
        visitor.phone = Some(phone.clone());
        visitor.attributes = Some(serde_json::Map::from_iter([("visitor".to_owned(), Value::Bool(true))]));
        let name = visitor.clean_name();
        people::upsert(directory, visitor).await?;
        let secret = credentials::secret();
        let record = secret.record;
        let pid = id.clone();
        directory
            .write(
                &Actor::integration("cobot"),
                move |store| async move { store.issue_credential(&pid, &record).await },
            )
            .await?;
        let secret = secret.shown_once.expect("a secret is shown once");
        match &self.invitations {
            Some(invitations) => {
                let room = b.resource.name.clone().unwrap_or_else(|| "your room".into());
                let invitation = Invitation {
                    person: &id,
                    name: &name,
                    email: email.as_deref(),
                    phone: phone.as_deref(),
                    secret: &secret,
                    doors,
                    what: format!("You booked {room}, {}.", invitations.span(b.from, b.to)),
                    place: &room,
                    works: "It works from shortly before your booking until shortly after it.",
                };
                invitations.invite(&invitation).await?;
            }
            None => tracing::warn!(
                person = id,
                "a visitor could not be invited: configure [smtp] or [sms] (and give a contact)"
            ),
        }
        Ok(id)
    }

    /// A booking deleted or over: its grant goes; a visitor goes altogether (which revokes
    /// their secret).
    async fn end_booking(&self, booking_id: &str) -> Result<()> {
        let directory = &self.directory;
        let store = &directory.store;
        let Some((person, visitor)) = store.cobot_booking(booking_id).await? else { return Ok(()) };
        if visitor {
            let id = person.clone();
            match directory
                .write(&Actor::integration("cobot"), move |store| async move { store.delete_person(&id).await })
                .await
            {
                Ok(_) | Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        } else {
            let source = booking_source(booking_id);
            for grant in store.grants(Some(&person)).await?.into_iter().filter(|g| g.source.as_deref() == Some(&source))
            {
                directory
                    .write(
                        &Actor::integration("cobot"),
                        move |store| async move { store.delete_grant(&grant.id).await },
                    )
                    .await?;
            }
        }
        if let Some(cloud) = &self.lockcloud {
            cloud.booking_ended(booking_id).await?;
        }
        store.forget_cobot_booking(booking_id).await?;
        Ok(())
    }

    /// Suspends members whose cancellation date has passed and ends bookings that are over
    /// (the webhooks may be missed).
    async fn expire_members(&self) -> Result<()> {
        let store = &self.directory.store;
        let now = Utc::now().timestamp_micros();
        for (booking, _, _) in store.ended_cobot_bookings(now).await? {
            self.end_booking(&booking).await?;
        }
        for member in store.cobot_members().await? {
            if member.access_until.is_some_and(|until| until <= now) {
                self.suspend(&member.person_id).await?;
            }
        }
        Ok(())
    }

    /// One call to the platform from the outbox.
    async fn deliver(&self, item: &WorkItem) -> Result<()> {
        let store = &self.directory.store;
        let membership = item.payload["membership_id"].as_str().unwrap_or_default();
        match item.kind.as_str() {
            "check_in_token" => {
                let token = item.payload["token"].as_str().unwrap_or_default();
                self.client.register_check_in_token(membership, token).await.map_err(platform)?;
                Ok(store.set_cobot_token_registered(membership).await?)
            }
            "check_in" => match store.cobot_member(membership).await? {
                Some(m) if m.token_registered => self.client.check_in(&m.check_in_token).await.map_err(platform),
                // The token is not registered yet: its own outbox entry comes first.
                Some(_) => Err(ServiceError::unavailable("waiting for the member's check-in token")),
                None => Err(ServiceError::not_found(format!("no member {membership:?}"))),
            },
            other => Err(ServiceError::invalid(format!("unknown outbox kind {other:?}"))),
        }
    }

    /// Runs the due work once: deliveries received, then calls to the platform.
    async fn run_queues(&self) -> Result<(), StoreError> {
        let store = &self.directory.store;
        let received = outbox::run_inbox(store, "cobot", |item| async move { self.process(&item).await }).await;
        let sent = outbox::run_outbox(store, "cobot", None, |item| async move { self.deliver(&item).await }).await;
        received.and(sent).map(drop)
    }

    /// The platform's background work while the server runs: the inbox and outbox every
    /// second, check-ins queued from new entries, expiries, and the full sync on schedule.
    pub fn spawn_workers(self: &Arc<Self>, workers: &Workers) {
        let cobot = self.clone();
        let mut seconds = workers.one_node_every("cobot", Duration::from_secs(1));
        workers.spawn(async move {
            let store = &cobot.directory.store;
            // Catch up on entries made while lintel was not running its workers.
            let mut window = chrono::Duration::hours(48);
            let mut seen_seq: Option<i64> = None;
            let mut last_sync = tokio::time::Instant::now();
            let mut ticks: u64 = 0;
            while seconds.next().await {
                ticks += 1;
                // By time (the last 15 minutes; 48 hours at start) and by number (everything
                // stored since the last run, with a margin for commits that land out of order).
                let since = (Utc::now() - window).timestamp_micros();
                match store.last_event_seq().await {
                    Ok(newest) => match store.enqueue_cobot_check_ins(since, seen_seq.unwrap_or(newest) - 1000).await {
                        Ok(_) => {
                            window = chrono::Duration::minutes(15);
                            seen_seq = Some(newest);
                        }
                        Err(e) => tracing::warn!(error = %e, "check-ins not queued"),
                    },
                    Err(e) => tracing::warn!(error = %e, "check-ins not queued"),
                }
                if let Err(e) = cobot.run_queues().await {
                    tracing::warn!(error = %e, "inbox and outbox not processed");
                }
                if ticks.is_multiple_of(3600) {
                    let month_ago = (Utc::now() - chrono::Duration::days(30)).timestamp_micros();
                    if let Err(e) = store.prune_inbox(month_ago).await {
                        tracing::warn!(error = %e, "inbox not pruned");
                    }
                }
                if ticks.is_multiple_of(5)
                    && let Err(e) = cobot.expire_members().await
                {
                    tracing::warn!(error = %e, "expiries not applied");
                }
                if last_sync.elapsed() >= cobot.config.sync_every {
                    last_sync = tokio::time::Instant::now();
                    match cobot.sync(&|_, _| {}).await {
                        Ok(r) => tracing::info!(memberships = r.memberships, gone = r.gone, "platform sync done"),
                        Err(e) => tracing::warn!(error = %e, "platform sync failed"),
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lintel_connectors::cobot::Timespan;
    use lintel_proto::WorkState;

    use crate::testing::{self, FakeHttp};

    fn membership(starts: Option<&str>, canceled_to: Option<&str>) -> Membership {
        serde_json::from_value(json!({"id": "1", "plan": {"id": "p"}, "starts_at": starts, "canceled_to": canceled_to}))
            .unwrap()
    }

    #[test]
    fn access_runs_to_the_end_of_the_cancellation_day_in_the_spaces_zone() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let (active, until) = access(&membership(Some("2026/01/01"), Some("2026/03/31")), day("2026-03-31"), tz);
        assert!(active, "the last day still counts");
        let midnight = chrono::DateTime::parse_from_rfc3339("2026-04-01T00:00:00+02:00").unwrap();
        assert_eq!(until, Some(midnight.timestamp_micros()));
        assert!(!access(&membership(None, Some("2026/03/31")), day("2026-04-01"), tz).0, "over");
        assert!(!access(&membership(Some("2026/05/01"), None), day("2026-04-01"), tz).0, "not begun");
        assert_eq!(access(&membership(None, None), day("2026-04-01"), tz), (true, None));
    }

    #[test]
    fn pass_timespans_become_a_schedule() {
        let pass = PassType {
            id: "t".into(),
            name: None,
            parsed_timespans: vec![Timespan {
                weekdays: vec!["Monday".into(), "tue".into(), "funday".into()],
                from_hour: 8,
                from_minute: 0,
                to_hour: 18,
                to_minute: 30,
            }],
            duration_in_minutes: None,
        };
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let schedule = pass_schedule(&pass, tz);
        assert_eq!(schedule.tz, "Europe/Berlin");
        assert_eq!(schedule.rules[0].weekdays, vec![Weekday::Mon, Weekday::Tue]);
        assert_eq!((schedule.rules[0].from.as_str(), schedule.rules[0].to.as_str()), ("08:00", "18:30"));
        assert_eq!(pass_lasts(&pass), PassLasts::Span);
        let day_pass = PassType { parsed_timespans: vec![], ..pass.clone() };
        let every_day = pass_schedule(&day_pass, tz);
        assert_eq!(every_day.rules.len(), 1);
        assert_eq!(every_day.rules[0].weekdays.len(), 7, "the space's day, every day");
        assert_eq!((every_day.rules[0].from.as_str(), every_day.rules[0].to.as_str()), ("04:00", "03:59"));
        let two_hours = PassType { duration_in_minutes: Some(120), ..pass };
        assert_eq!(pass_lasts(&two_hours), PassLasts::Minutes(120));
    }

    /// A space whose members all join `members`, and the `full` plan's also `studio`;
    /// room 7 has a door.
    async fn space(platform: &FakeHttp) -> (tempfile::TempDir, Cobot) {
        let (dir, directory) = testing::directory().await;
        for group in ["members", "studio"] {
            directory
                .write(
                    &Actor::integration("cobot"),
                    move |store| async move { store.create_group(group, group, &[]).await },
                )
                .await
                .unwrap();
        }
        let config = CobotConfig {
            base_url: platform.url.clone(),
            api2_url: platform.url.clone(),
            token: "token".into(),
            public_url: None,
            default_group: Some("members".into()),
            plan_groups: [("full".to_owned(), "studio".to_owned())].into(),
            custom_field_groups: Default::default(),
            sync_every: Duration::from_secs(3600),
            timezone: chrono_tz::Europe::Berlin,
            buffer_minutes: 10,
            resource_doors: [("7".to_owned(), vec!["studio".to_owned()])].into(),
        };
        (dir, Cobot::new(config, directory, None, None, None).unwrap())
    }

    fn membership_json(id: &str, name: &str, plan: &str, canceled_to: Option<&str>) -> Value {
        json!({"id": id, "name": name, "email": format!("{}@example.org", name.to_lowercase()),
               "plan": {"id": format!("{plan}-copy"), "parent_plan": {"id": plan}},
               "starts_at": "2020/01/01", "canceled_to": canceled_to})
    }

    #[tokio::test]
    async fn members_follow_their_memberships_and_the_platform_learns_their_tokens() {
        let platform = FakeHttp::start().await;
        let (_dir, cobot) = space(&platform).await;
        let store = cobot.directory.store.clone();
        let ann = membership_json("1", "Ann", "full", None);
        let bob = membership_json("2", "Bob", "basic", Some("2021/12/31"));
        platform.answer("GET /api/plans", 200, json!([{"id": "full"}, {"id": "basic"}]));
        platform.answer("GET /api/memberships", 200, json!([ann, bob]));
        platform.answer("GET /api/bookings", 200, json!([]));
        platform.answer("POST /api/check_in_tokens", 201, json!({}));

        let report = cobot.sync(&|_, _| {}).await.unwrap();
        assert_eq!((report.memberships, report.created, report.inactive, report.gone), (2, 2, 1, 0));
        let ann = store.person("cobot-1").await.unwrap();
        assert_eq!((ann.name.as_str(), ann.email.as_deref()), ("Ann", Some("ann@example.org")));
        assert_eq!(ann.status, PersonStatus::Active);
        assert_eq!(ann.groups, ["members", "studio"], "the default group and the plan's");
        assert_eq!(ann.external_ids.get("cobot").map(String::as_str), Some("1"));
        assert_eq!(store.person("cobot-2").await.unwrap().status, PersonStatus::Suspended, "canceled: no access");

        let again = cobot.sync(&|_, _| {}).await.unwrap();
        assert_eq!((again.created, again.inactive), (0, 1), "the same state, nothing new");

        platform.answer("GET /api/memberships", 200, json!([membership_json("1", "Ann", "basic", None)]));
        let report = cobot.sync(&|_, _| {}).await.unwrap();
        assert_eq!(report.gone, 1, "Bob is gone from the platform");
        assert_eq!(store.person("cobot-1").await.unwrap().groups, ["members"], "out of the old plan's group");

        assert!(!store.cobot_member("1").await.unwrap().unwrap().token_registered);
        cobot.run_queues().await.unwrap();
        let member = store.cobot_member("1").await.unwrap().unwrap();
        assert!(member.token_registered, "the platform took the check-in token");
        let told = platform.requests("POST /api/check_in_tokens");
        assert!(told.contains(&json!({"membership_id": "1", "token": member.check_in_token})), "{told:?}");
        let sent = store.outbox(Some(WorkState::Done), 10).await.unwrap();
        assert_eq!(sent.iter().filter(|e| e.kind == "check_in_token").count(), 2, "one per member, once each");
    }

    #[tokio::test]
    async fn a_refusal_is_given_up_at_once_and_an_outage_is_retried() {
        let platform = FakeHttp::start().await;
        let (_dir, cobot) = space(&platform).await;
        let store = cobot.directory.store.clone();
        let starts = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
        let ends = (Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
        // An external booking of the room with a door, by someone who left no contact.
        platform.answer(
            "GET /api/bookings/900",
            200,
            json!({"id": "900", "from": starts, "to": ends, "resource": {"id": "7"}, "name": "Visitor"}),
        );
        platform.answer("GET /api/memberships/3", 503, json!({"error": "maintenance"}));
        // The visitor's details are in API 2: neither email nor phone.
        let relationships = json!({"externalBooking": {"data": {"id": "ext-900", "type": "externalBookings"}}});
        let booking = json!({"data": {"id": "900", "type": "bookings", "relationships": relationships}});
        platform.answer("GET /bookings/900", 200, booking);
        let visitor = json!({"data": {"id": "ext-900", "type": "externalBookings", "attributes": {"name": "Nemo"}}});
        platform.answer("GET /external_bookings/ext-900", 200, visitor);
        let deliver = async |path: &str| {
            let delivery = json!({"url": format!("{}{path}", platform.url)});
            cobot.receive("created_booking", &delivery, 100).await.unwrap().expect("stored")
        };
        let refused = deliver("/api/bookings/900").await;
        let outage = deliver("/api/memberships/3").await;
        // The platform refuses a check-in for good.
        let member = CobotMember {
            membership_id: "4".into(),
            person_id: "cobot-4".into(),
            plan_id: "full".into(),
            access_until: None,
            check_in_token: "lct_4".into(),
            token_registered: true,
        };
        store.save_cobot_member(&member).await.unwrap();
        store.enqueue("cobot", "check_in", "check-in-4", &json!({"membership_id": "4"})).await.unwrap();
        platform.answer("POST /api/check_ins", 422, json!({"error": "no time passes left"}));

        cobot.run_queues().await.unwrap();
        let inbox = store.inbox(None, 10).await.unwrap();
        let entry = |id: i64| inbox.iter().find(|e| e.id == id).unwrap();
        let (refused, outage) = (entry(refused), entry(outage));
        assert_eq!((refused.state, refused.attempts), (WorkState::Failed, 1), "not retried: {refused:?}");
        assert!(refused.last_error.as_deref().is_some_and(|e| e.contains("email address or a phone number")));
        assert_eq!((outage.state, outage.attempts), (WorkState::Pending, 1), "tried again later: {outage:?}");
        let check_in = &store.outbox(None, 10).await.unwrap()[0];
        assert_eq!((check_in.state, check_in.attempts), (WorkState::Failed, 1), "{check_in:?}");
        assert!(check_in.last_error.as_deref().is_some_and(|e| e.contains("no time passes left")));
        assert_eq!(platform.requests("POST /api/check_ins"), [json!({"token": "lct_4"})]);

        cobot.run_queues().await.unwrap();
        assert_eq!(platform.requests("POST /api/check_ins").len(), 1, "a refusal is asked once");
        assert_eq!(platform.requests("GET /api/memberships/3").len(), 1, "the outage waits for its retry");
    }
}
