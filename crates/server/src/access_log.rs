//! One log line per request, for the operator: method, path, status, duration, client.
//! Refusals (401, 403) are warnings: failed sign-ins and refused webhooks show up at the
//! default level without reading every request.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::Response;

pub async fn access_log(request: Request, next: Next) -> Response {
    let began = Instant::now();
    let method = request.method().clone();
    let path = loggable_path(request.uri().path());
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let ms = began.elapsed().as_millis() as u64;
    match status {
        401 | 403 => tracing::warn!(target: "lintel::access", %method, %path, status, ms, %client, "request refused"),
        500.. => tracing::error!(target: "lintel::access", %method, %path, status, ms, %client, "request failed"),
        _ => tracing::info!(target: "lintel::access", %method, %path, status, ms, %client, "request"),
    }
    response
}

/// The path alone (a query can carry a webhook's token), without a doorbell snapshot's id,
/// which is the capability to fetch the image.
fn loggable_path(path: &str) -> String {
    match path.strip_prefix("/hooks/doorbell/snapshots/") {
        Some(_) => "/hooks/doorbell/snapshots/(id)".to_owned(),
        None => path.chars().take(200).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::loggable_path;

    #[test]
    fn capabilities_stay_out_of_the_log() {
        assert_eq!(loggable_path("/hooks/doorbell/snapshots/k3y"), "/hooks/doorbell/snapshots/(id)");
        assert_eq!(loggable_path("/api/v1/people/alice"), "/api/v1/people/alice");
        assert_eq!(loggable_path(&"/x".repeat(500)).len(), 200);
    }
}
