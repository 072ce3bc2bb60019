//! Files in and out of the web UI: a people CSV imported (uploaded, checked row by row,
//! the rejected rows listed by line) and people and events exported as CSV.

use askama::Template;
use axum::Extension;
use axum::extract::{Multipart, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use lintel_service::attendance::{local_midnight, next_day};
use lintel_store::{EventFilter, ImportReport};
use serde::Deserialize;

use super::session::Signed;
use super::{Ui, UiError, UiResult, html};
use crate::export;

#[derive(Template)]
#[template(path = "import_report.html")]
struct ImportPage {
    report: ImportReport,
}

/// Imports the uploaded CSV (the form's `file`) as the signed-in operator's change.
pub async fn import(State(ui): State<Ui>, Extension(signed): Extension<Signed>, mut form: Multipart) -> UiResult {
    let unreadable = |_| UiError::invalid("the upload could not be read");
    let mut csv = None;
    while let Some(field) = form.next_field().await.map_err(unreadable)? {
        if field.name() == Some("file") {
            csv = Some(field.bytes().await.map_err(unreadable)?);
        }
    }
    let csv = csv.filter(|c| !c.is_empty()).ok_or_else(|| UiError::invalid("choose a CSV file to import"))?;
    let directory = ui.app.directory();
    // Operators are an owner's business: an import by anyone else leaves them alone.
    let owner = signed.role.may(lintel_core::Action::ManageAccess);
    let by = signed.actor();
    let report = lintel_service::import::import_csv(&directory.store, &by, owner, &csv[..], |_, _| {}).await?;
    // The import wrote past the index: bring it up to date now, not at the next tick.
    directory.follow().await?;
    html(&ImportPage { report })
}

/// A CSV file to download as `name`.
pub(super) fn csv_file(name: &str, body: Vec<u8>) -> Response {
    let disposition = format!("attachment; filename=\"{name}\"");
    ([(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()), (header::CONTENT_DISPOSITION, disposition)], body)
        .into_response()
}

pub async fn people_csv(State(ui): State<Ui>) -> UiResult {
    Ok(csv_file("people.csv", export::people_csv(ui.app.store()).await?))
}

#[derive(Deserialize)]
pub struct EventsQuery {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    door: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    person: String,
    #[serde(default)]
    site: String,
}

/// The events of the days `from` to `to` (in the space's zone, both included), of a door,
/// a kind or a person when chosen.
pub async fn events_csv(State(ui): State<Ui>, Query(q): Query<EventsQuery>) -> UiResult {
    let tz = ui.app.services().config.timezone;
    let chosen = |v: String| Some(v.trim().to_owned()).filter(|v| !v.is_empty());
    let date = |v: &str, label: &str| match v.trim() {
        "" => Ok(None),
        v => NaiveDate::parse_from_str(v, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| UiError::invalid(format!("{label}: give a date (YYYY-MM-DD)"))),
    };
    let (from, to) = (date(&q.from, "From")?, date(&q.to, "To")?);
    let filter = EventFilter {
        from: from.map(|d| local_midnight(tz, d).timestamp_micros()),
        to: to.map(|d| local_midnight(tz, next_day(d)).timestamp_micros()),
        door: chosen(q.door),
        kind: chosen(q.kind),
        person_id: chosen(q.person),
        site: chosen(q.site),
        ..EventFilter::default()
    };
    Ok(csv_file("events.csv", export::events_csv(ui.app.store(), filter).await?))
}
