//! Outbound webhook endpoints: registered, changed, rotated and removed by an admin; their
//! deliveries listed with every attempt, replayed, and re-sent by time range.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use lintel_proto::{
    NewWebhookEndpoint, WebhookDelivery, WebhookEndpoint, WebhookEndpointPatch, WebhookResend, WebhookResent,
    WebhookSecret,
};
use serde::Deserialize;
use utoipa::IntoParams;

use lintel_service::webhooks;

use crate::AppState;
use crate::auth::{Admin, Reader};
use crate::problem::{ApiError, ApiJson, ApiPath, ApiQuery};

type ApiResult<T> = Result<T, ApiError>;

/// Register an endpoint. Its signing secret is in the answer, this once.
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", request_body = NewWebhookEndpoint, security(("admin" = [])),
    responses((status = 201, description = "the endpoint and its secret", body = WebhookSecret), (status = 422, description = "fails validation", body = lintel_proto::Problem, content_type = "application/problem+json")))]
pub async fn create_webhook(
    State(s): State<AppState>,
    Admin(by): Admin,
    ApiJson(new): ApiJson<NewWebhookEndpoint>,
) -> ApiResult<(StatusCode, Json<WebhookSecret>)> {
    Ok((StatusCode::CREATED, Json(webhooks::create(&s.store().acting_as(by.actor().as_str()), new).await?)))
}

/// All endpoints.
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks", security(("admin" = [])),
    responses((status = 200, description = "the endpoints", body = Vec<WebhookEndpoint>)))]
pub async fn list_webhooks(State(s): State<AppState>, _: Reader) -> ApiResult<Json<Vec<WebhookEndpoint>>> {
    Ok(Json(webhooks::list(s.store()).await?))
}

/// Read an endpoint.
#[utoipa::path(get, path = "/api/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path, description = "the endpoint's id")), security(("admin" = [])),
    responses((status = 200, description = "the endpoint", body = WebhookEndpoint), (status = 404, description = "no such resource", body = lintel_proto::Problem, content_type = "application/problem+json")))]
pub async fn get_webhook(
    State(s): State<AppState>,
    _: Reader,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<WebhookEndpoint>> {
    Ok(Json(webhooks::get(s.store(), &id).await?))
}

/// Change an endpoint: its URL, kinds, description, or enable or disable it.
#[utoipa::path(patch, path = "/api/v1/webhooks/{id}", tag = "webhooks", request_body = WebhookEndpointPatch, params(("id" = String, Path, description = "the endpoint's id")), security(("admin" = [])),
    responses((status = 200, description = "the endpoint", body = WebhookEndpoint), (status = 404, description = "no such resource", body = lintel_proto::Problem, content_type = "application/problem+json")))]
pub async fn patch_webhook(
    State(s): State<AppState>,
    Admin(by): Admin,
    ApiPath(id): ApiPath<String>,
    ApiJson(patch): ApiJson<WebhookEndpointPatch>,
) -> ApiResult<Json<WebhookEndpoint>> {
    Ok(Json(webhooks::patch(&s.store().acting_as(by.actor().as_str()), &id, patch).await?))
}

/// Remove an endpoint with its queue.
#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path, description = "the endpoint's id")), security(("admin" = [])),
    responses((status = 204, description = "done"), (status = 404, description = "no such resource", body = lintel_proto::Problem, content_type = "application/problem+json")))]
pub async fn delete_webhook(
    State(s): State<AppState>,
    Admin(by): Admin,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    webhooks::delete(&s.store().acting_as(by.actor().as_str()), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new signing secret, shown once; the old one keeps signing beside it for a day.
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/rotate", tag = "webhooks", params(("id" = String, Path, description = "the endpoint's id")), security(("admin" = [])),
    responses((status = 200, description = "the endpoint and its new secret", body = WebhookSecret), (status = 404, description = "no such resource", body = lintel_proto::Problem, content_type = "application/problem+json")))]
pub async fn rotate_webhook(
    State(s): State<AppState>,
    Admin(by): Admin,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<WebhookSecret>> {
    Ok(Json(webhooks::rotate(&s.store().acting_as(by.actor().as_str()), &id).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// 1 to 1000, default 100.
    limit: Option<i64>,
}

/// The endpoint's newest deliveries, each with every attempt.
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", tag = "webhooks", params(("id" = String, Path, description = "the endpoint's id"), DeliveriesQuery), security(("admin" = [])),
    responses((status = 200, description = "the deliveries, newest first", body = Vec<WebhookDelivery>), (status = 404, description = "no such resource", body = lintel_proto::Problem, content_type = "application/problem+json")))]
pub async fn list_deliveries(
    State(s): State<AppState>,
    _: Reader,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<DeliveriesQuery>,
) -> ApiResult<Json<Vec<WebhookDelivery>>> {
    Ok(Json(webhooks::deliveries(s.store(), &id, q.limit.unwrap_or(100)).await?))
}

/// Send a delivery again, next in the endpoint's line.
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/deliveries/{delivery}/replay", tag = "webhooks", params(("id" = String, Path, description = "the endpoint's id"), ("delivery" = i64, Path, description = "the delivery's id")), security(("admin" = [])),
    responses((status = 204, description = "queued"), (status = 404, description = "no such resource", body = lintel_proto::Problem, content_type = "application/problem+json")))]
pub async fn replay_delivery(
    State(s): State<AppState>,
    _: Admin,
    ApiPath((id, delivery)): ApiPath<(String, i64)>,
) -> ApiResult<StatusCode> {
    webhooks::replay(s.store(), &id, delivery).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Send the endpoint's events of a time range again (after its outage).
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/resend", tag = "webhooks", request_body = WebhookResend, params(("id" = String, Path, description = "the endpoint's id")), security(("admin" = [])),
    responses((status = 200, description = "how many deliveries were queued", body = WebhookResent), (status = 404, description = "no such resource", body = lintel_proto::Problem, content_type = "application/problem+json")))]
pub async fn resend(
    State(s): State<AppState>,
    _: Admin,
    ApiPath(id): ApiPath<String>,
    ApiJson(range): ApiJson<WebhookResend>,
) -> ApiResult<Json<WebhookResent>> {
    Ok(Json(WebhookResent { queued: webhooks::resend(s.store(), &id, range).await? }))
}
