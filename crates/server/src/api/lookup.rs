//! The badge identity lookup's endpoint: `GET` on an operator-defined path with the
//! reader's raw badge id (hex) in the query or a path segment, answered with
//! `200 {"user": ..., attributes}` or a `404` problem document. What is found, and from
//! which source, is the service's (`lintel_service::integrations::lookup`); a source that
//! fails is a `503`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use base64::Engine;
use lintel_service::decide::Source;
use lintel_service::integrations::lookup::{Admission, Lookup, LookupRoute, Password};
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::problem::{ApiError, ApiPath};

/// The lookup's route, when configured.
pub(crate) fn router(state: &AppState) -> Router<AppState> {
    let Some(lookup) = state.services().lookup.as_ref() else { return Router::new() };
    match &lookup.config().route {
        LookupRoute::Query { path, .. } => Router::new().route(path, axum::routing::get(by_query)),
        LookupRoute::Segment { route } => Router::new().route(route, axum::routing::get(by_segment)),
    }
}

/// Who asks: the client's address (for the wrong-password lock) and its headers.
struct Asker {
    headers: HeaderMap,
    source: Source,
}

async fn by_query(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let asker = Asker { headers, source: source(peer) };
    let Some(lookup) = state.services().lookup.as_deref() else {
        return ApiError::not_found("no lookup").into_response();
    };
    let LookupRoute::Query { param, .. } = &lookup.config().route else {
        return ApiError::not_found("no lookup").into_response();
    };
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.as_deref().unwrap_or("")).unwrap_or_default();
    let raw = pairs.into_iter().find(|(k, _)| k == param).map(|(_, v)| v);
    let Some(raw) = raw else {
        return answer_error(
            lookup,
            &asker,
            ApiError::bad_request(format!("the badge id is the query parameter {param:?}")),
        )
        .await;
    };
    respond(lookup, &asker, &raw).await
}

async fn by_segment(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    ApiPath(raw): ApiPath<String>,
) -> Response {
    let asker = Asker { headers, source: source(peer) };
    let Some(lookup) = state.services().lookup.as_deref() else {
        return ApiError::not_found("no lookup").into_response();
    };
    respond(lookup, &asker, &raw).await
}

fn source(peer: Option<Extension<ConnectInfo<SocketAddr>>>) -> Source {
    Source::Client(match peer {
        Some(Extension(ConnectInfo(addr))) => format!("lookup:{}", addr.ip()),
        None => "lookup".to_owned(),
    })
}

/// The basic auth the request carries, against the configured one (compared in constant time).
fn password(expected: &str, headers: &HeaderMap) -> Password {
    let Some(authorization) = headers.get(header::AUTHORIZATION) else { return Password::Missing };
    let given = authorization
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic ")))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
        .unwrap_or_default();
    // Digests first, so that lengths take no part in the comparison.
    let a = Sha256::digest(&given);
    let b = Sha256::digest(expected.as_bytes());
    if bool::from(a.as_slice().ct_eq(b.as_slice())) { Password::Right } else { Password::Wrong }
}

fn unauthorized() -> Response {
    let mut response = ApiError::unauthorized("the lookup needs basic auth").into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"lintel lookup\", charset=\"UTF-8\""));
    response
}

/// The refusal when the asker may not look up, if any: locked after too many wrong
/// passwords (429), or without the right credentials (401).
async fn refusal(lookup: &Lookup, asker: &Asker) -> Option<Response> {
    let expected = lookup.config().basic_auth.as_deref()?;
    match lookup.admit(&asker.source, password(expected, &asker.headers)).await {
        Admission::Admitted => None,
        Admission::Locked { wait } => {
            let wait = wait.as_secs().max(1);
            let detail = format!("too many wrong passwords; try again in {wait} s");
            let mut response = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "locked", detail).into_response();
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait));
            Some(response)
        }
        Admission::Refused => Some(unauthorized()),
    }
}

/// Errors before the lookup: the credentials come first, so that nothing is learnt without them.
async fn answer_error(lookup: &Lookup, asker: &Asker, error: ApiError) -> Response {
    refusal(lookup, asker).await.unwrap_or_else(|| error.into_response())
}

async fn respond(lookup: &Lookup, asker: &Asker, raw: &str) -> Response {
    if let Some(refused) = refusal(lookup, asker).await {
        return refused;
    }
    let id = match lookup.read(raw) {
        Ok(id) => id,
        Err(e) => return ApiError::bad_request(format!("badge id: {e}")).into_response(),
    };
    match lookup.find(&id).await {
        Ok(Some(body)) => (StatusCode::OK, axum::Json(Value::Object(body))).into_response(),
        Ok(None) => ApiError::not_found("no user has this badge").into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use lintel_service::integrations::lookup::reserved;

    /// Every route of the API lies under a reserved path, so that no template can collide with
    /// one (axum would refuse the router).
    #[test]
    fn reserved_paths_cover_the_api() {
        let (_, openapi) = crate::api::router().split_for_parts();
        for path in openapi.paths.paths.keys() {
            assert!(reserved(path), "{path} is not covered by RESERVED in lintel_service's lookup");
        }
        assert!(reserved("/openapi.json") && reserved("/ui/people") && reserved("/visit.js"));
    }
}
