//! The Lockdown page: a site's doors in lockdown with one action, after a plain warning,
//! and lifted the same way (the service keeps an operator limited to a site to theirs).

use askama::Template;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect};
use axum::{Extension, Form};
use lintel_store::{DEFAULT_SITE, LockdownScope};
use serde::Deserialize;

use super::pages::PageCtx;
use super::session::Signed;
use super::{Ui, UiError, UiResult, html};

#[derive(Template)]
#[template(path = "lockdown.html")]
struct LockdownPage {
    page: PageCtx,
    site: String,
    site_name: String,
    /// (id, name, by whom) of the site's doors in lockdown.
    locked: Vec<(String, String, String)>,
    /// The names of the others.
    open: Vec<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct SiteQuery {
    #[serde(default)]
    site: String,
}

/// The site a request names, else the default one.
fn chosen(site: &str) -> String {
    Some(site.trim()).filter(|s| !s.is_empty()).unwrap_or(DEFAULT_SITE).to_owned()
}

async fn render(ui: &Ui, signed: &Signed, site: String, error: Option<String>) -> UiResult {
    let store = ui.app.store();
    let site_name = store.site(&site).await?.name;
    let doors = store.doors(Some(&site)).await?;
    let (locked, open): (Vec<_>, Vec<_>) = doors.into_iter().partition(|d| d.state.lockdown_by.is_some());
    html(&LockdownPage {
        page: super::pages::ctx(signed, "dashboard"),
        locked: locked.into_iter().map(|d| (d.id, d.name, d.state.lockdown_by.unwrap_or_default())).collect(),
        open: open.into_iter().map(|d| d.name).collect(),
        site,
        site_name,
        error,
    })
}

pub async fn page(State(ui): State<Ui>, Extension(signed): Extension<Signed>, Query(q): Query<SiteQuery>) -> UiResult {
    render(&ui, &signed, chosen(&q.site), None).await
}

#[derive(Deserialize)]
pub struct LockdownForm {
    #[serde(default)]
    site: String,
    action: String,
}

pub async fn act(
    State(ui): State<Ui>,
    Extension(signed): Extension<Signed>,
    Form(form): Form<LockdownForm>,
) -> UiResult {
    let site = chosen(&form.site);
    let on = match form.action.as_str() {
        "start" => true,
        "lift" => false,
        _ => return Err(UiError::invalid("the action is start or lift")),
    };
    let scope = LockdownScope::Site(site.clone());
    match lintel_service::lockdown::set(ui.app.directory(), &signed.actor(), scope, on).await {
        Ok(_) => Ok(Redirect::to(&format!("/ui/?site={site}")).into_response()),
        Err(e) => render(&ui, &signed, site, Some(UiError::from(e).message().to_owned())).await,
    }
}
