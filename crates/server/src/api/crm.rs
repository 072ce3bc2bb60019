//! The makerspace CRM's admin routes: issuing a member's card, and people's photos.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use lintel_proto::{CardToWrite, Problem};
use serde::Deserialize;

use lintel_service::ServiceError;

use crate::AppState;
use crate::auth::{Desk, SiteReader};
use crate::problem::{ApiError, ApiJson, ApiPath};

/// A member's CRM id, as text or as a JSON number.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum MemberId {
    Text(String),
    Number(u64),
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CardRequest {
    /// The member's CRM person id (digits).
    #[schema(value_type = String, example = "1001")]
    member: MemberId,
}

/// Look a member up in the CRM, update lintel's copy (person `crm-<id>`, status, skills,
/// card), and answer what to write on their card: the UID and the current revocation code.
#[utoipa::path(post, path = "/api/v1/crm/cards", tag = "integrations", request_body = CardRequest,
    security(("admin" = [])),
    responses((status = 200, description = "the card to write", body = CardToWrite),
        (status = 404, description = "the CRM has no such member (`unknown-member`), or `[crm]` is not configured", body = Problem,
            content_type = "application/problem+json"),
        (status = 409, description = "the card's UID belongs to another person", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "fails validation", body = Problem, content_type = "application/problem+json"), (status = 502, description = "the CRM failed", body = Problem, content_type = "application/problem+json")))]
pub async fn issue_card(
    State(s): State<AppState>,
    _: Desk,
    ApiJson(body): ApiJson<CardRequest>,
) -> Result<Json<CardToWrite>, ApiError> {
    let member = match body.member {
        MemberId::Text(id) => id,
        MemberId::Number(n) => n.to_string(),
    };
    let crm = s.services().crm.as_ref().ok_or_else(|| ServiceError::not_configured("crm", "the makerspace CRM"))?;
    Ok(Json(crm.issue_card(&member).await?))
}

/// A person's photo (`<person id>.jpg` in the photos folder; the CRM's members' photos
/// are fetched there when they are looked up).
#[utoipa::path(get, path = "/api/v1/people/{id}/photo", tag = "directory", params(("id" = String, Path, description = "the person's id")), security(("admin" = [])),
    responses((status = 200, content_type = "image/jpeg", description = "the JPEG"),
        (status = 404, description = "no such person, or no photo", body = Problem, content_type = "application/problem+json")))]
pub async fn photo(
    State(s): State<AppState>,
    _: SiteReader,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let jpeg = s
        .services()
        .photos
        .read(s.store(), &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("{id:?} has no photo")))?;
    let headers = [(header::CONTENT_TYPE, "image/jpeg"), (header::CACHE_CONTROL, "private, max-age=60")];
    Ok((headers, jpeg).into_response())
}
