//! The coworking membership platform (Cobot-style): members become people whose access
//! follows their membership (plan -> groups, cancellation date, time passes), and every
//! entry at a door that counts attendance becomes a check-in on the platform.
//!
//! Everything here is reconciliation: a webhook only says "look at this membership", and
//! lintel fetches it and makes its directory match. So the same delivery twice, a missed
//! delivery healed by the periodic sync, and a delivery arriving late all end in the same
//! state. Calls to the platform go through the outbox.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use chrono::{NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use lintel_connectors::cobot::{self, Booking, CobotError, Membership, PassType, Plan, UnusedPass};
use lintel_proto::CredentialKind;
use lintel_proto::{NewPerson, PersonPatch, PersonStatus, Schedule, ScheduleRule, Weekday};
use lintel_store::{
    Attempt, CobotMember, NewCredentialRecord, NewGrantRecord, PersonFilter, StoreError, WorkItem, valid_membership_id,
};
use serde::Serialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::problem::ApiError;

/// The `[cobot]` settings.
#[derive(Clone, Debug)]
pub struct CobotConfig {
    /// The space's API base, e.g. `https://space.cobot.me`: the only origin lintel fetches.
    pub base_url: String,
    pub token: String,
    /// lintel's own URL, for webhook subscriptions.
    pub public_url: Option<String>,
    /// The group every member joins (all doors of the space, typically).
    pub default_group: Option<String>,
    /// Space plan id -> group.
    pub plan_groups: BTreeMap<String, String>,
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
    pub client: cobot::Client,
}

impl Cobot {
    pub fn new(config: CobotConfig) -> Result<Self, CobotError> {
        let client = cobot::Client::new(&config.base_url, &config.token)?;
        Ok(Self { config, client })
    }

    /// Groups lintel manages for members: a member is taken out of those their plan no
    /// longer maps to, and never touched in any other.
    fn managed_groups(&self) -> BTreeSet<&str> {
        self.config.default_group.iter().chain(self.config.plan_groups.values()).map(String::as_str).collect()
    }

    fn groups_for(&self, m: &Membership) -> BTreeSet<String> {
        let plan = self.config.plan_groups.get(m.plan.space_plan_id());
        self.config.default_group.iter().chain(plan).cloned().collect()
    }
}

pub(crate) fn cobot_of(s: &AppState) -> Result<&Cobot, ApiError> {
    s.inner.cobot.as_ref().ok_or_else(|| ApiError::not_found("the membership platform is not configured ([cobot])"))
}

fn person_id(membership_id: &str) -> String {
    format!("cobot-{membership_id}")
}

/// The source of the grants that carry a member's time passes.
fn pass_source(membership_id: &str) -> String {
    format!("cobot-passes:{membership_id}")
}

#[derive(Debug, Default, Clone, Serialize, utoipa::ToSchema)]
pub struct SyncReport {
    pub memberships: usize,
    pub created: usize,
    /// Members whose membership is not (or no longer) current: access suspended.
    pub inactive: usize,
    /// Members lintel knew who are gone from the platform.
    pub gone: usize,
    pub with_passes: usize,
    /// Upcoming bookings of rooms with doors.
    pub bookings: usize,
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

/// A pass type's timespans as a lintel schedule (`None`: usable at any time).
fn pass_schedule(pass: &PassType, tz: Tz) -> Option<Schedule> {
    let rules: Vec<ScheduleRule> = pass
        .parsed_timespans
        .iter()
        .map(|t| ScheduleRule {
            weekdays: t.weekdays.iter().filter_map(|d| weekday(d)).collect(),
            from: format!("{:02}:{:02}", t.from_hour.min(24), t.from_minute.min(59)),
            to: format!("{:02}:{:02}", t.to_hour.min(24), t.to_minute.min(59)),
        })
        .filter(|r| !r.weekdays.is_empty())
        .collect();
    (!rules.is_empty()).then(|| Schedule { tz: tz.name().to_owned(), rules })
}

/// Makes lintel's directory match one membership. Idempotent.
pub async fn apply_membership(
    s: &AppState,
    cobot: &Cobot,
    m: &Membership,
    plans: &HashMap<String, Plan>,
) -> Result<Applied, ApiError> {
    if !valid_membership_id(&m.id) {
        return Err(ApiError::invalid(format!("membership id {:?} is not usable", m.id)));
    }
    let store = &s.store();
    let tz = cobot.config.timezone;
    let today = Utc::now().with_timezone(&tz).date_naive();
    let (active, access_until) = access(m, today, tz);
    let id = person_id(&m.id);
    let name: String = m
        .name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| format!("Member {}", m.id))
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    let email = m.email.clone().filter(|e| lintel_service::validate::email(e).is_ok());
    let status = if active { PersonStatus::Active } else { PersonStatus::Suspended };
    let known = store.cobot_member(&m.id).await?;
    let created = match store.person(&id).await {
        Ok(person) => {
            let patch = PersonPatch {
                name: (person.name != name).then(|| name.clone()),
                email: (person.email != email).then(|| email.clone()),
                status: (person.status != status).then_some(status),
                ..Default::default()
            };
            if patch.name.is_some() || patch.email.is_some() || patch.status.is_some() {
                let pid = id.clone();
                s.directory().write(move |store| async move { store.patch_person(&pid, &patch).await }).await?;
            }
            false
        }
        Err(StoreError::NotFound { .. }) => {
            let new = NewPerson {
                id: Some(id.clone()),
                name,
                email,
                status,
                external_ids: [("cobot".to_owned(), m.id.clone())].into(),
                ..Default::default()
            };
            let pid = id.clone();
            s.directory().write(move |store| async move { store.create_person(&new, &pid).await }).await?;
            true
        }
        Err(e) => return Err(e.into()),
    };

    // A plan with time passes gives access only through its passes; any other plan
    // through the member's groups.
    let plan = plans.get(m.plan.space_plan_id());
    let pass_types: &[PassType] = plan.map(|p| p.time_passes.as_slice()).unwrap_or_default();
    let targets = cobot.groups_for(m);
    let in_groups = if pass_types.is_empty() { targets.clone() } else { BTreeSet::new() };
    for group in cobot.managed_groups() {
        let member = in_groups.contains(group);
        let (g, p) = (group.to_owned(), id.clone());
        match s.directory().write(move |store| async move { store.set_member(&g, &p, member).await }).await {
            Ok(_) => {}
            Err(StoreError::NotFound { .. }) => tracing::error!(group, "a [cobot] group does not exist"),
            Err(e) => return Err(e.into()),
        }
    }
    let unused = if pass_types.is_empty() { Vec::new() } else { cobot_call(cobot.client.unused_passes(&m.id).await)? };
    replace_pass_grants(s, &m.id, &id, pass_types, &unused, &targets, tz).await?;

    let token = known.as_ref().map_or_else(|| lintel_service::secrets::generate("lct_"), |k| k.check_in_token.clone());
    let record = CobotMember {
        membership_id: m.id.clone(),
        person_id: id.clone(),
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
    Ok(Applied { created, active, passes: !pass_types.is_empty() })
}

pub struct Applied {
    pub created: bool,
    pub active: bool,
    pub passes: bool,
}

fn cobot_call<T>(r: Result<T, CobotError>) -> Result<T, ApiError> {
    r.map_err(|e| ApiError::new(axum::http::StatusCode::BAD_GATEWAY, "platform-unreachable", e.to_string()))
}

/// A member's pass grants: one per pass type with unused passes, over the doors of the
/// member's groups, with the type's timespans. Replaced whole on every change, so the
/// count is always the platform's.
async fn replace_pass_grants(
    s: &AppState,
    membership_id: &str,
    person: &str,
    pass_types: &[PassType],
    unused: &[UnusedPass],
    groups: &BTreeSet<String>,
    tz: Tz,
) -> Result<(), ApiError> {
    let store = &s.store();
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
            if count == 0 || doors.is_empty() {
                continue;
            }
            wanted.push(NewGrantRecord {
                person_id: Some(person.to_owned()),
                doors: Some(doors.iter().cloned().collect()),
                schedule: pass_schedule(pass, tz),
                passes: Some(u32::try_from(count).unwrap_or(u32::MAX)),
                source: Some(source.clone()),
                ..Default::default()
            });
        }
    }
    let existing: Vec<_> =
        store.grants(Some(person)).await?.into_iter().filter(|g| g.source.as_deref() == Some(&source)).collect();
    let unchanged = existing.len() == wanted.len()
        && existing.iter().zip(&wanted).all(|(have, want)| {
            have.passes == want.passes && have.doors == want.doors && have.schedule == want.schedule
        });
    if unchanged {
        return Ok(());
    }
    for grant in existing {
        s.directory().write(move |store| async move { store.delete_grant(&grant.id).await }).await?;
    }
    for grant in wanted {
        s.directory().write(move |store| async move { store.create_grant(&grant).await }).await?;
    }
    Ok(())
}

/// Takes a member's access away when the membership is gone from the platform.
async fn suspend(s: &AppState, person: &str) -> Result<(), ApiError> {
    let store = &s.store();
    match store.person(person).await {
        Ok(p) if p.status != PersonStatus::Suspended => {
            let patch = PersonPatch { status: Some(PersonStatus::Suspended), ..Default::default() };
            let id = person.to_owned();
            s.directory().write(move |store| async move { store.patch_person(&id, &patch).await }).await?;
        }
        Ok(_) | Err(StoreError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

async fn plans_by_id(cobot: &Cobot) -> Result<HashMap<String, Plan>, ApiError> {
    Ok(cobot_call(cobot.client.plans().await)?.into_iter().map(|p| (p.id.clone(), p)).collect())
}

/// A full reconciliation: every membership and plan. `progress(done, total)` is called
/// as it goes (the CLI draws a bar with it).
pub async fn sync(s: &AppState, progress: &(dyn Fn(usize, usize) + Sync)) -> Result<SyncReport, ApiError> {
    let cobot = cobot_of(s)?;
    let plans = plans_by_id(cobot).await?;
    let memberships = cobot_call(cobot.client.memberships().await)?;
    let mut report = SyncReport { memberships: memberships.len(), ..Default::default() };
    let mut listed = BTreeSet::new();
    for (n, m) in memberships.iter().enumerate() {
        match apply_membership(s, cobot, m, &plans).await {
            Ok(applied) => {
                report.created += usize::from(applied.created);
                report.inactive += usize::from(!applied.active);
                report.with_passes += usize::from(applied.passes);
            }
            Err(e) => tracing::warn!(membership = %m.id, error = %e.detail, "membership not applied"),
        }
        listed.insert(m.id.clone());
        progress(n + 1, memberships.len());
    }
    if !cobot.config.resource_doors.is_empty() {
        let today = Utc::now().with_timezone(&cobot.config.timezone).date_naive();
        let upcoming = cobot_call(cobot.client.bookings(today, today + chrono::Days::new(31)).await)?;
        for booking in &upcoming {
            match apply_booking(s, cobot, booking).await {
                Ok(()) => report.bookings += 1,
                Err(e) => tracing::warn!(booking = %booking.id, error = %e.detail, "booking not applied"),
            }
        }
    }
    for member in s.store().cobot_members().await? {
        if !listed.contains(&member.membership_id) {
            report.gone += 1;
            suspend(s, &member.person_id).await?;
        }
    }
    Ok(report)
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

/// What a delivery names: a resource kind and id, or why it names nothing lintel follows.
/// Nothing else of a delivery is trusted: the resource is fetched from its canonical URL on
/// the space, and only that answer (or its 404) counts. A URL must be exactly
/// `<base_url>/api/<kind>/<id>`; a deleted resource arrives whole, and only its id is taken.
/// The webhook stores only deliveries this accepts, and the processor reads them with it.
fn named(cobot: &Cobot, event: &str, payload: &Value) -> Result<(Resource, String), &'static str> {
    let fields = payload.as_object().ok_or("the delivery is a JSON object")?;
    let (resource, id) = match fields.get("url") {
        Some(Value::String(url)) => {
            if !cobot.client.owns(url) {
                return Err("refusing a URL outside the configured space (base_url)");
            }
            let not_followed = "the URL is not <base_url>/api/<memberships|bookings|check_ins>/<id>";
            let path = reqwest::Url::parse(url).map_err(|_| not_followed)?.path().to_owned();
            let base = reqwest::Url::parse(&cobot.config.base_url).map_err(|_| not_followed)?;
            let rest = path
                .strip_prefix(base.path().trim_end_matches('/'))
                .and_then(|rest| rest.strip_prefix("/api/"))
                .ok_or(not_followed)?;
            let (kind, id) = rest.split_once('/').ok_or(not_followed)?;
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

/// A delivery as the inbox keeps it: only what [`named`] reads (the canonical URL, or the
/// id of a deleted resource), so that every stored delivery is one the processor takes,
/// and each is small.
pub(crate) fn delivery(cobot: &Cobot, event: &str, payload: &Value) -> Result<Value, ApiError> {
    let (resource, id) = named(cobot, event, payload).map_err(ApiError::invalid)?;
    Ok(if payload.get("url").is_some() {
        json!({"url": cobot.client.url(&format!("/api/{}/{id}", resource.path()))})
    } else {
        json!({"id": id})
    })
}

/// Processes one inbox delivery. `Err` with a transient cause is retried.
async fn process(s: &AppState, cobot: &Cobot, item: &WorkItem) -> Result<(), CobotError> {
    let (resource, id) = named(cobot, &item.kind, &item.payload).map_err(|why| CobotError::Rejected(why.into()))?;
    let store_failed = |e: ApiError| CobotError::Unreachable(e.detail);
    match resource {
        Resource::Membership => reconcile_membership(s, cobot, &id).await,
        Resource::CheckIn => {
            let url = cobot.client.url(&format!("/api/check_ins/{id}"));
            let check_in: cobot::CheckIn = cobot.client.fetch(&url).await?;
            match check_in.membership() {
                Some(membership) if valid_membership_id(membership) => reconcile_membership(s, cobot, membership).await,
                _ => Ok(()),
            }
        }
        Resource::Booking => {
            let url = cobot.client.url(&format!("/api/bookings/{id}"));
            match cobot.client.fetch::<Booking>(&url).await {
                Ok(b) if b.id == id => {
                    let buffer = chrono::Duration::minutes(cobot.config.buffer_minutes);
                    // Over is over, whatever the event said; not over is applied.
                    if b.to + buffer <= Utc::now() {
                        end_booking(s, &id).await.map_err(store_failed)
                    } else {
                        apply_booking(s, cobot, &b).await.map_err(store_failed)
                    }
                }
                Ok(_) => Err(CobotError::Unparsable("the platform answered with another booking".into())),
                Err(CobotError::Status { status: 404 | 410, .. }) => end_booking(s, &id).await.map_err(store_failed),
                Err(e) => Err(e),
            }
        }
    }
}

/// Fetches a membership from its canonical URL and applies it; gone (404) suspends.
async fn reconcile_membership(s: &AppState, cobot: &Cobot, id: &str) -> Result<(), CobotError> {
    let store_failed = |e: ApiError| CobotError::Unreachable(e.detail);
    match cobot.client.membership(id).await {
        Ok(m) if m.id == id => {
            let plans = plans_by_id(cobot).await.map_err(|e| CobotError::Unreachable(e.detail))?;
            apply_membership(s, cobot, &m, &plans).await.map(drop).map_err(store_failed)
        }
        Ok(_) => Err(CobotError::Unparsable("the platform answered with another membership".into())),
        Err(CobotError::Status { status: 404 | 410, .. }) => suspend(s, &person_id(id)).await.map_err(store_failed),
        Err(e) => Err(e),
    }
}

/// The source of a booking's grant.
fn booking_source(booking_id: &str) -> String {
    format!("cobot-booking:{booking_id}")
}

/// A booking of a room with a door: its booker (a member, or a visitor lintel creates and
/// invites) may open the room's door and the doors on the way, from the start minus the
/// buffer to the end plus the buffer. A moved booking moves the grant. Idempotent.
pub async fn apply_booking(s: &AppState, cobot: &Cobot, b: &Booking) -> Result<(), ApiError> {
    let Some(doors) = cobot.config.resource_doors.get(&b.resource.id) else { return Ok(()) };
    if !valid_membership_id(&b.id) {
        return Err(ApiError::invalid(format!("booking id {:?} is not usable", b.id)));
    }
    let buffer = chrono::Duration::minutes(cobot.config.buffer_minutes);
    let (from, until) = ((b.from - buffer).timestamp_micros(), (b.to + buffer).timestamp_micros());
    if until <= Utc::now().timestamp_micros() {
        // Over already (the sync also lists today's past bookings): nothing to open.
        return Ok(());
    }
    let store = &s.store();
    let (person, visitor) = match &b.membership {
        Some(m) if valid_membership_id(&m.id) => {
            let id = person_id(&m.id);
            if store.person_pk(&id).await?.is_none() {
                let membership = cobot_call(cobot.client.membership(&m.id).await)?;
                apply_membership(s, cobot, &membership, &plans_by_id(cobot).await?).await?;
            }
            (id, false)
        }
        Some(m) => return Err(ApiError::invalid(format!("membership id {:?} is not usable", m.id))),
        None => (visitor(s, b, doors).await?, true),
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
            s.directory().write(move |store| async move { store.delete_grant(&grant.id).await }).await?;
        }
        s.directory().write(move |store| async move { store.create_grant(&wanted).await }).await?;
    }
    crate::lockcloud::booking_changed(s, &b.id, &person, doors, from, until).await?;
    store.save_cobot_booking(&b.id, &person, visitor, until).await?;
    Ok(())
}

/// The visitor of an external booking: created (with a personal secret, sent to them as
/// an invitation) the first time the booking is seen.
async fn visitor(s: &AppState, b: &Booking, doors: &[String]) -> Result<String, ApiError> {
    let store = &s.store();
    let id = format!("cobot-visitor-{}", b.id);
    if store.person_pk(&id).await?.is_some() {
        return Ok(id);
    }
    let email = b.email.clone().filter(|e| lintel_service::validate::email(e).is_ok());
    let phone = b.phone.clone().map(|p| p.chars().filter(|c| c.is_ascii_digit() || *c == '+').collect::<String>());
    let phone = phone.filter(|p| (6..=20).contains(&p.len()));
    if email.is_none() && phone.is_none() {
        return Err(ApiError::invalid("an external booking needs an email address or a phone number"));
    }
    let name: String = b
        .name
        .clone()
        .or_else(|| email.clone())
        .unwrap_or_else(|| format!("Visitor {}", b.id))
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    let new = NewPerson {
        id: Some(id.clone()),
        name: name.clone(),
        email: email.clone(),
        phone: phone.clone(),
        external_ids: [("cobot-booking".to_owned(), b.id.clone())].into(),
        attributes: serde_json::Map::from_iter([("visitor".to_owned(), Value::Bool(true))]),
        ..Default::default()
    };
    let pid = id.clone();
    s.directory().write(move |store| async move { store.create_person(&new, &pid).await }).await?;
    let secret = lintel_service::secrets::generate("lsk_");
    let record = NewCredentialRecord {
        kind: CredentialKind::Secret,
        card_uid: None,
        revocation_code: None,
        digest: Some(hex::encode(lintel_service::secrets::digest(&secret))),
    };
    let pid = id.clone();
    s.directory().write(move |store| async move { store.issue_credential(&pid, &record).await }).await?;
    crate::notify::invite(s, &id, &name, email.as_deref(), phone.as_deref(), &secret, doors, b).await?;
    Ok(id)
}

/// A booking deleted or over: its grant goes; a visitor goes altogether (which revokes
/// their secret).
async fn end_booking(s: &AppState, booking_id: &str) -> Result<(), ApiError> {
    let store = &s.store();
    let Some((person, visitor)) = store.cobot_booking(booking_id).await? else { return Ok(()) };
    if visitor {
        let id = person.clone();
        match s.directory().write(move |store| async move { store.delete_person(&id).await }).await {
            Ok(_) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    } else {
        let source = booking_source(booking_id);
        for grant in store.grants(Some(&person)).await?.into_iter().filter(|g| g.source.as_deref() == Some(&source)) {
            s.directory().write(move |store| async move { store.delete_grant(&grant.id).await }).await?;
        }
    }
    crate::lockcloud::booking_ended(s, booking_id).await?;
    store.forget_cobot_booking(booking_id).await?;
    Ok(())
}

/// Exponential backoff: 5 s, 10 s, 20 s, ... capped at 30 minutes; given up after a
/// day and a half of trying (about 80 attempts), and kept as failed.
fn next_attempt(attempts: i64, error: &CobotError) -> Attempt {
    if !error.is_transient() || attempts >= 80 {
        return Attempt::Failed(error.to_string());
    }
    let delay =
        Duration::from_secs(5u64.saturating_mul(1 << attempts.clamp(0, 9) as u32)).min(Duration::from_secs(1800));
    let at = Utc::now().timestamp_micros() + delay.as_micros() as i64;
    Attempt::RetryAt(at, error.to_string())
}

/// Runs the outbox's calls to the platform that are due.
async fn run_outbox(s: &AppState, cobot: &Cobot) -> Result<(), StoreError> {
    let store = &s.store();
    for item in store.due_outbox("cobot", 20).await? {
        let membership = item.payload["membership_id"].as_str().unwrap_or_default().to_owned();
        let result = match item.kind.as_str() {
            "check_in_token" => {
                let token = item.payload["token"].as_str().unwrap_or_default();
                let done = cobot.client.register_check_in_token(&membership, token).await;
                if done.is_ok() {
                    store.set_cobot_token_registered(&membership).await?;
                }
                done
            }
            "check_in" => match store.cobot_member(&membership).await? {
                Some(m) if m.token_registered => cobot.client.check_in(&m.check_in_token).await,
                // The token is not registered yet: its own outbox entry comes first.
                Some(_) => Err(CobotError::Unreachable("waiting for the member's check-in token".into())),
                None => Err(CobotError::Rejected(format!("no member {membership:?}"))),
            },
            other => Err(CobotError::Rejected(format!("unknown outbox kind {other:?}"))),
        };
        let attempt = match result {
            Ok(()) => Attempt::Done,
            Err(e) => {
                tracing::warn!(kind = %item.kind, error = %e, "platform call not done");
                next_attempt(item.attempts, &e)
            }
        };
        store.outbox_attempted(item.pk, &attempt).await?;
    }
    Ok(())
}

async fn run_inbox(s: &AppState, cobot: &Cobot) -> Result<(), StoreError> {
    let store = &s.store();
    for item in store.due_inbox("cobot", 20).await? {
        let attempt = match process(s, cobot, &item).await {
            Ok(()) => Attempt::Done,
            Err(e) => {
                tracing::warn!(event = %item.kind, error = %e, "webhook delivery not processed");
                next_attempt(item.attempts, &e)
            }
        };
        store.inbox_attempted(item.pk, &attempt).await?;
    }
    Ok(())
}

/// Suspends members whose cancellation date has passed and ends bookings that are over
/// (the webhooks may be missed).
async fn expire_members(s: &AppState) -> Result<(), ApiError> {
    let now = Utc::now().timestamp_micros();
    for (booking, _, _) in s.store().ended_cobot_bookings(now).await? {
        end_booking(s, &booking).await?;
    }
    for member in s.store().cobot_members().await? {
        if member.access_until.is_some_and(|until| until <= now) {
            suspend(s, &member.person_id).await?;
        }
    }
    Ok(())
}

/// The platform's background work while the server runs: the inbox and outbox every
/// second, check-ins queued from new entries, expiries, and the full sync on schedule.
pub fn spawn_workers(s: AppState) {
    s.clone().spawn_worker(async move {
        let Some(cobot) = s.inner.cobot.as_ref() else { return };
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Catch up on entries made while lintel was not running its workers.
        let mut window = chrono::Duration::hours(48);
        let mut seen_seq: Option<i64> = None;
        let mut last_sync = tokio::time::Instant::now();
        let mut ticks: u64 = 0;
        while s.unless_stopping(tick.tick()).await.is_some() {
            ticks += 1;
            // By time (the last 15 minutes; 48 hours at start) and by number (everything
            // stored since the last run, with a margin for commits that land out of order).
            let since = (Utc::now() - window).timestamp_micros();
            let store = &s.store();
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
            if let Err(e) = run_inbox(&s, cobot).await {
                tracing::warn!(error = %e, "inbox not processed");
            }
            if let Err(e) = run_outbox(&s, cobot).await {
                tracing::warn!(error = %e, "outbox not processed");
            }
            if ticks.is_multiple_of(3600) {
                let month_ago = (Utc::now() - chrono::Duration::days(30)).timestamp_micros();
                if let Err(e) = s.store().prune_inbox(month_ago).await {
                    tracing::warn!(error = %e, "inbox not pruned");
                }
            }
            if ticks.is_multiple_of(5)
                && let Err(e) = expire_members(&s).await
            {
                tracing::warn!(error = %e.detail, "expiries not applied");
            }
            if last_sync.elapsed() >= cobot.config.sync_every {
                last_sync = tokio::time::Instant::now();
                match sync(&s, &|_, _| {}).await {
                    Ok(r) => tracing::info!(memberships = r.memberships, gone = r.gone, "platform sync done"),
                    Err(e) => tracing::warn!(error = %e.detail, "platform sync failed"),
                }
            }
        }
    });
}

/// Creates the webhook subscriptions lintel needs, pointing at its public URL.
pub async fn subscribe(s: &AppState) -> Result<Vec<String>, ApiError> {
    let cobot = cobot_of(s)?;
    let public =
        cobot.config.public_url.clone().or_else(|| s.inner.services.config.public_url.clone()).ok_or_else(|| {
            ApiError::invalid("set public_url (or [cobot] public_url): the platform calls lintel there")
        })?;
    let mut made = Vec::new();
    for event in cobot::EVENTS {
        let callback = format!("{}/hooks/cobot/{event}", public.trim_end_matches('/'));
        cobot_call(cobot.client.subscribe(event, &callback).await)?;
        made.push(callback);
    }
    Ok(made)
}

/// Finds a member's person by membership id (for the API and tests).
pub async fn member_person(s: &AppState, membership_id: &str) -> Result<Option<String>, ApiError> {
    let filter =
        PersonFilter { external_id: Some(("cobot".into(), membership_id.into())), limit: 1, ..Default::default() };
    Ok(s.store().people(&filter).await?.0.pop().map(|p| p.id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lintel_connectors::cobot::Timespan;

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
        };
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let schedule = pass_schedule(&pass, tz).unwrap();
        assert_eq!(schedule.tz, "Europe/Berlin");
        assert_eq!(schedule.rules[0].weekdays, vec![Weekday::Mon, Weekday::Tue]);
        assert_eq!((schedule.rules[0].from.as_str(), schedule.rules[0].to.as_str()), ("08:00", "18:30"));
        assert_eq!(pass_schedule(&PassType { parsed_timespans: vec![], ..pass }, tz), None, "any time");
    }

    #[test]
    fn backoff_grows_and_refusals_fail_at_once() {
        let outage = CobotError::Unreachable("down".into());
        let at = |n| match next_attempt(n, &outage) {
            Attempt::RetryAt(at, _) => at - Utc::now().timestamp_micros(),
            other => panic!("{other:?}"),
        };
        assert!(at(0) <= 5_000_000 && at(3) > 30_000_000 && at(20) <= 1_800_000_000);
        assert!(matches!(next_attempt(80, &outage), Attempt::Failed(_)));
        let refused = CobotError::Status { status: 422, reason: "no time passes left".into() };
        assert!(matches!(next_attempt(0, &refused), Attempt::Failed(reason) if reason.contains("no time passes")));
    }
}
