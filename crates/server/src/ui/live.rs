//! Live updates for the feeds (the dashboard's, a person's, a door's) and the facility
//! display: Server-Sent Events
//! whose data is the HTML of one line or tile, rendered (and escaped) by the same
//! templates as the page. A browser that reconnects sends `Last-Event-ID` and gets what
//! it missed from the log (up to a page of it).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use lintel_store::EventFilter;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::Ui;
use super::pages::{self, View};

#[derive(Deserialize)]
pub struct LiveQuery {
    view: View,
    /// Only one person's events (their page's feed).
    person: Option<String>,
    /// Only one door's events (its page's feed).
    door: Option<String>,
    /// Only the events at one site's doors (the dashboard of that site).
    site: Option<String>,
}

pub async fn stream(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Query(q): Query<LiveQuery>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let app = ui.app.clone();
    let stopping = app.stopping();
    let directory = app.directory().clone();
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<i64>().ok());
    let last = match resume {
        Some(after) => after,
        None => directory.store.last_event_seq().await.unwrap_or(0),
    };
    let chosen = |v: Option<String>| v.filter(|v| !v.is_empty());
    let filter = EventFilter {
        person_id: chosen(q.person),
        door: chosen(q.door),
        site: chosen(q.site),
        ..EventFilter::default()
    };
    let view = q.view;
    let mut events = lintel_service::follow::follow(directory, last, filter);
    let (tx, rx) = mpsc::channel::<(String, String)>(64);
    tokio::spawn(async move {
        loop {
            let e = tokio::select! {
                e = events.recv() => e,
                // The view is gone: end the follower now, not at the next event.
                () = tx.closed() => return,
            };
            let Some(e) = e else { return };
            if let Some(html) = pages::live_fragment(&app, &e, view).await
                && tx.send((e.id.clone(), html.replace(['\r', '\n'], " "))).await.is_err()
            {
                return;
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let (id, html) = rx.recv().await?;
        Some((Ok(SseEvent::default().id(id).event("item").data(html)), rx))
    });
    // Ends (cleanly, for the browser to reconnect) when lintel shuts down.
    Sse::new(stream.take_until(stopping)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
