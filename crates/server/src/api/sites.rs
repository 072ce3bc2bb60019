//! Sites: the locations doors belong to.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use lintel_proto::{NewSite, Problem, Site, SitePatch};

use crate::AppState;
use crate::auth::{Admin, SiteReader};
use crate::problem::{ApiError, ApiJson, ApiPath};

type ApiResult<T> = Result<T, ApiError>;

/// Create a site.
#[utoipa::path(post, path = "/api/v1/sites", tag = "directory", request_body = NewSite, security(("admin" = [])),
    responses((status = 201, description = "the site", body = Site), (status = 409, description = "conflicts with what exists", body = Problem, content_type = "application/problem+json"), (status = 422, description = "fails validation", body = Problem, content_type = "application/problem+json")))]
pub async fn create_site(
    State(s): State<AppState>,
    Admin(by): Admin,
    ApiJson(site): ApiJson<NewSite>,
) -> ApiResult<(StatusCode, Json<Site>)> {
    Ok((StatusCode::CREATED, Json(s.directory().create_site(&by.actor(), site).await?)))
}

/// All sites, each with how many doors it has.
#[utoipa::path(get, path = "/api/v1/sites", tag = "directory", security(("admin" = [])), responses((status = 200, description = "the sites", body = Vec<Site>)))]
pub async fn list_sites(State(s): State<AppState>, SiteReader(by): SiteReader) -> ApiResult<Json<Vec<Site>>> {
    let mine = |site: &Site| by.site.as_ref().is_none_or(|own| *own == site.id);
    Ok(Json(s.store().sites().await?.into_iter().filter(mine).collect()))
}

/// Read a site.
#[utoipa::path(get, path = "/api/v1/sites/{id}", tag = "directory", params(("id" = String, Path, description = "the site's id")), security(("admin" = [])),
    responses((status = 200, description = "the site", body = Site), (status = 404, description = "no such resource", body = Problem, content_type = "application/problem+json")))]
pub async fn get_site(
    State(s): State<AppState>,
    SiteReader(by): SiteReader,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Site>> {
    let site = s.store().site(&id).await?;
    by.may_see_site(&site.id)?;
    Ok(Json(site))
}

/// Change a site's name or time zone.
#[utoipa::path(patch, path = "/api/v1/sites/{id}", tag = "directory", params(("id" = String, Path, description = "the site's id")), request_body = SitePatch, security(("admin" = [])),
    responses((status = 200, description = "the site", body = Site), (status = 404, description = "no such resource", body = Problem, content_type = "application/problem+json"), (status = 422, description = "fails validation", body = Problem, content_type = "application/problem+json")))]
pub async fn patch_site(
    State(s): State<AppState>,
    Admin(by): Admin,
    ApiPath(id): ApiPath<String>,
    ApiJson(p): ApiJson<SitePatch>,
) -> ApiResult<Json<Site>> {
    Ok(Json(s.directory().patch_site(&by.actor(), id, p).await?))
}

/// Remove a site: only one without doors, never the default site `main`.
#[utoipa::path(delete, path = "/api/v1/sites/{id}", tag = "directory", params(("id" = String, Path, description = "the site's id")), security(("admin" = [])),
    responses((status = 204, description = "done"), (status = 404, description = "no such resource", body = Problem, content_type = "application/problem+json"), (status = 409, description = "the default site, or one with doors or webhook endpoints", body = Problem, content_type = "application/problem+json")))]
pub async fn delete_site(
    State(s): State<AppState>,
    Admin(by): Admin,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    s.directory().delete_site(&by.actor(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}
