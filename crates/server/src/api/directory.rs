//! People, credentials, doors, groups and grants.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use lintel_proto::{
    Credential, Door, DoorPatch, Enrolment, Grant, GrantPatch, Group, NewCredential, NewDoor, NewEnrolment, NewGrant,
    NewGroup, NewPerson, Page, Person, PersonPatch, Problem,
};
use lintel_store::PersonFilter;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use lintel_service::site_limits::SiteDoors;

use crate::auth::{SiteAdmin, SiteDesk, SiteReader, access_changes_are_allowed};
use crate::problem::{ApiError, ApiJson, ApiPath, ApiQuery};
use lintel_service::edits::redacted;

type ApiResult<T> = Result<T, ApiError>;

/// Create a person.
#[utoipa::path(post, path = "/api/v1/people", tag = "directory", request_body = NewPerson,
    security(("admin" = [])),
    responses((status = 201, description = "the person", body = Person), (status = 409, description = "conflicts with what exists", body = Problem, content_type = "application/problem+json"), (status = 422, description = "fails validation", body = Problem, content_type = "application/problem+json")))]
pub async fn create_person(
    State(s): State<AppState>,
    SiteDesk(by): SiteDesk,
    ApiJson(p): ApiJson<NewPerson>,
) -> ApiResult<(StatusCode, Json<Person>)> {
    access_changes_are_allowed(s.store(), &by, None, Some(&p.attributes)).await?;
    Ok((StatusCode::CREATED, Json(s.directory().create_person(&by.actor(), p).await?)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
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
    responses((status = 200, description = "a page of people", body = Page<Person>), (status = 400, description = "malformed request", body = Problem, content_type = "application/problem+json")))]
pub async fn list_people(
    State(s): State<AppState>,
    _: SiteReader,
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
#[utoipa::path(get, path = "/api/v1/people/{id}", tag = "directory", params(("id" = String, Path, description = "the person's id")), security(("admin" = [])),
    responses((status = 200, description = "the person", body = Person), (status = 404, description = "no such resource", body = Problem, content_type = "application/problem+json")))]
pub async fn get_person(
    State(s): State<AppState>,
    _: SiteReader,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Person>> {
    Ok(Json(s.store().person(&id).await?))
}

/// Change a person (merge patch).
#[utoipa::path(patch, path = "/api/v1/people/{id}", tag = "directory", params(("id" = String, Path, description = "the person's id")), request_body = PersonPatch, security(("admin" = [])),
    responses((status = 200, description = "the person", body = Person), (status = 404, description = "no such resource", body = Problem, content_type = "application/problem+json"), (status = 422, description = "fails validation", body = Problem, content_type = "application/problem+json")))]
pub async fn patch_person(
    State(s): State<AppState>,
    SiteDesk(by): SiteDesk,
    ApiPath(id): ApiPath<String>,
    ApiJson(p): ApiJson<PersonPatch>,
) -> ApiResult<Json<Person>> {
    access_changes_are_allowed(s.store(), &by, Some(&id), p.attributes.as_ref()).await?;
    Ok(Json(s.directory().patch_person(&by.actor(), id, p).await?))
}

/// Remove a person; their credentials are revoked at once.
#[utoipa::path(delete, path = "/api/v1/people/{id}", tag = "directory", params(("id" = String, Path, description = "the person's id")), security(("admin" = [])),
    responses((status = 204, description = "done"), (status = 404, description = "no such resource", body = Problem, content_type = "application/problem+json")))]
pub async fn delete_person(
    State(s): State<AppState>,
    SiteDesk(by): SiteDesk,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    access_changes_are_allowed(s.store(), &by, Some(&id), None).await?;
    s.directory().delete_person(&by.actor(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Issue a credential. A generated secret or backup code is in the answer, once.
#[utoipa::path(post, path = "/api/v1/people/{id}/credentials", tag = "directory", params(("id" = String, Path, description = "the person's id")), request_body = NewCredential,
    security(("admin" = [])),
    responses((status = 201, description = "the credential", body = Credential), (status = 404, description = "no such resource", body = Problem, content_type = "application/problem+json"), (status = 409, description = "conflicts with what exists", body = Problem, content_type = "application/problem+json"), (status = 422, description = "fails validation", body = Problem, content_type = "application/problem+json")))]
pub async fn issue_credential(
    State(s): State<AppState>,
    SiteDesk(by): SiteDesk,
    ApiPath(id): ApiPath<String>,
    ApiJson(c): ApiJson<NewCredential>,
) -> ApiResult<(StatusCode, Json<Credential>)> {
    let built = s.services().credentials.build(&c)?;
    Ok((StatusCode::CREATED, Json(s.directory().issue_credential(&by.actor(), id, built).await?)))
}

/// A person's credentials, revoked ones included.
#[utoipa::path(get, path = "/api/v1/people/{id}/credentials", tag = "directory", params(("id" = String, Path, description = "the person's id")), security(("admin" = [])),
    responses((status = 200, description = "the credentials", body = Vec<Credential>), (status = 404, description = "no such resource", body = Problem, content_type = "application/problem+json")))]
pub async fn list_credentials(
    State(s): State<AppState>,
    _: SiteReader,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Vec<Credential>>> {
    Ok(Json(s.store().person_credentials(&id).await?))
}

/// Read a credential.
#[utoipa::path(get, path = "/api/v1/credentials/{id}", tag = "directory", params(("id" = String, Path, description = "the credential's id")), security(("admin" = [])),
    responses((status = 200, description = "the credential", body = Credential), (status = 404, description = "no such resource", body = Problem, content_type = "application/problem+json")))]
pub async fn get_credential(
    State(s): State<AppState>,
    _: SiteReader,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Credential>> {
    Ok(Json(s.store().credential(&id).await?))
}

/// Revoke a credential; it stops working at once.
#[utoipa::path(delete, path = "/api/v1/credentials/{id}", tag = "directory", params(("id" = String, Path, description = "the credential's id")), security(("admin" = [])),
    responses((status = 200, description = "the credential", body = Credential), (status = 404, description = "no such resource", body = Problem, content_type = "application/problem+json")))]
pub async fn revoke_credential(
    State(s): State<AppState>,
    SiteDesk(by): SiteDesk,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Credential>> {
    Ok(Json(s.directory().revoke_credential(&by.actor(), id, format!("revoked by {}", by.label())).await?))
}

/// Create a door.
#[utoipa::path(post, path = "/api/v1/doors", tag = "directory", request_body = NewDoor, security(("admin" = [])),
    responses((status = 201, description = "the door", body = Door), (status = 409, description = "conflicts with what exists", body = Problem, content_type = "application/problem+json"), (status = 422, description = "fails validation", body = Problem, content_type = "application/problem+json")))]
pub async fn create_door(
    State(s): State<AppState>,
    SiteAdmin(by): SiteAdmin,
    ApiJson(door): ApiJson<NewDoor>,
) -> ApiResult<(StatusCode, Json<Door>)> {
    Ok((StatusCode::CREATED, Json(s.directory().create_door(&by.actor(), door).await?)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DoorsQuery {
    /// Only the doors of this site.
    site: Option<String>,
}

/// All doors (or a site's) with their last known state.
#[utoipa::path(get, path = "/api/v1/doors", tag = "directory", params(DoorsQuery), security(("admin" = [])), responses((status = 200, description = "the doors", body = Vec<Door>)))]
pub async fn list_doors(
    State(s): State<AppState>,
    SiteReader(by): SiteReader,
    ApiQuery(q): ApiQuery<DoorsQuery>,
) -> ApiResult<Json<Vec<Door>>> {
    let site = by.site_to_read(q.site)?;
    Ok(Json(s.store().doors(site.as_deref()).await?.into_iter().map(redacted).collect()))
}

/// Read a door.
#[utoipa::path(get, path = "/api/v1/doors/{id}", tag = "directory", params(("id" = String, Path, description = "the door's id")), security(("admin" = [])),
    responses((status = 200, description = "the door", body = Door), (status = 404, description = "no such resource", body = Problem, content_type = "application/problem+json")))]
pub async fn get_door(
    State(s): State<AppState>,
    SiteReader(by): SiteReader,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Door>> {
    let door = s.store().door(&id).await?;
    by.may_see_site(&door.site)?;
    Ok(Json(redacted(door)))
}

/// Change a door.
#[utoipa::path(patch, path = "/api/v1/doors/{id}", tag = "directory", params(("id" = String, Path, description = "the door's id")), request_body = DoorPatch, security(("admin" = [])),
    responses((status = 200, description = "the door", body = Door), (status = 404, description = "no such resource", body = Problem, content_type = "application/problem+json"), (status = 422, description = "fails validation", body = Problem, content_type = "application/problem+json")))]
pub async fn patch_door(
    State(s): State<AppState>,
    SiteAdmin(by): SiteAdmin,
    ApiPath(id): ApiPath<String>,
    ApiJson(p): ApiJson<DoorPatch>,
) -> ApiResult<Json<Door>> {
    Ok(Json(s.directory().patch_door(&by.actor(), id, p).await?))
}

/// Remove a door (and it from every group and grant).
#[utoipa::path(delete, path = "/api/v1/doors/{id}", tag = "directory", params(("id" = String, Path, description = "the door's id")), security(("admin" = [])),
    responses((status = 204, description = "done"), (status = 404, description = "no such resource", body = Problem, content_type = "application/problem+json")))]
pub async fn delete_door(
    State(s): State<AppState>,
    SiteAdmin(by): SiteAdmin,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    s.directory().delete_door(&by.actor(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Create a group (a set of doors that people join).
#[utoipa::path(post, path = "/api/v1/groups", tag = "directory", request_body = NewGroup, security(("admin" = [])),
    responses((status = 201, description = "the group", body = Group), (status = 404, description = "no such resource", body = Problem, content_type = "application/problem+json"), (status = 409, description = "conflicts with what exists", body = Problem, content_type = "application/problem+json"), (status = 422, description = "fails validation", body = Problem, content_type = "application/problem+json")))]
pub async fn create_group(
    State(s): State<AppState>,
    SiteAdmin(by): SiteAdmin,
    ApiJson(g): ApiJson<NewGroup>,
) -> ApiResult<(StatusCode, Json<Group>)> {
    Ok((StatusCode::CREATED, Json(s.directory().create_group(&by.actor(), g).await?)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct GroupsQuery {
    /// Only the groups with a door of this site, or holding a grant to one.
    site: Option<String>,
}

/// All groups (or those of a site).
#[utoipa::path(get, path = "/api/v1/groups", tag = "directory", params(GroupsQuery), security(("admin" = [])), responses((status = 200, description = "the groups", body = Vec<Group>)))]
pub async fn list_groups(
    State(s): State<AppState>,
    SiteReader(by): SiteReader,
    ApiQuery(q): ApiQuery<GroupsQuery>,
) -> ApiResult<Json<Vec<Group>>> {
    let groups = s.store().groups().await?;
    let Some(site) = by.site_to_read(q.site)? else { return Ok(Json(groups)) };
    let at = SiteDoors::of(s.store(), &site).await?;
    let grants = s.store().grants(None).await?;
    Ok(Json(groups.into_iter().filter(|g| at.group(g, &grants)).collect()))
}

/// Read a group.
#[utoipa::path(get, path = "/api/v1/groups/{id}", tag = "directory", params(("id" = String, Path, description = "the group's id")), security(("admin" = [])),
    responses((status = 200, description = "the group", body = Group), (status = 404, description = "no such resource", body = Problem, content_type = "application/problem+json")))]
pub async fn get_group(
    State(s): State<AppState>,
    SiteReader(by): SiteReader,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Group>> {
    let group = s.store().group(&id).await?;
    if let Some(site) = &by.site
        && !SiteDoors::of(s.store(), site).await?.group(&group, &s.store().grants(None).await?)
    {
        return Err(by.not_at_their_site());
    }
    Ok(Json(group))
}

/// Remove a group, its memberships and its grants.
#[utoipa::path(delete, path = "/api/v1/groups/{id}", tag = "directory", params(("id" = String, Path, description = "the group's id")), security(("admin" = [])),
    responses((status = 204, description = "done"), (status = 404, description = "no such resource", body = Problem, content_type = "application/problem+json")))]
pub async fn delete_group(
    State(s): State<AppState>,
    SiteAdmin(by): SiteAdmin,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    s.directory().delete_group(&by.actor(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Put a person in a group (idempotent).
#[utoipa::path(put, path = "/api/v1/groups/{id}/members/{person_id}", tag = "directory", params(("id" = String, Path, description = "the group's id"), ("person_id" = String, Path, description = "the person's id")), security(("admin" = [])),
    responses((status = 204, description = "done"), (status = 404, description = "no such resource", body = Problem, content_type = "application/problem+json")))]
pub async fn add_member(
    State(s): State<AppState>,
    SiteDesk(by): SiteDesk,
    ApiPath((group, person)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    s.directory().set_member(&by.actor(), group, person, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Take a person out of a group (idempotent).
#[utoipa::path(delete, path = "/api/v1/groups/{id}/members/{person_id}", tag = "directory", params(("id" = String, Path, description = "the group's id"), ("person_id" = String, Path, description = "the person's id")), security(("admin" = [])),
    responses((status = 204, description = "done"), (status = 404, description = "no such resource", body = Problem, content_type = "application/problem+json")))]
pub async fn remove_member(
    State(s): State<AppState>,
    SiteDesk(by): SiteDesk,
    ApiPath((group, person)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    s.directory().set_member(&by.actor(), group, person, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Grant a person or a group's members access to doors.
#[utoipa::path(post, path = "/api/v1/grants", tag = "directory", request_body = NewGrant, security(("admin" = [])),
    responses((status = 201, description = "the grant", body = Grant), (status = 404, description = "no such resource", body = Problem, content_type = "application/problem+json"), (status = 422, description = "fails validation", body = Problem, content_type = "application/problem+json")))]
pub async fn create_grant(
    State(s): State<AppState>,
    SiteAdmin(by): SiteAdmin,
    ApiJson(g): ApiJson<NewGrant>,
) -> ApiResult<(StatusCode, Json<Grant>)> {
    Ok((StatusCode::CREATED, Json(s.directory().create_grant(&by.actor(), g).await?)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct GrantsQuery {
    /// Only this person's own grants (not those of their groups).
    person_id: Option<String>,
    /// Only the grants to a door of this site (or to a door group with one).
    site: Option<String>,
}

/// List grants.
#[utoipa::path(get, path = "/api/v1/grants", tag = "directory", params(GrantsQuery), security(("admin" = [])),
    responses((status = 200, description = "the grants", body = Vec<Grant>), (status = 404, description = "no such resource", body = Problem, content_type = "application/problem+json")))]
pub async fn list_grants(
    State(s): State<AppState>,
    SiteReader(by): SiteReader,
    ApiQuery(q): ApiQuery<GrantsQuery>,
) -> ApiResult<Json<Vec<Grant>>> {
    let grants = s.store().grants(q.person_id.as_deref()).await?;
    let Some(site) = by.site_to_read(q.site)? else { return Ok(Json(grants)) };
    let at = SiteDoors::of(s.store(), &site).await?;
    Ok(Json(grants.into_iter().filter(|g| at.grant(g)).collect()))
}

/// Everyone as CSV, in the import's columns (`id,name,email,card_uid,revocation_code,groups,status`),
/// so that the file can be imported again.
#[utoipa::path(get, path = "/api/v1/people.csv", tag = "directory", security(("admin" = [])),
    responses((status = 200, description = "the people as CSV", body = String, content_type = "text/csv")))]
pub async fn people_csv_export(State(s): State<AppState>, _: SiteReader) -> ApiResult<impl IntoResponse> {
    let body = crate::export::people_csv(s.store()).await?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body))
}

/// Read a grant.
#[utoipa::path(get, path = "/api/v1/grants/{id}", tag = "directory", params(("id" = String, Path, description = "the grant's id")), security(("admin" = [])),
    responses((status = 200, description = "the grant", body = Grant), (status = 404, description = "no such resource", body = Problem, content_type = "application/problem+json")))]
pub async fn get_grant(
    State(s): State<AppState>,
    SiteReader(by): SiteReader,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Grant>> {
    let grant = s.store().grant(&id).await?;
    if let Some(site) = &by.site
        && !SiteDoors::of(s.store(), site).await?.grant(&grant)
    {
        return Err(by.not_at_their_site());
    }
    Ok(Json(grant))
}

/// Change a grant's doors, hours, validity or passes in place (a merge patch; `null`
/// clears). Its id, holder and passes used stay.
#[utoipa::path(patch, path = "/api/v1/grants/{id}", tag = "directory", params(("id" = String, Path, description = "the grant's id")), request_body = GrantPatch, security(("admin" = [])),
    responses((status = 200, description = "the grant", body = Grant), (status = 404, description = "no such resource", body = Problem, content_type = "application/problem+json"), (status = 422, description = "fails validation", body = Problem, content_type = "application/problem+json")))]
pub async fn patch_grant(
    State(s): State<AppState>,
    SiteAdmin(by): SiteAdmin,
    ApiPath(id): ApiPath<String>,
    ApiJson(p): ApiJson<GrantPatch>,
) -> ApiResult<Json<Grant>> {
    Ok(Json(s.directory().patch_grant(&by.actor(), id, p).await?))
}

/// Withdraw a grant.
#[utoipa::path(delete, path = "/api/v1/grants/{id}", tag = "directory", params(("id" = String, Path, description = "the grant's id")), security(("admin" = [])),
    responses((status = 204, description = "done"), (status = 404, description = "no such resource", body = Problem, content_type = "application/problem+json")))]
pub async fn delete_grant(
    State(s): State<AppState>,
    SiteAdmin(by): SiteAdmin,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    s.directory().delete_grant(&by.actor(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Enrol a card by tapping it: the next unknown card tapped at `door` within a minute
/// becomes this person's card. Look at the enrolment to see the card arrive.
#[utoipa::path(post, path = "/api/v1/people/{id}/enrolments", tag = "directory", params(("id" = String, Path, description = "the person's id")), request_body = NewEnrolment,
    security(("admin" = [])),
    responses((status = 201, description = "waiting for the tap", body = Enrolment), (status = 404, description = "no such person or door", body = Problem, content_type = "application/problem+json")))]
pub async fn start_enrolment(
    State(s): State<AppState>,
    SiteDesk(by): SiteDesk,
    ApiPath(id): ApiPath<String>,
    ApiJson(e): ApiJson<NewEnrolment>,
) -> ApiResult<(StatusCode, Json<Enrolment>)> {
    let started = lintel_service::enrolments::start(s.directory(), &by.actor(), &id, &e.door).await?;
    Ok((StatusCode::CREATED, Json(started)))
}

/// An enrolment: still `waiting`, `enrolled` (with the card's UID and credential), or
/// `expired`.
#[utoipa::path(get, path = "/api/v1/enrolments/{id}", tag = "directory", params(("id" = String, Path, description = "the enrolment's id")), security(("admin" = [])),
    responses((status = 200, description = "the enrolment", body = Enrolment), (status = 404, description = "no such resource", body = Problem, content_type = "application/problem+json")))]
pub async fn get_enrolment(
    State(s): State<AppState>,
    _: SiteReader,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Enrolment>> {
    Ok(Json(lintel_service::enrolments::check(s.directory(), &id).await?))
}
