//! Telling visitors how they get in: invitations by email (SMTP) and SMS (a webhook of the
//! operator's SMS gateway). Sent through the outbox, so a mail server that is down delays
//! an invitation but does not lose it; once sent or given up, the secret is scrubbed from
//! the outbox.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use lintel_store::{Store, StoreError, WorkItem};
use serde_json::{Value, json};

use crate::error::{Result, ServiceError};
use crate::outbox;
use crate::workers::Workers;

/// `[smtp]`: where invitations are mailed from.
#[derive(Clone, Debug)]
pub struct SmtpConfig {
    /// `smtp://host:25`, `smtps://user:pass@host:465`, `smtp://host:587?tls=required`.
    pub url: String,
    pub from: String,
}

/// `[sms]`: the operator's SMS gateway, as a webhook taking `{"to", "text"}`.
#[derive(Clone, Debug)]
pub struct SmsConfig {
    pub webhook_url: String,
    /// Sent as `Authorization: Bearer <token>` when set.
    pub token: Option<String>,
}

/// The channels invitations go out on; built when `[smtp]` or `[sms]` is configured.
pub struct Invitations {
    smtp: Option<SmtpConfig>,
    sms: Option<SmsConfig>,
    store: Store,
    http: reqwest::Client,
    /// Booking times are told in the space's zone.
    timezone: Tz,
    /// Where the visitor's link points; without it they get the bare code.
    public_url: Option<String>,
}

/// A visitor to invite: to their booking, or with a guest pass.
pub struct Invitation<'a> {
    pub person: &'a str,
    pub name: &'a str,
    pub email: Option<&'a str>,
    pub phone: Option<&'a str>,
    /// The personal secret that opens the doors.
    pub secret: &'a str,
    pub doors: &'a [String],
    /// What the access is for ("Studio"), as the subject says it.
    pub place: &'a str,
    /// The sentence that tells what and when ("You booked Studio, Mon 07 Dec 10:00 to 11:00.").
    pub what: String,
    /// When the link works.
    pub works: &'a str,
}

/// A visitor's personal link: the page with an Open button per door. The secret is in the
/// fragment, which browsers never send, so it is in no log.
pub fn visit_link(public_url: &str, doors: &[String], secret: &str) -> String {
    format!("{}/visit#doors={}&secret={secret}", public_url.trim_end_matches('/'), doors.join(","))
}

/// What a message is kept as once sent or given up: where it went, not the secret it said.
fn scrubbed(item: &WorkItem, sent: bool) -> Value {
    json!({"to": item.payload["to"], "sent": sent})
}

impl Invitations {
    pub fn new(
        smtp: Option<SmtpConfig>,
        sms: Option<SmsConfig>,
        store: Store,
        timezone: Tz,
        public_url: Option<String>,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("a client with these settings always builds");
        Self { smtp, sms, store, http, timezone, public_url }
    }

    /// A span of time as invitations tell it, in the space's zone.
    pub fn span(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> String {
        let (from, to) = (from.with_timezone(&self.timezone), to.with_timezone(&self.timezone));
        let end = if from.date_naive() == to.date_naive() { "%H:%M" } else { "%a %d %b %H:%M" };
        format!("{} to {}", from.format("%a %d %b %H:%M"), to.format(end))
    }

    /// Queues a visitor's invitation: the personal link (or code) that opens the doors, on
    /// every channel configured that the visitor gave a contact for. Whether it was queued.
    pub async fn invite(&self, to: &Invitation<'_>) -> Result<bool, StoreError> {
        let how = match &self.public_url {
            Some(public) => format!("Open the doors with this link: {}", visit_link(public, to.doors, to.secret)),
            None => format!("Your door code: {} (POST /open/<door> with it as the bearer token)", to.secret),
        };
        let text = format!("Hello {},\n\nwelcome! {}\n{how}\n\n{}", to.name, to.what, to.works);
        let mut queued = false;
        if let (Some(address), Some(_)) = (to.email, &self.smtp) {
            let payload = json!({"to": address, "subject": format!("Your access for {}", to.place), "text": text});
            queued |=
                self.store.enqueue("smtp", "invitation", &format!("invite-email:{}", to.person), &payload).await?;
        }
        if let (Some(number), Some(_)) = (to.phone, &self.sms) {
            let payload = json!({"to": number, "text": text});
            queued |= self.store.enqueue("sms", "invitation", &format!("invite-sms:{}", to.person), &payload).await?;
        }
        if !queued {
            tracing::warn!(
                person = to.person,
                "a visitor could not be invited: configure [smtp] or [sms] (and give a contact)"
            );
        }
        Ok(queued)
    }

    async fn send(&self, target: &str, item: &WorkItem) -> Result<()> {
        match (target, &self.smtp, &self.sms) {
            ("smtp", Some(smtp), _) => send_mail(smtp, &item.payload).await,
            ("sms", _, Some(sms)) => send_sms(sms, &self.http, &item.payload).await,
            // Queued while the section was configured: retried, in case it comes back.
            _ => Err(ServiceError::unavailable(format!("[{target}] is not configured"))),
        }
    }

    async fn send_due(&self, target: &str) -> Result<usize, StoreError> {
        outbox::run_outbox(&self.store, target, Some(scrubbed), |item| async move { self.send(target, &item).await })
            .await
    }

    /// Sends queued invitations every second while the server runs.
    pub fn spawn_sender(self: &Arc<Self>, workers: &Workers) {
        let me = self.clone();
        let mut ticks = workers.one_node_every("invitations", Duration::from_secs(1));
        workers.spawn(async move {
            while ticks.next().await {
                for target in ["smtp", "sms"] {
                    if let Err(e) = me.send_due(target).await {
                        tracing::warn!(target, error = %e, "invitations not processed");
                    }
                }
            }
        });
    }
}

/// A mail that can never go out as it is (an address that does not parse, a server URL
/// that does not either).
fn refused(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::upstream("smtp", e.to_string(), false)
}

/// Sends one mail (`{to, subject, text}`) through `[smtp]`.
pub(crate) async fn send_mail(smtp: &SmtpConfig, payload: &Value) -> Result<()> {
    let from: Mailbox = smtp.from.parse().map_err(refused)?;
    let to: Mailbox = payload["to"].as_str().unwrap_or_default().parse().map_err(refused)?;
    let message = Message::builder()
        .from(from)
        .to(to)
        .subject(payload["subject"].as_str().unwrap_or("Your access"))
        .body(payload["text"].as_str().unwrap_or_default().to_owned())
        .map_err(refused)?;
    let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&smtp.url)
        .map_err(refused)?
        .timeout(Some(Duration::from_secs(15)))
        .build();
    match transport.send(message).await {
        Ok(_) => Ok(()),
        Err(e) => Err(ServiceError::upstream("smtp", e.to_string(), !e.is_permanent())),
    }
}

async fn send_sms(sms: &SmsConfig, http: &reqwest::Client, payload: &Value) -> Result<()> {
    let mut request = http.post(&sms.webhook_url).json(&json!({"to": payload["to"], "text": payload["text"]}));
    if let Some(token) = &sms.token {
        request = request.bearer_auth(token);
    }
    let unreachable = |_| ServiceError::upstream("sms", "the SMS gateway is unreachable", true);
    let status = request.send().await.map_err(unreachable)?.status();
    if status.is_success() {
        return Ok(());
    }
    let transient = status.as_u16() == 429 || status.is_server_error();
    Err(ServiceError::upstream("sms", format!("SMS gateway: HTTP {status}"), transient))
}
