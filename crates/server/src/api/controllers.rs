//! MQTT door controllers: their state and the allow-list versions (docs/mqtt.md).

use axum::Json;
use axum::extract::State;
use lintel_proto::controller::Controller;

use crate::AppState;
use crate::auth::Reader;
use crate::problem::ApiError;

/// Every controller a door names, with its online state, the allow-list version lintel
/// wants it to hold and the one it acknowledged (`drift` while they differ).
#[utoipa::path(get, path = "/api/v1/controllers", tag = "directory", security(("admin" = [])), responses((status = 200, description = "the controllers", body = Vec<Controller>)))]
pub async fn list_controllers(State(s): State<AppState>, _: Reader) -> Result<Json<Vec<Controller>>, ApiError> {
    Ok(Json(lintel_service::devices::controllers::overview(s.store()).await?))
}
