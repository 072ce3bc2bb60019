//! Wire types of lintel's HTTP API, shared by the server, the
//! CLI and the tests. Request types reject unknown fields: a typo in a field name is a
//! 400, never a silently ignored setting.

pub mod controller;
mod decision;
mod directory;
mod events;
mod integrations;
mod problem;
mod signed;
mod webhooks;

pub use decision::*;
pub use directory::*;
pub use events::*;
pub use integrations::*;
pub use problem::*;
pub use signed::*;
pub use webhooks::*;

/// A page of items with the cursor of the next page, when there is one.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}
