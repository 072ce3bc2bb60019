//! The one error of lintel's workflows. It keeps the distinctions a workflow acts on
//! (retry a transient upstream failure, record a permanent refusal once) and those a
//! front-end answers with; the HTTP edge maps it to a problem document in one place.

use lintel_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// `code` names what is missing when a caller acts on it (`not-found`, `unknown-member`).
    #[error("{detail}")]
    NotFound { code: &'static str, detail: String },
    /// The integration is not set up in the configuration.
    #[error("{0}")]
    NotConfigured(String),
    #[error("{0}")]
    Conflict(String),
    /// The caller's input does not fit.
    #[error("{0}")]
    Invalid(String),
    /// The caller did not prove who it is.
    #[error("{0}")]
    Unauthorized(String),
    /// The caller is known and may not do this; `code` names why (`forbidden`,
    /// `suspended`, ...).
    #[error("{detail}")]
    Forbidden { code: &'static str, detail: String },
    #[error("{detail}")]
    RateLimited { detail: String, retry_after_seconds: u64 },
    /// lintel itself cannot do it now (the store is down, a decision could not be
    /// recorded): nothing was changed, the caller may try again.
    #[error("{0}")]
    Unavailable(String),
    /// Another system failed or refused: `transient` says whether trying again can help.
    #[error("{detail}")]
    Upstream { system: &'static str, detail: String, transient: bool },
}

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

impl ServiceError {
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::Invalid(detail.into())
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::NotFound { code: "not-found", detail: detail.into() }
    }

    /// Not found, with its own problem code.
    pub fn unknown(code: &'static str, detail: impl Into<String>) -> Self {
        Self::NotFound { code, detail: detail.into() }
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::Unauthorized(detail.into())
    }

    pub fn forbidden(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Forbidden { code, detail: detail.into() }
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::Unavailable(detail.into())
    }

    pub fn not_configured(section: &str, what: &str) -> Self {
        Self::NotConfigured(format!("{what} is not configured ([{section}] in the config)"))
    }

    pub fn upstream(system: &'static str, detail: impl Into<String>, transient: bool) -> Self {
        Self::Upstream { system, detail: detail.into(), transient }
    }

    /// Whether the same call may succeed later (the outbox retries only these).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unavailable(_) => true,
            Self::Upstream { transient, .. } => *transient,
            _ => false,
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => Self::not_found(e.to_string()),
            StoreError::Conflict(m) => Self::Conflict(m),
            StoreError::Invalid(m) => Self::Invalid(m),
            other => {
                tracing::error!(error = %other, "store failure");
                Self::Unavailable("the store could not complete the request; nothing was changed".into())
            }
        }
    }
}
