//! Notifications of what people must act on: alarms, lockdown and emergency releases, to a
//! Slack channel and mail addresses (`[notify]`). Outbound webhooks get the same events
//! by their kinds (see [`crate::webhooks`]).
//!
//! **Never lost, never twice.** One node (the `notifications` lease) reads the event log
//! after its cursor and queues one outbox item per message and place, keyed by the event,
//! before it moves the cursor: a node that dies in between queues the same keys again,
//! which the outbox takes once. The one outbox runner sends them with the one retry policy.

use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;
use lintel_proto::Event;
use lintel_store::{EventFilter, StoreError, WorkItem};
use serde_json::json;

use crate::directory::Directory;
use crate::error::{Result, ServiceError};
use crate::integrations::invitations::{SmtpConfig, send_mail};
use crate::integrations::slack::Slack;
use crate::outbox;
use crate::workers::Workers;

const CURSOR: &str = "notifications";
const SLACK: &str = "notify-slack";
const MAIL: &str = "notify-smtp";
/// Events read per round.
const PAGE: i64 = 500;

/// Where notifications go (`[notify]`).
#[derive(Debug, Clone, Default)]
pub struct NotifyConfig {
    /// A Slack channel's id (through `[slack]`).
    pub slack_channel: Option<String>,
    /// Mail addresses (through `[smtp]`).
    pub email: Vec<String>,
}

pub struct Notifier {
    config: NotifyConfig,
    directory: Arc<Directory>,
    slack: Option<Arc<Slack>>,
    smtp: Option<SmtpConfig>,
    timezone: Tz,
}

impl Notifier {
    pub fn new(
        config: NotifyConfig,
        directory: Arc<Directory>,
        slack: Option<Arc<Slack>>,
        smtp: Option<SmtpConfig>,
        timezone: Tz,
    ) -> Result<Self> {
        if config.slack_channel.is_some() && slack.is_none() {
            return Err(ServiceError::invalid("[notify] slack_channel posts through [slack]: configure it"));
        }
        if !config.email.is_empty() && smtp.is_none() {
            return Err(ServiceError::invalid("[notify] email is sent through [smtp]: configure it"));
        }
        Ok(Self { config, directory, slack, smtp, timezone })
    }

    /// Queues and sends notifications every second, on one node.
    pub fn spawn(self: &Arc<Self>, workers: &Workers) {
        let (me, mut ticks) = (self.clone(), workers.one_node_every(CURSOR, Duration::from_secs(1)));
        workers.spawn(async move {
            while ticks.next().await {
                if let Err(e) = me.round().await {
                    tracing::warn!(error = %e, "notifications not processed");
                }
            }
        });
    }

    async fn round(&self) -> Result<(), StoreError> {
        self.queue_new().await?;
        let store = &self.directory.store;
        outbox::run_outbox(store, SLACK, None, |item| async move { self.send(SLACK, &item).await }).await?;
        outbox::run_outbox(store, MAIL, None, |item| async move { self.send(MAIL, &item).await }).await?;
        Ok(())
    }

    /// Queues the messages of the events after the cursor, then moves it.
    async fn queue_new(&self) -> Result<(), StoreError> {
        let store = &self.directory.store;
        let Some(after) = store.event_cursor(CURSOR).await? else {
            // The first start: from now on, not the whole history.
            return store.set_event_cursor(CURSOR, store.last_event_seq().await?).await;
        };
        let events = store.events(&EventFilter { after: Some(after), limit: PAGE, ..EventFilter::default() }).await?;
        let Some(last) = events.last().and_then(|e| e.id.parse::<i64>().ok()) else { return Ok(()) };
        for (key, kind, text) in messages(&events, self.timezone) {
            if let Some(channel) = &self.config.slack_channel {
                let payload = json!({"channel": channel, "text": text});
                store.enqueue(SLACK, kind, &format!("{SLACK}:{key}"), &payload).await?;
            }
            for to in &self.config.email {
                let subject = text.lines().next().unwrap_or("lintel").chars().take(120).collect::<String>();
                let payload = json!({"to": to, "subject": subject, "text": text});
                store.enqueue(MAIL, kind, &format!("{MAIL}:{key}:{to}"), &payload).await?;
            }
        }
        store.set_event_cursor(CURSOR, last).await
    }

    async fn send(&self, target: &str, item: &WorkItem) -> Result<()> {
        match (target, &self.slack, &self.smtp) {
            (SLACK, Some(slack), _) => {
                let channel = item.payload["channel"].as_str().unwrap_or_default();
                // Slack reads <...> as mentions and links: what came from outside is shown as typed.
                let text = item.payload["text"].as_str().unwrap_or_default();
                let text = text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
                slack.post_text(channel, &text).await.map_err(|e| ServiceError::upstream("slack", e.to_string(), true))
            }
            (MAIL, _, Some(smtp)) => send_mail(smtp, &item.payload).await,
            _ => Err(ServiceError::unavailable(format!("{target} is not configured"))),
        }
    }
}

/// The messages of a page of events: `(key, kind, text)`. A lockdown of many doors by one
/// action is one message (its events come together).
fn messages(events: &[Event], tz: Tz) -> Vec<(String, &'static str, String)> {
    let mut out: Vec<(String, &'static str, String)> = Vec::new();
    let mut doors_of_last: Option<(&str, &str, Vec<&str>)> = None;
    let flush = |out: &mut Vec<_>, group: Option<(&str, &str, Vec<&str>)>, key: &str| {
        if let Some((kind, actor, doors)) = group {
            let (what, code) = match kind {
                "door.lockdown_started" => ("Lockdown started", "lockdown"),
                _ => ("Lockdown lifted", "lockdown"),
            };
            out.push((key.to_owned(), code, format!("{what} by {actor}: {}", doors.join(", "))));
        }
    };
    let mut group_key = String::new();
    for e in events {
        let when = e.at.with_timezone(&tz).format("%a %d %b %H:%M:%S");
        let door = e.door.as_deref().unwrap_or("?");
        let actor = e.actor.as_deref().unwrap_or("lintel");
        let lockdown = matches!(e.kind.as_str(), "door.lockdown_started" | "door.lockdown_ended");
        let continues = doors_of_last.as_ref().is_some_and(|(kind, by, _)| lockdown && *kind == e.kind && *by == actor);
        if continues {
            if let Some((_, _, doors)) = doors_of_last.as_mut() {
                doors.push(door);
            }
            continue;
        }
        flush(&mut out, doors_of_last.take(), &group_key);
        if lockdown {
            group_key = e.id.clone();
            doors_of_last = Some((e.kind.as_str(), actor, vec![door]));
            continue;
        }
        let site = e.data["site"].as_str().unwrap_or("?");
        let text = match e.kind.as_str() {
            "alarm.raised" => {
                let kind = e.data["kind"].as_str().unwrap_or("alarm");
                // An anti-passback alarm names who entered twice.
                let who = e.data["person"].as_str().map(|p| format!(" by {p}")).unwrap_or_default();
                format!(
                    "Alarm at door {door}: {}{who}\n{when}. Acknowledge it on the dashboard.",
                    kind.replace('_', " ")
                )
            }
            "site.emergency_started" => {
                let why = e.data["why"].as_str().map(|w| format!(" ({w})")).unwrap_or_default();
                format!(
                    "Emergency release at site {site}{why}, by {actor}\n{when}. Exit-route doors are held open until an operator resets it."
                )
            }
            "site.emergency_ended" => format!("Emergency release at site {site} reset by {actor}\n{when}."),
            _ => continue,
        };
        let code = if e.kind == "alarm.raised" { "alarm" } else { "emergency" };
        out.push((e.id.clone(), code, text));
    }
    flush(&mut out, doors_of_last, &group_key);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: u32, kind: &str, door: Option<&str>, data: serde_json::Value) -> Event {
        serde_json::from_value(json!({
            "id": id.to_string(), "at": "2026-12-07T10:00:00Z", "kind": kind, "door": door,
            "actor": "token:ops", "data": data,
        }))
        .unwrap()
    }

    #[test]
    fn a_lockdown_of_many_doors_is_one_message_and_others_are_left_out() {
        let events = [
            event(1, "decision", Some("front"), json!({})),
            event(2, "door.lockdown_started", Some("front"), json!({"site": "main"})),
            event(3, "door.lockdown_started", Some("back"), json!({"site": "main"})),
            event(4, "alarm.raised", Some("store"), json!({"kind": "forced_open"})),
            event(5, "site.emergency_started", None, json!({"site": "main", "why": "zone 3"})),
        ];
        let got = messages(&events, chrono_tz::UTC);
        let keys: Vec<_> = got.iter().map(|(key, kind, _)| (key.as_str(), *kind)).collect();
        assert_eq!(keys, [("2", "lockdown"), ("4", "alarm"), ("5", "emergency")]);
        assert_eq!(got[0].2, "Lockdown started by token:ops: front, back");
        assert!(got[1].2.starts_with("Alarm at door store: forced open"), "{}", got[1].2);
        assert!(got[2].2.contains("(zone 3)"), "{}", got[2].2);
    }

    #[test]
    fn an_anti_passback_alarm_names_who_entered_twice() {
        let events = [event(1, "alarm.raised", Some("gym-in"), json!({"kind": "anti_passback", "person": "ann"}))];
        let got = messages(&events, chrono_tz::UTC);
        assert!(got[0].2.starts_with("Alarm at door gym-in: anti passback by ann\n"), "{}", got[0].2);
    }
}
