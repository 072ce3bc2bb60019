//! Errors as RFC 9457 problem documents, and extractors that turn every malformed body
//! (strict JSON, or raw bytes) into one.

use std::borrow::Cow;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lintel_proto::{PROBLEM_CONTENT_TYPE, Problem};
use lintel_service::ServiceError;
use lintel_store::StoreError;
use serde::de::DeserializeOwned;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub slug: Cow<'static, str>,
    pub detail: String,
    pub extensions: serde_json::Map<String, serde_json::Value>,
    /// Sent as `Retry-After` (seconds).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, slug: impl Into<Cow<'static, str>>, detail: impl Into<String>) -> Self {
        Self { status, slug: slug.into(), detail: detail.into(), extensions: Default::default(), retry_after: None }
    }

    /// Tells the client when to try again.
    pub fn retry_after(self, seconds: u64) -> Self {
        Self { retry_after: Some(seconds), ..self }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid-request", detail)
    }

    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ServiceError::from(e).into()
    }
}

/// The one mapping of lintel's domain error to problem documents.
impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound { code, detail } => Self::new(StatusCode::NOT_FOUND, code, detail),
            ServiceError::NotConfigured(m) => Self::new(StatusCode::NOT_FOUND, "not-configured", m),
            ServiceError::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            ServiceError::Invalid(m) => Self::invalid(m),
            ServiceError::Unauthorized(m) => Self::unauthorized(m),
            ServiceError::Forbidden { code, detail } => Self::new(StatusCode::FORBIDDEN, code, detail),
            ServiceError::RateLimited { detail, retry_after_seconds } => {
                let mut error = Self::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", detail);
                error.extensions.insert("retry_after".into(), retry_after_seconds.into());
                error.retry_after(retry_after_seconds)
            }
            ServiceError::Unavailable(m) => Self::unavailable(m),
            ServiceError::Upstream { system, detail, .. } => {
                Self::new(StatusCode::BAD_GATEWAY, format!("{system}-unreachable"), detail)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = Problem {
            kind: format!("urn:lintel:problem:{}", self.slug),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            detail: self.detail,
            extensions: self.extensions,
        };
        let mut response = (self.status, axum::Json(problem)).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_CONTENT_TYPE));
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// JSON body that must be `application/json`, within the size limit, and match the type
/// exactly (unknown fields are refused by the types themselves).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(unsupported_media_type());
        }
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

fn unsupported_media_type() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
        "send the body as Content-Type: application/json",
    )
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let slug = if e.is_data() { "validation" } else { "malformed-json" };
        let status = if e.is_data() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::BAD_REQUEST };
        ApiError::new(status, slug, format!("the body does not fit: {e}"))
    })
}

/// The body as it came, for routes that read it themselves (webhooks whose signature
/// covers the bytes, forms, signed operations): too large or unreadable is a problem
/// document, where axum's own `Bytes` answers in plain text.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state).await.map(RawBody).map_err(body_error)
    }
}

fn body_error(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body-too-large", "the body is larger than this endpoint accepts")
    } else if crate::listener::is_body_timeout(&e) {
        ApiError::new(StatusCode::REQUEST_TIMEOUT, "body-timeout", "the body did not arrive in time")
    } else {
        ApiError::bad_request(format!("the body could not be read: {e}"))
    }
}

/// Query string parameters, with a problem document when they do not parse.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
            .map_err(|e| ApiError::bad_request(format!("the query string does not fit: {e}")))?;
        if pairs.iter().any(|(k, v)| has_control(k) || has_control(v)) {
            return Err(ApiError::bad_request("the query string has control characters"));
        }
        serde_urlencoded::from_str(query)
            .map(ApiQuery)
            .map_err(|e| ApiError::bad_request(format!("the query string does not fit: {e}")))
    }
}

/// Path parameters, with a problem document when they do not decode (e.g. `%FF`).
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> axum::extract::FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("the path does not fit: {e}")))
            .and_then(|axum::extract::Path(v)| {
                if parts.uri.path().contains('%') && percent_decoded_has_control(parts.uri.path()) {
                    return Err(ApiError::bad_request("the path has control characters"));
                }
                Ok(ApiPath(v))
            })
    }
}

/// An optional JSON body: empty means the defaults; anything else must be JSON.
pub struct OptionalJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json_type = is_json(req.headers());
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        if !json_type {
            return Err(unsupported_media_type());
        }
        parse_json(&bytes).map(OptionalJson)
    }
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// Whether a path, once percent-decoded, holds control characters (`%00`, `%0A`, ...).
fn percent_decoded_has_control(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.windows(3).any(|w| {
        w[0] == b'%'
            && std::str::from_utf8(&w[1..])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .is_some_and(|b| b < 0x20 || b == 0x7f)
    })
}
