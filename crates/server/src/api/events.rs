//! The event log (paged and live) and attendance.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use chrono::{DateTime, Days, NaiveDate, Utc};
use chrono_tz::Tz;
use futures::{Stream, StreamExt};
use lintel_proto::{Attendance, AttendanceDay, Event, Page, Problem};
use lintel_service::attendance::Report;
use lintel_store::{EventFilter, StoreError};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::auth::Reader;
use crate::problem::{ApiError, ApiQuery};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Cursor: the `id` of the last event seen (or `next` of the previous page).
    after: Option<i64>,
    kind: Option<String>,
    person_id: Option<String>,
    door: Option<String>,
    /// Only events at this site's doors.
    site: Option<String>,
    /// Only events at or after this time (RFC 3339, e.g. `2026-01-01T00:00:00Z`).
    from: Option<DateTime<Utc>>,
    /// Only events before this time (RFC 3339).
    to: Option<DateTime<Utc>>,
    /// 1 to 1000, default 100.
    limit: Option<i64>,
}

/// Events after a cursor, oldest first. `next` is the cursor to poll with next time.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(EventsQuery), security(("admin" = [])),
    responses((status = 200, description = "a page of events", body = Page<Event>), (status = 400, description = "malformed request", body = Problem, content_type = "application/problem+json")))]
pub async fn list_events(
    State(s): State<AppState>,
    _: Reader,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Json<Page<Event>>, ApiError> {
    let filter = EventFilter {
        after: q.after,
        before: None,
        kind: q.kind,
        person_id: q.person_id,
        door: q.door,
        site: q.site,
        from: q.from.map(|t| t.timestamp_micros()),
        to: q.to.map(|t| t.timestamp_micros()),
        limit: q.limit.unwrap_or(100),
    };
    let items = s.store().events(&filter).await?;
    let next = items.last().map(|e| e.id.clone()).or_else(|| Some(q.after.unwrap_or(0).to_string()));
    Ok(Json(Page { items, next }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Start after this event (as `Last-Event-ID`); only new events when absent.
    after: Option<i64>,
    kind: Option<String>,
    person_id: Option<String>,
    door: Option<String>,
}

/// Live events as Server-Sent Events; reconnecting with `Last-Event-ID` resumes without
/// a gap, from the stored log.
#[utoipa::path(get, path = "/api/v1/events/stream", tag = "events", params(StreamQuery), security(("admin" = [])),
    responses((status = 200, description = "text/event-stream of events, `id` = event id")))]
pub async fn stream_events(
    State(s): State<AppState>,
    _: Reader,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().parse::<i64>().map_err(|_| ApiError::bad_request("Last-Event-ID is an event id")));
    let directory = s.directory().clone();
    let last = match resume.transpose()?.or(q.after) {
        Some(after) => after,
        None => directory.store.last_event_seq().await?,
    };
    let filter = EventFilter { kind: q.kind, person_id: q.person_id, door: q.door, ..Default::default() };
    let rx = lintel_service::follow::follow(directory, last, filter);
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let e = rx.recv().await?;
        let sse = SseEvent::default().id(e.id.clone()).event(e.kind.clone()).json_data(&e).unwrap_or_default();
        Some((Ok(sse), rx))
    });
    // Ends (cleanly, for the client to reconnect) when lintel shuts down.
    Ok(Sse::new(stream.take_until(s.stopping())).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AttendanceQuery {
    /// First day, `YYYY-MM-DD`.
    from: NaiveDate,
    /// Last day (inclusive), `YYYY-MM-DD`; at most 366 days after `from`.
    to: NaiveDate,
    /// `group` splits each day by the groups people belong to.
    by: Option<String>,
    /// Time zone that draws the line between days; the site's, else the server's
    /// `timezone`, by default.
    tz: Option<String>,
    /// Only entries at this site's doors.
    site: Option<String>,
}

/// People present per day: who, first and last entry, how many entries.
#[utoipa::path(get, path = "/api/v1/attendance", tag = "events", params(AttendanceQuery), security(("admin" = [])),
    responses((status = 200, description = "the attendance", body = Attendance), (status = 400, description = "malformed request", body = Problem, content_type = "application/problem+json"), (status = 422, description = "fails validation", body = Problem, content_type = "application/problem+json")))]
pub async fn attendance(
    State(s): State<AppState>,
    _: Reader,
    ApiQuery(q): ApiQuery<AttendanceQuery>,
) -> Result<Json<Attendance>, ApiError> {
    let site = match &q.site {
        Some(id) => Some(s.store().site(id).await.map_err(|e| match e {
            StoreError::NotFound { .. } => ApiError::invalid(format!("there is no site {id:?}")),
            e => e.into(),
        })?),
        None => None,
    };
    let tz_name = q.tz.as_deref().or(site.as_ref().and_then(|s| s.time_zone.as_deref()));
    let tz: Tz = match tz_name {
        Some(name) => name.parse().map_err(|_| ApiError::invalid(format!("unknown time zone {name:?}")))?,
        None => s.inner.services.config.timezone,
    };
    let by_group = match q.by.as_deref() {
        None => false,
        Some("group") => true,
        Some(other) => return Err(ApiError::invalid(format!("by={other:?}: the only split is by=group"))),
    };
    if q.to < q.from || (q.to - q.from).num_days() > 366 {
        return Err(ApiError::invalid("to is on or after from, and at most 366 days later"));
    }
    if q.to.checked_add_days(Days::new(1)).is_none() {
        return Err(ApiError::invalid("to is out of range"));
    }
    let report = Report { tz, from: q.from, to: q.to, site: q.site.as_deref(), by_group };
    let days = lintel_service::attendance::days(s.store(), report).await?;
    let days = days
        .into_iter()
        .map(|((date, group), people)| AttendanceDay {
            date,
            group,
            present: people.len() as u64,
            people: people.into_values().collect(),
        })
        .collect();
    Ok(Json(Attendance { from: q.from, to: q.to, tz: tz.name().to_owned(), days }))
}
