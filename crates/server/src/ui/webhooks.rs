//! The Webhooks page: endpoints with their latest deliveries; add, enable or disable,
//! rotate the secret, remove. Every change goes through the same service calls as the API.

use askama::Template;
use axum::Extension;
use axum::Form;
use axum::extract::{Path, State};
use lintel_proto::{NewWebhookEndpoint, WebhookEndpointPatch};
use lintel_service::webhooks;
use serde::Deserialize;

use super::pages::PageCtx;
use super::session::Signed;
use super::{Ui, UiError, UiResult, html, words};

pub struct EndpointRow {
    id: String,
    url: String,
    kinds: String,
    /// Empty for every site.
    site: String,
    description: String,
    enabled: bool,
    disabled_reason: String,
    /// The latest few, in words.
    deliveries: Vec<String>,
}

#[derive(Template)]
#[template(path = "webhooks.html")]
struct WebhooksPage {
    page: PageCtx,
    endpoints: Vec<EndpointRow>,
    /// (id, name) of every site, for limiting an endpoint to one.
    sites: Vec<(String, String)>,
    /// (endpoint, secret) just made.
    shown_once: Option<(String, String)>,
    notice: Option<String>,
    error: Option<String>,
}

/// The page, with what the last action did.
async fn render(ui: &Ui, signed: &Signed, outcome: Result<(Option<(String, String)>, String), UiError>) -> UiResult {
    let store = ui.app.store();
    let tz = ui.app.services().config.timezone;
    let mut endpoints = Vec::new();
    for e in webhooks::list(store).await? {
        let deliveries = webhooks::deliveries(store, &e.id, 5)
            .await?
            .into_iter()
            .map(|d| {
                let last = d.attempts.last().map_or("not tried yet".to_owned(), |a| {
                    let answer = a.status.map_or_else(|| a.excerpt.clone().unwrap_or_default(), |s| s.to_string());
                    format!("{answer} at {}", words::local(a.at, tz))
                });
                format!("{} #{}: {}, {last}", d.kind, d.event_id, d.state.as_str())
            })
            .collect();
        endpoints.push(EndpointRow {
            id: e.id,
            url: e.url,
            kinds: e.kinds.join(", "),
            site: e.site.unwrap_or_default(),
            description: e.description.unwrap_or_default(),
            enabled: e.enabled,
            disabled_reason: e.disabled_reason.unwrap_or_default(),
            deliveries,
        });
    }
    let (shown_once, notice, error) = match outcome {
        Ok((shown, notice)) => (shown, Some(notice).filter(|n| !n.is_empty()), None),
        Err(e) => (None, None, Some(e.message().to_owned())),
    };
    let sites = super::pages::site_choices(store, signed).await?;
    html(&WebhooksPage { page: super::pages::ctx(signed, "webhooks"), endpoints, sites, shown_once, notice, error })
}

pub async fn page(State(ui): State<Ui>, Extension(signed): Extension<Signed>) -> UiResult {
    render(&ui, &signed, Ok((None, String::new()))).await
}

#[derive(Deserialize)]
pub struct AddForm {
    url: String,
    kinds: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    allow_http: Option<String>,
    /// Empty for every site.
    #[serde(default)]
    site: String,
}

pub async fn add(State(ui): State<Ui>, Extension(signed): Extension<Signed>, Form(form): Form<AddForm>) -> UiResult {
    let outcome = async {
        let new = NewWebhookEndpoint {
            url: form.url.trim().to_owned(),
            kinds: form.kinds.split(',').map(|k| k.trim().to_owned()).filter(|k| !k.is_empty()).collect(),
            site: Some(form.site.trim().to_owned()).filter(|s| !s.is_empty()),
            description: Some(form.description.trim().to_owned()).filter(|d| !d.is_empty()),
            enabled: None,
            allow_http: form.allow_http.is_some(),
        };
        let made = webhooks::create(&ui.app.store().acting_as(signed.actor().as_str()), new).await?;
        let id = made.endpoint.id.clone();
        Ok((Some((id.clone(), made.secret)), format!("Added {id}; it gets events from now on.")))
    }
    .await;
    render(&ui, &signed, outcome).await
}

/// Enables, disables, rotates or removes an endpoint.
pub async fn act(
    State(ui): State<Ui>,
    Extension(signed): Extension<Signed>,
    Path((id, action)): Path<(String, String)>,
) -> UiResult {
    let store = &ui.app.store().acting_as(signed.actor().as_str());
    let switch = |enabled| WebhookEndpointPatch { enabled: Some(enabled), ..Default::default() };
    let outcome = async {
        Ok(match action.as_str() {
            "enable" => {
                webhooks::patch(store, &id, switch(true)).await?;
                (None, format!("Enabled {id}: it gets events from now on."))
            }
            "disable" => {
                webhooks::patch(store, &id, switch(false)).await?;
                (None, format!("Disabled {id}."))
            }
            "rotate" => {
                let secret = webhooks::rotate(store, &id).await?.secret;
                (Some((id.clone(), secret)), "The old secret signs beside the new one for a day.".to_owned())
            }
            "remove" => {
                webhooks::delete(store, &id).await?;
                (None, format!("Removed {id}."))
            }
            _ => return Err(UiError::not_found("no such action")),
        })
    }
    .await;
    render(&ui, &signed, outcome).await
}
