//! Live updates for the dashboard's feed and the facility display: Server-Sent Events
//! whose data is the HTML of one line or tile, rendered (and escaped) by the same
//! templates as the page. A browser that reconnects sends `Last-Event-ID` and gets what
//! it missed from the log (up to a page of it).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use lintel_proto::Event;
use lintel_store::EventFilter;
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc};

use super::{Ui, pages};

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum View {
    Feed,
    Display,
}

#[derive(Deserialize)]
pub struct LiveQuery {
    view: View,
}

fn seq(e: &Event) -> i64 {
    e.id.parse().unwrap_or(0)
}

pub async fn stream(
    State(ui): State<Ui>,
    headers: HeaderMap,
    Query(q): Query<LiveQuery>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let app = ui.app.clone();
    let directory = app.inner.directory.clone();
    // Subscribe first, so that nothing falls between the backlog and the live events.
    let mut live = directory.subscribe();
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<i64>().ok());
    let (tx, rx) = mpsc::channel::<(String, String)>(64);
    tokio::spawn(async move {
        let mut last = match resume {
            Some(after) => after,
            None => directory.store.last_event_seq().await.unwrap_or(0),
        };
        let send = async |e: &Event| -> bool {
            match pages::live_fragment(&app, e, q.view).await {
                Some(html) => tx.send((e.id.clone(), html.replace(['\r', '\n'], " "))).await.is_ok(),
                None => true,
            }
        };
        // What the log has after `last` and before `before` (a reconnecting browser's
        // gap, a lag, or events published out of order).
        let backlog = async |last: i64, before: Option<i64>| -> Vec<Event> {
            let filter = EventFilter { after: Some(last), before, limit: 200, ..Default::default() };
            directory.store.events(&filter).await.unwrap_or_default()
        };
        loop {
            for e in backlog(last, None).await {
                last = seq(&e);
                if !send(&e).await {
                    return;
                }
            }
            loop {
                let received = tokio::select! {
                    received = live.recv() => received,
                    () = tx.closed() => return,
                };
                match received {
                    Ok(e) if seq(&e) > last => {
                        // Events are published after their commits, not always in order;
                        // once this one is committed, the earlier ones are too.
                        if seq(&e) > last + 1 {
                            for earlier in backlog(last, Some(seq(&e))).await {
                                if !send(&earlier).await {
                                    return;
                                }
                            }
                        }
                        last = seq(&e);
                        if !send(&e).await {
                            return;
                        }
                    }
                    Ok(_) => {}
                    // Fell behind: catch up from the log.
                    Err(broadcast::error::RecvError::Lagged(_)) => break,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let (id, html) = rx.recv().await?;
        Some((Ok(SseEvent::default().id(id).event("item").data(html)), rx))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
