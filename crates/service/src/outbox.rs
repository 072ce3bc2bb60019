//! The one runner of queued work with other systems: the outbox (calls lintel makes:
//! check-ins, lock-cloud users, invitations) and the inbox (webhook deliveries it
//! received). Due items are claimed under a lease (another node's runner leaves them
//! alone), handed to the target's own delivery, and their outcome is recorded with the
//! one retry policy ([`crate::retry::RETRY`]).

use lintel_store::{Attempt, Store, StoreError, WorkItem};
use serde_json::Value;

use crate::error::ServiceError;
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use lintel_proto::{OutboxEntry, WorkState};
    use serde_json::json;

    use super::*;
    use crate::testing;

    fn outage() -> ServiceError {
        ServiceError::upstream("platform", "HTTP 503", true)
    }

    fn refusal() -> ServiceError {
        ServiceError::upstream("platform", "HTTP 422", false)
    }

    async fn entry(store: &Store, key: &str) -> OutboxEntry {
        let all = store.outbox(None, 100).await.expect("outbox");
        all.into_iter().find(|e| e.idempotency_key == key).expect("the entry")
    }

    /// Runs `target`'s due work once, failing each item with what `fail` says (or
    /// delivering it when it says nothing); returns the payloads it was handed.
    async fn run(store: &Store, scrub: Option<Scrub>, fail: fn() -> Option<ServiceError>) -> Vec<Value> {
        let handed = Arc::new(Mutex::new(Vec::new()));
        let seen = handed.clone();
        run_outbox(store, "platform", scrub, move |item| {
            seen.lock().expect("seen").push(item.payload.clone());
            async move { fail().map_or(Ok(()), Err) }
        })
        .await
        .expect("run");
        Arc::try_unwrap(handed).expect("one owner").into_inner().expect("handed")
    }

    /// Seconds until the entry's next attempt.
    fn wait(entry: &OutboxEntry) -> i64 {
        (entry.next_attempt_at - chrono::Utc::now()).num_seconds()
    }

    #[tokio::test]
    async fn work_is_done_once_backs_off_and_is_given_up() {
        let (_dir, store) = testing::store().await;

        // One piece of work, however often it is queued.
        assert!(store.enqueue("platform", "check_in", "first", &json!({"n": 1})).await.expect("queued"));
        assert!(!store.enqueue("platform", "check_in", "first", &json!({"n": 2})).await.expect("queued"));
        assert_eq!(run(&store, None, || Some(outage())).await, [json!({"n": 1})], "queued once");
        let first = entry(&store, "first").await;
        assert_eq!((first.state, first.attempts), (WorkState::Pending, 1));
        assert!((2..=5).contains(&wait(&first)), "the first wait is 2.5 to 5 s: {}", wait(&first));
        assert!(run(&store, None, || Some(outage())).await.is_empty(), "not tried again before its wait");

        // A refusal is given up at once; an operator can queue it again, attempts kept.
        store.enqueue("platform", "check_in", "second", &json!({"n": 3})).await.expect("queued");
        assert_eq!(run(&store, None, || Some(refusal())).await.len(), 1);
        let second = entry(&store, "second").await;
        assert_eq!((second.state, second.attempts), (WorkState::Failed, 1), "a refusal is not retried");
        for _ in 0..2 {
            store.retry_failed_outbox().await.expect("requeued");
            run(&store, None, || Some(refusal())).await;
        }
        store.retry_failed_outbox().await.expect("requeued");
        run(&store, None, || Some(outage())).await;
        let second = entry(&store, "second").await;
        assert_eq!((second.state, second.attempts), (WorkState::Pending, 4));
        assert!((19..=40).contains(&wait(&second)), "the fourth wait is 20 to 40 s: {}", wait(&second));

        // Past the policy's attempts, an outage is given up too, and the payload scrubbed.
        store.enqueue("platform", "invitation", "third", &json!({"secret": "lsk_x"})).await.expect("queued");
        for _ in 0..RETRY.max_attempts - 1 {
            run(&store, None, || Some(refusal())).await;
            store.retry_failed_outbox().await.expect("requeued");
        }
        let scrub: Scrub = |_, sent| json!({"sent": sent});
        run(&store, Some(scrub), || Some(outage())).await;
        let third = entry(&store, "third").await;
        assert_eq!((third.state, third.attempts), (WorkState::Failed, RETRY.max_attempts), "given up");
        assert_eq!(third.payload, json!({"sent": false}), "what only the call needed is gone");

        store.retry_failed_outbox().await.expect("requeued");
        run(&store, Some(scrub), || None).await;
        let third = entry(&store, "third").await;
        assert_eq!((third.state, third.payload), (WorkState::Done, json!({"sent": true})));
    }
}
