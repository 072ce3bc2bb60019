//! The Slack app's endpoints: slash commands that hand out personal secrets, and the
//! Events API that ends a person's access when they leave the workspace. Every request's
//! signature and age are checked before anything else, and a request seen once is not
//! accepted again.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use lintel_connectors::slack;
use lintel_proto::{CredentialKind, NewPerson, PersonStatus, Problem};
use lintel_store::PersonFilter;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::problem::{ApiError, RawBody, parse_json};

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
    /// Where the doorbell posts (a channel id such as `C0123456`).
    pub doorbell_channel: Option<String>,
}

pub struct Slack {
    config: SlackConfig,
    pub(crate) client: slack::Client,
    /// The MACs of requests accepted, until their timestamps are too old to pass again: a
    /// replayed request is refused.
    seen: Mutex<HashMap<[u8; 32], i64>>,
}

impl Slack {
    pub fn new(config: SlackConfig) -> Self {
        let client = slack::Client::new(&config.api_base_url, &config.bot_token);
        Self { config, client, seen: Mutex::new(HashMap::new()) }
    }

    fn check(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let now = chrono::Utc::now().timestamp();
        let verified = slack::verify(
            &self.config.signing_secret,
            header("x-slack-request-timestamp"),
            header("x-slack-signature"),
            body,
            now,
        )
        .map_err(|e| ApiError::unauthorized(e.to_string()))?;
        let mut seen = self.seen.lock().expect("replay cache lock");
        seen.retain(|_, until| *until >= now);
        if seen.insert(verified.mac, verified.acceptable_until).is_some() {
            return Err(ApiError::unauthorized("this request was already received"));
        }
        Ok(())
    }

    /// A `response_url` comes inside the (signed) request, but lintel posts only to Slack:
    /// `https://hooks.slack.com/...`, or the origin of `api_base_url` (a test's fake).
    fn response_url_is_slack(&self, url: &str) -> bool {
        let Ok(url) = reqwest::Url::parse(url) else { return false };
        let api = reqwest::Url::parse(&self.config.api_base_url).ok();
        (url.scheme() == "https" && url.host_str() == Some("hooks.slack.com"))
            || api.is_some_and(|api| api.origin() == url.origin())
    }

    /// Posts `message` to the request's `response_url`, if it is Slack's.
    async fn respond(&self, response_url: &str, message: Value) {
        if !self.response_url_is_slack(response_url) {
            tracing::warn!("a Slack request named a response_url outside Slack; not answering there");
            return;
        }
        if let Err(e) = self.client.respond(response_url, &message).await {
            tracing::warn!(error = %e, "answer through response_url failed");
        }
    }
}

pub(crate) fn slack_of(s: &AppState) -> Result<&Slack, ApiError> {
    s.inner.slack.as_ref().ok_or_else(|| ApiError::not_found("Slack is not configured ([slack] in the config)"))
}

fn ephemeral(text: impl Into<String>) -> Json<Value> {
    Json(json!({"response_type": "ephemeral", "text": text.into()}))
}

#[derive(Debug, Deserialize)]
pub struct SlashCommand {
    command: String,
    user_id: String,
    #[serde(default)]
    response_url: Option<String>,
}

/// How long a slash command may take before lintel answers "one moment" and sends the
/// real answer through the `response_url` (Slack gives 3 seconds).
const COMMAND_PATIENCE: std::time::Duration = std::time::Duration::from_millis(2000);

/// The person behind a Slack user: found by their Slack id, or created from `users.info`
/// on first use (bots, deleted users and, unless allowed, guests are refused).
async fn person_for(s: &AppState, slack: &Slack, user_id: &str) -> Result<Result<String, String>, ApiError> {
    let store = &s.store();
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
    lintel_service::validate::id("a Slack user id", &id)?;
    let new = NewPerson {
        id: Some(id.clone()),
        name: user.display_name().chars().filter(|c| !c.is_control()).take(200).collect(),
        email: user.profile.email.clone().filter(|e| lintel_service::validate::email(e).is_ok()),
        external_ids: [("slack".to_owned(), user.id.clone())].into(),
        status: PersonStatus::Active,
        ..Default::default()
    };
    let person_id = id.clone();
    s.directory().write(move |store| async move { store.create_person(&new, &person_id).await }).await?;
    Ok(Ok(id))
}

async fn issue_secret(s: &AppState, person_id: &str) -> Result<String, ApiError> {
    let lintel_service::credentials::Built { record, shown_once } = lintel_service::credentials::secret();
    let person = person_id.to_owned();
    s.directory().write(move |store| async move { store.issue_credential(&person, &record).await }).await?;
    Ok(shown_once.unwrap_or_default())
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
    responses((status = 200, description = "an ephemeral message for the caller"), (status = 401, description = "bad signature"),
        (status = 413, body = Problem, description = "larger than max_body_bytes")))]
pub async fn commands(
    State(s): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Json<Value>, ApiError> {
    let slack = slack_of(&s)?;
    slack.check(&headers, &body)?;
    let command: SlashCommand =
        serde_urlencoded::from_bytes(&body).map_err(|e| ApiError::bad_request(format!("not a slash command: {e}")))?;
    let response_url = command.response_url.clone();
    let state = s.clone();
    // Its own task: it finishes (and its answer is delivered) even if Slack hangs up.
    let mut work = tokio::spawn(async move { answer_command(&state, command).await });
    let finished = tokio::time::timeout(COMMAND_PATIENCE, &mut work).await;
    match (finished, response_url) {
        (Ok(answer), _) => answer.map_err(|e| {
            tracing::error!(error = %e, "slash command failed");
            ApiError::unavailable("the command failed")
        })?,
        (Err(_), Some(response_url)) => {
            s.clone().spawn_worker(async move {
                let answer = match work.await {
                    Ok(Ok(Json(answer))) => answer,
                    Ok(Err(e)) => {
                        json!({"response_type": "ephemeral", "text": format!("That did not work: {}", e.detail)})
                    }
                    Err(_) => json!({"response_type": "ephemeral", "text": "That did not work; please try again."}),
                };
                if let Some(slack) = s.inner.slack.as_ref() {
                    slack.respond(&response_url, answer).await;
                }
            });
            Ok(ephemeral("One moment…"))
        }
        // Nowhere to send a late answer: wait for it (a regenerated secret must be shown).
        (Err(_), None) => work.await.map_err(|e| {
            tracing::error!(error = %e, "slash command failed");
            ApiError::unavailable("the command failed")
        })?,
    }
}

async fn answer_command(s: &AppState, command: SlashCommand) -> Result<Json<Value>, ApiError> {
    let slack = slack_of(s)?;
    let regenerate = match command.command.as_str() {
        "/door-secret" => false,
        "/regenerate-door-secret" => true,
        other => return Ok(ephemeral(format!("lintel does not know {other}."))),
    };
    let person = match person_for(s, slack, &command.user_id).await? {
        Ok(person) => person,
        Err(refusal) => return Ok(ephemeral(refusal)),
    };
    // Membership is asserted on every call (it is idempotent), so a person created while
    // `group` was missing or misnamed gets in once the configuration is fixed.
    if let Some(group) = slack.config.group.clone() {
        let member = person.clone();
        let joined =
            s.directory().write(move |store| async move { store.set_member(&group, &member, true).await }).await;
        if let Err(lintel_store::StoreError::NotFound { .. }) = joined {
            tracing::error!("[slack] group names a group that does not exist");
            return Ok(ephemeral(
                "lintel's Slack setup is incomplete (its group does not exist); please tell an admin.",
            ));
        }
        joined?;
    }
    let store = &s.store();
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
        s.directory()
            .write(move |store| async move {
                store.revoke_person_credentials(&p, Some(CredentialKind::Secret), "regenerated from Slack").await
            })
            .await?;
    }
    Ok(ephemeral(secret_message(&issue_secret(s, &person).await?)))
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
    responses((status = 200, description = "acknowledged (or the challenge)"), (status = 401, description = "bad signature"),
        (status = 413, body = Problem, description = "larger than max_body_bytes")))]
pub async fn events(
    State(s): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
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
    let linked = s.store().external_ids("slack").await?;
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
    s.clone().spawn_worker(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        while s.unless_stopping(tick.tick()).await.is_some() {
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
    let Some(person) = s.store().people(&filter).await?.0.pop() else { return Ok(0) };
    let reason = reason.to_owned();
    let written = s
        .directory()
        .write(move |store| async move { store.revoke_person_credentials(&person.id, None, &reason).await })
        .await?;
    Ok(written.value.len())
}

/// The doorbell's message: the text, the picture when there is one, and the button.
pub(crate) fn doorbell_blocks(text: &str, image_url: Option<&str>, door: &str) -> Value {
    let mut blocks = vec![json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})];
    if let Some(url) = image_url {
        blocks.push(json!({"type": "image", "image_url": url, "alt_text": "the doorbell camera's picture"}));
    }
    blocks.push(json!({"type": "actions", "block_id": "doorbell", "elements": [{
        "type": "button", "action_id": OPEN_DOOR, "style": "primary", "value": door,
        "text": {"type": "plain_text", "text": "Open door"},
    }]}));
    Value::Array(blocks)
}

const OPEN_DOOR: &str = "open_door";

#[derive(Debug, Deserialize)]
struct InteractionForm {
    payload: String,
}

#[derive(Debug, Deserialize)]
struct Interaction {
    #[serde(rename = "type")]
    kind: String,
    user: UserRef,
    #[serde(default)]
    actions: Vec<Action>,
    #[serde(default)]
    response_url: Option<String>,
    #[serde(default)]
    channel: Option<IdRef>,
    #[serde(default)]
    container: Option<Container>,
    #[serde(default)]
    message: Option<Message>,
}

#[derive(Debug, Deserialize)]
struct UserRef {
    id: String,
}

#[derive(Debug, Deserialize)]
struct IdRef {
    id: String,
}

#[derive(Debug, Deserialize)]
struct Action {
    action_id: String,
    #[serde(default)]
    value: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Container {
    #[serde(default)]
    message_ts: Option<String>,
    #[serde(default)]
    channel_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Message {
    #[serde(default)]
    ts: Option<String>,
    #[serde(default)]
    blocks: Vec<Value>,
}

/// Interactivity: the doorbell's **Open door** button. The click is decided at once for
/// the member who clicked (recorded like any decision); driving the door and updating
/// the message continue after the answer, since Slack waits only 3 seconds.
#[utoipa::path(post, path = "/hooks/slack/interactions", tag = "slack",
    responses((status = 200, description = "acknowledged"), (status = 400, description = "not an interaction payload"),
        (status = 401, description = "bad signature"), (status = 413, body = Problem, description = "larger than max_body_bytes")))]
pub async fn interactions(
    State(s): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<StatusCode, ApiError> {
    let slack = slack_of(&s)?;
    slack.check(&headers, &body)?;
    let form: InteractionForm =
        serde_urlencoded::from_bytes(&body).map_err(|e| ApiError::bad_request(format!("no payload field: {e}")))?;
    let interaction: Interaction = parse_json(form.payload.as_bytes())?;
    let Some(door) = interaction.actions.iter().find(|a| a.action_id == OPEN_DOOR).and_then(|a| a.value.clone()) else {
        return Ok(StatusCode::OK);
    };
    if interaction.kind != "block_actions" {
        return Ok(StatusCode::OK);
    }
    lintel_service::validate::id("door", &door)?;
    let user = interaction.user.id.clone();
    let filter = PersonFilter { external_id: Some(("slack".into(), user.clone())), limit: 1, ..Default::default() };
    let store = &s.store();
    let person = match store.people(&filter).await?.0.pop() {
        Some(person) => store.person_pk(&person.id).await?.map(|pk| (person, pk)),
        None => None,
    };
    let decision = match person {
        Some((_, pk)) => {
            let data = serde_json::Map::from_iter([("slack_user".to_owned(), Value::from(user.as_str()))]);
            Some(s.services().decider.decide_for_person(&door, pk, "slack", data).await?)
        }
        None => None,
    };
    let state = s.clone();
    s.spawn_worker(async move { follow_up_click(&state, interaction, door, decision).await });
    Ok(StatusCode::OK)
}

/// After the click was acknowledged: open the door and update the message, or tell the
/// clicker (only them) why not.
async fn follow_up_click(
    s: &AppState,
    interaction: Interaction,
    door: String,
    decision: Option<lintel_proto::DecisionResponse>,
) {
    let Some(slack) = s.inner.slack.as_ref() else { return };
    let user = &interaction.user.id;
    let response_url = interaction.response_url.as_deref();
    let tell_clicker = |text: String| async move {
        if let Some(url) = response_url {
            slack.respond(url, json!({"response_type": "ephemeral", "replace_original": false, "text": text})).await;
        }
    };
    let decision =
        match decision {
            Some(d) if d.allowed => d,
            Some(d) => return tell_clicker(format!("You cannot open this door: {}.", d.detail)).await,
            None => return tell_clicker(
                "You cannot open this door: lintel does not know you (ask for a `/door-secret` first, or an admin)."
                    .into(),
            )
            .await,
        };
    let driven = match s.services().doors.drive(&door, None, decision.person_id.as_deref()).await {
        Ok(driven) if driven.error.is_none() => driven,
        Ok(driven) => {
            let error = driven.error.unwrap_or_default();
            return tell_clicker(format!("You may open this door, but it did not respond: {error}")).await;
        }
        Err(e) => return tell_clicker(format!("The door could not be opened: {e}")).await,
    };
    let at = chrono::Utc::now().with_timezone(&s.inner.services.config.timezone).format("%H:%M");
    let opened = if driven.confirmed { "Opened" } else { "Opening sent" };
    let note = format!("{opened} by <@{user}> at {at}");
    let channel = interaction
        .channel
        .as_ref()
        .map(|c| c.id.clone())
        .or(interaction.container.as_ref().and_then(|c| c.channel_id.clone()));
    let ts = interaction
        .message
        .as_ref()
        .and_then(|m| m.ts.clone())
        .or(interaction.container.as_ref().and_then(|c| c.message_ts.clone()));
    let (Some(channel), Some(ts)) = (channel, ts) else {
        return tell_clicker(format!("{note}.")).await;
    };
    // The message keeps its text and picture; the button gives way to who opened and when.
    let mut blocks: Vec<Value> = interaction.message.as_ref().map(|m| m.blocks.clone()).unwrap_or_default();
    blocks.retain(|b| b["type"] != "actions");
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!(":unlock: {note}")}]}));
    let message = slack::MessageRef { channel, ts };
    if let Err(e) = slack.client.update_message(&message, &note, &Value::Array(blocks)).await {
        tracing::warn!(error = %e, "doorbell message not updated");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_go_only_to_slack_or_the_configured_api_origin() {
        let slack = Slack::new(SlackConfig {
            signing_secret: "s".into(),
            bot_token: "xoxb".into(),
            api_base_url: "http://127.0.0.1:4100/api".into(),
            group: None,
            allow_guests: false,
            reconcile_every: std::time::Duration::from_secs(60),
            doorbell_channel: None,
        });
        for good in ["https://hooks.slack.com/actions/T1/1/abc", "http://127.0.0.1:4100/respond/1"] {
            assert!(slack.response_url_is_slack(good), "{good}");
        }
        for bad in [
            "http://hooks.slack.com/actions/T1/1/abc",
            "https://hooks.slack.com.evil.example/x",
            "https://evil.example/?hooks.slack.com",
            "http://127.0.0.1:4101/respond/1",
            "http://169.254.169.254/latest/meta-data",
            "not a url",
        ] {
            assert!(!slack.response_url_is_slack(bad), "{bad}");
        }
    }
}
