//! Admin authentication: `Authorization: Bearer <token>`, checked against the SHA-256
//! digests of the tokens in the store (cached, refreshed when the directory changes) and
//! the token from the environment, always in constant time. A token scoped to decisions
//! (a station's) passes only [`Asker`], never [`Admin`].

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use lintel_store::TokenScope;

use crate::AppState;
use crate::problem::ApiError;

pub fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// An authenticated admin; the token's name is kept for the record.
pub struct Admin(pub String);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)
            .ok_or_else(|| ApiError::unauthorized("send an admin token as Authorization: Bearer <token>"))?;
        state.services().tokens.check(token).map(Admin).ok_or_else(|| ApiError::unauthorized("the token is not valid"))
    }
}

/// Who may ask decisions: an admin token, or a token scoped to decisions (a station's),
/// which may be limited to one door.
pub struct Asker {
    pub name: String,
    /// The only door this token may ask about; `None` for any.
    pub door: Option<String>,
}

impl Asker {
    /// Refuses a question about another door than the token's own.
    pub fn may_ask_at(&self, door: &str) -> Result<(), ApiError> {
        match &self.door {
            Some(own) if own != door => Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "forbidden",
                format!("the token {:?} may only ask about the door {own:?}", self.name),
            )),
            _ => Ok(()),
        }
    }
}

impl FromRequestParts<AppState> for Asker {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token =
            bearer(parts).ok_or_else(|| ApiError::unauthorized("send a token as Authorization: Bearer <token>"))?;
        match state.services().tokens.check_scoped(token) {
            Some((name, TokenScope::Admin)) => Ok(Self { name, door: None }),
            Some((name, TokenScope::Decisions { door })) => Ok(Self { name, door }),
            None => Err(ApiError::unauthorized("the token is not valid")),
        }
    }
}
