//! The event log (paged and live) and attendance.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use chrono::{DateTime, Days, NaiveDate, Utc};
use futures::{Stream, StreamExt};
use lintel_proto::{Attendance, AttendanceDay, Event, Page, Problem};
use lintel_service::attendance::Report;
use lintel_store::EventFilter;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::auth::SiteReader;
use crate::export::events_csv;
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
    /// Only changes made by this actor: `token:<name>`, `operator:<person id>`, `cli`,
    /// `integration:<name>`, `user:<person id>`.
    actor: Option<String>,
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
    SiteReader(by): SiteReader,
    ApiQuery(mut q): ApiQuery<EventsQuery>,
) -> Result<Json<Page<Event>>, ApiError> {
    q.site = by.site_to_read(q.site)?;
    page(&s, q, false).await
}

/// A page of events (of changes only, for the audit trail) and the cursor to go on from.
async fn page(s: &AppState, q: EventsQuery, changes_only: bool) -> Result<Json<Page<Event>>, ApiError> {
    let after = q.after;
    let items = s.store().events(&q.filter(changes_only)).await?;
    let next = items.last().map(|e| e.id.clone()).or_else(|| Some(after.unwrap_or(0).to_string()));
    Ok(Json(Page { items, next }))
}

impl EventsQuery {
    fn filter(self, changes_only: bool) -> EventFilter {
        EventFilter {
            after: self.after,
            before: None,
            kind: self.kind,
            person_id: self.person_id,
            door: self.door,
            site: self.site,
            actor: self.actor,
            changes_only,
            from: self.from.map(|t| t.timestamp_micros()),
            to: self.to.map(|t| t.timestamp_micros()),
            limit: self.limit.unwrap_or(100),
        }
    }
}

/// The audit trail: the changes someone made (who in `actor`; for edits, `data.before`
/// and `data.after` hold the fields that changed, never a secret), oldest first, with the
/// events' filters.
#[utoipa::path(get, path = "/api/v1/audit", tag = "events", params(EventsQuery), security(("admin" = [])),
    responses((status = 200, description = "a page of changes", body = Page<Event>)))]
pub async fn audit(
    State(s): State<AppState>,
    SiteReader(by): SiteReader,
    ApiQuery(mut q): ApiQuery<EventsQuery>,
) -> Result<Json<Page<Event>>, ApiError> {
    q.site = by.site_to_read(q.site)?;
    page(&s, q, true).await
}

/// The audit trail as CSV (the same filters; `limit` is ignored): one row per change,
/// `id,at,actor,kind,person_id,door,credential_id,grant_id,data`.
#[utoipa::path(get, path = "/api/v1/audit.csv", tag = "events", params(EventsQuery), security(("admin" = [])),
    responses((status = 200, description = "the changes as CSV", body = String, content_type = "text/csv")))]
pub async fn audit_csv(
    State(s): State<AppState>,
    SiteReader(by): SiteReader,
    ApiQuery(mut q): ApiQuery<EventsQuery>,
) -> Result<impl IntoResponse, ApiError> {
    q.site = by.site_to_read(q.site)?;
    let body = events_csv(s.store(), q.filter(true)).await?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body))
}

/// The event log as CSV (the same filters; `limit` is ignored), in the audit trail's
/// columns: `id,at,actor,kind,person_id,door,credential_id,grant_id,data`.
#[utoipa::path(get, path = "/api/v1/events.csv", tag = "events", params(EventsQuery), security(("admin" = [])),
    responses((status = 200, description = "the events as CSV", body = String, content_type = "text/csv")))]
pub async fn events_csv_export(
    State(s): State<AppState>,
    SiteReader(by): SiteReader,
    ApiQuery(mut q): ApiQuery<EventsQuery>,
) -> Result<impl IntoResponse, ApiError> {
    q.site = by.site_to_read(q.site)?;
    let body = events_csv(s.store(), q.filter(false)).await?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body))
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
    /// Only events at this site's doors.
    site: Option<String>,
    /// Only changes made by this actor.
    actor: Option<String>,
}

/// Live events as Server-Sent Events; reconnecting with `Last-Event-ID` resumes without
/// a gap, from the stored log.
#[utoipa::path(get, path = "/api/v1/events/stream", tag = "events", params(StreamQuery), security(("admin" = [])),
    responses((status = 200, description = "text/event-stream of events, `id` = event id")))]
pub async fn stream_events(
    State(s): State<AppState>,
    SiteReader(by): SiteReader,
    headers: HeaderMap,
    ApiQuery(mut q): ApiQuery<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    q.site = by.site_to_read(q.site)?;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().parse::<i64>().map_err(|_| ApiError::bad_request("Last-Event-ID is an event id")));
    let directory = s.directory().clone();
    let last = match resume.transpose()?.or(q.after) {
        Some(after) => after,
        None => directory.store.last_event_seq().await?,
    };
    let filter = EventFilter {
        kind: q.kind,
        person_id: q.person_id,
        door: q.door,
        site: q.site,
        actor: q.actor,
        ..Default::default()
    };
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
    SiteReader(by): SiteReader,
    ApiQuery(mut q): ApiQuery<AttendanceQuery>,
) -> Result<Json<Attendance>, ApiError> {
    q.site = by.site_to_read(q.site)?;
    let default = s.inner.services.config.timezone;
    let tz = lintel_service::attendance::zone(s.store(), q.tz.as_deref(), q.site.as_deref(), default).await?;
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
