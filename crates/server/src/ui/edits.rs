//! The web UI's edits of the directory: people, their groups, groups, grants (with a
//! schedule editor) and doors (with a driver form per kind). Each form goes through the
//! same service call as the API, so it is checked the same way; a refusal is the API's
//! problem text, shown beside the form (htmx) or as a page (without script). Success
//! leads to the page of what changed.

use askama::Template;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use lintel_proto::{
    DoorPatch, DriverConfig, GrantPatch, HoldState, NewDoor, NewGrant, NewGroup, NewHold, NewPerson, PersonPatch,
    PersonStatus, Schedule, ScheduleRule, UnlockSchedule, Weekday,
};
use lintel_service::attendance::{local_midnight, next_day};

use super::session::Signed;
use super::{Ui, UiError, is_htmx};
use crate::auth::{Operator, access_changes_are_allowed};

pub const WEEKDAYS: [(Weekday, &str); 7] = [
    (Weekday::Mon, "mon"),
    (Weekday::Tue, "tue"),
    (Weekday::Wed, "wed"),
    (Weekday::Thu, "thu"),
    (Weekday::Fri, "fri"),
    (Weekday::Sat, "sat"),
    (Weekday::Sun, "sun"),
];

/// A form's fields as sent, repeated names (checkboxes) kept.
pub(super) struct Fields(Vec<(String, String)>);

impl Fields {
    pub(super) fn parse(body: &Bytes) -> Result<Self, UiError> {
        serde_urlencoded::from_bytes(body).map(Self).map_err(|_| UiError::invalid("the form could not be read"))
    }

    /// A field's trimmed value; empty when absent.
    pub(super) fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.trim())
    }

    pub(super) fn optional(&self, name: &str) -> Option<String> {
        Some(self.get(name).to_owned()).filter(|v| !v.is_empty())
    }

    pub(super) fn all(&self, name: &str) -> Vec<String> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.trim().to_owned()).collect()
    }

    pub(super) fn checked(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }

    pub(super) fn number<T: std::str::FromStr>(&self, name: &str, label: &str) -> Result<Option<T>, UiError> {
        match self.get(name) {
            "" => Ok(None),
            v => v.parse().map(Some).map_err(|_| UiError::invalid(format!("{label}: give a whole number"))),
        }
    }
}

#[derive(Template)]
#[template(source = r#"<p class="notice error" role="alert">{{ message }}</p>"#, ext = "html")]
struct Refusal<'a> {
    message: &'a str,
}

/// Where a successful form leads (a path built from an id the write accepted, so one
/// of lintel's own), or why it was refused.
pub(super) fn answer(headers: &HeaderMap, outcome: Result<String, UiError>) -> Response {
    match (outcome, is_htmx(headers)) {
        (Ok(to), true) => {
            let mut r = StatusCode::NO_CONTENT.into_response();
            if let Ok(v) = HeaderValue::from_str(&to) {
                r.headers_mut().insert("hx-redirect", v);
            }
            r
        }
        (Ok(to), false) => Redirect::to(&to).into_response(),
        (Err(e), true) => {
            let html = Refusal { message: e.message() }.render().unwrap_or_default();
            (StatusCode::UNPROCESSABLE_ENTITY, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html)
                .into_response()
        }
        (Err(e), false) => e.into_response(),
    }
}

fn operator(signed: &Signed) -> Operator {
    Operator { name: signed.who.display(), role: signed.role, site: signed.site.clone() }
}

// ---- people ----

pub async fn create_person(
    State(ui): State<Ui>,
    Extension(signed): Extension<Signed>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let outcome = async {
        let f = Fields::parse(&body)?;
        let new = NewPerson {
            id: f.optional("id"),
            name: f.get("name").to_owned(),
            email: f.optional("email"),
            phone: f.optional("phone"),
            skills: skills(f.get("skills")),
            ..NewPerson::default()
        };
        let made = ui.app.directory().create_person(&signed.actor(), new).await?;
        Ok(format!("/ui/people/{}", made.id))
    }
    .await;
    answer(&headers, outcome)
}

fn skills(text: &str) -> Vec<String> {
    text.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()
}

/// Changes a person's details, suspends or reactivates them, or deletes them.
pub async fn person_action(
    State(ui): State<Ui>,
    Extension(signed): Extension<Signed>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let outcome = async {
        let f = Fields::parse(&body)?;
        let directory = ui.app.directory();
        // A person who is an operator is an owner's to change (their groups are doors,
        // not access to lintel: anyone who manages people may change them, as in the API).
        if !matches!(action.as_str(), "join" | "leave") {
            access_changes_are_allowed(ui.app.store(), &operator(&signed), Some(&id), None).await?;
        }
        let by = signed.actor();
        let patch = match action.as_str() {
            "edit" => PersonPatch {
                name: Some(f.get("name").to_owned()),
                email: Some(f.optional("email")),
                phone: Some(f.optional("phone")),
                skills: Some(skills(f.get("skills"))),
                ..PersonPatch::default()
            },
            "suspend" => PersonPatch { status: Some(PersonStatus::Suspended), ..PersonPatch::default() },
            "reactivate" => PersonPatch { status: Some(PersonStatus::Active), ..PersonPatch::default() },
            "delete" => {
                directory.delete_person(&by, id).await?;
                return Ok("/ui/people".to_owned());
            }
            "join" => {
                directory.set_member(&by, f.get("group").to_owned(), id.clone(), true).await?;
                return Ok(format!("/ui/people/{id}"));
            }
            "leave" => {
                directory.set_member(&by, f.get("group").to_owned(), id.clone(), false).await?;
                return Ok(format!("/ui/people/{id}"));
            }
            _ => return Err(UiError::not_found("no such action")),
        };
        directory.patch_person(&by, id.clone(), patch).await?;
        Ok(format!("/ui/people/{id}"))
    }
    .await;
    answer(&headers, outcome)
}

// ---- grants ----

/// As many rules as a schedule may have (the API's limit), and the editor's blank row.
const MAX_RULES: usize = 100;

/// The schedule editor's rows (`days_N`, `from_N`, `to_N`) in the zone `tz`; none filled
/// in: no schedule (any time).
fn schedule(f: &Fields, default_tz: Tz) -> Result<Option<Schedule>, UiError> {
    let tz = f.optional("tz").unwrap_or_else(|| default_tz.name().to_owned());
    let mut rules = Vec::new();
    for n in 0..=MAX_RULES {
        let days = f.all(&format!("days_{n}"));
        let (from, to) = (f.get(&format!("from_{n}")), f.get(&format!("to_{n}")));
        if days.is_empty() && from.is_empty() && to.is_empty() {
            continue;
        }
        let weekdays = days
            .iter()
            .map(|d| {
                WEEKDAYS
                    .iter()
                    .find(|(_, name)| name == d)
                    .map(|(w, _)| *w)
                    .ok_or_else(|| UiError::invalid("a weekday"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if weekdays.is_empty() {
            return Err(UiError::invalid("each row of hours needs at least one weekday"));
        }
        rules.push(ScheduleRule { weekdays, from: from.to_owned(), to: to.to_owned() });
    }
    Ok((!rules.is_empty()).then_some(Schedule { tz, rules }))
}

/// A date field as the start of that day (`from`) or the end of it (`until`) in `tz`.
fn day(f: &Fields, name: &str, label: &str, tz: Tz, end: bool) -> Result<Option<DateTime<Utc>>, UiError> {
    let Some(text) = f.optional(name) else { return Ok(None) };
    let date = NaiveDate::parse_from_str(&text, "%Y-%m-%d")
        .map_err(|_| UiError::invalid(format!("{label}: give a date (YYYY-MM-DD)")))?;
    Ok(Some(local_midnight(tz, if end { next_day(date) } else { date })))
}

fn zone(f: &Fields, default_tz: Tz) -> Result<Tz, UiError> {
    match f.get("tz") {
        "" => Ok(default_tz),
        name => name.parse().map_err(|_| UiError::invalid(format!("time zone {name:?} is not an IANA time zone name"))),
    }
}

/// A date field, unless it still shows what the editor showed (`{name}_shown`): a grant
/// valid from 14:00 is not moved to midnight by saving its hours.
fn changed_day(
    f: &Fields,
    name: &str,
    label: &str,
    tz: Tz,
    end: bool,
) -> Result<Option<Option<DateTime<Utc>>>, UiError> {
    if f.get(name) == f.get(&format!("{name}_shown")) {
        return Ok(None);
    }
    day(f, name, label, tz, end).map(Some)
}

/// Gives a person (`person`) or a group (`group`) a grant: doors checked (a group with
/// none checked: its own doors), hours, validity.
pub async fn add_grant(
    State(ui): State<Ui>,
    Extension(signed): Extension<Signed>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let outcome = async {
        let f = Fields::parse(&body)?;
        let default_tz = ui.app.services().config.timezone;
        let tz = zone(&f, default_tz)?;
        let doors = f.all("door");
        let (person_id, group_id) = (f.optional("person"), f.optional("group"));
        let back = match (&person_id, &group_id) {
            (Some(p), _) => format!("/ui/people/{}", p),
            (None, Some(g)) => format!("/ui/groups/{}", g),
            (None, None) => "/ui/groups".to_owned(),
        };
        let grant = NewGrant {
            person_id,
            group_id,
            doors: (!doors.is_empty()).then_some(doors),
            schedule: schedule(&f, default_tz)?,
            valid_from: day(&f, "valid_from", "Valid from", tz, false)?,
            valid_until: day(&f, "valid_until", "Valid until", tz, true)?,
            ..NewGrant::default()
        };
        ui.app.directory().create_grant(&signed.actor(), grant).await?;
        Ok(back)
    }
    .await;
    answer(&headers, outcome)
}

/// Edits a grant's hours and validity in place, or removes it.
pub async fn grant_action(
    State(ui): State<Ui>,
    Extension(signed): Extension<Signed>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let outcome = async {
        let f = Fields::parse(&body)?;
        let back = f.optional("back").filter(|b| b.starts_with("/ui/") && !b.contains("//"));
        let back = back.unwrap_or_else(|| "/ui/groups".to_owned());
        let directory = ui.app.directory();
        let by = signed.actor();
        match action.as_str() {
            "edit" => {
                let default_tz = ui.app.services().config.timezone;
                let tz = zone(&f, default_tz)?;
                let patch = GrantPatch {
                    schedule: Some(schedule(&f, default_tz)?),
                    valid_from: changed_day(&f, "valid_from", "Valid from", tz, false)?,
                    valid_until: changed_day(&f, "valid_until", "Valid until", tz, true)?,
                    ..GrantPatch::default()
                };
                directory.patch_grant(&by, id, patch).await?;
            }
            "remove" => directory.delete_grant(&by, id).await?,
            _ => return Err(UiError::not_found("no such action")),
        }
        Ok(back)
    }
    .await;
    answer(&headers, outcome)
}

// ---- groups ----

pub async fn create_group(
    State(ui): State<Ui>,
    Extension(signed): Extension<Signed>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let outcome = async {
        let f = Fields::parse(&body)?;
        let group = NewGroup { id: f.get("id").to_owned(), name: f.get("name").to_owned(), doors: f.all("door") };
        let made = ui.app.directory().create_group(&signed.actor(), group).await?;
        Ok(format!("/ui/groups/{}", made.id))
    }
    .await;
    answer(&headers, outcome)
}

/// Adds or removes a member, or deletes the group.
pub async fn group_action(
    State(ui): State<Ui>,
    Extension(signed): Extension<Signed>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let outcome = async {
        let f = Fields::parse(&body)?;
        let directory = ui.app.directory();
        let by = signed.actor();
        match action.as_str() {
            "add" | "remove" => {
                let person = f.get("person").to_owned();
                if person.is_empty() {
                    return Err(UiError::invalid("choose a person"));
                }
                directory.set_member(&by, id.clone(), person, action == "add").await?;
            }
            "delete" => {
                directory.delete_group(&by, id).await?;
                return Ok("/ui/groups".to_owned());
            }
            _ => return Err(UiError::not_found("no such action")),
        }
        Ok(format!("/ui/groups/{id}"))
    }
    .await;
    answer(&headers, outcome)
}

// ---- doors ----

/// The driver the form describes: its kind, and that kind's fields. Secrets left empty
/// keep the door's current ones (`current`), since they are never shown.
fn driver(f: &Fields, current: Option<&DriverConfig>) -> Result<DriverConfig, UiError> {
    let kept = |name: &str, secret: Option<&String>| f.optional(name).or_else(|| secret.cloned());
    Ok(match f.get("kind") {
        "" | "none" => DriverConfig::None {},
        "shelly" => {
            let password = match current {
                Some(DriverConfig::Shelly { password, .. }) => password.as_ref(),
                _ => None,
            };
            DriverConfig::Shelly {
                url: f.get("url").to_owned(),
                generation: f.number("generation", "Generation")?.unwrap_or(2),
                channel: f.number("channel", "Channel")?.unwrap_or(0),
                username: f.optional("username"),
                password: kept("password", password),
            }
        }
        "http" => {
            // What the form does not show (a body, a success rule, other headers) stays.
            let (mut headers, body, success) = match current {
                Some(DriverConfig::Http { headers, body, success, .. }) => {
                    (headers.clone(), body.clone(), success.clone())
                }
                _ => Default::default(),
            };
            if let Some(name) = f.optional("header_name") {
                match f.optional("header_value") {
                    Some(value) => drop(headers.insert(name, value)),
                    None if headers.contains_key(&name) => {}
                    None => return Err(UiError::invalid(format!("give the value of the header {name:?}"))),
                }
            }
            DriverConfig::Http {
                url: f.get("url").to_owned(),
                method: f.optional("method").unwrap_or_else(|| "POST".to_owned()),
                headers,
                body,
                success,
            }
        }
        "shelly_cloud" => {
            let key = match current {
                Some(DriverConfig::ShellyCloud { auth_key, .. }) => Some(auth_key),
                _ => None,
            };
            DriverConfig::ShellyCloud {
                server: f.get("server").to_owned(),
                auth_key: kept("auth_key", key).unwrap_or_default(),
                device_id: f.get("device_id").to_owned(),
                channel: f.number("channel", "Channel")?.unwrap_or(0),
            }
        }
        "mqtt" => DriverConfig::Mqtt {
            controller: f.get("controller").to_owned(),
            offline_max_age: f.number("offline_max_age", "Offline list lasts")?.unwrap_or(86_400),
        },
        "osdp" => DriverConfig::Osdp {
            reader: f.get("reader").to_owned(),
            output: f.number("output", "Output")?.unwrap_or(0),
        },
        other => return Err(UiError::invalid(format!("there is no driver kind {other:?}"))),
    })
}

pub async fn create_door(
    State(ui): State<Ui>,
    Extension(signed): Extension<Signed>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let outcome = async {
        let f = Fields::parse(&body)?;
        let door = NewDoor {
            id: f.get("id").to_owned(),
            name: f.get("name").to_owned(),
            driver: driver(&f, None)?,
            fail_mode: Default::default(),
            required_skill: f.optional("required_skill"),
            open_seconds: f.number("open_seconds", "Opens for")?,
            attendance: Some(f.checked("attendance")),
            site: f.optional("site"),
            unlock_schedule: None,
            egress: None,
            held_open_seconds: None,
        };
        let made = ui.app.directory().create_door(&signed.actor(), door).await?;
        Ok(format!("/ui/doors/{}", made.id))
    }
    .await;
    answer(&headers, outcome)
}

/// Acknowledges an alarm from the dashboard, with the operator's note (the guard lets
/// through the roles that open doors).
pub async fn ack_alarm(
    State(ui): State<Ui>,
    Extension(signed): Extension<Signed>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let outcome = async {
        let f = Fields::parse(&body)?;
        lintel_service::alarms::acknowledge(ui.app.directory(), &signed.actor(), id, f.optional("note")).await?;
        Ok("/ui/".to_owned())
    }
    .await;
    answer(&headers, outcome)
}

/// Resets a site's emergency release from the dashboard's banner.
pub async fn reset_emergency(
    State(ui): State<Ui>,
    Extension(signed): Extension<Signed>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let outcome = async {
        let f = Fields::parse(&body)?;
        let site = f.get("site").to_owned();
        lintel_service::door_modes::emergency(ui.app.directory(), &signed.actor(), site.clone(), false, None).await?;
        Ok(format!("/ui/?site={site}"))
    }
    .await;
    answer(&headers, outcome)
}

/// Changes a door's settings and driver, or removes it.
pub async fn door_action(
    State(ui): State<Ui>,
    Extension(signed): Extension<Signed>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let outcome = async {
        let f = Fields::parse(&body)?;
        let directory = ui.app.directory();
        let by = signed.actor();
        match action.as_str() {
            "edit" => {
                let current = ui.app.store().door(&id).await?;
                let patch = DoorPatch {
                    name: Some(f.get("name").to_owned()),
                    driver: Some(driver(&f, Some(&current.driver))?),
                    fail_mode: None,
                    required_skill: Some(f.optional("required_skill")),
                    open_seconds: f.number("open_seconds", "Opens for")?,
                    attendance: Some(f.checked("attendance")),
                    site: f.optional("site"),
                    unlock_schedule: None,
                    egress: None,
                    held_open_seconds: None,
                };
                directory.patch_door(&by, id.clone(), patch).await?;
                Ok(format!("/ui/doors/{id}"))
            }
            "delete" => {
                directory.delete_door(&by, id).await?;
                Ok("/ui/doors".to_owned())
            }
            "modes" => {
                let tz = ui.app.inner.services.config.timezone;
                let unlock_schedule = schedule(&f, tz)?.map(|s| UnlockSchedule {
                    tz: s.tz,
                    rules: s.rules,
                    first_to_arrive_from: f.optional("first_to_arrive_from"),
                    first_to_arrive_group: f.optional("first_to_arrive_group"),
                    last_to_leave_from: f.optional("last_to_leave_from"),
                });
                let patch = DoorPatch {
                    unlock_schedule: Some(unlock_schedule),
                    egress: Some(f.checked("egress")),
                    ..Default::default()
                };
                directory.patch_door(&by, id.clone(), patch).await?;
                Ok(format!("/ui/doors/{id}"))
            }
            "hold" => {
                let state = match f.get("state") {
                    "unlocked" => HoldState::Unlocked,
                    "secure" => HoldState::Secure,
                    _ => return Err(UiError::invalid("hold it unlocked or secure")),
                };
                let minutes = f.number("minutes", "For")?.unwrap_or(60);
                let until = Utc::now() + chrono::Duration::minutes(i64::from(minutes));
                let hold = NewHold { state, until };
                lintel_service::door_modes::set_hold(directory, &by, id.clone(), Some(hold)).await?;
                Ok(format!("/ui/doors/{id}"))
            }
            "end-hold" => {
                lintel_service::door_modes::set_hold(directory, &by, id.clone(), None).await?;
                Ok(format!("/ui/doors/{id}"))
            }
            _ => Err(UiError::not_found("no such action")),
        }
    }
    .await;
    answer(&headers, outcome)
}

// ---- the schedule editor ----

pub struct DayBox {
    pub name: &'static str,
    pub checked: bool,
}

pub struct RuleRow {
    pub n: usize,
    pub days: Vec<DayBox>,
    pub from: String,
    pub to: String,
}

/// A grant's hours and validity as the editor's fields: its rules, and a blank row to
/// add one.
pub struct GrantEditor {
    /// The page to come back to.
    pub back: String,
    pub tz: String,
    pub rows: Vec<RuleRow>,
    pub valid_from: String,
    pub valid_until: String,
}

impl GrantEditor {
    pub fn of(grant: Option<&lintel_proto::Grant>, back: String, default_tz: Tz) -> Self {
        let editor = Self::hours(grant.and_then(|g| g.schedule.as_ref()), back, default_tz);
        let tz: Tz = editor.tz.parse().unwrap_or(default_tz);
        let date = |t: Option<DateTime<Utc>>, end: bool| {
            t.map_or_else(String::new, |t| {
                let t = if end { t - chrono::Duration::seconds(1) } else { t };
                t.with_timezone(&tz).format("%Y-%m-%d").to_string()
            })
        };
        Self {
            valid_from: date(grant.and_then(|g| g.valid_from), false),
            valid_until: date(grant.and_then(|g| g.valid_until), true),
            ..editor
        }
    }

    /// The rows of a weekly schedule (a door's unlocked hours, too), without validity.
    pub fn hours(schedule: Option<&Schedule>, back: String, default_tz: Tz) -> Self {
        let tz: Tz = schedule.and_then(|s| s.tz.parse().ok()).unwrap_or(default_tz);
        let row = |n: usize, rule: Option<&ScheduleRule>| RuleRow {
            n,
            days: WEEKDAYS
                .iter()
                .map(|(w, name)| DayBox { name, checked: rule.is_some_and(|r| r.weekdays.contains(w)) })
                .collect(),
            from: rule.map_or_else(String::new, |r| r.from.clone()),
            to: rule.map_or_else(String::new, |r| r.to.clone()),
        };
        let rules = schedule.map_or(&[][..], |s| s.rules.as_slice());
        let mut rows: Vec<RuleRow> = rules.iter().take(MAX_RULES).enumerate().map(|(n, r)| row(n, Some(r))).collect();
        rows.push(row(rows.len(), None));
        Self { back, tz: tz.name().to_owned(), rows, valid_from: String::new(), valid_until: String::new() }
    }
}

// ---- the driver form ----

/// A door's driver as the form's fields (secrets never: left empty, they are kept).
#[derive(Default)]
pub struct DriverFields {
    pub kind: &'static str,
    pub url: String,
    pub generation: String,
    pub channel: String,
    pub username: String,
    pub method: String,
    pub header_name: String,
    pub server: String,
    pub device_id: String,
    pub controller: String,
    pub offline_max_age: String,
    pub reader: String,
    pub output: String,
}

pub const DRIVER_KINDS: [(&str, &str); 6] = [
    ("none", "No device (record decisions only)"),
    ("shelly", "Shelly relay (local)"),
    ("shelly_cloud", "Shelly Cloud"),
    ("http", "HTTP call (a lock cloud's API)"),
    ("mqtt", "MQTT controller"),
    ("osdp", "OSDP reader's output"),
];

impl DriverFields {
    pub fn of(driver: &DriverConfig) -> Self {
        let blank = Self::default();
        match driver {
            DriverConfig::None {} => Self { kind: "none", ..blank },
            DriverConfig::Shelly { url, generation, channel, username, .. } => Self {
                kind: "shelly",
                url: lintel_proto::redact_url(url),
                generation: generation.to_string(),
                channel: channel.to_string(),
                username: username.clone().unwrap_or_default(),
                ..blank
            },
            DriverConfig::Http { url, method, headers, .. } => Self {
                kind: "http",
                url: lintel_proto::redact_url(url),
                method: method.clone(),
                header_name: headers.keys().next().cloned().unwrap_or_default(),
                ..blank
            },
            DriverConfig::ShellyCloud { server, device_id, channel, .. } => Self {
                kind: "shelly_cloud",
                server: server.clone(),
                device_id: device_id.clone(),
                channel: channel.to_string(),
                ..blank
            },
            DriverConfig::Mqtt { controller, offline_max_age } => Self {
                kind: "mqtt",
                controller: controller.clone(),
                offline_max_age: offline_max_age.to_string(),
                ..blank
            },
            DriverConfig::Osdp { reader, output } => {
                Self { kind: "osdp", reader: reader.clone(), output: output.to_string(), ..blank }
            }
        }
    }
}
