//! People, credentials, doors, groups and grants.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use lintel_core::CompiledSchedule;
use lintel_proto::{
    Credential, Door, DoorPatch, Grant, Group, NewCredential, NewDoor, NewGrant, NewGroup, NewPerson, Page, Person,
    PersonPatch, Problem,
};
use lintel_store::{NewGrantRecord, PersonFilter};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::auth::Admin;
use crate::problem::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::{secrets, validate};

type ApiResult<T> = Result<T, ApiError>;

const DEFAULT_OPEN_SECONDS: u32 = 5;
const MAX_OPEN_SECONDS: u32 = 3600;

fn check_person_fields(
    name: Option<&str>,
    email: Option<&str>,
    phone: Option<&str>,
    skills: Option<&[String]>,
    attributes: Option<&serde_json::Map<String, serde_json::Value>>,
    external_ids: Option<&std::collections::BTreeMap<String, String>>,
) -> ApiResult<()> {
    if let Some(v) = name {
        validate::name("name", v)?;
    }
    if let Some(v) = email {
        validate::email(v)?;
    }
    if let Some(v) = phone {
        validate::phone(v)?;
    }
    if let Some(v) = skills {
        validate::skills(v)?;
    }
    if let Some(v) = attributes {
        validate::attributes(v)?;
    }
    if let Some(v) = external_ids {
        validate::external_ids(v)?;
    }
    Ok(())
}

/// Create a person.
#[utoipa::path(post, path = "/api/v1/people", tag = "directory", request_body = NewPerson,
    security(("admin" = [])),
    responses((status = 201, body = Person), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create_person(
    State(s): State<AppState>,
    _: Admin,
    ApiJson(p): ApiJson<NewPerson>,
) -> ApiResult<(StatusCode, Json<Person>)> {
    let id = match &p.id {
        Some(id) => {
            validate::id("id", id)?;
            id.clone()
        }
        None => secrets::person_id(),
    };
    check_person_fields(
        Some(&p.name),
        p.email.as_deref(),
        p.phone.as_deref(),
        Some(&p.skills),
        Some(&p.attributes),
        Some(&p.external_ids),
    )?;
    let d = s.directory();
    let written = d.write(move |store| async move { store.create_person(&p, &id).await }).await?;
    Ok((StatusCode::CREATED, Json(written.value)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PeopleQuery {
    /// Exact email address (case-insensitive).
    email: Option<String>,
    /// `system:id`, e.g. `cobot:93207605`.
    external_id: Option<String>,
    /// Part of the name, email or id.
    q: Option<String>,
    /// The `next` cursor of the previous page.
    after: Option<String>,
    limit: Option<i64>,
}

/// List or find people.
#[utoipa::path(get, path = "/api/v1/people", tag = "directory", params(PeopleQuery), security(("admin" = [])),
    responses((status = 200, body = Page<Person>), (status = 400, body = Problem)))]
pub async fn list_people(
    State(s): State<AppState>,
    _: Admin,
    ApiQuery(q): ApiQuery<PeopleQuery>,
) -> ApiResult<Json<Page<Person>>> {
    let external_id = q
        .external_id
        .map(|e| {
            e.split_once(':')
                .map(|(s, i)| (s.to_owned(), i.to_owned()))
                .ok_or_else(|| ApiError::bad_request("external_id is system:id"))
        })
        .transpose()?;
    let after = q
        .after
        .map(|a| a.parse::<i64>().map_err(|_| ApiError::bad_request("after is a cursor from a previous page")))
        .transpose()?;
    let filter = PersonFilter {
        email: q.email,
        external_id,
        q: q.q,
        after,
        limit: q.limit.unwrap_or(100),
        ..Default::default()
    };
    let (items, next) = s.store().people(&filter).await?;
    Ok(Json(Page { items, next }))
}

/// Read a person.
#[utoipa::path(get, path = "/api/v1/people/{id}", tag = "directory", security(("admin" = [])),
    responses((status = 200, body = Person), (status = 404, body = Problem)))]
pub async fn get_person(State(s): State<AppState>, _: Admin, ApiPath(id): ApiPath<String>) -> ApiResult<Json<Person>> {
    Ok(Json(s.store().person(&id).await?))
}

/// Change a person (merge patch).
#[utoipa::path(patch, path = "/api/v1/people/{id}", tag = "directory", request_body = PersonPatch, security(("admin" = [])),
    responses((status = 200, body = Person), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn patch_person(
    State(s): State<AppState>,
    _: Admin,
    ApiPath(id): ApiPath<String>,
    ApiJson(p): ApiJson<PersonPatch>,
) -> ApiResult<Json<Person>> {
    check_person_fields(
        p.name.as_deref(),
        p.email.as_ref().and_then(|e| e.as_deref()),
        p.phone.as_ref().and_then(|e| e.as_deref()),
        p.skills.as_deref(),
        p.attributes.as_ref(),
        p.external_ids.as_ref(),
    )?;
    let d = s.directory();
    Ok(Json(d.write(move |store| async move { store.patch_person(&id, &p).await }).await?.value))
}

/// Remove a person; their credentials are revoked at once.
#[utoipa::path(delete, path = "/api/v1/people/{id}", tag = "directory", security(("admin" = [])),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn delete_person(State(s): State<AppState>, _: Admin, ApiPath(id): ApiPath<String>) -> ApiResult<StatusCode> {
    let d = s.directory();
    d.write(move |store| async move { store.delete_person(&id).await }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Issue a credential. A generated secret or backup code is in the answer, once.
#[utoipa::path(post, path = "/api/v1/people/{id}/credentials", tag = "directory", request_body = NewCredential,
    security(("admin" = [])),
    responses((status = 201, body = Credential), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn issue_credential(
    State(s): State<AppState>,
    _: Admin,
    ApiPath(id): ApiPath<String>,
    ApiJson(c): ApiJson<NewCredential>,
) -> ApiResult<(StatusCode, Json<Credential>)> {
    let lintel_service::credentials::Built { record, shown_once } = s.services().credentials.build(&c)?;
    let d = s.directory();
    let mut credential = d.write(move |store| async move { store.issue_credential(&id, &record).await }).await?.value;
    credential.secret = shown_once;
    Ok((StatusCode::CREATED, Json(credential)))
}

/// A person's credentials, revoked ones included.
#[utoipa::path(get, path = "/api/v1/people/{id}/credentials", tag = "directory", security(("admin" = [])),
    responses((status = 200, body = Vec<Credential>), (status = 404, body = Problem)))]
pub async fn list_credentials(
    State(s): State<AppState>,
    _: Admin,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Vec<Credential>>> {
    Ok(Json(s.store().person_credentials(&id).await?))
}

/// Read a credential.
#[utoipa::path(get, path = "/api/v1/credentials/{id}", tag = "directory", security(("admin" = [])),
    responses((status = 200, body = Credential), (status = 404, body = Problem)))]
pub async fn get_credential(
    State(s): State<AppState>,
    _: Admin,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Credential>> {
    Ok(Json(s.store().credential(&id).await?))
}

/// Revoke a credential; it stops working at once.
#[utoipa::path(delete, path = "/api/v1/credentials/{id}", tag = "directory", security(("admin" = [])),
    responses((status = 200, body = Credential), (status = 404, body = Problem)))]
pub async fn revoke_credential(
    State(s): State<AppState>,
    Admin(by): Admin,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Credential>> {
    let d = s.directory();
    let reason = format!("revoked by admin token {by:?}");
    Ok(Json(d.write(move |store| async move { store.revoke_credential(&id, &reason).await }).await?.value))
}

fn check_door_fields(
    name: Option<&str>,
    driver: Option<&lintel_proto::DriverConfig>,
    skill: Option<&str>,
    seconds: Option<u32>,
) -> ApiResult<()> {
    if let Some(v) = name {
        validate::name("name", v)?;
    }
    if let Some(d) = driver {
        lintel_doors::validate(d).map_err(|e| ApiError::invalid(e.to_string()))?;
    }
    if let Some(v) = skill {
        validate::text("required_skill", v, 64)?;
    }
    if let Some(v) = seconds
        && !(1..=MAX_OPEN_SECONDS).contains(&v)
    {
        return Err(ApiError::invalid(format!("open_seconds is 1 to {MAX_OPEN_SECONDS}")));
    }
    Ok(())
}

/// Create a door.
#[utoipa::path(post, path = "/api/v1/doors", tag = "directory", request_body = NewDoor, security(("admin" = [])),
    responses((status = 201, body = Door), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create_door(
    State(s): State<AppState>,
    _: Admin,
    ApiJson(door): ApiJson<NewDoor>,
) -> ApiResult<(StatusCode, Json<Door>)> {
    validate::id("id", &door.id)?;
    check_door_fields(Some(&door.name), Some(&door.driver), door.required_skill.as_deref(), door.open_seconds)?;
    let d = s.directory();
    let written =
        d.write(move |store| async move {
            store.create_door(&door, door.open_seconds.unwrap_or(DEFAULT_OPEN_SECONDS)).await
        })
        .await?;
    Ok((StatusCode::CREATED, Json(redacted(written.value))))
}

fn redacted(mut door: Door) -> Door {
    door.driver = door.driver.redacted();
    door
}

/// All doors with their last known state.
#[utoipa::path(get, path = "/api/v1/doors", tag = "directory", security(("admin" = [])), responses((status = 200, body = Vec<Door>)))]
pub async fn list_doors(State(s): State<AppState>, _: Admin) -> ApiResult<Json<Vec<Door>>> {
    Ok(Json(s.store().doors().await?.into_iter().map(redacted).collect()))
}

/// Read a door.
#[utoipa::path(get, path = "/api/v1/doors/{id}", tag = "directory", security(("admin" = [])),
    responses((status = 200, body = Door), (status = 404, body = Problem)))]
pub async fn get_door(State(s): State<AppState>, _: Admin, ApiPath(id): ApiPath<String>) -> ApiResult<Json<Door>> {
    Ok(Json(redacted(s.store().door(&id).await?)))
}

/// Change a door.
#[utoipa::path(patch, path = "/api/v1/doors/{id}", tag = "directory", request_body = DoorPatch, security(("admin" = [])),
    responses((status = 200, body = Door), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn patch_door(
    State(s): State<AppState>,
    _: Admin,
    ApiPath(id): ApiPath<String>,
    ApiJson(p): ApiJson<DoorPatch>,
) -> ApiResult<Json<Door>> {
    check_door_fields(
        p.name.as_deref(),
        p.driver.as_ref(),
        p.required_skill.as_ref().and_then(|s| s.as_deref()),
        p.open_seconds,
    )?;
    let d = s.directory();
    Ok(Json(redacted(d.write(move |store| async move { store.patch_door(&id, &p).await }).await?.value)))
}

/// Remove a door (and it from every group and grant).
#[utoipa::path(delete, path = "/api/v1/doors/{id}", tag = "directory", security(("admin" = [])),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn delete_door(State(s): State<AppState>, _: Admin, ApiPath(id): ApiPath<String>) -> ApiResult<StatusCode> {
    let d = s.directory();
    d.write(move |store| async move { store.delete_door(&id).await }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Create a group (a set of doors that people join).
#[utoipa::path(post, path = "/api/v1/groups", tag = "directory", request_body = NewGroup, security(("admin" = [])),
    responses((status = 201, body = Group), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create_group(
    State(s): State<AppState>,
    _: Admin,
    ApiJson(g): ApiJson<NewGroup>,
) -> ApiResult<(StatusCode, Json<Group>)> {
    validate::id("id", &g.id)?;
    validate::name("name", &g.name)?;
    g.doors.iter().try_for_each(|door| validate::id("a door", door))?;
    let d = s.directory();
    let written = d.write(move |store| async move { store.create_group(&g.id, &g.name, &g.doors).await }).await?;
    Ok((StatusCode::CREATED, Json(written.value)))
}

/// All groups.
#[utoipa::path(get, path = "/api/v1/groups", tag = "directory", security(("admin" = [])), responses((status = 200, body = Vec<Group>)))]
pub async fn list_groups(State(s): State<AppState>, _: Admin) -> ApiResult<Json<Vec<Group>>> {
    Ok(Json(s.store().groups().await?))
}

/// Read a group.
#[utoipa::path(get, path = "/api/v1/groups/{id}", tag = "directory", security(("admin" = [])),
    responses((status = 200, body = Group), (status = 404, body = Problem)))]
pub async fn get_group(State(s): State<AppState>, _: Admin, ApiPath(id): ApiPath<String>) -> ApiResult<Json<Group>> {
    Ok(Json(s.store().group(&id).await?))
}

/// Remove a group, its memberships and its grants.
#[utoipa::path(delete, path = "/api/v1/groups/{id}", tag = "directory", security(("admin" = [])),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn delete_group(State(s): State<AppState>, _: Admin, ApiPath(id): ApiPath<String>) -> ApiResult<StatusCode> {
    let d = s.directory();
    d.write(move |store| async move { store.delete_group(&id).await }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Put a person in a group (idempotent).
#[utoipa::path(put, path = "/api/v1/groups/{id}/members/{person_id}", tag = "directory", security(("admin" = [])),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn add_member(
    State(s): State<AppState>,
    _: Admin,
    ApiPath((group, person)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    let d = s.directory();
    d.write(move |store| async move { store.set_member(&group, &person, true).await }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Take a person out of a group (idempotent).
#[utoipa::path(delete, path = "/api/v1/groups/{id}/members/{person_id}", tag = "directory", security(("admin" = [])),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn remove_member(
    State(s): State<AppState>,
    _: Admin,
    ApiPath((group, person)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    let d = s.directory();
    d.write(move |store| async move { store.set_member(&group, &person, false).await }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Grant a person or a group's members access to doors.
#[utoipa::path(post, path = "/api/v1/grants", tag = "directory", request_body = NewGrant, security(("admin" = [])),
    responses((status = 201, body = Grant), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn create_grant(
    State(s): State<AppState>,
    _: Admin,
    ApiJson(g): ApiJson<NewGrant>,
) -> ApiResult<(StatusCode, Json<Grant>)> {
    match (&g.person_id, &g.group_id) {
        (Some(_), None) | (None, Some(_)) => {}
        _ => return Err(ApiError::invalid("a grant names exactly one of person_id and group_id")),
    }
    if g.doors.is_some() && g.door_group.is_some() {
        return Err(ApiError::invalid("a grant names doors or a door_group, not both"));
    }
    if g.person_id.is_some() && g.doors.is_none() && g.door_group.is_none() {
        return Err(ApiError::invalid("a person's grant names its doors or a door_group"));
    }
    if g.doors.as_ref().is_some_and(|d| d.is_empty() || d.len() > 1000) {
        return Err(ApiError::invalid("doors lists 1 to 1000 doors"));
    }
    if let (Some(from), Some(until)) = (g.valid_from, g.valid_until)
        && from >= until
    {
        return Err(ApiError::invalid("valid_from must be before valid_until"));
    }
    if let Some(schedule) = &g.schedule {
        if schedule.rules.len() > 100 {
            return Err(ApiError::invalid("a schedule has at most 100 rules"));
        }
        CompiledSchedule::compile(schedule).map_err(|e| ApiError::invalid(format!("schedule: {e}")))?;
    }
    if g.passes == Some(0) {
        return Err(ApiError::invalid("passes is at least 1 (leave it out for unlimited entry)"));
    }
    if let Some(source) = &g.source {
        validate::text("source", source, 200)?;
    }
    let record = NewGrantRecord {
        person_id: g.person_id,
        group_id: g.group_id,
        doors: g.doors,
        door_group: g.door_group,
        schedule: g.schedule,
        valid_from: g.valid_from.map(|t| t.timestamp_micros()),
        valid_until: g.valid_until.map(|t| t.timestamp_micros()),
        passes: g.passes,
        source: g.source,
    };
    let d = s.directory();
    let written = d.write(move |store| async move { store.create_grant(&record).await }).await?;
    Ok((StatusCode::CREATED, Json(written.value)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct GrantsQuery {
    /// Only this person's own grants (not those of their groups).
    person_id: Option<String>,
}

/// List grants.
#[utoipa::path(get, path = "/api/v1/grants", tag = "directory", params(GrantsQuery), security(("admin" = [])),
    responses((status = 200, body = Vec<Grant>), (status = 404, body = Problem)))]
pub async fn list_grants(
    State(s): State<AppState>,
    _: Admin,
    ApiQuery(q): ApiQuery<GrantsQuery>,
) -> ApiResult<Json<Vec<Grant>>> {
    Ok(Json(s.store().grants(q.person_id.as_deref()).await?))
}

/// Read a grant.
#[utoipa::path(get, path = "/api/v1/grants/{id}", tag = "directory", security(("admin" = [])),
    responses((status = 200, body = Grant), (status = 404, body = Problem)))]
pub async fn get_grant(State(s): State<AppState>, _: Admin, ApiPath(id): ApiPath<String>) -> ApiResult<Json<Grant>> {
    Ok(Json(s.store().grant(&id).await?))
}

/// Withdraw a grant.
#[utoipa::path(delete, path = "/api/v1/grants/{id}", tag = "directory", security(("admin" = [])),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn delete_grant(State(s): State<AppState>, _: Admin, ApiPath(id): ApiPath<String>) -> ApiResult<StatusCode> {
    let d = s.directory();
    d.write(move |store| async move { store.delete_grant(&id).await }).await?;
    Ok(StatusCode::NO_CONTENT)
}
