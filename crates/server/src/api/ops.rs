//! Health, readiness, metrics, the OpenAPI document, and the problem answers for unknown
//! routes and methods.

use std::sync::{Arc, OnceLock};

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::AppState;
use crate::problem::ApiError;

/// Process alive.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "alive")))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Store reachable and writable (a full disk is not ready: nothing could be revoked or
/// recorded), and decision index loaded.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "ready"), (status = 503, description = "not ready")))]
pub async fn readyz(State(s): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let store = &s.store();
    store.ping().await.map_err(|_| ApiError::unavailable("the store does not answer"))?;
    store.check_writable().await.map_err(|e| {
        tracing::error!(error = %e, "the store cannot write");
        ApiError::unavailable("the store cannot write (is the disk full?); see the log")
    })?;
    let stats = s.directory().index().stats();
    Ok(Json(serde_json::json!({
        "status": "ready",
        "index": {"people": stats.people, "credentials": stats.credentials, "doors": stats.doors, "groups": stats.groups, "grants": stats.grants}
    })))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    if let Err(e) = lintel_service::metrics::refresh(s.directory()).await {
        // The counters still render; the gauges read from the store keep their last values.
        tracing::warn!(error = %e, "metrics not read from the store");
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.inner.metrics.render())
}

/// The recorder is global to the process; it is installed once.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("lintel_decision_seconds".into()),
                    &[1e-7, 2.5e-7, 5e-7, 1e-6, 2.5e-6, 5e-6, 1e-5, 1e-4, 1e-3],
                )
                .expect("bucket list is not empty")
                .install_recorder()
                .inspect(|_| lintel_service::metrics::describe())
                .expect("no other metrics recorder is installed")
        })
        .clone()
}

pub async fn openapi(doc: Arc<utoipa::openapi::OpenApi>) -> impl IntoResponse {
    Json(doc)
}

pub async fn not_found(uri: axum::http::Uri) -> axum::response::Response {
    // An identity provider reads SCIM errors, whatever the path under its base.
    if uri.path().starts_with("/scim/v2") {
        return super::scim::not_found(uri.path()).into_response();
    }
    ApiError::not_found("no such route; GET /openapi.json lists them").into_response()
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", "this route does not take that method")
}
