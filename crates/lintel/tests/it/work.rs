//! The outbox's claiming: two workers (two nodes) asking for due work at the same moment
//! never get the same item, so no call to another system is made twice.

use std::collections::HashSet;

use lintel_store::{Attempt, SqliteSync, Store};
use serde_json::json;

use crate::harness::{Backend, Database};

async fn concurrent_workers_never_take_the_same_work(b: Backend) {
    let db = Database::new(b);
    let store = Store::open(&db.url, SqliteSync::Normal).await.expect("the store opens");
    let other = Store::open(&db.url, SqliteSync::Normal).await.expect("a second node's store opens");
    for n in 0..30 {
        assert!(store.enqueue("cobot", "check_in", &format!("k{n}"), &json!({"n": n})).await.unwrap());
    }
    assert!(!store.enqueue("cobot", "check_in", "k0", &json!({})).await.unwrap(), "one key, queued once");
    for _ in 0..5 {
        let (a, b) = tokio::join!(store.due_outbox("cobot", 20), other.due_outbox("cobot", 20));
        let (a, b) = (a.unwrap(), b.unwrap());
        let a: HashSet<i64> = a.iter().map(|i| i.pk).collect();
        let b: HashSet<i64> = b.iter().map(|i| i.pk).collect();
        assert!(a.is_disjoint(&b), "both workers took {:?}", a.intersection(&b).collect::<Vec<_>>());
        // Put everything back for the next round.
        for pk in a.union(&b) {
            store.outbox_attempted(*pk, &Attempt::RetryAt(0, "again".into())).await.unwrap();
        }
    }
    // Taking until nothing is due: every item exactly once (a worker that lost the race
    // for a batch may come back empty-handed; it takes the rest on its next turn).
    let mut taken = Vec::new();
    for _ in 0..10 {
        let (a, b) = tokio::join!(store.due_outbox("cobot", 20), other.due_outbox("cobot", 20));
        taken.extend(a.unwrap().into_iter().chain(b.unwrap()).map(|i| i.pk));
    }
    let distinct: HashSet<i64> = taken.iter().copied().collect();
    assert_eq!((taken.len(), distinct.len()), (30, 30), "all of it, each once: {taken:?}");
    assert!(
        store.due_outbox("cobot", 20).await.unwrap().is_empty(),
        "claimed work is not due again before its lease ends"
    );
}

/// The inbox's bound holds in the database: two nodes storing deliveries of one source at
/// the same moment never store more than the bound between them.
async fn the_inbox_bound_holds_across_nodes(b: Backend) {
    let db = Database::new(b);
    let store = Store::open(&db.url, SqliteSync::Normal).await.expect("the store opens");
    let other = Store::open(&db.url, SqliteSync::Normal).await.expect("a second node's store opens");
    let delivery = json!({"url": "https://space.example/api/memberships/1"});
    let receive = |s: &Store| {
        let (s, delivery) = (s.clone(), delivery.clone());
        async move { s.receive("cobot", "confirmed_membership", &delivery, 10).await.unwrap() }
    };
    let attempts = (0..40).map(|n| if n % 2 == 0 { receive(&store) } else { receive(&other) });
    let stored = futures::future::join_all(attempts).await;
    assert_eq!(stored.iter().flatten().count(), 10, "stored beyond the bound: {stored:?}");
    let (pending, ..) = store.work_backlog().await.unwrap();
    assert_eq!(pending, 10);
    assert!(store.receive("other", "x", &delivery, 10).await.unwrap().is_some(), "the bound is per source");
    // Processed deliveries make room.
    for item in store.due_inbox("cobot", 3).await.unwrap() {
        store.inbox_attempted(item.pk, &Attempt::Done).await.unwrap();
    }
    let again = futures::future::join_all((0..6).map(|_| receive(&other))).await;
    assert_eq!(again.iter().flatten().count(), 3, "{again:?}");
}

crate::on_both_backends!(concurrent_workers_never_take_the_same_work, the_inbox_bound_holds_across_nodes);
