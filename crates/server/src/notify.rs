//! Telling people things: invitations by email (SMTP) and SMS (a webhook of the
//! operator's SMS gateway). Sent through the outbox, so a mail server that is down delays
//! an invitation but does not lose it; once sent, the secret is scrubbed from the outbox.

use std::time::Duration;

use chrono::Utc;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use lintel_connectors::cobot::Booking;
use lintel_store::{Attempt, StoreError};
use serde_json::{Value, json};

use crate::AppState;
use crate::problem::ApiError;

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

/// Queues a visitor's invitation: the personal link (or code) that opens the booked doors.
#[allow(clippy::too_many_arguments)]
pub async fn invite(
    s: &AppState,
    person: &str,
    name: &str,
    email: Option<&str>,
    phone: Option<&str>,
    secret: &str,
    doors: &[String],
    booking: &Booking,
) -> Result<(), ApiError> {
    let config = &s.inner.config;
    let tz = s.services().config.timezone;
    let when = format!(
        "{} to {}",
        booking.from.with_timezone(&tz).format("%a %d %b %H:%M"),
        booking.to.with_timezone(&tz).format("%H:%M")
    );
    let room = booking.resource.name.clone().unwrap_or_else(|| "your room".into());
    let how = match &s.services().config.public_url {
        Some(public) => {
            format!(
                "Open the doors with this link: {}/visit#doors={}&secret={secret}",
                public.trim_end_matches('/'),
                doors.join(",")
            )
        }
        None => format!("Your door code: {secret} (POST /open/<door> with it as the bearer token)"),
    };
    let text = format!(
        "Hello {name},\n\nwelcome! You booked {room}, {when}.\n{how}\n\nIt works from shortly before your booking until shortly after it."
    );
    let store = &s.store();
    let mut queued = false;
    if let (Some(to), Some(_)) = (email, &config.smtp) {
        let payload = json!({"to": to, "subject": format!("Your access for {room}"), "text": text});
        queued |= store.enqueue("smtp", "invitation", &format!("invite-email:{person}"), &payload).await?;
    }
    if let (Some(to), Some(_)) = (phone, &config.sms) {
        let payload = json!({"to": to, "text": text});
        queued |= store.enqueue("sms", "invitation", &format!("invite-sms:{person}"), &payload).await?;
    }
    if !queued {
        tracing::warn!(person, "a visitor could not be invited: configure [smtp] or [sms] (and give a contact)");
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("{0}")]
    Transient(String),
    #[error("{0}")]
    Refused(String),
}

async fn send_mail(smtp: &SmtpConfig, payload: &Value) -> Result<(), SendError> {
    let refused = |e: &dyn std::fmt::Display| SendError::Refused(e.to_string());
    let from: Mailbox = smtp.from.parse().map_err(|e| refused(&e))?;
    let to: Mailbox = payload["to"].as_str().unwrap_or_default().parse().map_err(|e| refused(&e))?;
    let message = Message::builder()
        .from(from)
        .to(to)
        .subject(payload["subject"].as_str().unwrap_or("Your access"))
        .body(payload["text"].as_str().unwrap_or_default().to_owned())
        .map_err(|e| refused(&e))?;
    let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&smtp.url)
        .map_err(|e| refused(&e))?
        .timeout(Some(Duration::from_secs(15)))
        .build();
    match transport.send(message).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_permanent() => Err(SendError::Refused(e.to_string())),
        Err(e) => Err(SendError::Transient(e.to_string())),
    }
}

async fn send_sms(sms: &SmsConfig, http: &reqwest::Client, payload: &Value) -> Result<(), SendError> {
    let mut request = http.post(&sms.webhook_url).json(&json!({"to": payload["to"], "text": payload["text"]}));
    if let Some(token) = &sms.token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|_| SendError::Transient("the SMS gateway is unreachable".into()))?;
    match response.status() {
        s if s.is_success() => Ok(()),
        s if s.as_u16() == 429 || s.is_server_error() => Err(SendError::Transient(format!("SMS gateway: HTTP {s}"))),
        s => Err(SendError::Refused(format!("SMS gateway: HTTP {s}"))),
    }
}

fn next_attempt(attempts: i64, error: &SendError) -> Attempt {
    match error {
        SendError::Refused(why) => Attempt::Failed(why.clone()),
        SendError::Transient(why) if attempts >= 40 => Attempt::Failed(why.clone()),
        SendError::Transient(why) => {
            let delay = Duration::from_secs(5u64 << attempts.clamp(0, 8)).min(Duration::from_secs(1800));
            Attempt::RetryAt(Utc::now().timestamp_micros() + delay.as_micros() as i64, why.clone())
        }
    }
}

async fn run(s: &AppState, http: &reqwest::Client) -> Result<(), StoreError> {
    let store = &s.store();
    for target in ["smtp", "sms"] {
        for item in store.due_outbox(target, 20).await? {
            let sent = match (target, &s.inner.config.smtp, &s.inner.config.sms) {
                ("smtp", Some(smtp), _) => send_mail(smtp, &item.payload).await,
                ("sms", _, Some(sms)) => send_sms(sms, http, &item.payload).await,
                _ => Err(SendError::Transient(format!("[{target}] is not configured"))),
            };
            match sent {
                Ok(()) => {
                    store.outbox_done_scrubbed(item.pk, &json!({"to": item.payload["to"], "sent": true})).await?;
                }
                Err(e) => {
                    tracing::warn!(target, error = %e, "invitation not sent");
                    let attempt = next_attempt(item.attempts, &e);
                    store.outbox_attempted(item.pk, &attempt).await?;
                    if matches!(attempt, Attempt::Failed(_)) {
                        // Given up: the secret is of no use to anyone in the outbox.
                        store.scrub_outbox(item.pk, &json!({"to": item.payload["to"], "sent": false})).await?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Sends queued invitations every second while the server runs.
pub fn spawn_sender(s: AppState) {
    s.clone().spawn_worker(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("a client with these settings always builds");
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while s.unless_stopping(tick.tick()).await.is_some() {
            if let Err(e) = run(&s, &http).await {
                tracing::warn!(error = %e, "invitations not processed");
            }
        }
    });
}
