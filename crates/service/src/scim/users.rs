//! SCIM users: people an identity provider provisions.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use lintel_proto::{NewPerson, Person, PersonPatch, PersonStatus};
use lintel_store::{PersonFilter, StoreError};
use scim_v2::filter::{AttrExp, CompValue, CompareOp, Filter};
use serde_json::{Map, Value, json};

use super::schema::{USER, USER_ATTRS};
use super::{ListQuery, Projection, Result, ScimError, check_version, document, patch_op, time, with_meta};
use crate::directory::Actor;
use crate::directory::Directory;
use crate::offboarding::{self, Departure};
use crate::validate;

/// The source name of SCIM-provisioned people: `externalId` is kept as this external id.
pub const SOURCE: &str = "scim";
/// The external id that holds a SCIM user's userName, lower-cased (unique in the store).
pub const USER_NAME: &str = "scim:userName";
/// Where in a person's attributes their SCIM attributes are kept.
const ATTRIBUTE: &str = "scim";

pub async fn create(directory: &Arc<Directory>, base: &str, body: &[u8]) -> Result<Value> {
    let doc = document::canonical(&super::object(body)?, USER_ATTRS)?;
    let key = user_name_key(&doc)?;
    if find_linked(directory, USER_NAME, &key).await?.is_some() {
        return Err(ScimError::uniqueness(format!("a user with userName {key:?} exists already")));
    }
    let fields = Fields::of(&doc, &key);
    // Someone an operator entered or imported with the same email becomes this user rather
    // than a second person (see `adoptable` for whom a provider may not take over).
    let adopted = match &fields.email {
        Some(email) => adoptable(directory, email).await?,
        None => None,
    };
    let person = match adopted {
        Some(person) => write(directory, &person, doc).await?,
        None => {
            let mut attributes = Map::new();
            attributes.insert(ATTRIBUTE.to_owned(), Value::Object(doc.clone()));
            let new = NewPerson {
                name: fields.name,
                email: fields.email,
                phone: fields.phone,
                external_ids: fields.external_ids,
                status: if inactive(&doc) { PersonStatus::Suspended } else { PersonStatus::Active },
                attributes,
                ..Default::default()
            };
            directory.create_person(&Actor::integration("scim"), new).await?
        }
    };
    get(directory, base, &person.id, &Projection::default()).await
}

pub async fn get(directory: &Arc<Directory>, base: &str, id: &str, projection: &Projection) -> Result<Value> {
    let person = linked(directory, id).await?;
    let groups = group_names(directory).await?;
    Ok(projection.apply(resource(&person, &groups, base).expect("linked people have SCIM attributes")))
}

pub async fn replace(
    directory: &Arc<Directory>,
    base: &str,
    id: &str,
    body: &[u8],
    if_match: Option<&str>,
) -> Result<Value> {
    let person = at_version(directory, base, id, if_match).await?;
    let doc = document::canonical(&super::object(body)?, USER_ATTRS)?;
    write(directory, &person, doc).await?;
    get(directory, base, id, &Projection::default()).await
}

pub async fn patch(
    directory: &Arc<Directory>,
    base: &str,
    id: &str,
    body: &[u8],
    if_match: Option<&str>,
) -> Result<Value> {
    let op = patch_op(body)?;
    let person = at_version(directory, base, id, if_match).await?;
    let mut doc = stored(&person).cloned().unwrap_or_default();
    document::patch(&mut doc, &op.operations, USER_ATTRS)?;
    write(directory, &person, doc).await?;
    get(directory, base, id, &Projection::default()).await
}

/// Offboards the person and ends their link with the provider; the person and their
/// history stay in lintel (suspended unless another source vouches for them).
pub async fn delete(directory: &Arc<Directory>, base: &str, id: &str, if_match: Option<&str>) -> Result<()> {
    let person = at_version(directory, base, id, if_match).await?;
    // Out of the provider's groups too: their grants are the provider's to give.
    let managed: std::collections::HashSet<String> =
        directory.store.scim_groups().await?.into_iter().map(|g| g.group.id).collect();
    let groups: Vec<String> = person.groups.iter().filter(|g| managed.contains(*g)).cloned().collect();
    offboard(directory, &person.id, "removed by the identity provider", &groups).await?;
    let mut attributes = person.attributes.clone();
    attributes.remove(ATTRIBUTE);
    let patch = PersonPatch {
        external_ids: Some(person.external_ids.into_iter().filter(|(s, _)| !is_scim(s)).collect()),
        attributes: Some(attributes),
        ..Default::default()
    };
    directory.patch_person(&Actor::integration("scim"), person.id, patch).await?;
    Ok(())
}

pub async fn list(directory: &Arc<Directory>, base: &str, query: &ListQuery) -> Result<Value> {
    Ok(query.page(matching(directory, base, query.filter()?.as_ref()).await?))
}

/// Every user the filter matches, by id.
pub(super) async fn matching(directory: &Arc<Directory>, base: &str, filter: Option<&Filter>) -> Result<Vec<Value>> {
    let people = match filter.and_then(exact_lookup) {
        Some((system, value)) => find_linked(directory, system, &value).await?.into_iter().collect(),
        None => all_linked(directory).await?,
    };
    let groups = group_names(directory).await?;
    Ok(people
        .iter()
        .filter_map(|p| resource(p, &groups, base))
        .filter(|r| filter.is_none_or(|f| document::matches(f, r, USER_ATTRS)))
        .collect())
}

/// The lookups providers make before every create (`userName eq`, `externalId eq`),
/// answered from the store's index rather than by reading everyone.
fn exact_lookup(filter: &Filter) -> Option<(&'static str, String)> {
    let Filter::Attr(AttrExp::Comparison(path, CompareOp::Eq, CompValue::Str(v))) = filter else { return None };
    if path.sub_attr.is_some() {
        return None;
    }
    let name = path.name.rsplit(':').next().unwrap_or(&path.name);
    if name.eq_ignore_ascii_case("userName") {
        Some((USER_NAME, v.to_lowercase()))
    } else if name.eq_ignore_ascii_case("externalId") {
        Some((SOURCE, v.clone()))
    } else {
        None
    }
}

fn is_scim(system: &str) -> bool {
    system == SOURCE || system == USER_NAME
}

fn stored(person: &Person) -> Option<&Map<String, Value>> {
    person.attributes.get(ATTRIBUTE)?.as_object()
}

/// The person behind a SCIM id, when they are a SCIM user.
async fn linked(directory: &Arc<Directory>, id: &str) -> Result<Person> {
    let not_found = || ScimError::not_found(format!("no user {id:?}"));
    match directory.store.person(id).await {
        Ok(p) if p.external_ids.contains_key(USER_NAME) && stored(&p).is_some() => Ok(p),
        Ok(_) | Err(StoreError::NotFound { .. }) => Err(not_found()),
        Err(e) => Err(e.into()),
    }
}

async fn find_linked(directory: &Arc<Directory>, system: &str, value: &str) -> Result<Option<Person>> {
    let filter =
        PersonFilter { external_id: Some((system.to_owned(), value.to_owned())), limit: 1, ..Default::default() };
    Ok(directory.store.people(&filter).await?.0.pop().filter(|p| stored(p).is_some()))
}

async fn all_linked(directory: &Arc<Directory>) -> Result<Vec<Person>> {
    let mut out = Vec::new();
    let mut filter = PersonFilter { system: Some(USER_NAME.to_owned()), limit: 500, ..Default::default() };
    loop {
        let (page, next) = directory.store.people(&filter).await?;
        out.extend(page);
        match next.and_then(|n| n.parse().ok()) {
            Some(after) => filter.after = Some(after),
            None => return Ok(out),
        }
    }
}

/// The one person with this email whom no system provisions (no external id: entered or
/// imported by an operator), who is active and is no operator of the web UI. A provider
/// may not take over someone another source vouches for, or an operator's sign-in.
async fn adoptable(directory: &Arc<Directory>, email: &str) -> Result<Option<Person>> {
    let filter = PersonFilter { email: Some(email.to_owned()), limit: 2, ..Default::default() };
    let (mut people, _) = directory.store.people(&filter).await?;
    Ok(match people.len() {
        1 => people.pop().filter(|p| {
            p.external_ids.is_empty()
                && p.status == PersonStatus::Active
                && !p.attributes.contains_key(crate::integrations::oidc::OPERATOR_ATTRIBUTE)
        }),
        _ => None,
    })
}

async fn group_names(directory: &Arc<Directory>) -> Result<HashMap<String, String>> {
    Ok(directory.store.groups().await?.into_iter().map(|g| (g.id, g.name)).collect())
}

/// The SCIM user's person, when the caller's `If-Match` (if any) names their version.
async fn at_version(directory: &Arc<Directory>, base: &str, id: &str, if_match: Option<&str>) -> Result<Person> {
    let person = linked(directory, id).await?;
    if if_match.is_some() {
        let groups = group_names(directory).await?;
        check_version(&resource(&person, &groups, base).expect("linked people have SCIM attributes"), if_match)?;
    }
    Ok(person)
}

/// The SCIM user a person is, when they are one.
fn resource(person: &Person, groups: &HashMap<String, String>, base: &str) -> Option<Value> {
    let mut r = stored(person)?.clone();
    r.insert("schemas".to_owned(), json!([USER]));
    r.insert("id".to_owned(), json!(person.id));
    if !person.groups.is_empty() {
        let groups: Vec<Value> = person
            .groups
            .iter()
            .map(|g| json!({"value": g, "$ref": format!("{base}/Groups/{g}"), "display": groups.get(g).unwrap_or(g)}))
            .collect();
        r.insert("groups".to_owned(), Value::Array(groups));
    }
    let location = format!("{base}/Users/{}", person.id);
    Some(with_meta(Value::Object(r), "User", location, Some((time(person.created_at), time(person.updated_at)))))
}

/// lintel's fields of a person, as a SCIM user's attributes say them.
struct Fields {
    name: String,
    email: Option<String>,
    phone: Option<String>,
    external_ids: BTreeMap<String, String>,
}

impl Fields {
    fn of(doc: &Map<String, Value>, user_name_key: &str) -> Self {
        let text =
            |v: Option<&Value>| v.and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
        let name_part = |part: &str| text(doc.get("name").and_then(|n| n.get(part)));
        let given_family =
            [name_part("givenName"), name_part("familyName")].into_iter().flatten().collect::<Vec<_>>().join(" ");
        let name = text(doc.get("displayName"))
            .or_else(|| name_part("formatted"))
            .or_else(|| Some(given_family).filter(|n| !n.is_empty()))
            .or_else(|| text(doc.get("userName")))
            .unwrap_or_default();
        let name: String = name.chars().filter(|c| !c.is_control()).take(200).collect();
        let email = preferred(doc, "emails").filter(|e| validate::email(e).is_ok());
        let phone = preferred(doc, "phoneNumbers").filter(|p| validate::phone(p).is_ok());
        let mut external_ids = BTreeMap::from([(USER_NAME.to_owned(), user_name_key.to_owned())]);
        if let Some(id) = text(doc.get("externalId")) {
            external_ids.insert(SOURCE.to_owned(), id);
        }
        Self { name, email, phone, external_ids }
    }
}

/// The primary value of a multi-valued attribute, else its first.
fn preferred(doc: &Map<String, Value>, attr: &str) -> Option<String> {
    let items = doc.get(attr)?.as_array()?;
    let primary = items.iter().find(|i| i.get("primary") == Some(&Value::Bool(true))).or_else(|| items.first());
    primary?.get("value")?.as_str().map(str::to_owned)
}

fn user_name_key(doc: &Map<String, Value>) -> Result<String> {
    match doc.get("userName").and_then(Value::as_str).map(str::trim) {
        Some(n) if !n.is_empty() => Ok(n.to_lowercase()),
        _ => Err(ScimError::invalid_value("userName is required")),
    }
}

/// Whether the user's attributes say they are deactivated.
fn inactive(doc: &Map<String, Value>) -> bool {
    doc.get("active") == Some(&Value::Bool(false))
}

/// Writes a user's attributes to their person in one change. A deactivated user is
/// offboarded first, on every write that says so (offboarding takes only what is left, so
/// a provider's retry completes one that failed halfway); a user the provider deactivated
/// is active again only when it says so.
async fn write(directory: &Arc<Directory>, person: &Person, doc: Map<String, Value>) -> Result<Person> {
    let key = user_name_key(&doc)?;
    let fields = Fields::of(&doc, &key);
    if inactive(&doc) {
        offboard(directory, &person.id, "deactivated by the identity provider", &[]).await?;
    }
    let mut external_ids: BTreeMap<_, _> =
        person.external_ids.iter().filter(|(s, _)| !is_scim(s)).map(|(s, v)| (s.clone(), v.clone())).collect();
    external_ids.extend(fields.external_ids);
    let mut attributes = person.attributes.clone();
    attributes.insert(ATTRIBUTE.to_owned(), Value::Object(doc.clone()));
    let reactivated =
        stored(person).is_some_and(inactive) && !inactive(&doc) && person.status == PersonStatus::Suspended;
    let email_changed = person.email != fields.email;
    let phone_changed = person.phone != fields.phone && fields.phone.is_some();
    let patch = PersonPatch {
        name: (person.name != fields.name).then_some(fields.name),
        email: email_changed.then_some(fields.email),
        // An address or number the provider sets is one nobody verified here.
        email_verified: (email_changed && person.email_verified).then_some(false),
        phone: phone_changed.then_some(fields.phone),
        phone_verified: (phone_changed && person.phone_verified).then_some(false),
        external_ids: (person.external_ids != external_ids).then_some(external_ids),
        attributes: Some(attributes),
        status: reactivated.then_some(PersonStatus::Active),
        ..Default::default()
    };
    Ok(directory.patch_person(&Actor::integration("scim"), person.id.clone(), patch).await?)
}

async fn offboard(directory: &Arc<Directory>, person_id: &str, reason: &str, groups: &[String]) -> Result<()> {
    let departure = Departure { person_id, source: SOURCE, reason, groups };
    offboarding::offboard(directory, departure).await?;
    Ok(())
}
