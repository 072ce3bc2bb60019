//! The Audit page: who changed what, newest first, filtered by who, site, person or door
//! (a person's, a door's and a site's history), and the same as CSV.

use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use lintel_store::EventFilter;
use serde::Deserialize;

use super::pages::{FeedItem, PageCtx, feed, recent_events, site_choices};
use super::session::Signed;
use super::{Ui, UiResult, html};
use crate::export;

/// How many changes the page shows; the CSV has them all.
const SHOWN: usize = 200;

#[derive(Deserialize, Default)]
pub struct AuditQuery {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    site: String,
    #[serde(default)]
    person: String,
    #[serde(default)]
    door: String,
}

impl AuditQuery {
    fn filter(&self) -> EventFilter {
        let chosen = |v: &str| Some(v.trim().to_owned()).filter(|v| !v.is_empty());
        EventFilter {
            actor: chosen(&self.actor),
            site: chosen(&self.site),
            person_id: chosen(&self.person),
            door: chosen(&self.door),
            changes_only: true,
            ..EventFilter::default()
        }
    }

    /// The same filters as a query string, for the CSV link.
    fn query(&self) -> String {
        serde_urlencoded::to_string([
            ("actor", &self.actor),
            ("site", &self.site),
            ("person", &self.person),
            ("door", &self.door),
        ])
        .unwrap_or_default()
    }
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    page: PageCtx,
    q: AuditQuery,
    csv: String,
    sites: Vec<(String, String)>,
    changes: Vec<FeedItem>,
}

pub async fn page(State(ui): State<Ui>, Extension(signed): Extension<Signed>, Query(q): Query<AuditQuery>) -> UiResult {
    let store = ui.app.store();
    let tz = ui.app.services().config.timezone;
    let events = recent_events(store, q.filter(), SHOWN).await?;
    let doors = store.doors(None).await?;
    html(&AuditPage {
        page: super::pages::ctx(&signed, "audit"),
        csv: format!("/ui/audit.csv?{}", q.query()),
        sites: site_choices(store, &signed).await?,
        changes: feed(store, &events, &doors, tz).await,
        q,
    })
}

pub async fn csv(State(ui): State<Ui>, Query(q): Query<AuditQuery>) -> UiResult {
    Ok(super::transfer::csv_file("audit.csv", export::events_csv(ui.app.store(), q.filter()).await?))
}
