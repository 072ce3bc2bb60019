//! CSV exports (people, events, the audit trail, attendance): cells that a spreadsheet
//! opens as text.

use chrono::SecondsFormat;
use lintel_store::{EventFilter, PersonFilter, Store};

use crate::problem::ApiError;

/// The most rows one CSV export of events holds; a longer log is exported in ranges
/// (`from`, `to`).
const EVENT_ROWS: usize = 100_000;

fn failed(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
}

/// Events matching `filter`, oldest first, one row each:
/// `id,at,actor,kind,person_id,door,credential_id,grant_id,data`.
pub(crate) async fn events_csv(store: &Store, mut filter: EventFilter) -> Result<Vec<u8>, ApiError> {
    filter.limit = 1000;
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(["id", "at", "actor", "kind", "person_id", "door", "credential_id", "grant_id", "data"])
        .map_err(failed)?;
    let mut rows = 0;
    while rows < EVENT_ROWS {
        let page = store.events(&filter).await?;
        let Some(last) = page.last() else { break };
        filter.after = last.id.parse().ok();
        for e in &page {
            let text = |v: &Option<String>| spreadsheet_safe(v.as_deref().unwrap_or_default());
            out.write_record([
                e.id.clone(),
                e.at.to_rfc3339_opts(SecondsFormat::Micros, true),
                text(&e.actor),
                spreadsheet_safe(&e.kind),
                text(&e.person_id),
                text(&e.door),
                text(&e.credential_id),
                text(&e.grant_id),
                spreadsheet_safe(&e.data.to_string()),
            ])
            .map_err(failed)?;
        }
        rows += page.len();
    }
    out.into_inner().map_err(|e| failed(e.into_error()))
}

/// Everyone, in the import's columns (`id,name,email,card_uid,revocation_code,groups,status`),
/// so that the file can be imported again: a person's first active card, their groups
/// joined by `;`.
pub(crate) async fn people_csv(store: &Store) -> Result<Vec<u8>, ApiError> {
    let cards = store.active_cards().await?;
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(["id", "name", "email", "card_uid", "revocation_code", "groups", "status"]).map_err(failed)?;
    let mut filter = PersonFilter { limit: 1000, ..PersonFilter::default() };
    loop {
        let (people, next) = store.people(&filter).await?;
        for p in &people {
            let card = cards.get(&p.id);
            let safe = |v: Option<&String>| spreadsheet_safe(v.map_or("", String::as_str));
            out.write_record([
                spreadsheet_safe(&p.id),
                spreadsheet_safe(&p.name),
                safe(p.email.as_ref()),
                safe(card.map(|c| &c.0)),
                safe(card.and_then(|c| c.1.as_ref())),
                spreadsheet_safe(&p.groups.join(";")),
                p.status.as_str().to_owned(),
            ])
            .map_err(failed)?;
        }
        match next.and_then(|n| n.parse().ok()) {
            Some(after) => filter.after = Some(after),
            None => break,
        }
    }
    out.into_inner().map_err(|e| failed(e.into_error()))
}

/// A cell a spreadsheet would not take for a formula (names and ids come from outside):
/// one starting with `=`, `+`, `-`, `@`, a tab or a carriage return gets a `'` in front.
pub(crate) fn spreadsheet_safe(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_owned() }
}
