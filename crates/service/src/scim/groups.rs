//! SCIM groups: lintel groups and their members, as an identity provider manages them.

use std::collections::BTreeSet;
use std::sync::Arc;

use lintel_store::{ScimGroupRecord, ScimGroupRow, StoreError};
use scim_v2::filter::Filter;
use serde_json::{Map, Value, json};

use super::schema::{GROUP, GROUP_ATTRS};
use super::{ListQuery, Projection, Result, ScimError, check_version, document, patch_op, with_meta};
use crate::directory::Actor;
use crate::directory::Directory;
use crate::{secrets, validate};

/// Creates a group. It is a new lintel group, never an operator's: the operator gives it
/// doors by a grant in lintel.
pub async fn create(directory: &Arc<Directory>, base: &str, body: &[u8]) -> Result<Value> {
    let doc = document::canonical(&super::object(body)?, GROUP_ATTRS)?;
    let id = new_id(&display_name(&doc)?);
    Ok(resource(&save(directory, id, doc, None).await?, base))
}

pub async fn get(directory: &Arc<Directory>, base: &str, id: &str, projection: &Projection) -> Result<Value> {
    Ok(projection.apply(resource(&row(directory, id).await?, base)))
}

pub async fn replace(
    directory: &Arc<Directory>,
    base: &str,
    id: &str,
    body: &[u8],
    if_match: Option<&str>,
) -> Result<Value> {
    let doc = document::canonical(&super::object(body)?, GROUP_ATTRS)?;
    change(directory, base, id, if_match, |_| Ok(doc.clone())).await
}

pub async fn patch(
    directory: &Arc<Directory>,
    base: &str,
    id: &str,
    body: &[u8],
    if_match: Option<&str>,
) -> Result<Value> {
    let op = patch_op(body)?;
    change(directory, base, id, if_match, |before| {
        let mut doc = writable(before);
        document::patch(&mut doc, &op.operations, GROUP_ATTRS)?;
        Ok(doc)
    })
    .await
}

/// Reads the group, makes its new attributes and saves them if nobody changed it
/// meanwhile; else reads it again (a provider's concurrent member changes all land).
async fn change(
    directory: &Arc<Directory>,
    base: &str,
    id: &str,
    if_match: Option<&str>,
    make: impl Fn(&ScimGroupRow) -> Result<Map<String, Value>>,
) -> Result<Value> {
    let mut tries = 0;
    loop {
        let before = row(directory, id).await?;
        check_version(&resource(&before, base), if_match)?;
        let doc = make(&before)?;
        match save(directory, before.group.id.clone(), doc, Some(before)).await {
            Err(e) if e.status == 409 && tries < 5 => tries += 1,
            saved => return Ok(resource(&saved?, base)),
        }
    }
}

/// Removes the group, its memberships and its grants.
pub async fn delete(directory: &Arc<Directory>, base: &str, id: &str, if_match: Option<&str>) -> Result<()> {
    let before = row(directory, id).await?;
    check_version(&resource(&before, base), if_match)?;
    directory.delete_group(&Actor::integration("scim"), before.group.id).await?;
    Ok(())
}

pub async fn list(directory: &Arc<Directory>, base: &str, query: &ListQuery) -> Result<Value> {
    Ok(query.page(matching(directory, base, query.filter()?.as_ref()).await?))
}

/// Every group the filter matches, by id.
pub(super) async fn matching(directory: &Arc<Directory>, base: &str, filter: Option<&Filter>) -> Result<Vec<Value>> {
    Ok(directory
        .store
        .scim_groups()
        .await?
        .iter()
        .map(|g| resource(g, base))
        .filter(|r| filter.is_none_or(|f| document::matches(f, r, GROUP_ATTRS)))
        .collect())
}

async fn row(directory: &Arc<Directory>, id: &str) -> Result<ScimGroupRow> {
    match directory.store.scim_group(id).await {
        Ok(row) => Ok(row),
        Err(StoreError::NotFound { .. }) => Err(ScimError::not_found(format!("no group {id:?}"))),
        Err(e) => Err(e.into()),
    }
}

fn display_name(doc: &Map<String, Value>) -> Result<String> {
    match doc.get("displayName").and_then(Value::as_str).map(str::trim) {
        Some(n) if !n.is_empty() => {
            validate::name("displayName", n)?;
            Ok(n.to_owned())
        }
        _ => Err(ScimError::invalid_value("displayName is required")),
    }
}

/// A readable id from the name (`Night Staff` is `night-staff`), with a random tail so
/// that two groups of one name stay apart.
fn new_id(name: &str) -> String {
    let slug: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect::<String>()
        .split('-')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    let slug: String = slug.chars().take(40).collect();
    let tail = &secrets::generate("")[..8];
    if slug.is_empty() { format!("group-{tail}") } else { format!("{slug}-{tail}") }
}

/// Saves a new group (`read` is `None`) or the group as it was read.
async fn save(
    directory: &Arc<Directory>,
    id: String,
    doc: Map<String, Value>,
    read: Option<ScimGroupRow>,
) -> Result<ScimGroupRow> {
    let name = display_name(&doc)?;
    let external_id = doc.get("externalId").and_then(Value::as_str).map(str::to_owned);
    if let Some(e) = &external_id {
        validate::text("externalId", e, 200)?;
    }
    let mut members = BTreeSet::new();
    for m in doc.get("members").and_then(Value::as_array).into_iter().flatten() {
        // A member named by `$ref` alone is named by its last segment.
        let value = m
            .get("value")
            .and_then(Value::as_str)
            .or_else(|| m.get("$ref").and_then(Value::as_str).and_then(|r| r.rsplit('/').next()));
        match value {
            Some(v) => members.insert(v.to_owned()),
            None => return Err(ScimError::invalid_value("a member needs a value (the user's id)")),
        };
    }
    let record = ScimGroupRecord { id, name, external_id, members };
    let written = directory
        .write(
            &Actor::integration("scim"),
            move |store| async move { store.save_scim_group(&record, read.as_ref()).await },
        )
        .await?;
    Ok(written.value)
}

/// The attributes a request may change, as stored.
fn writable(row: &ScimGroupRow) -> Map<String, Value> {
    let mut doc = Map::new();
    doc.insert("displayName".to_owned(), json!(row.group.name));
    if let Some(e) = &row.external_id {
        doc.insert("externalId".to_owned(), json!(e));
    }
    if !row.members.is_empty() {
        doc.insert("members".to_owned(), row.members.iter().map(|id| json!({"value": id})).collect());
    }
    doc
}

fn resource(row: &ScimGroupRow, base: &str) -> Value {
    let mut r = json!({"schemas": [GROUP], "id": row.group.id, "displayName": row.group.name});
    if let Some(e) = &row.external_id {
        r["externalId"] = json!(e);
    }
    if !row.members.is_empty() {
        r["members"] =
            row.members.iter().map(|id| json!({"value": id, "$ref": format!("{base}/Users/{id}")})).collect();
    }
    with_meta(r, "Group", format!("{base}/Groups/{}", row.group.id), None)
}
