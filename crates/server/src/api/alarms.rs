//! Door inputs and alarms: devices report inputs, operators see and acknowledge alarms.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use lintel_core::{Action, Role};
use lintel_proto::{Alarm, AlarmAck, DoorInput, InputKind, InputState, Problem};
use lintel_service::alarms::{self, InputOutcome};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::{InputReporter, SiteDoorOpener, SiteReader, operator_of_token};
use crate::problem::{ApiError, ApiJson, ApiPath, ApiQuery};

type ApiResult<T> = Result<T, ApiError>;

/// What a reported input did.
#[derive(Debug, Serialize, ToSchema)]
pub struct InputTaken {
    /// `recorded`, `alarm` (it raised `alarm`) or `emergency` (a fire input released the site's exit doors).
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alarm: Option<Alarm>,
}

impl From<InputOutcome> for InputTaken {
    fn from(outcome: InputOutcome) -> Self {
        match outcome {
            InputOutcome::Recorded => Self { outcome: "recorded", alarm: None },
            InputOutcome::Alarm(alarm) => Self { outcome: "alarm", alarm: Some(alarm) },
            InputOutcome::Emergency => Self { outcome: "emergency", alarm: None },
        }
    }
}

/// A device reports one of a door's inputs: the position switch (`door`: `open`,
/// `closed`), an exit request (`exit`: `active`), tamper (`active`, `inactive`) or a fire
/// panel's contact (`fire`: `active` raises an emergency release of the door's site).
/// Recorded; an opening without an entry, opening, exit request or unlock shortly before
/// raises `forced_open`.
#[utoipa::path(post, path = "/api/v1/doors/{id}/inputs", tag = "doors", params(("id" = String, Path, description = "the door's id")), request_body = DoorInput, security(("admin" = [])),
    responses((status = 200, description = "recorded, and what it raised", body = InputTaken), (status = 404, description = "no such door", body = Problem, content_type = "application/problem+json"), (status = 422, description = "fails validation", body = Problem, content_type = "application/problem+json")))]
pub async fn report_input(
    State(s): State<AppState>,
    InputReporter(by): InputReporter,
    ApiPath(id): ApiPath<String>,
    ApiJson(input): ApiJson<DoorInput>,
) -> ApiResult<Json<InputTaken>> {
    Ok(Json(alarms::report(s.directory(), &by.actor(), &id, input).await?.into()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct InputHookQuery {
    /// A `building` token (one limited to the door's site is best): devices that call a
    /// URL cannot send a header.
    token: Option<String>,
    input: Option<InputKind>,
    state: Option<InputState>,
}

/// The same for a device that can only call a URL (a Shelly's input action):
/// `/hooks/doors/front/input?token=T&input=door&state=open`, by GET or POST. Only a
/// `building` token, and never a fire input: such a URL is stored on the device in clear,
/// and a fire input releases exit doors over lockdown.
#[utoipa::path(post, path = "/hooks/doors/{id}/input", tag = "doors", params(("id" = String, Path, description = "the door's id"), InputHookQuery),
    responses((status = 200, description = "recorded, and what it raised", body = InputTaken), (status = 400, description = "malformed request", body = Problem, content_type = "application/problem+json"), (status = 401, description = "wrong token", body = Problem, content_type = "application/problem+json"), (status = 403, description = "not a building token, or a fire input", body = Problem, content_type = "application/problem+json"), (status = 404, description = "no such door", body = Problem, content_type = "application/problem+json")))]
pub async fn input_hook(
    State(s): State<AppState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<InputHookQuery>,
) -> ApiResult<Json<InputTaken>> {
    let token = q.token.ok_or_else(|| ApiError::unauthorized("send a building token as ?token="))?;
    let by = operator_of_token(&s, &token, Action::ReportInputs)?;
    if by.role != Role::Building {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only a building token may be put in a device's URL: make one with lintel token create --role building",
        ));
    }
    let (Some(input), Some(state)) = (q.input, q.state) else {
        return Err(ApiError::bad_request("give input and state"));
    };
    if input == InputKind::Fire {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a fire input comes from a controller or through the API with a header, not from a URL",
        ));
    }
    Ok(Json(alarms::report(s.directory(), &by.actor(), &id, DoorInput { input, state }).await?.into()))
}

/// [`input_hook`] by GET: a Shelly's actions call URLs with GET.
#[utoipa::path(get, path = "/hooks/doors/{id}/input", tag = "doors", params(("id" = String, Path, description = "the door's id"), InputHookQuery),
    responses((status = 200, description = "recorded, and what it raised", body = InputTaken), (status = 400, description = "malformed request", body = Problem, content_type = "application/problem+json"), (status = 401, description = "wrong token", body = Problem, content_type = "application/problem+json"), (status = 403, description = "the token may not report inputs here", body = Problem, content_type = "application/problem+json"), (status = 404, description = "no such door", body = Problem, content_type = "application/problem+json")))]
pub async fn input_hook_by_get(
    state: State<AppState>,
    id: ApiPath<String>,
    query: ApiQuery<InputHookQuery>,
) -> ApiResult<Json<InputTaken>> {
    input_hook(state, id, query).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AlarmsQuery {
    /// Every alarm, those cleared and acknowledged too (default: the open ones).
    all: Option<bool>,
    /// Only alarms at this site's doors.
    site: Option<String>,
}

/// The open alarms (raised and not yet both cleared and acknowledged), newest first.
#[utoipa::path(get, path = "/api/v1/alarms", tag = "doors", params(AlarmsQuery), security(("admin" = [])),
    responses((status = 200, description = "the alarms", body = Vec<Alarm>), (status = 400, description = "malformed request", body = Problem, content_type = "application/problem+json")))]
pub async fn list_alarms(
    State(s): State<AppState>,
    SiteReader(by): SiteReader,
    ApiQuery(q): ApiQuery<AlarmsQuery>,
) -> ApiResult<Json<Vec<Alarm>>> {
    let site = by.site_to_read(q.site)?;
    Ok(Json(s.store().alarms(q.all.unwrap_or(false), site.as_deref()).await?))
}

/// Acknowledge an alarm, with a note; recorded with who did it. It leaves the open
/// alarms once its condition has cleared too.
#[utoipa::path(post, path = "/api/v1/alarms/{id}/ack", tag = "doors", params(("id" = String, Path, description = "the alarm's id")), request_body = AlarmAck, security(("admin" = [])),
    responses((status = 200, description = "the alarm", body = Alarm), (status = 404, description = "no such alarm", body = Problem, content_type = "application/problem+json"), (status = 409, description = "acknowledged already", body = Problem, content_type = "application/problem+json"), (status = 422, description = "fails validation", body = Problem, content_type = "application/problem+json")))]
pub async fn ack_alarm(
    State(s): State<AppState>,
    SiteDoorOpener(by): SiteDoorOpener,
    ApiPath(id): ApiPath<String>,
    ApiJson(ack): ApiJson<AlarmAck>,
) -> ApiResult<Json<Alarm>> {
    Ok(Json(alarms::acknowledge(s.directory(), &by.actor(), id, ack.note).await?))
}
