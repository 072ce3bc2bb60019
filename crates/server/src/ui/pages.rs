//! The UI's pages: dashboard, people (search, a person, credentials, "why"), doors (and
//! opening one), attendance (chart and CSV) and the facility display.

use std::collections::{BTreeSet, HashMap};

use askama::Template;
use axum::Extension;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use chrono::{DateTime, Days, NaiveDate, Utc};
use chrono_tz::Tz;
use lintel_core::{CredentialKey, Decision, Index, Pk, Query as IndexQuery};
use lintel_proto::{
    Credential, CredentialKind, CredentialStatus, Door, DriverConfig, Enrolment, Event, Grant, Group, Person,
    PersonStatus, Reason, Schedule,
};
use lintel_store::{EventFilter, PersonFilter, Store, StoreError, grant_id};
use serde::Deserialize;

use super::edits::{DRIVER_KINDS, DriverFields, GrantEditor};
use super::session::Signed;
use super::{Ui, UiError, UiResult, html, is_htmx, words};
use crate::AppState;
use crate::export::spreadsheet_safe;
use lintel_core::{Action, Role};
use lintel_service::attendance::{ByDay, Report, local_midnight, next_day};
use lintel_service::validate;

/// What every page's frame shows.
pub struct PageCtx {
    pub csrf: String,
    pub who: String,
    pub active: &'static str,
    /// What the role may do, so that a page shows only that (the guard refuses the rest).
    pub may: Abilities,
}

pub struct Abilities {
    pub read: bool,
    pub manage_people: bool,
    pub open_doors: bool,
    pub configure: bool,
    /// Not limited to one site: may use what reaches every site (webhooks, the import).
    pub every_site: bool,
}

impl Abilities {
    pub fn of(role: Role, site: Option<&str>) -> Self {
        Self {
            read: role.may(Action::Read),
            manage_people: role.may(Action::ManagePeople),
            open_doors: role.may(Action::OpenDoors),
            configure: role.may(Action::Configure),
            every_site: site.is_none(),
        }
    }
}

pub(super) fn ctx(signed: &Signed, active: &'static str) -> PageCtx {
    let who = match &signed.site {
        Some(site) => format!("{} · {site}", signed.who.display()),
        None => signed.who.display(),
    };
    PageCtx { csrf: signed.csrf.clone(), who, active, may: Abilities::of(signed.role, signed.site.as_deref()) }
}

/// The newest `n` events that match `filter`, newest first. The log is read backwards
/// in windows of sequence numbers, at most 20,000 events back.
pub async fn recent_events(store: &Store, filter: EventFilter, n: usize) -> Result<Vec<Event>, StoreError> {
    let unfiltered = filter.kind.is_none()
        && filter.person_id.is_none()
        && filter.door.is_none()
        && filter.actor.is_none()
        && filter.site.is_none()
        && !filter.changes_only;
    let span: i64 = if unfiltered { (n as i64).clamp(1, 1000) } else { 1000 };
    let mut before = store.last_event_seq().await? + 1;
    let mut found = Vec::new();
    for _ in 0..20 {
        if before <= 1 || found.len() >= n {
            break;
        }
        let after = (before - 1 - span).max(0);
        let window = EventFilter { after: Some(after), before: Some(before), limit: span, ..filter.clone() };
        found.extend(store.events(&window).await?.into_iter().rev());
        before = after + 1;
    }
    found.truncate(n);
    Ok(found)
}

/// Display names of the people and doors some events name.
#[derive(Default)]
struct Names {
    people: HashMap<String, String>,
    doors: HashMap<String, String>,
}

impl Names {
    async fn load(store: &Store, events: &[&Event], doors: &[Door]) -> Self {
        let mut people = HashMap::new();
        for id in events.iter().filter_map(|e| e.person_id.as_deref()) {
            if !people.contains_key(id) {
                let name = store.person(id).await.map(|p| p.name).unwrap_or_else(|_| id.to_owned());
                people.insert(id.to_owned(), name);
            }
        }
        Self { people, doors: doors.iter().map(|d| (d.id.clone(), d.name.clone())).collect() }
    }

    fn person<'a>(&'a self, e: &Event) -> Option<&'a str> {
        e.person_id.as_ref().and_then(|p| self.people.get(p)).map(String::as_str)
    }

    fn door<'a>(&'a self, e: &Event) -> Option<&'a str> {
        e.door.as_ref().and_then(|d| self.doors.get(d)).map(String::as_str)
    }
}

/// One line of an event feed.
pub struct FeedItem {
    pub id: String,
    pub when: String,
    pub iso: String,
    pub ago: String,
    pub text: String,
    pub tone: &'static str,
}

fn feed_item(e: &Event, names: &Names, tz: Tz, now: DateTime<Utc>) -> FeedItem {
    FeedItem {
        id: e.id.clone(),
        when: words::local(e.at, tz),
        iso: e.at.to_rfc3339(),
        ago: words::ago(e.at, now),
        text: words::event(e, names.person(e), names.door(e)),
        tone: words::event_tone(e),
    }
}

pub(super) async fn feed(store: &Store, events: &[Event], doors: &[Door], tz: Tz) -> Vec<FeedItem> {
    let refs: Vec<&Event> = events.iter().collect();
    let names = Names::load(store, &refs, doors).await;
    let now = Utc::now();
    events.iter().map(|e| feed_item(e, &names, tz, now)).collect()
}

/// A tile of the facility display: someone who just came in.
pub struct CheckIn {
    pub id: String,
    pub name: String,
    /// The person's photo (a UI route), when there is one; their initials otherwise.
    pub photo: Option<String>,
    pub initials: String,
    pub tint: u8,
    pub door: String,
    pub time: String,
    pub iso: String,
}

fn is_check_in(e: &Event) -> bool {
    e.kind == "decision" && e.allowed == Some(true) && e.person_id.is_some()
}

async fn check_ins(app: &AppState, events: &[&Event], doors: &[Door], tz: Tz) -> Vec<CheckIn> {
    let names = Names::load(app.store(), events, doors).await;
    let mut photos = HashMap::new();
    for person in events.iter().filter_map(|e| e.person_id.as_deref()) {
        if !photos.contains_key(person) {
            photos.insert(person, app.services().photos.exists(person).await);
        }
    }
    events
        .iter()
        .map(|e| {
            let name = names.person(e).unwrap_or("Someone").to_owned();
            let person = e.person_id.as_deref().unwrap_or_default();
            CheckIn {
                id: e.id.clone(),
                photo: photos.get(person).copied().unwrap_or(false).then(|| format!("/ui/people/{person}/photo")),
                initials: words::initials(&name),
                tint: words::tint(e.person_id.as_deref().unwrap_or_default()),
                name,
                door: names.door(e).or(e.door.as_deref()).unwrap_or_default().to_owned(),
                time: e.at.with_timezone(&tz).format("%H:%M").to_string(),
                iso: e.at.to_rfc3339(),
            }
        })
        .collect()
}

pub struct DoorRow {
    pub id: String,
    pub name: String,
    pub site: String,
    pub driver: &'static str,
    pub state: &'static str,
    pub tone: &'static str,
    pub last_activity: String,
    pub error: Option<String>,
    /// In lockdown now.
    pub lockdown: bool,
    /// Held unlocked now (free passage).
    pub unlocked: bool,
}

fn door_state(d: &Door) -> (&'static str, &'static str) {
    match (&d.driver, d.state.online) {
        (DriverConfig::None {}, _) => ("no device (records only)", "muted"),
        (_, Some(true)) => ("online", "ok"),
        (_, Some(false)) => ("offline", "bad"),
        (_, None) => ("not heard from yet", "muted"),
    }
}

/// What happened at a door (not changes to its settings).
fn is_activity(e: &Event) -> bool {
    matches!(e.kind.as_str(), "decision" | "door.opened" | "door.driver_failed" | "doorbell.rang")
}

fn door_row(d: &Door, recent: &[Event], tz: Tz, now: DateTime<Utc>) -> DoorRow {
    let (state, tone) = door_state(d);
    let last = recent
        .iter()
        .find(|e| e.door.as_deref() == Some(&d.id) && is_activity(e))
        .map(|e| e.at)
        .or(d.state.last_opened)
        .or(d.state.last_seen);
    DoorRow {
        id: d.id.clone(),
        name: d.name.clone(),
        site: d.site.clone(),
        driver: d.driver.kind(),
        state,
        tone,
        last_activity: last
            .map_or("none yet".into(), |at| format!("{} ({})", words::ago(at, now), words::local(at, tz))),
        error: d.state.last_error.clone(),
        lockdown: d.state.lockdown_by.is_some(),
        unlocked: d.state.hold_open(),
    }
}

pub struct Health {
    pub name: &'static str,
    pub state: &'static str,
    pub tone: &'static str,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Dashboard {
    page: PageCtx,
    /// (id, name) of every site, to show one; the one shown (empty: all).
    sites: Vec<(String, String)>,
    site: String,
    doors: Vec<DoorRow>,
    feed: Vec<FeedItem>,
    present_today: usize,
    entries_today: usize,
    health: Vec<Health>,
    failures: Vec<FeedItem>,
    /// The names of the doors shown that are in lockdown.
    locked: Vec<String>,
    /// The sites shown under an emergency release (id, name), and who raised it.
    emergencies: Vec<(String, String, String)>,
    /// The open alarms at the doors shown, newest first.
    alarms: Vec<AlarmRow>,
}

/// An open alarm on the dashboard.
pub struct AlarmRow {
    pub id: String,
    pub door: String,
    pub what: &'static str,
    pub when: String,
    /// Its condition has cleared; it waits for an acknowledgement.
    pub cleared: bool,
    pub acked_by: Option<String>,
}

fn alarm_words(kind: &str) -> &'static str {
    match kind {
        "forced_open" => "forced open",
        "held_open" => "held open too long",
        "tamper" => "tampered with",
        "device_offline" => "its device is offline",
        "anti_passback" => "someone entered twice without leaving (anti-passback)",
        _ => "alarm",
    }
}

/// The dashboard, of one site when `site` is given: its doors, its entries today, its events.
pub async fn dashboard(
    State(ui): State<Ui>,
    Extension(signed): Extension<Signed>,
    Query(q): Query<DoorsQuery>,
) -> UiResult {
    let app = &ui.app;
    let store = &app.store();
    let tz = app.services().config.timezone;
    let now = Utc::now();
    let site = q.site.filter(|s| !s.is_empty());
    let doors = store.doors(site.as_deref()).await?;
    let recent = recent_events(store, EventFilter { site: site.clone(), ..EventFilter::default() }, 500).await?;
    let today = now.with_timezone(&tz).date_naive();
    let entries = store
        .entries_between(
            local_midnight(tz, today).timestamp_micros(),
            local_midnight(tz, next_day(today)).timestamp_micros(),
            site.as_deref(),
        )
        .await?;
    let present_today = entries.iter().map(|(p, _)| p).collect::<BTreeSet<_>>().len();
    let day_ago = now - chrono::Duration::hours(24);
    let failed: Vec<Event> =
        recent.iter().filter(|e| e.kind == "door.driver_failed" && e.at > day_ago).take(5).cloned().collect();
    let failed_count = recent.iter().filter(|e| e.kind == "door.driver_failed" && e.at > day_ago).count();
    let offline = doors.iter().filter(|d| d.state.online == Some(false)).count();
    let mut health = Vec::new();
    health.push(match (offline, failed_count) {
        (0, 0) => {
            Health { name: "Door devices", state: "fine", tone: "ok", detail: "no failures in the last 24 h".into() }
        }
        _ => Health {
            name: "Door devices",
            state: "failing",
            tone: "bad",
            detail: format!("{offline} offline; {failed_count} failed openings in the last 24 h"),
        },
    });
    if app.services().config.mqtt.is_some() {
        let controllers = lintel_service::devices::controllers::overview(app.store()).await?;
        let offline = controllers.iter().filter(|c| c.online == Some(false)).count();
        let drifting: Vec<&str> = controllers.iter().filter(|c| c.drift).map(|c| c.id.as_str()).collect();
        let refused = controllers.iter().filter(|c| c.refused.is_some()).count();
        let detail = format!(
            "{} controllers, {offline} offline; {}{}",
            controllers.len(),
            if drifting.is_empty() {
                "every allow-list acknowledged".to_owned()
            } else {
                format!("allow-list not acknowledged yet by {}", drifting.join(", "))
            },
            if refused > 0 { format!("; {refused} refused a list") } else { String::new() }
        );
        let fine = offline == 0 && drifting.is_empty() && refused == 0;
        health.push(Health {
            name: "MQTT controllers",
            state: if fine { "fine" } else { "attention" },
            tone: if fine { "ok" } else { "bad" },
            detail,
        });
    }
    health.push(match &app.services().config.slack {
        Some(slack) => Health {
            name: "Slack",
            state: "configured",
            tone: "ok",
            detail: format!(
                "compares with the workspace every {} min{}",
                slack.reconcile_every.as_secs() / 60,
                slack.group.as_ref().map(|g| format!("; members join group {g}")).unwrap_or_default()
            ),
        },
        None => Health { name: "Slack", state: "not configured", tone: "muted", detail: "see the README".into() },
    });
    health.push(match &app.services().config.doorbell {
        Some(bell) => {
            let rang = recent.iter().find(|e| e.kind == "doorbell.rang").map(|e| words::ago(e.at, now));
            Health {
                name: "Doorbell",
                state: "configured",
                tone: "ok",
                detail: format!(
                    "its button opens {}; last ring: {}",
                    bell.door,
                    rang.unwrap_or_else(|| "not among the latest events".into())
                ),
            }
        }
        None => Health { name: "Doorbell", state: "not configured", tone: "muted", detail: String::new() },
    });
    let cobot = &app.services().config.cobot;
    health.push(match cobot {
        Some(cobot) => Health {
            name: "Membership platform",
            state: "configured",
            tone: "ok",
            detail: format!("{}; synchronised every {} min", cobot.base_url, cobot.sync_every.as_secs() / 60),
        },
        None => Health { name: "Membership platform", state: "not configured", tone: "muted", detail: String::new() },
    });
    let (inbox_pending, inbox_failed, outbox_pending, outbox_failed) = store.work_backlog().await?;
    if inbox_pending + inbox_failed + outbox_pending + outbox_failed > 0 || cobot.is_some() {
        let failing = inbox_failed + outbox_failed > 0;
        let last_failure = if outbox_failed > 0 {
            let failed = store.outbox(Some(lintel_proto::WorkState::Failed), 1).await?;
            failed.into_iter().next().and_then(|e| e.last_error).map(|e| format!("; last failure: {e}"))
        } else {
            None
        };
        health.push(Health {
            name: "Inbox and outbox",
            state: if failing { "failures" } else { "fine" },
            tone: if failing { "bad" } else { "ok" },
            detail: format!(
                "{inbox_pending} received and waiting, {inbox_failed} failed; {outbox_pending} to send, \
                 {outbox_failed} failed{}",
                last_failure.unwrap_or_default()
            ),
        });
    }
    health.push(match &app.services().config.oidc {
        Some(oidc) => Health {
            name: "OpenID Connect",
            state: "configured",
            tone: "ok",
            detail: format!("issuer {}", oidc.issuer),
        },
        None => Health { name: "OpenID Connect", state: "not configured", tone: "muted", detail: String::new() },
    });
    let page = Dashboard {
        page: ctx(&signed, "dashboard"),
        sites: site_choices(store, &signed).await?,
        site: site.clone().unwrap_or_default(),
        locked: doors.iter().filter(|d| d.state.lockdown_by.is_some()).map(|d| d.name.clone()).collect(),
        emergencies: store
            .sites()
            .await?
            .into_iter()
            .filter(|s| site.as_deref().is_none_or(|shown| shown == s.id))
            .filter_map(|s| s.emergency_by.map(|by| (s.id, s.name, by)))
            .collect(),
        alarms: store
            .alarms(false, site.as_deref())
            .await?
            .into_iter()
            .map(|a| AlarmRow {
                door: doors.iter().find(|d| d.id == a.door).map_or_else(|| a.door.clone(), |d| d.name.clone()),
                what: alarm_words(&a.kind),
                when: format!("{} ({})", words::ago(a.raised_at, now), words::local(a.raised_at, tz)),
                cleared: a.cleared_at.is_some(),
                acked_by: a.acked_by,
                id: a.id,
            })
            .collect(),
        doors: doors.iter().map(|d| door_row(d, &recent, tz, now)).collect(),
        feed: feed(store, &recent[..recent.len().min(20)], &doors, tz).await,
        present_today,
        entries_today: entries.len(),
        health,
        failures: feed(store, &failed, &doors, tz).await,
    };
    html(&page)
}

// ---- people ----

pub struct PersonRow {
    pub id: String,
    pub name: String,
    pub email: String,
    pub status: &'static str,
    pub groups: String,
    pub initials: String,
    pub tint: u8,
}

#[derive(Template)]
#[template(path = "people.html")]
struct PeoplePage {
    page: PageCtx,
    q: String,
    results: PeopleResults,
}

pub struct PeopleResults {
    q: String,
    rows: Vec<PersonRow>,
    more: bool,
}

#[derive(Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    q: String,
}

async fn search(store: &Store, q: &str) -> UiResult<PeopleResults> {
    const SHOWN: i64 = 50;
    let q = q.trim().chars().take(100).collect::<String>();
    let filter = PersonFilter { q: (!q.is_empty()).then(|| q.clone()), limit: SHOWN + 1, ..Default::default() };
    let (mut people, _) = store.people(&filter).await?;
    let more = people.len() as i64 > SHOWN;
    people.truncate(SHOWN as usize);
    let rows = people
        .into_iter()
        .map(|p| PersonRow {
            initials: words::initials(&p.name),
            tint: words::tint(&p.id),
            email: p.email.unwrap_or_default(),
            status: p.status.as_str(),
            groups: p.groups.join(", "),
            name: p.name,
            id: p.id,
        })
        .collect();
    Ok(PeopleResults { q, rows, more })
}

pub async fn people(
    State(ui): State<Ui>,
    Extension(signed): Extension<Signed>,
    Query(q): Query<SearchQuery>,
) -> UiResult {
    let results = search(ui.app.store(), &q.q).await?;
    html(&PeoplePage { page: ctx(&signed, "people"), q: results.q.clone(), results })
}

#[derive(Template)]
#[template(path = "people_results_fragment.html")]
struct PeopleResultsFragment {
    results: PeopleResults,
}

pub async fn people_search(State(ui): State<Ui>, Query(q): Query<SearchQuery>) -> UiResult {
    html(&PeopleResultsFragment { results: search(ui.app.store(), &q.q).await? })
}

pub struct CredRow {
    pub id: String,
    pub kind: &'static str,
    pub what: String,
    pub status: &'static str,
    pub status_reason: String,
    pub created: String,
    pub active: bool,
    pub renewable: bool,
}

fn kind_label(kind: CredentialKind) -> &'static str {
    match kind {
        CredentialKind::Card => "Card",
        CredentialKind::Pin => "PIN",
        CredentialKind::Secret => "Personal secret",
        CredentialKind::BackupCode => "Backup code",
    }
}

fn credential_name(c: &Credential) -> String {
    match (&c.kind, &c.uid) {
        (CredentialKind::Card, Some(uid)) => format!("card {uid}"),
        (kind, _) => format!("{} {}", kind_label(*kind).to_lowercase(), c.id),
    }
}

/// A secret or backup code just made: shown this once.
pub struct ShownOnce {
    pub label: &'static str,
    pub value: String,
}

pub struct CredsPanel {
    pub csrf: String,
    /// The role may issue and revoke (the forms show).
    pub editable: bool,
    /// (id, name) of the doors a card can be enrolled at.
    pub doors: Vec<(String, String)>,
    pub person_id: String,
    pub rows: Vec<CredRow>,
    pub shown_once: Option<ShownOnce>,
    pub notice: Option<String>,
    pub error: Option<String>,
}

pub struct WhyRow {
    pub door_id: String,
    pub door_name: String,
    pub allowed: bool,
    pub verdict: &'static str,
    pub explanation: String,
}

pub struct WhyPanel {
    pub person_id: String,
    pub name: String,
    pub at: String,
    pub rows: Vec<WhyRow>,
    pub more: usize,
}

pub struct GrantRow {
    pub id: String,
    pub via: String,
    pub doors: String,
    pub terms: String,
    pub source: String,
    /// The hours' editor of a person's own grant (a group's is edited on its page).
    pub ed: Option<GrantEditor>,
    pub group_id: String,
}

pub struct PersonView {
    pub id: String,
    pub name: String,
    pub initials: String,
    pub tint: u8,
    pub email: String,
    pub phone: String,
    pub status: &'static str,
    pub suspended: bool,
    pub operator: bool,
    pub groups: Vec<(String, String)>,
    pub skills: Vec<String>,
    pub external_ids: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "person.html")]
struct PersonPage {
    page: PageCtx,
    person: PersonView,
    creds: CredsPanel,
    grants: Vec<GrantRow>,
    /// (id, name) of the groups the person is not in, to join.
    other_groups: Vec<(String, String)>,
    all_doors: Vec<(String, String)>,
    new_grant: GrantEditor,
    why: WhyPanel,
    events: Vec<FeedItem>,
}

/// The answer to a credential form sent by htmx: the credentials, and the "why" table
/// (out of band), since the decisions may have changed.
#[derive(Template)]
#[template(path = "credentials_fragment.html")]
struct CredsFragment {
    creds: CredsPanel,
    why: WhyPanel,
}

/// Everything a person's page shows, read once.
struct PersonData {
    person: Person,
    pk: Option<Pk>,
    credentials: Vec<Credential>,
    groups: HashMap<String, Group>,
    grants: Vec<Grant>,
    doors: Vec<Door>,
}

impl PersonData {
    /// The person as `signed` may see them: an operator limited to a site sees only the
    /// grants and doors of their site.
    async fn load(app: &AppState, signed: &Signed, id: &str) -> Result<Self, UiError> {
        let store = &app.store();
        let person = store.person(id).await?;
        let pk = store.person_pk(id).await?;
        let credentials = store.person_credentials(id).await?;
        let groups: HashMap<String, Group> = store.groups().await?.into_iter().map(|g| (g.id.clone(), g)).collect();
        let at = match &signed.site {
            Some(site) => Some(lintel_service::site_limits::SiteDoors::of(store, site).await?),
            None => None,
        };
        let grants = store
            .grants(None)
            .await?
            .into_iter()
            .filter(|g| {
                g.person_id.as_deref() == Some(id) || g.group_id.as_ref().is_some_and(|gid| person.groups.contains(gid))
            })
            .filter(|g| at.as_ref().is_none_or(|at| at.grant(g)))
            .collect();
        let doors = store.doors(signed.site.as_deref()).await?;
        Ok(Self { person, pk, credentials, groups, grants, doors })
    }

    fn door_name<'a>(&'a self, id: &'a str) -> &'a str {
        self.doors.iter().find(|d| d.id == id).map_or(id, |d| d.name.as_str())
    }

    fn group_name<'a>(&'a self, id: &'a str) -> &'a str {
        self.groups.get(id).map_or(id, |g| g.name.as_str())
    }

    fn view(&self) -> PersonView {
        let p = &self.person;
        PersonView {
            id: p.id.clone(),
            name: p.name.clone(),
            initials: words::initials(&p.name),
            tint: words::tint(&p.id),
            email: p.email.clone().unwrap_or_default(),
            phone: p.phone.clone().unwrap_or_default(),
            status: p.status.as_str(),
            suspended: p.status == PersonStatus::Suspended,
            operator: lintel_service::integrations::oidc::is_operator(p),
            groups: p.groups.iter().map(|g| (g.clone(), self.group_name(g).to_owned())).collect(),
            skills: p.skills.clone(),
            external_ids: p.external_ids.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    }

    fn creds(&self, signed: &Signed, tz: Tz) -> CredsPanel {
        let rows = self
            .credentials
            .iter()
            .map(|c| CredRow {
                id: c.id.clone(),
                kind: kind_label(c.kind),
                what: match (&c.uid, &c.revocation_code) {
                    (Some(uid), Some(code)) => format!("{uid} (revocation code {code})"),
                    (Some(uid), None) => uid.clone(),
                    _ => String::new(),
                },
                status: c.status.as_str(),
                status_reason: c.status_reason.clone().unwrap_or_default(),
                created: words::local(c.created_at, tz),
                active: c.status == CredentialStatus::Active,
                renewable: matches!(c.kind, CredentialKind::Secret | CredentialKind::BackupCode),
            })
            .collect();
        CredsPanel {
            csrf: signed.csrf.clone(),
            editable: signed.role.may(Action::ManagePeople),
            doors: self.doors.iter().map(|d| (d.id.clone(), d.name.clone())).collect(),
            person_id: self.person.id.clone(),
            rows,
            shown_once: None,
            notice: None,
            error: None,
        }
    }

    fn doors_of(&self, g: &Grant) -> String {
        let group_doors = |gid: &str| format!("the doors of group {}", self.group_name(gid));
        match (&g.doors, &g.door_group, &g.group_id) {
            (Some(doors), _, _) => doors.iter().map(|d| self.door_name(d)).collect::<Vec<_>>().join(", "),
            (None, Some(dg), _) => group_doors(dg),
            (None, None, Some(gid)) => group_doors(gid),
            (None, None, None) => "no doors".into(),
        }
    }

    fn covers(&self, g: &Grant, door: &str) -> bool {
        let in_group = |gid: &String| self.groups.get(gid).is_some_and(|g| g.doors.iter().any(|d| d == door));
        match (&g.doors, &g.door_group, &g.group_id) {
            (Some(doors), _, _) => doors.iter().any(|d| d == door),
            (None, Some(dg), _) => in_group(dg),
            (None, None, Some(gid)) => in_group(gid),
            (None, None, None) => false,
        }
    }

    fn grants(&self, tz: Tz) -> Vec<GrantRow> {
        self.grants
            .iter()
            .map(|g| GrantRow {
                id: g.id.clone(),
                via: match &g.group_id {
                    Some(gid) => format!("as a member of {}", self.group_name(gid)),
                    None => "own grant".into(),
                },
                doors: self.doors_of(g),
                terms: words::grant_terms(g, tz),
                source: g.source.clone().unwrap_or_default(),
                ed: g.person_id.is_some().then(|| GrantEditor::of(Some(g), self.back(), tz)),
                group_id: g.group_id.clone().unwrap_or_default(),
            })
            .collect()
    }

    fn back(&self) -> String {
        format!("/ui/people/{}", self.person.id)
    }

    /// For every door (the first 100): would this person get in now, and why.
    fn why(&self, index: &Index, tz: Tz) -> WhyPanel {
        const SHOWN: usize = 100;
        let now = Utc::now();
        let name = self.person.name.clone();
        let rows = self.doors.iter().take(SHOWN).map(|door| self.why_at(index, door, now, tz)).collect();
        WhyPanel {
            person_id: self.person.id.clone(),
            name,
            at: words::local(now, tz),
            rows,
            more: self.doors.len().saturating_sub(SHOWN),
        }
    }

    fn grant_words(&self, pk: Option<Pk>, tz: Tz) -> String {
        let id = pk.map(grant_id);
        match self.grants.iter().find(|g| Some(&g.id) == id.as_ref()) {
            Some(g) => format!("grant {} ({}, {})", g.id, self.doors_of(g), words::grant_terms(g, tz)),
            None => "a grant".into(),
        }
    }

    fn why_at(&self, index: &Index, door: &Door, now: DateTime<Utc>, tz: Tz) -> WhyRow {
        let mut row = WhyRow {
            door_id: door.id.clone(),
            door_name: door.name.clone(),
            allowed: false,
            verdict: "Cannot enter now",
            explanation: String::new(),
        };
        let Some(pk) = self.pk else {
            row.explanation = "the person is not in the decision index".into();
            return row;
        };
        // The person on their own authority (grants, skills, status)...
        let decision = index.decide_for_person(&door.id, pk, now);
        // ...and each credential as a reader would see it presented.
        let by_credential: Vec<(&Credential, Reason)> =
            self.credentials.iter().map(|c| (c, credential_decision(index, c, &door.id, &decision, now))).collect();
        let working: Vec<String> =
            by_credential.iter().filter(|(_, r)| *r == Reason::Granted).map(|(c, _)| credential_name(c)).collect();
        if !working.is_empty() {
            row.allowed = true;
            row.verdict = "Can enter now";
            row.explanation = format!("with {}: {}", working.join(", "), self.grant_words(decision.grant, tz));
        } else if decision.allowed() {
            let why_not: Vec<String> = by_credential
                .iter()
                .map(|(c, r)| format!("{} {}", credential_name(c), credential_state(c, *r)))
                .collect();
            row.explanation = if why_not.is_empty() {
                format!(
                    "{} allows it, but {} has no credential to show",
                    self.grant_words(decision.grant, tz),
                    self.person.name
                )
            } else {
                format!(
                    "{} allows it, but no credential of {} works: {}",
                    self.grant_words(decision.grant, tz),
                    self.person.name,
                    why_not.join("; ")
                )
            };
        } else {
            row.explanation = explain_denial(&decision);
            if matches!(
                decision.reason,
                Reason::OutsideSchedule | Reason::NotYetValid | Reason::Expired | Reason::NoPassesLeft
            ) {
                let covering: Vec<String> = self
                    .grants
                    .iter()
                    .filter(|g| self.covers(g, &door.id))
                    .map(|g| format!("grant {}: {}", g.id, words::grant_terms(g, tz)))
                    .collect();
                if !covering.is_empty() {
                    row.explanation = format!("{} ({})", row.explanation, covering.join("; "));
                }
            }
        }
        row
    }
}

fn explain_denial(d: &Decision) -> String {
    match d.reason {
        // The core's own words name the skill.
        Reason::MissingSkill => d.detail.to_string(),
        r => words::reason(r).to_owned(),
    }
}

/// What presenting this credential at the door would give now.
fn credential_decision(index: &Index, c: &Credential, door: &str, person: &Decision, at: DateTime<Utc>) -> Reason {
    match (c.status, c.kind, &c.uid) {
        (CredentialStatus::Active, CredentialKind::Card, Some(uid)) => match CredentialKey::card(uid) {
            Ok(key) => {
                let q = IndexQuery { door, key, digest: None, revocation_code: c.revocation_code.as_deref(), at };
                index.decide(&q).reason
            }
            Err(_) => Reason::UnknownCredential,
        },
        // A PIN or secret is kept as a digest: presented, it leads to its person.
        (CredentialStatus::Active, _, _) => person.reason,
        (_, _, _) => Reason::CredentialRevoked,
    }
}

fn credential_state(c: &Credential, r: Reason) -> String {
    match c.status {
        CredentialStatus::Revoked => match &c.status_reason {
            Some(why) => format!("was revoked ({why})"),
            None => "was revoked".into(),
        },
        CredentialStatus::Used => "was used up".into(),
        CredentialStatus::Active => format!("is refused: {}", words::reason(r)),
    }
}

async fn person_page(ui: &Ui, signed: &Signed, data: &PersonData, creds: CredsPanel) -> UiResult<PersonPage> {
    let app = &ui.app;
    let tz = app.inner.services.config.timezone;
    let store = &app.store();
    let filter =
        EventFilter { person_id: Some(data.person.id.clone()), site: signed.site.clone(), ..Default::default() };
    let events = recent_events(store, filter, 15).await?;
    let index = app.directory().index();
    Ok(PersonPage {
        page: ctx(signed, "people"),
        person: data.view(),
        creds,
        grants: data.grants(tz),
        other_groups: data
            .groups
            .values()
            .filter(|g| !data.person.groups.contains(&g.id))
            .map(|g| (g.id.clone(), g.name.clone()))
            .collect(),
        all_doors: data.doors.iter().map(|d| (d.id.clone(), d.name.clone())).collect(),
        new_grant: GrantEditor::of(None, data.back(), tz),
        why: data.why(&index, tz),
        events: feed(store, &events, &data.doors, tz).await,
    })
}

pub async fn person(State(ui): State<Ui>, Extension(signed): Extension<Signed>, Path(id): Path<String>) -> UiResult {
    let data = PersonData::load(&ui.app, &signed, &id).await?;
    let creds = data.creds(&signed, ui.app.inner.services.config.timezone);
    html(&person_page(&ui, &signed, &data, creds).await?)
}

#[derive(Template)]
#[template(path = "enrol.html")]
struct EnrolFragment {
    id: String,
    person_id: String,
    door: String,
    state: String,
    until: String,
    uid: String,
}

impl EnrolFragment {
    fn of(e: Enrolment, tz: Tz) -> Self {
        Self {
            until: words::local(e.expires_at, tz),
            id: e.id,
            person_id: e.person_id,
            door: e.door,
            state: e.state,
            uid: e.uid.unwrap_or_default(),
        }
    }
}

#[derive(Deserialize)]
pub struct EnrolForm {
    door: String,
}

/// Starts waiting for a tap; the answer polls until the card arrives or time is up.
pub async fn start_enrol(
    State(ui): State<Ui>,
    Extension(signed): Extension<Signed>,
    Path(id): Path<String>,
    Form(form): Form<EnrolForm>,
) -> UiResult {
    let started = lintel_service::enrolments::start(ui.app.directory(), &signed.actor(), &id, &form.door).await?;
    html(&EnrolFragment::of(started, ui.app.inner.services.config.timezone))
}

pub async fn enrol_state(State(ui): State<Ui>, Path((_, enrolment)): Path<(String, String)>) -> UiResult {
    let now = lintel_service::enrolments::check(ui.app.directory(), &enrolment).await?;
    html(&EnrolFragment::of(now, ui.app.inner.services.config.timezone))
}

#[derive(Template)]
#[template(path = "why_fragment.html")]
struct WhyFragment {
    why: WhyPanel,
}

/// The "why" table alone (the Refresh button).
pub async fn why(State(ui): State<Ui>, Extension(signed): Extension<Signed>, Path(id): Path<String>) -> UiResult {
    let data = PersonData::load(&ui.app, &signed, &id).await?;
    let index = ui.app.directory().index();
    html(&WhyFragment { why: data.why(&index, ui.app.inner.services.config.timezone) })
}

/// Answers a credential form: the panel (and the "why" table) to htmx, the whole page
/// otherwise.
async fn after_credential_change(
    ui: &Ui,
    signed: &Signed,
    headers: &HeaderMap,
    person_id: &str,
    outcome: Result<(Option<ShownOnce>, String), UiError>,
) -> UiResult {
    let data = PersonData::load(&ui.app, signed, person_id).await?;
    let tz = ui.app.inner.services.config.timezone;
    let mut creds = data.creds(signed, tz);
    let status = match outcome {
        Ok((shown_once, notice)) => {
            creds.shown_once = shown_once;
            creds.notice = Some(notice);
            StatusCode::OK
        }
        Err(e) => {
            creds.error = Some(e.message);
            e.status
        }
    };
    if is_htmx(headers) {
        let index = ui.app.directory().index();
        let why = data.why(&index, tz);
        drop(index);
        return html(&CredsFragment { creds, why });
    }
    let page = person_page(ui, signed, &data, creds).await?;
    Ok((status, askama_html(&page)?).into_response())
}

fn askama_html(t: &impl Template) -> Result<axum::response::Html<String>, UiError> {
    Ok(axum::response::Html(t.render()?))
}

#[derive(Deserialize)]
pub struct IssueForm {
    kind: String,
    #[serde(default)]
    uid: String,
    #[serde(default)]
    revocation_code: String,
    #[serde(default)]
    pin: String,
}

/// Builds the record of a new credential; for a secret or backup code, also the value
/// to show once.
fn new_credential(
    app: &AppState,
    kind: &str,
    form: &IssueForm,
) -> Result<(lintel_service::credentials::Built, &'static str), UiError> {
    use lintel_service::credentials;
    Ok(match kind {
        "card" => {
            let code = Some(form.revocation_code.trim().to_owned()).filter(|c| !c.is_empty());
            let card = credentials::card(form.uid.trim(), code).map_err(|e| UiError::invalid(format!("Card: {e}")))?;
            (card, "")
        }
        "pin" => {
            let pin =
                app.services().credentials.pin(form.pin.trim()).map_err(|e| UiError::invalid(format!("PIN: {e}")))?;
            (pin, "")
        }
        "secret" => (credentials::secret(), "Personal secret"),
        "backup_code" => (credentials::backup_code(), "Backup code"),
        _ => return Err(UiError::invalid("Choose what to issue: a card, a PIN, a personal secret or a backup code.")),
    })
}

pub async fn issue_credential(
    State(ui): State<Ui>,
    Extension(signed): Extension<Signed>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<IssueForm>,
) -> UiResult {
    let outcome = async {
        let (built, label) = new_credential(&ui.app, &form.kind, &form)?;
        let (issued, shown) = issue(&ui.app, &signed, &id, built, label).await?;
        Ok((shown, format!("Issued {}.", credential_name(&issued))))
    }
    .await;
    after_credential_change(&ui, &signed, &headers, &id, outcome).await
}

/// The credential, if it is this person's.
async fn persons_credential(app: &AppState, person: &str, credential: &str) -> Result<Credential, UiError> {
    let c = app.store().credential(credential).await?;
    if c.person_id.as_deref() != Some(person) {
        return Err(UiError::not_found("this person has no such credential"));
    }
    Ok(c)
}

/// Issues a credential, with what to show once (a generated secret), labelled.
async fn issue(
    app: &AppState,
    signed: &Signed,
    person: &str,
    built: lintel_service::credentials::Built,
    label: &'static str,
) -> Result<(Credential, Option<ShownOnce>), UiError> {
    let mut issued = app.directory().issue_credential(&signed.actor(), person.to_owned(), built).await?;
    let shown = issued.secret.take().map(|value| ShownOnce { label, value });
    Ok((issued, shown))
}

async fn revoke(app: &AppState, signed: &Signed, credential: &str) -> Result<Credential, UiError> {
    let reason = format!("revoked in the web UI by {}", signed.who.label());
    Ok(app.directory().revoke_credential(&signed.actor(), credential.to_owned(), reason).await?)
}

pub async fn revoke_credential(
    State(ui): State<Ui>,
    Extension(signed): Extension<Signed>,
    headers: HeaderMap,
    Path((id, credential)): Path<(String, String)>,
) -> UiResult {
    let outcome = async {
        let c = persons_credential(&ui.app, &id, &credential).await?;
        if c.status != CredentialStatus::Active {
            return Err(UiError::invalid(format!("{} is not active.", credential_name(&c))));
        }
        let revoked = revoke(&ui.app, &signed, &credential).await?;
        Ok((None, format!("Revoked {}. It stops working at once.", credential_name(&revoked))))
    }
    .await;
    after_credential_change(&ui, &signed, &headers, &id, outcome).await
}

/// A new personal secret or backup code in place of the old one, which stops working.
pub async fn regenerate_credential(
    State(ui): State<Ui>,
    Extension(signed): Extension<Signed>,
    headers: HeaderMap,
    Path((id, credential)): Path<(String, String)>,
) -> UiResult {
    let outcome = async {
        let c = persons_credential(&ui.app, &id, &credential).await?;
        let kind = match c.kind {
            CredentialKind::Secret => "secret",
            CredentialKind::BackupCode => "backup_code",
            _ => return Err(UiError::invalid("Only personal secrets and backup codes are generated by lintel.")),
        };
        let form =
            IssueForm { kind: kind.into(), uid: String::new(), revocation_code: String::new(), pin: String::new() };
        let (built, label) = new_credential(&ui.app, kind, &form)?;
        if c.status == CredentialStatus::Active {
            revoke(&ui.app, &signed, &credential).await?;
        }
        let (issued, shown) = issue(&ui.app, &signed, &id, built, label).await?;
        Ok((shown, format!("Replaced {} with {}.", credential_name(&c), credential_name(&issued))))
    }
    .await;
    after_credential_change(&ui, &signed, &headers, &id, outcome).await
}

// ---- doors ----

#[derive(Template)]
#[template(path = "doors.html")]
struct DoorsPage {
    page: PageCtx,
    doors: Vec<DoorRow>,
    /// The add form's driver: none yet.
    dv: DriverFields,
    kinds: &'static [(&'static str, &'static str)],
    sites: Vec<(String, String)>,
    /// The site shown, empty for all.
    site: String,
}

#[derive(Deserialize)]
pub struct DoorsQuery {
    site: Option<String>,
}

pub async fn doors(
    State(ui): State<Ui>,
    Extension(signed): Extension<Signed>,
    Query(q): Query<DoorsQuery>,
) -> UiResult {
    let store = &ui.app.store();
    let site = q.site.filter(|s| !s.is_empty());
    let doors = store.doors(site.as_deref()).await?;
    let recent = recent_events(store, EventFilter::default(), 500).await?;
    let tz = ui.app.inner.services.config.timezone;
    let now = Utc::now();
    html(&DoorsPage {
        page: ctx(&signed, "doors"),
        doors: doors.iter().map(|d| door_row(d, &recent, tz, now)).collect(),
        dv: DriverFields::of(&DriverConfig::None {}),
        kinds: &DRIVER_KINDS,
        sites: site_choices(store, &signed).await?,
        site: site.unwrap_or_default(),
    })
}

pub struct DoorView {
    pub id: String,
    pub name: String,
    pub site: String,
    pub driver: &'static str,
    pub target: String,
    pub state: &'static str,
    pub tone: &'static str,
    pub fail_mode: &'static str,
    pub required_skill: String,
    pub open_seconds: u32,
    pub attendance: bool,
    pub last_seen: String,
    pub last_opened: String,
    pub last_error: String,
    /// Who put it in lockdown, while it is.
    pub lockdown_by: Option<String>,
    pub mode: String,
    /// An operator's hold, in words.
    pub hold: Option<String>,
    pub egress: bool,
    pub first_to_arrive_from: String,
    pub first_to_arrive_group: String,
    pub last_to_leave_from: String,
}

fn door_view(d: &Door, tz: Tz) -> DoorView {
    let (state, tone) = door_state(d);
    let shown = d.driver.redacted();
    let when = |t: Option<DateTime<Utc>>| t.map_or("never".into(), |t| words::local(t, tz));
    DoorView {
        id: d.id.clone(),
        name: d.name.clone(),
        site: d.site.clone(),
        driver: d.driver.kind(),
        target: match &shown {
            DriverConfig::Shelly { url, generation, channel, .. } => {
                format!("{url} (Shelly generation {generation}, channel {channel})")
            }
            DriverConfig::Http { url, method, .. } => format!("{method} {url}"),
            DriverConfig::ShellyCloud { server, device_id, channel, .. } => {
                format!("Shelly Cloud {server}, device {device_id}, channel {channel}")
            }
            DriverConfig::Mqtt { controller, offline_max_age } => {
                format!("MQTT controller {controller} (offline list holds {} h)", offline_max_age / 3600)
            }
            DriverConfig::None {} => String::new(),
            DriverConfig::Osdp { reader, output } => format!("OSDP reader {reader}, output {output}"),
        },
        state,
        tone,
        fail_mode: d.fail_mode.as_str(),
        required_skill: d.required_skill.clone().unwrap_or_default(),
        open_seconds: d.open_seconds,
        attendance: d.attendance,
        last_seen: when(d.state.last_seen),
        last_opened: when(d.state.last_opened),
        lockdown_by: d.state.lockdown_by.clone(),
        last_error: d.state.last_error.clone().unwrap_or_default(),
        mode: d.state.mode.clone(),
        hold: d
            .state
            .hold
            .as_ref()
            .map(|h| format!("{} until {}, by {}", h.state.as_str(), words::local(h.until, tz), h.by)),
        egress: d.egress,
        first_to_arrive_from: d
            .unlock_schedule
            .as_ref()
            .and_then(|s| s.first_to_arrive_from.clone())
            .unwrap_or_default(),
        first_to_arrive_group: d
            .unlock_schedule
            .as_ref()
            .and_then(|s| s.first_to_arrive_group.clone())
            .unwrap_or_default(),
        last_to_leave_from: d.unlock_schedule.as_ref().and_then(|s| s.last_to_leave_from.clone()).unwrap_or_default(),
    }
}

/// The open button's place on a door's page: the button, the question, or the outcome.
pub struct OpenPanel {
    pub csrf: String,
    pub door_id: String,
    pub door_name: String,
    pub confirm: bool,
    pub outcome: Option<Outcome>,
}

pub struct Outcome {
    pub ok: bool,
    pub message: String,
}

#[derive(Template)]
#[template(path = "door.html")]
struct DoorPage {
    page: PageCtx,
    door: DoorView,
    /// The unlock schedule's hours, in the grant editor's rows.
    ed: GrantEditor,
    dv: DriverFields,
    kinds: &'static [(&'static str, &'static str)],
    sites: Vec<(String, String)>,
    events: Vec<FeedItem>,
    open: OpenPanel,
}

#[derive(Template)]
#[template(path = "open_fragment.html")]
struct OpenFragment {
    open: OpenPanel,
}

async fn door_page(ui: &Ui, signed: &Signed, id: &str, confirm: bool, outcome: Option<Outcome>) -> UiResult<DoorPage> {
    let store = &ui.app.store();
    let tz = ui.app.inner.services.config.timezone;
    let door = store.door(id).await?;
    if signed.site.as_ref().is_some_and(|own| *own != door.site) {
        return Err(UiError::new(StatusCode::FORBIDDEN, "This door is not at your site."));
    }
    let filter = EventFilter { door: Some(id.to_owned()), ..Default::default() };
    let events = recent_events(store, filter, 15).await?;
    let all_doors = store.doors(None).await?;
    Ok(DoorPage {
        page: ctx(signed, "doors"),
        open: OpenPanel {
            csrf: signed.csrf.clone(),
            door_id: door.id.clone(),
            door_name: door.name.clone(),
            confirm,
            outcome,
        },
        ed: GrantEditor::hours(
            door.unlock_schedule.as_ref().map(|u| Schedule { tz: u.tz.clone(), rules: u.rules.clone() }).as_ref(),
            format!("/ui/doors/{}", door.id),
            tz,
        ),
        dv: DriverFields::of(&door.driver),
        kinds: &DRIVER_KINDS,
        sites: site_choices(store, signed).await?,
        door: door_view(&door, tz),
        events: feed(store, &events, &all_doors, tz).await,
    })
}

pub async fn door(State(ui): State<Ui>, Extension(signed): Extension<Signed>, Path(id): Path<String>) -> UiResult {
    html(&door_page(&ui, &signed, &id, false, None).await?)
}

/// Asks before opening (a fragment for htmx; without script, the door's page with the question).
pub async fn confirm_open(
    State(ui): State<Ui>,
    Extension(signed): Extension<Signed>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> UiResult {
    let page = door_page(&ui, &signed, &id, true, None).await?;
    if is_htmx(&headers) {
        return html(&OpenFragment { open: page.open });
    }
    html(&page)
}

pub async fn open_door(
    State(ui): State<Ui>,
    Extension(signed): Extension<Signed>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> UiResult {
    let app = &ui.app;
    if app.directory().index().door(&id).is_none() {
        return Err(UiError::not_found(format!("there is no door {id:?}")));
    }
    // Recorded like an administrator's opening through the API: an operator opening from
    // afar is not their own entry.
    let by = format!("the web UI ({})", signed.who.label());
    let opener = lintel_service::Opener::Operator { by, site: signed.site.as_deref(), note: None };
    let opened = app.services().doors.open(&id, opener, None).await?;
    let driven = opened.driven.unwrap_or(lintel_service::Driven { opened: false, confirmed: false, error: None });
    let (ok, message) = match (&driven.error, driven.opened, driven.confirmed) {
        (Some(e), _, _) => (false, format!("The door did not open: {e}")),
        (None, false, _) => (true, "Recorded as opened. This door has no device, so nothing was switched.".into()),
        (None, _, true) => (true, "Opened. The device confirmed.".into()),
        (None, _, false) => (true, "The device was told to open; it did not confirm.".into()),
    };
    let outcome = Outcome { ok, message };
    let page = door_page(&ui, &signed, &id, false, Some(outcome)).await?;
    if is_htmx(&headers) {
        return html(&OpenFragment { open: page.open });
    }
    html(&page)
}

// ---- attendance ----

#[derive(Deserialize)]
pub struct AttendanceQuery {
    from: Option<String>,
    to: Option<String>,
    by: Option<String>,
    site: Option<String>,
}

struct Range {
    from: NaiveDate,
    to: NaiveDate,
    by_group: bool,
    /// Entries at this site's doors only.
    site: Option<String>,
}

fn range(q: &AttendanceQuery, today: NaiveDate) -> Result<Range, UiError> {
    let date = |s: &Option<String>, what: &str| -> Result<Option<NaiveDate>, UiError> {
        match s.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map(Some)
                .map_err(|_| UiError::invalid(format!("{what} is a date like 2026-11-23"))),
        }
    };
    let to = date(&q.to, "To")?.unwrap_or(today);
    let from = date(&q.from, "From")?.unwrap_or_else(|| to.checked_sub_days(Days::new(29)).unwrap_or(to));
    if to < from || (to - from).num_days() > 366 {
        return Err(UiError::invalid("From comes before To, at most 366 days apart."));
    }
    let site = q.site.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    Ok(Range { from, to, by_group: q.by.as_deref() == Some("group"), site })
}

async fn attendance_days(app: &AppState, r: &Range) -> Result<ByDay, UiError> {
    let store = &app.store();
    let default = app.inner.services.config.timezone;
    let tz = lintel_service::attendance::zone(store, None, r.site.as_deref(), default).await?;
    let report = Report { tz, from: r.from, to: r.to, site: r.site.as_deref(), by_group: r.by_group };
    Ok(lintel_service::attendance::days(store, report).await?)
}

pub struct Bar {
    pub x: String,
    pub y: String,
    pub w: String,
    pub h: String,
    pub class: String,
    pub title: String,
}

pub struct Label {
    pub x: String,
    pub y: String,
    pub text: String,
}

pub struct Chart {
    pub width: u32,
    pub height: u32,
    pub bars: Vec<Bar>,
    pub x_labels: Vec<Label>,
    pub y_labels: Vec<Label>,
    pub grid: Vec<String>,
    pub plot_left: u32,
    pub plot_right: u32,
    pub legend: Vec<(String, String)>,
}

pub struct DayRow {
    pub date: String,
    pub present: usize,
    pub split: String,
}

#[derive(Template)]
#[template(path = "attendance.html")]
struct AttendancePage {
    page: PageCtx,
    from: String,
    to: String,
    by_group: bool,
    error: Option<String>,
    chart: Chart,
    rows: Vec<DayRow>,
    total: usize,
    csv: String,
    sites: Vec<(String, String)>,
    /// The site shown, empty for all.
    site: String,
}

fn chart(r: &Range, days: &ByDay, group_names: &HashMap<String, String>) -> (Chart, Vec<DayRow>) {
    const W: u32 = 800;
    const H: u32 = 260;
    const LEFT: u32 = 40;
    const RIGHT: u32 = 8;
    const TOP: u32 = 10;
    const BOTTOM: u32 = 28;
    let all: Vec<NaiveDate> = r.from.iter_days().take_while(|d| *d <= r.to).collect();
    let groups: Vec<Option<String>> =
        days.keys().map(|(_, g)| g.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    let class_of = |g: &Option<String>| groups.iter().position(|x| x == g).unwrap_or(0) % 8;
    let name_of = |g: &Option<String>| match g {
        Some(id) => group_names.get(id).cloned().unwrap_or_else(|| id.clone()),
        None if r.by_group => "in no group".to_owned(),
        None => "present".to_owned(),
    };
    let total_of = |day: NaiveDate| -> u64 {
        groups.iter().map(|g| days.get(&(day, g.clone())).map_or(0, |p| p.len() as u64)).sum()
    };
    let max = all.iter().map(|d| total_of(*d)).max().unwrap_or(0).max(1);
    let plot_w = f64::from(W - LEFT - RIGHT);
    let plot_h = f64::from(H - TOP - BOTTOM);
    let slot = plot_w / all.len().max(1) as f64;
    let bar_w = (slot * 0.8).max(1.0);
    let mut bars = Vec::new();
    let mut rows = Vec::new();
    for (i, day) in all.iter().enumerate() {
        let x = f64::from(LEFT) + slot * i as f64 + (slot - bar_w) / 2.0;
        let mut base = f64::from(H - BOTTOM);
        let mut split = Vec::new();
        let mut people = BTreeSet::new();
        for g in &groups {
            let Some(present) = days.get(&(*day, g.clone())) else { continue };
            people.extend(present.keys().cloned());
            let h = present.len() as f64 / max as f64 * plot_h;
            base -= h;
            bars.push(Bar {
                x: format!("{x:.1}"),
                y: format!("{base:.1}"),
                w: format!("{bar_w:.1}"),
                h: format!("{h:.1}"),
                class: format!("s{}", class_of(g)),
                title: format!("{day}: {} {}", present.len(), name_of(g)),
            });
            split.push(format!("{} {}", name_of(g), present.len()));
        }
        rows.push(DayRow {
            date: format!("{} {}", day.format("%a"), day),
            present: people.len(),
            split: if r.by_group { split.join(" · ") } else { String::new() },
        });
    }
    let every = all.len().div_ceil(8).max(1);
    let x_labels = all
        .iter()
        .enumerate()
        .filter(|(i, _)| i % every == 0)
        .map(|(i, d)| Label {
            x: format!("{:.1}", f64::from(LEFT) + slot * i as f64 + slot / 2.0),
            y: format!("{}", H - 8),
            text: d.format("%m-%d").to_string(),
        })
        .collect();
    let steps: Vec<u64> = if max <= 4 { (0..=max).collect() } else { vec![0, max / 2, max] };
    let y_of = |v: u64| f64::from(H - BOTTOM) - v as f64 / max as f64 * plot_h;
    let y_labels = steps
        .iter()
        .map(|v| Label { x: format!("{}", LEFT - 6), y: format!("{:.1}", y_of(*v) + 4.0), text: v.to_string() })
        .collect();
    let grid = steps.iter().map(|v| format!("{:.1}", y_of(*v))).collect();
    let legend = if r.by_group {
        groups.iter().map(|g| (format!("s{}", class_of(g)), name_of(g))).collect()
    } else {
        Vec::new()
    };
    (
        Chart { width: W, height: H, bars, x_labels, y_labels, grid, plot_left: LEFT, plot_right: W - RIGHT, legend },
        rows,
    )
}

fn csv_href(r: &Range) -> String {
    let by = if r.by_group { "&by=group" } else { "" };
    let site = r.site.as_deref().and_then(|s| serde_urlencoded::to_string([("site", s)]).ok());
    let site = site.map(|pair| format!("&{pair}")).unwrap_or_default();
    format!("/ui/attendance.csv?from={}&to={}{by}{site}", r.from, r.to)
}

/// (id, name) of every site the operator may see, for a choice that only shows when there
/// is more than one.
pub(super) async fn site_choices(store: &Store, signed: &Signed) -> Result<Vec<(String, String)>, UiError> {
    let mine = |id: &String| signed.site.as_ref().is_none_or(|own| own == id);
    Ok(store.sites().await?.into_iter().filter(|s| mine(&s.id)).map(|s| (s.id, s.name)).collect())
}

pub async fn attendance(
    State(ui): State<Ui>,
    Extension(signed): Extension<Signed>,
    Query(q): Query<AttendanceQuery>,
) -> UiResult {
    let app = &ui.app;
    let tz = app.inner.services.config.timezone;
    let today = Utc::now().with_timezone(&tz).date_naive();
    let (r, error) = match range(&q, today) {
        Ok(r) => (r, None),
        Err(e) => {
            let fallback = AttendanceQuery { from: None, to: None, by: q.by.clone(), site: q.site.clone() };
            (range(&fallback, today)?, Some(e.message))
        }
    };
    let days = attendance_days(app, &r).await?;
    let group_names: HashMap<String, String> =
        app.store().groups().await?.into_iter().map(|g| (g.id, g.name)).collect();
    let (chart, rows) = chart(&r, &days, &group_names);
    let total = days.values().flat_map(|p| p.keys()).collect::<BTreeSet<_>>().len();
    html(&AttendancePage {
        page: ctx(&signed, "attendance"),
        from: r.from.to_string(),
        to: r.to.to_string(),
        by_group: r.by_group,
        error,
        chart,
        rows,
        total,
        csv: csv_href(&r),
        sites: site_choices(app.store(), &signed).await?,
        site: r.site.clone().unwrap_or_default(),
    })
}

pub async fn attendance_csv(State(ui): State<Ui>, Query(q): Query<AttendanceQuery>) -> UiResult {
    let app = &ui.app;
    let tz = app.inner.services.config.timezone;
    let today = Utc::now().with_timezone(&tz).date_naive();
    let r = range(&q, today)?;
    let days = attendance_days(app, &r).await?;
    let store = &app.store();
    let mut names: HashMap<String, String> = HashMap::new();
    let mut out = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["date"];
    if r.by_group {
        header.push("group");
    }
    header.extend(["person_id", "name", "first_entry", "last_entry", "entries"]);
    let failed = |e: csv::Error| UiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    out.write_record(&header).map_err(failed)?;
    for ((day, group), people) in &days {
        for (person, entry) in people {
            if !names.contains_key(person) {
                let name = store.person(person).await.map(|p| p.name).unwrap_or_default();
                names.insert(person.clone(), name);
            }
            let mut record = vec![day.to_string()];
            if r.by_group {
                record.push(spreadsheet_safe(group.as_deref().unwrap_or("")));
            }
            record.extend([
                spreadsheet_safe(person),
                spreadsheet_safe(&names[person]),
                entry.first_entry.with_timezone(&tz).to_rfc3339(),
                entry.last_entry.with_timezone(&tz).to_rfc3339(),
                entry.entries.to_string(),
            ]);
            out.write_record(&record).map_err(failed)?;
        }
    }
    let body = out.into_inner().map_err(|e| UiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let disposition = format!("attachment; filename=\"attendance-{}-{}.csv\"", r.from, r.to);
    Ok((
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()), (header::CONTENT_DISPOSITION, disposition)],
        body,
    )
        .into_response())
}

// ---- the facility display ----

#[derive(Template)]
#[template(path = "display.html")]
struct DisplayPage {
    items: Vec<CheckIn>,
    /// The site shown; empty for all.
    site: String,
}

pub const DISPLAY_TILES: usize = 12;

#[derive(Deserialize)]
pub struct DisplayQuery {
    /// Only the entries at this site's doors (a wall screen in one building of several).
    site: Option<String>,
}

pub async fn display(State(ui): State<Ui>, Query(q): Query<DisplayQuery>) -> UiResult {
    let store = &ui.app.store();
    let site = q.site.filter(|s| !s.is_empty());
    let filter = EventFilter { kind: Some("decision".into()), site: site.clone(), ..Default::default() };
    let recent = recent_events(store, filter, 500).await?;
    let latest: Vec<&Event> = recent.iter().filter(|e| is_check_in(e)).take(DISPLAY_TILES).collect();
    let doors = store.doors(site.as_deref()).await?;
    let items = check_ins(&ui.app, &latest, &doors, ui.app.inner.services.config.timezone).await;
    html(&DisplayPage { items, site: site.unwrap_or_default() })
}

/// A person's photo for the pages (the display's tiles), behind the UI session: the
/// API's photo route wants a bearer token, which a page's `<img>` cannot send.
pub async fn photo(State(ui): State<Ui>, Path(id): Path<String>) -> UiResult {
    validate::id("id", &id)?;
    let jpeg = ui
        .app
        .services()
        .photos
        .read(ui.app.store(), &id)
        .await?
        .ok_or_else(|| UiError::not_found("There is no photo."))?;
    let headers = [(header::CONTENT_TYPE, "image/jpeg"), (header::CACHE_CONTROL, "private, max-age=300")];
    Ok((headers, jpeg).into_response())
}

/// The views that follow the event log live.
#[derive(Debug, Clone, Copy, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum View {
    /// The dashboard's feed.
    Feed,
    /// The facility display's check-ins.
    Display,
}

/// One event as the live views show it: a feed line, or a display tile.
pub async fn live_fragment(app: &AppState, e: &Event, view: View) -> Option<String> {
    let store = &app.store();
    let tz = app.inner.services.config.timezone;
    let doors = store.doors(None).await.ok()?;
    match view {
        View::Feed => {
            let names = Names::load(store, &[e], &doors).await;
            FeedLine { item: feed_item(e, &names, tz, Utc::now()) }.render().ok()
        }
        View::Display if is_check_in(e) => {
            let item = check_ins(app, &[e], &doors, tz).await.pop()?;
            DisplayTile { item }.render().ok()
        }
        View::Display => None,
    }
}

#[derive(Template)]
#[template(path = "feed_item.html")]
struct FeedLine {
    item: FeedItem,
}

#[derive(Template)]
#[template(path = "check_in.html")]
struct DisplayTile {
    item: CheckIn,
}

pub async fn not_found() -> UiError {
    UiError::not_found("There is no such page.")
}
