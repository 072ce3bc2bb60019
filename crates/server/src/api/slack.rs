//! The Slack app's endpoints: slash commands that hand out personal secrets, and the
//! Events API that ends a person's access when they leave the workspace. Every request's
//! signature and age are checked before anything else, and a request seen once is not
//! accepted again.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use lintel_connectors::slack;
use lintel_proto::{CredentialKind, NewPerson, PersonStatus};
use lintel_store::{NewCredentialRecord, PersonFilter};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::problem::{ApiError, parse_json};
use crate::secrets;

/// The `[slack]` settings.
#[derive(Clone)]
pub struct SlackConfig {
    pub signing_secret: String,
    pub bot_token: String,
    /// `https://slack.com/api`; tests point it at a fake.
    pub api_base_url: String,
    /// The group workspace members join when they first ask for a secret.
    pub group: Option<String>,
    /// Whether guests (restricted accounts) may have door secrets.
    pub allow_guests: bool,
    /// How often to reconcile with `users.list`.
    pub reconcile_every: std::time::Duration,
}

pub struct Slack {
    config: SlackConfig,
    client: slack::Client,
    /// Signatures seen in the last five minutes: a replayed request is refused.
    seen: Mutex<HashMap<String, i64>>,
}

impl Slack {
    pub fn new(config: SlackConfig) -> Self {
        let client = slack::Client::new(&config.api_base_url, &config.bot_token);
        Self { config, client, seen: Mutex::new(HashMap::new()) }
    }

    fn check(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let now = chrono::Utc::now().timestamp();
        let signature = header("x-slack-signature");
        slack::verify(&self.config.signing_secret, header("x-slack-request-timestamp"), signature, body, now)
            .map_err(|e| ApiError::unauthorized(e.to_string()))?;
        let mut seen = self.seen.lock().expect("replay cache lock");
        seen.retain(|_, at| now - *at <= slack::MAX_AGE_SECONDS);
        if seen.insert(signature.unwrap_or_default().to_owned(), now).is_some() {
            return Err(ApiError::unauthorized("this request was already received"));
        }
        Ok(())
    }
}

fn slack_of(s: &AppState) -> Result<&Slack, ApiError> {
    s.inner.slack.as_ref().ok_or_else(|| ApiError::not_found("Slack is not configured ([slack] in the config)"))
}

fn ephemeral(text: impl Into<String>) -> Json<Value> {
    Json(json!({"response_type": "ephemeral", "text": text.into()}))
}

#[derive(Debug, Deserialize)]
pub struct SlashCommand {
    command: String,
    user_id: String,
}

/// The person behind a Slack user: found by their Slack id, or created from `users.info`
/// on first use (bots, deleted users and, unless allowed, guests are refused).
async fn person_for(s: &AppState, slack: &Slack, user_id: &str) -> Result<Result<String, String>, ApiError> {
    let store = &s.inner.directory.store;
    let filter = PersonFilter { external_id: Some(("slack".into(), user_id.into())), limit: 1, ..Default::default() };
    if let Some(person) = store.people(&filter).await?.0.pop() {
        return Ok(Ok(person.id));
    }
    let user = match slack.client.user(user_id).await {
        Ok(user) => user,
        Err(e) => {
            tracing::warn!(error = %e, "users.info failed");
            return Ok(Err("lintel could not look you up in Slack just now; please try again in a minute.".into()));
        }
    };
    if user.deleted || user.is_bot {
        return Ok(Err("Door secrets are for people who are members of this workspace.".into()));
    }
    if user.is_guest() && !slack.config.allow_guests {
        return Ok(Err("Guests of this workspace cannot have a door secret; ask an admin.".into()));
    }
    let id = format!("slack-{}", user.id);
    crate::validate::id("a Slack user id", &id)?;
    let new = NewPerson {
        id: Some(id.clone()),
        name: user.display_name().chars().filter(|c| !c.is_control()).take(200).collect(),
        email: user.profile.email.clone().filter(|e| crate::validate::email(e).is_ok()),
        external_ids: [("slack".to_owned(), user.id.clone())].into(),
        status: PersonStatus::Active,
        ..Default::default()
    };
    let person_id = id.clone();
    s.inner.directory.write(move |store| async move { store.create_person(&new, &person_id).await }).await?;
    Ok(Ok(id))
}

async fn issue_secret(s: &AppState, person_id: &str) -> Result<String, ApiError> {
    let secret = secrets::generate("lsk_");
    let record = NewCredentialRecord {
        kind: CredentialKind::Secret,
        card_uid: None,
        revocation_code: None,
        digest: Some(hex::encode(secrets::digest(&secret))),
    };
    let person = person_id.to_owned();
    s.inner.directory.write(move |store| async move { store.issue_credential(&person, &record).await }).await?;
    Ok(secret)
}

fn secret_message(secret: &str) -> String {
    format!(
        "Your door secret (shown only now, keep it like a password):\n`{secret}`\n\
         Open a door with: `curl -X POST -H \"Authorization: Bearer {secret}\" https://<lintel>/open/<door>`\n\
         Lost it? `/regenerate-door-secret` replaces it."
    )
}

/// Slash commands: `/door-secret` and `/regenerate-door-secret`.
#[utoipa::path(post, path = "/hooks/slack/commands", tag = "slack",
    responses((status = 200, description = "an ephemeral message for the caller"), (status = 401, description = "bad signature")))]
pub async fn commands(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Json<Value>, ApiError> {
    let slack = slack_of(&s)?;
    slack.check(&headers, &body)?;
    let command: SlashCommand =
        serde_urlencoded::from_bytes(&body).map_err(|e| ApiError::bad_request(format!("not a slash command: {e}")))?;
    let regenerate = match command.command.as_str() {
        "/door-secret" => false,
        "/regenerate-door-secret" => true,
        other => return Ok(ephemeral(format!("lintel does not know {other}."))),
    };
    let person = match person_for(&s, slack, &command.user_id).await? {
        Ok(person) => person,
        Err(refusal) => return Ok(ephemeral(refusal)),
    };
    // Membership is asserted on every call (it is idempotent), so a person created while
    // `group` was missing or misnamed gets in once the configuration is fixed.
    if let Some(group) = slack.config.group.clone() {
        let member = person.clone();
        let joined =
            s.inner.directory.write(move |store| async move { store.set_member(&group, &member, true).await }).await;
        if let Err(lintel_store::StoreError::NotFound { .. }) = joined {
            tracing::error!("[slack] group names a group that does not exist");
            return Ok(ephemeral(
                "lintel's Slack setup is incomplete (its group does not exist); please tell an admin.",
            ));
        }
        joined?;
    }
    let store = &s.inner.directory.store;
    let has_secret = store
        .person_credentials(&person)
        .await?
        .iter()
        .any(|c| c.kind == CredentialKind::Secret && c.status == lintel_proto::CredentialStatus::Active);
    if has_secret && !regenerate {
        return Ok(ephemeral(
            "You already have a door secret. It was shown only once; if you lost it, `/regenerate-door-secret` replaces it.",
        ));
    }
    if regenerate {
        let p = person.clone();
        s.inner
            .directory
            .write(move |store| async move {
                store.revoke_person_credentials(&p, Some(CredentialKind::Secret), "regenerated from Slack").await
            })
            .await?;
    }
    Ok(ephemeral(secret_message(&issue_secret(&s, &person).await?)))
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Envelope {
    UrlVerification {
        challenge: String,
    },
    EventCallback {
        event: Value,
    },
    #[serde(other)]
    Other,
}

/// The Events API: `url_verification`, and `user_change` with a deleted user, which
/// revokes every credential of that person at once.
#[utoipa::path(post, path = "/hooks/slack/events", tag = "slack",
    responses((status = 200, description = "acknowledged (or the challenge)"), (status = 401, description = "bad signature")))]
pub async fn events(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let slack = slack_of(&s)?;
    slack.check(&headers, &body)?;
    match parse_json::<Envelope>(&body)? {
        Envelope::UrlVerification { challenge } => Ok((StatusCode::OK, Json(json!({"challenge": challenge})))),
        Envelope::EventCallback { event } => {
            let left = event["type"] == "user_change" && event["user"]["deleted"] == true;
            if let (true, Some(user_id)) = (left, event["user"]["id"].as_str()) {
                revoke_user(&s, user_id, "left the Slack workspace").await?;
            }
            Ok((StatusCode::OK, Json(json!({"ok": true}))))
        }
        Envelope::Other => Ok((StatusCode::OK, Json(json!({"ok": true})))),
    }
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Reconciled {
    /// Workspace members listed by `users.list`.
    pub members: usize,
    /// People linked to a Slack user who is deleted or gone.
    pub departed: usize,
    /// Credentials revoked now.
    pub revoked: usize,
}

/// Compares the people linked to Slack with `users.list`: whoever is deleted or no longer
/// listed loses every credential. Events can be missed; this heals it.
pub async fn reconcile(s: &AppState) -> Result<Reconciled, ApiError> {
    let slack = slack_of(s)?;
    let users = slack.client.users().await.map_err(|e| ApiError::unavailable(format!("users.list: {e}")))?;
    let active: std::collections::HashSet<&str> = users.iter().filter(|u| !u.deleted).map(|u| u.id.as_str()).collect();
    let linked = s.inner.directory.store.external_ids("slack").await?;
    let mut result = Reconciled { members: active.len(), departed: 0, revoked: 0 };
    for (_, user_id) in linked.iter().filter(|(_, u)| !active.contains(u.as_str())) {
        result.departed += 1;
        result.revoked += revoke_user(s, user_id, "no longer in the Slack workspace").await?;
    }
    Ok(result)
}

/// Reconcile with Slack's `users.list` now (it also runs on a schedule).
#[utoipa::path(post, path = "/api/v1/slack/reconcile", tag = "slack", security(("admin" = [])),
    responses((status = 200, body = Reconciled), (status = 404, description = "Slack is not configured"), (status = 503, description = "Slack unreachable")))]
pub async fn reconcile_now(State(s): State<AppState>, _: crate::auth::Admin) -> Result<Json<Reconciled>, ApiError> {
    Ok(Json(reconcile(&s).await?))
}

/// Runs [`reconcile`] every `every` while the server runs.
pub fn spawn_reconciler(s: AppState, every: std::time::Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            match reconcile(&s).await {
                Ok(r) if r.revoked > 0 => {
                    tracing::info!(departed = r.departed, revoked = r.revoked, "Slack reconciliation revoked access")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e.detail, "Slack reconciliation failed"),
            }
        }
    });
}

/// Revokes every credential of the person with this Slack id, if there is one.
pub async fn revoke_user(s: &AppState, user_id: &str, reason: &str) -> Result<usize, ApiError> {
    let filter = PersonFilter { external_id: Some(("slack".into(), user_id.into())), limit: 1, ..Default::default() };
    let Some(person) = s.inner.directory.store.people(&filter).await?.0.pop() else { return Ok(0) };
    let reason = reason.to_owned();
    let written = s
        .inner
        .directory
        .write(move |store| async move { store.revoke_person_credentials(&person.id, None, &reason).await })
        .await?;
    Ok(written.value.len())
}
