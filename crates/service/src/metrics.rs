//! What `/metrics` says beyond the counters the workflows keep: every metric's `# HELP`
//! line, and the gauges read from the store when scraped (the index's size, outbox work by
//! target and state, each controller's offline list). Labels are only ever names an
//! operator configured (doors, controllers, targets, leases), never person ids or values a
//! caller makes up, so the number of series stays bounded.

use std::collections::HashSet;
use std::sync::Mutex;

use lintel_store::{Store, StoreError};
use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

use crate::directory::Directory;

/// Describes every metric lintel records (once, after the recorder is installed).
pub fn describe() {
    describe_counter!(
        "lintel_decisions_total",
        "Decisions made, by door (unknown for a door lintel does not have), result and reason"
    );
    describe_histogram!("lintel_decision_seconds", Unit::Seconds, "Time to decide, the index lookup alone");
    describe_counter!("lintel_driver_failures_total", "Door drivers that failed to open, by driver kind");
    describe_counter!("lintel_operations_refused_total", "Signed operations refused, by reason");
    describe_counter!("lintel_crm_lookups_total", "Lookups of members at the CRM, by outcome");
    describe_counter!("lintel_index_updates_total", "Updates of the decision index, by how (patch or full reload)");
    describe_counter!(
        "lintel_webhook_attempts_total",
        "Attempts to deliver a webhook, by endpoint and outcome (2xx, 4xx, other, no_answer)"
    );
    describe_counter!("lintel_http_connections_shed_total", "HTTP connections closed to protect the server, by why");
    describe_gauge!("lintel_http_connections", "HTTP connections open now");
    describe_gauge!("lintel_lease_held", "1 while this node holds the lease of a one-node worker, by lease");
    describe_gauge!("lintel_osdp_reader_online", "1 while an OSDP reader answers, by reader");
    describe_histogram!("lintel_osdp_answer_seconds", Unit::Seconds, "Time an OSDP reader takes to answer a poll");
    describe_gauge!("lintel_index_people", "People in the decision index");
    describe_gauge!("lintel_index_credentials", "Credentials in the decision index");
    describe_gauge!(
        "lintel_outbox_items",
        "Outbox work not done yet, by target (cobot, crm, webhook:<endpoint>, ...) and state (pending, failed)"
    );
    describe_gauge!(
        "lintel_controller_list_versions_behind",
        "Offline-list versions a controller has not acknowledged yet, by controller"
    );
    describe_gauge!("lintel_controller_online", "1 while an MQTT controller says it is online, by controller");
}

/// The (target, state) pairs reported before: set to 0 when their work is done, so that a
/// drained queue reads 0 rather than its last count.
static OUTBOX_SERIES: Mutex<Option<HashSet<(String, String)>>> = Mutex::new(None);

/// Sets the gauges read from the index and the store, just before a scrape renders them.
pub async fn refresh(directory: &Directory) -> Result<(), StoreError> {
    let stats = directory.index().stats();
    metrics::gauge!("lintel_index_credentials").set(stats.credentials as f64);
    metrics::gauge!("lintel_index_people").set(stats.people as f64);
    outbox(&directory.store).await?;
    for c in directory.store.controllers().await? {
        let behind = c.list_version.saturating_sub(c.acked_version);
        metrics::gauge!("lintel_controller_list_versions_behind", "controller" => c.id.clone()).set(behind as f64);
        if let Some(online) = c.online {
            metrics::gauge!("lintel_controller_online", "controller" => c.id).set(f64::from(u8::from(online)));
        }
    }
    Ok(())
}

async fn outbox(store: &Store) -> Result<(), StoreError> {
    let counts = store.outbox_counts().await?;
    let now: HashSet<(String, String)> = counts.iter().map(|(t, s, _)| (t.clone(), s.clone())).collect();
    let gone: Vec<(String, String)> = {
        let mut seen = OUTBOX_SERIES.lock().expect("the series set is never poisoned");
        let before = seen.replace(now.clone()).unwrap_or_default();
        before.difference(&now).cloned().collect()
    };
    for (target, state) in gone {
        metrics::gauge!("lintel_outbox_items", "target" => target, "state" => state).set(0.0);
    }
    for (target, state, n) in counts {
        metrics::gauge!("lintel_outbox_items", "target" => target, "state" => state).set(n as f64);
    }
    Ok(())
}
