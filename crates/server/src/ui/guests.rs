//! The Guests page: issue a visitor a pass to chosen doors from/to (mailed to them, or a
//! link to copy), see the passes and revoke one. The same service calls as the API.

use askama::Template;
use axum::Extension;
use axum::extract::{Path, State};
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use lintel_proto::NewGuestPass;
use serde::Deserialize;

use super::pages::PageCtx;
use super::session::Signed;
use super::{Ui, UiError, UiResult, html, words};

/// How many passes the page lists.
const SHOWN: i64 = 100;
/// The form's `datetime-local` fields, in the space's zone.
const LOCAL_INPUT: &str = "%Y-%m-%dT%H:%M";

pub struct PassRow {
    id: String,
    name: String,
    email: String,
    doors: String,
    when: String,
    state: String,
    by: String,
    open: bool,
}

/// A pass just issued: its link (or, without `public_url`, its code) shown once.
pub struct Issued {
    name: String,
    link: Option<String>,
    secret: String,
    emailed_to: Option<String>,
}

#[derive(Template)]
#[template(path = "guests.html")]
struct GuestsPage {
    page: PageCtx,
    passes: Vec<PassRow>,
    /// (id, name) of every door, to choose from.
    doors: Vec<(String, String)>,
    /// Whether a pass can be mailed (`[smtp]` is configured).
    can_mail: bool,
    /// The form's defaults: now, and four hours on.
    from: String,
    until: String,
    issued: Option<Issued>,
    notice: Option<String>,
    error: Option<String>,
}

async fn render(ui: &Ui, signed: &Signed, outcome: Result<(Option<Issued>, String), UiError>) -> UiResult {
    let app = &ui.app;
    let tz = app.services().config.timezone;
    let store = app.store();
    let names: std::collections::HashMap<String, String> =
        store.doors(signed.site.as_deref()).await?.into_iter().map(|d| (d.id, d.name)).collect();
    let passes = app
        .services()
        .guests
        .list(false, SHOWN)
        .await?
        .into_iter()
        .filter(|p| signed.site.is_none() || p.doors.iter().any(|d| names.contains_key(d)))
        .map(|p| PassRow {
            doors: p.doors.iter().map(|d| names.get(d).unwrap_or(d).as_str()).collect::<Vec<_>>().join(", "),
            when: format!("{} to {}", words::local(p.valid_from, tz), words::local(p.valid_until, tz)),
            open: matches!(p.state.as_str(), "upcoming" | "active"),
            id: p.id,
            name: p.name,
            email: p.email.unwrap_or_default(),
            state: p.state,
            by: p.revoked_by.map_or(p.created_by, |by| format!("revoked by {by}")),
        })
        .collect();
    let mut doors: Vec<(String, String)> = names.into_iter().collect();
    doors.sort();
    let (issued, notice, error) = match outcome {
        Ok((issued, notice)) => (issued, Some(notice).filter(|n| !n.is_empty()), None),
        Err(e) => (None, None, Some(e.message().to_owned())),
    };
    let now = Utc::now().with_timezone(&tz);
    html(&GuestsPage {
        page: super::pages::ctx(signed, "guests"),
        passes,
        doors,
        can_mail: app.services().invitations.is_some(),
        from: now.format(LOCAL_INPUT).to_string(),
        until: (now + chrono::Duration::hours(4)).format(LOCAL_INPUT).to_string(),
        issued,
        notice,
        error,
    })
}

pub async fn page(State(ui): State<Ui>, Extension(signed): Extension<Signed>) -> UiResult {
    render(&ui, &signed, Ok((None, String::new()))).await
}

/// The form but its doors: each checked door is a `door` pair of its own.
#[derive(Deserialize)]
pub struct IssueForm {
    name: String,
    #[serde(default)]
    email: String,
    from: String,
    until: String,
    #[serde(default)]
    send: Option<String>,
}

/// A `datetime-local` value in `tz`; a time skipped by a clock change is refused.
fn local_time(field: &str, value: &str, tz: Tz) -> Result<DateTime<Utc>, UiError> {
    let naive = NaiveDateTime::parse_from_str(value.trim(), LOCAL_INPUT)
        .map_err(|_| UiError::invalid(format!("{field}: give a date and a time")))?;
    let local = tz
        .from_local_datetime(&naive)
        .earliest()
        .ok_or_else(|| UiError::invalid(format!("{field}: that time does not exist in {tz}")))?;
    Ok(local.with_timezone(&Utc))
}

pub async fn issue(State(ui): State<Ui>, Extension(signed): Extension<Signed>, body: axum::body::Bytes) -> UiResult {
    let outcome = async {
        let form: IssueForm = serde_urlencoded::from_bytes(&body).map_err(|e| UiError::invalid(e.to_string()))?;
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
        let doors: Vec<String> = pairs.into_iter().filter(|(k, _)| k == "door").map(|(_, v)| v).collect();
        let tz = ui.app.services().config.timezone;
        let email = Some(form.email.trim().to_owned()).filter(|e| !e.is_empty());
        let pass = NewGuestPass {
            name: form.name.trim().to_owned(),
            send: Some(form.send.is_some() && email.is_some()),
            email,
            doors,
            valid_from: Some(local_time("From", &form.from, tz)?),
            valid_until: local_time("Until", &form.until, tz)?,
        };
        let issued = ui.app.services().guests.issue(&signed.actor(), pass).await?;
        let emailed_to = issued.emailed.unwrap_or(false).then(|| issued.email.clone().unwrap_or_default());
        let shown = Issued {
            name: issued.name.clone(),
            link: issued.link.clone(),
            secret: issued.secret.clone().unwrap_or_default(),
            emailed_to,
        };
        Ok((Some(shown), String::new()))
    }
    .await;
    render(&ui, &signed, outcome).await
}

pub async fn revoke(State(ui): State<Ui>, Extension(signed): Extension<Signed>, Path(id): Path<String>) -> UiResult {
    let outcome = async {
        let pass = ui.app.services().guests.revoke(&signed.actor(), id).await?;
        Ok((None, format!("Revoked {}'s pass: it opens nothing from now on.", pass.name)))
    }
    .await;
    render(&ui, &signed, outcome).await
}
