//! The one runner of queued work with other systems: the outbox (calls lintel makes:
//! check-ins, lock-cloud users, invitations) and the inbox (webhook deliveries it
//! received). Due items are claimed under a lease (another node's runner leaves them
//! alone), handed to the target's own delivery, and their outcome is recorded with the
//! one retry policy ([`crate::retry::RETRY`]).

use lintel_store::{Attempt, Store, StoreError, WorkItem};
use serde_json::Value;

use crate::ServiceError;
use crate::retry::RETRY;

/// How many due items one run takes.
const BATCH: i64 = 20;

/// What is kept of an outbox item's payload once it is finished (`sent`: delivered, or
/// given up), for payloads that carry what only the call needed (an invitation's secret).
pub type Scrub = fn(&WorkItem, bool) -> Value;

/// Delivers `target`'s due outbox items; returns how many were attempted. `deliver` gets
/// each item as its own (not an async closure over a borrowed one: a worker spawned with
/// such a closure cannot be proven `Send`).
pub async fn run_outbox<F>(
    store: &Store,
    target: &str,
    scrub: Option<Scrub>,
    mut deliver: impl FnMut(WorkItem) -> F,
) -> Result<usize, StoreError>
where
    F: Future<Output = Result<(), ServiceError>>,
{
    let items = store.due_outbox(target, BATCH).await?;
    for item in &items {
        let attempt = outcome(target, item, deliver(item.clone()).await);
        match (scrub, &attempt) {
            (Some(scrub), Attempt::Done) => store.outbox_done_scrubbed(item.pk, &scrub(item, true)).await?,
            (scrub, attempt) => {
                store.outbox_attempted(item.pk, attempt).await?;
                if let (Some(scrub), Attempt::Failed(_)) = (scrub, attempt) {
                    store.scrub_outbox(item.pk, &scrub(item, false)).await?;
                }
            }
        }
    }
    Ok(items.len())
}

/// Processes `source`'s due inbox deliveries; returns how many were attempted.
pub async fn run_inbox<F>(
    store: &Store,
    source: &str,
    mut process: impl FnMut(WorkItem) -> F,
) -> Result<usize, StoreError>
where
    F: Future<Output = Result<(), ServiceError>>,
{
    let items = store.due_inbox(source, BATCH).await?;
    for item in &items {
        let attempt = outcome(source, item, process(item.clone()).await);
        store.inbox_attempted(item.pk, &attempt).await?;
    }
    Ok(items.len())
}

fn outcome(queue: &str, item: &WorkItem, result: Result<(), ServiceError>) -> Attempt {
    match result {
        Ok(()) => Attempt::Done,
        Err(e) => {
            let attempt = RETRY.after_failure(item.attempts, &e);
            let gave_up = matches!(attempt, Attempt::Failed(_));
            tracing::warn!(queue, kind = %item.kind, attempts = item.attempts + 1, gave_up, error = %e, "work not done");
            attempt
        }
    }
}
