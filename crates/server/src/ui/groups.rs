//! The Groups pages: every group with its doors and members; a group's members, doors and
//! grants, each editable (the forms are in [`super::edits`]).

use std::collections::HashMap;

use askama::Template;
use axum::Extension;
use axum::extract::{Path, State};

use super::edits::GrantEditor;
use super::pages::PageCtx;
use super::session::Signed;
use super::{Ui, UiError, UiResult, html, words};
use axum::http::StatusCode;
use lintel_service::site_limits::SiteDoors;

pub struct GroupRow {
    id: String,
    name: String,
    doors: String,
    members: u64,
}

#[derive(Template)]
#[template(path = "groups.html")]
struct GroupsPage {
    page: PageCtx,
    groups: Vec<GroupRow>,
    /// (id, name) of every door, to choose from.
    doors: Vec<(String, String)>,
}

/// The doors the operator may choose from: their site's, or every door.
async fn door_names(ui: &Ui, signed: &Signed) -> UiResult<HashMap<String, String>> {
    Ok(ui.app.store().doors(signed.site.as_deref()).await?.into_iter().map(|d| (d.id, d.name)).collect())
}

/// Which groups the operator sees: those of their site, or all.
async fn shown(ui: &Ui, signed: &Signed) -> UiResult<Option<(SiteDoors, Vec<lintel_proto::Grant>)>> {
    let Some(site) = &signed.site else { return Ok(None) };
    Ok(Some((SiteDoors::of(ui.app.store(), site).await?, ui.app.store().grants(None).await?)))
}

fn named(ids: &[String], names: &HashMap<String, String>) -> String {
    ids.iter().map(|d| names.get(d).unwrap_or(d).as_str()).collect::<Vec<_>>().join(", ")
}

fn sorted(names: HashMap<String, String>) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = names.into_iter().collect();
    all.sort();
    all
}

pub async fn groups(State(ui): State<Ui>, Extension(signed): Extension<Signed>) -> UiResult {
    let names = door_names(&ui, &signed).await?;
    let shown = shown(&ui, &signed).await?;
    let groups = ui
        .app
        .store()
        .groups()
        .await?
        .into_iter()
        .filter(|g| shown.as_ref().is_none_or(|(at, grants)| at.group(g, grants)))
        .map(|g| GroupRow { doors: named(&g.doors, &names), id: g.id, name: g.name, members: g.members })
        .collect();
    html(&GroupsPage { page: super::pages::ctx(&signed, "groups"), groups, doors: sorted(names) })
}

pub struct GrantView {
    id: String,
    doors: String,
    terms: String,
    source: String,
    ed: GrantEditor,
}

#[derive(Template)]
#[template(path = "group.html")]
struct GroupPage {
    page: PageCtx,
    id: String,
    name: String,
    doors: String,
    /// (id, name) of each member.
    members: Vec<(String, String)>,
    /// (id, name) of everyone else, to add.
    others: Vec<(String, String)>,
    grants: Vec<GrantView>,
    all_doors: Vec<(String, String)>,
    new_grant: GrantEditor,
}

pub async fn group(State(ui): State<Ui>, Extension(signed): Extension<Signed>, Path(id): Path<String>) -> UiResult {
    let store = ui.app.store();
    let tz = ui.app.services().config.timezone;
    let group = store.group(&id).await?;
    if let Some((at, grants)) = shown(&ui, &signed).await?
        && !at.group(&group, &grants)
    {
        let site = signed.site.as_deref().unwrap_or_default();
        return Err(UiError::new(StatusCode::FORBIDDEN, format!("Your role is limited to the site {site:?}.")));
    }
    let names = door_names(&ui, &signed).await?;
    let members = store.group_members(&id).await?;
    let in_group: std::collections::HashSet<&str> = members.iter().map(|(p, _)| p.as_str()).collect();
    // The first page of everyone else, to pick from; any id may be typed.
    let (people, _) = store.people(&lintel_store::PersonFilter { limit: 500, ..Default::default() }).await?;
    let others: Vec<(String, String)> =
        people.into_iter().filter(|p| !in_group.contains(p.id.as_str())).map(|p| (p.id, p.name)).collect();
    let back = format!("/ui/groups/{id}");
    let grants = store
        .grants(None)
        .await?
        .into_iter()
        .filter(|g| g.group_id.as_deref() == Some(id.as_str()))
        .map(|g| GrantView {
            id: g.id.clone(),
            doors: match (&g.doors, &g.door_group) {
                (Some(doors), _) => named(doors, &names),
                (None, Some(other)) => format!("the doors of {other}"),
                (None, None) => "the group's own doors".to_owned(),
            },
            terms: words::grant_terms(&g, tz),
            source: g.source.clone().unwrap_or_default(),
            ed: GrantEditor::of(Some(&g), back.clone(), tz),
        })
        .collect();
    html(&GroupPage {
        page: super::pages::ctx(&signed, "groups"),
        doors: named(&group.doors, &names),
        id: group.id,
        name: group.name,
        members,
        others,
        grants,
        all_doors: sorted(names),
        new_grant: GrantEditor::of(None, back, tz),
    })
}
