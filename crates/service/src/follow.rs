//! Following the event log: what is stored after a point, then what happens live, in
//! order, without gaps or repeats. Both the API's event stream and the web UI's live
//! views are built on it.

use std::sync::Arc;

use lintel_proto::Event;
use lintel_store::EventFilter;
use tokio::sync::{broadcast, mpsc};

use crate::directory::Directory;

/// An event's place in the log.
pub fn seq(e: &Event) -> i64 {
    e.id.parse().unwrap_or(0)
}

/// Whether an event passes a filter's kind, person, door and actor (its bounds are the
/// follower's; its site, [`passes`]).
fn matches(e: &Event, filter: &EventFilter) -> bool {
    filter.kind.as_ref().is_none_or(|k| *k == e.kind)
        && filter.person_id.as_ref().is_none_or(|p| Some(p) == e.person_id.as_ref())
        && filter.door.as_ref().is_none_or(|d| Some(d) == e.door.as_ref())
        && filter.actor.as_ref().is_none_or(|a| Some(a) == e.actor.as_ref())
        && (!filter.changes_only || e.actor.is_some())
}

/// [`matches`], and at the filter's site: the event's door is there now (as the store
/// reads it, like the stored events' filter; only streams limited to a site ask).
async fn passes(directory: &Directory, e: &Event, filter: &EventFilter) -> bool {
    if !matches(e, filter) {
        return false;
    }
    match (&filter.site, &e.door) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(site), Some(door)) => directory.store.door(door).await.is_ok_and(|d| d.site == *site),
    }
}

/// Every event after `last` that passes `filter`: first from the store, then live. The
/// channel closes when the receiver is dropped (or the store fails).
pub fn follow(directory: Arc<Directory>, mut last: i64, filter: EventFilter) -> mpsc::Receiver<Event> {
    // Subscribed before the first read of the store, so nothing falls between the two.
    let mut live = directory.subscribe();
    let (tx, rx) = mpsc::channel::<Event>(256);
    tokio::spawn(async move {
        // Delivers the stored events after `last` (and before `before`), page by page.
        let replay = async |last: &mut i64, before: Option<i64>| -> Result<(), ()> {
            loop {
                let page_filter = EventFilter { after: Some(*last), before, limit: 500, ..filter.clone() };
                let page = directory.store.events(&page_filter).await.map_err(|_| ())?;
                let full = page.len() == 500;
                for e in page {
                    *last = seq(&e);
                    tx.send(e).await.map_err(|_| ())?;
                }
                if !full {
                    return Ok(());
                }
            }
        };
        if replay(&mut last, None).await.is_err() {
            return;
        }
        loop {
            let received = tokio::select! {
                received = live.recv() => received,
                // With a filter that matches nothing, only this notices a receiver gone.
                () = tx.closed() => return,
            };
            match received {
                Ok(e) => {
                    let this = seq(&e);
                    if this <= last {
                        continue; // already delivered from the store
                    }
                    // Events are published after their commits, not always in order; but
                    // once this one is committed, every earlier one is too: take any gap
                    // from the store.
                    if this > last + 1 && replay(&mut last, Some(this)).await.is_err() {
                        return;
                    }
                    last = this;
                    if passes(&directory, &e, &filter).await && tx.send(e).await.is_err() {
                        return;
                    }
                }
                // Fell behind the live channel: catch up from the store.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    if replay(&mut last, None).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    rx
}
