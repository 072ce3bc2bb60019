//! The Anti-passback page: each zone's doors and who is inside, with Forgive for the front
//! desk; zones set up and removed by admins of every site.

use askama::Template;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use lintel_proto::{Zone, ZoneSpec};

use super::edits::{Fields, answer};
use super::pages::PageCtx;
use super::session::Signed;
use super::{Ui, UiResult, html};

#[derive(Template)]
#[template(path = "zones.html")]
struct ZonesPage {
    page: PageCtx,
    zones: Vec<Zone>,
    /// (id, name) of every door, for the form.
    doors: Vec<(String, String)>,
    default_reset: u32,
}

pub async fn page(State(ui): State<Ui>, Extension(signed): Extension<Signed>) -> UiResult {
    let store = ui.app.store();
    let zones = store.zones().await?;
    let doors = store.doors(None).await?.into_iter().map(|d| (d.id, d.name)).collect();
    html(&ZonesPage {
        page: super::pages::ctx(&signed, "doors"),
        zones,
        doors,
        default_reset: lintel_service::zones::DEFAULT_RESET_MINUTES,
    })
}

/// Sets up (or replaces) a zone from the form.
pub async fn save(
    State(ui): State<Ui>,
    Extension(signed): Extension<Signed>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let outcome = async {
        let f = Fields::parse(&body)?;
        let spec = ZoneSpec {
            name: f.get("name").to_owned(),
            strictness: f.optional("strictness"),
            reset_minutes: f.number("reset_minutes", "Reset after")?,
            entry: f.all("entry"),
            exit: f.all("exit"),
        };
        lintel_service::zones::put(ui.app.directory(), &signed.actor(), f.get("id").to_owned(), spec).await?;
        Ok("/ui/zones".to_owned())
    }
    .await;
    answer(&headers, outcome)
}

/// Forgives one person (`person_id`) or everyone inside (the guard lets the front desk).
pub async fn forgive(
    State(ui): State<Ui>,
    Extension(signed): Extension<Signed>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let outcome = async {
        let person = Fields::parse(&body)?.optional("person_id");
        lintel_service::zones::forgive(ui.app.directory(), &signed.actor(), id, person).await?;
        Ok("/ui/zones".to_owned())
    }
    .await;
    answer(&headers, outcome)
}

pub async fn remove(
    State(ui): State<Ui>,
    Extension(signed): Extension<Signed>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let outcome = async {
        lintel_service::zones::delete(ui.app.directory(), &signed.actor(), id).await?;
        Ok("/ui/zones".to_owned())
    }
    .await;
    answer(&headers, outcome)
}
