//! The Slack workspace: members get a personal door secret with a slash command, lose
//! every credential when they leave (an event, or the periodic comparison with
//! `users.list` that heals missed events), and open the doorbell's door with its
//! **Open door** button. Every request from Slack is signed; one that verified is not
//! accepted again.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;
use lintel_connectors::slack;
use lintel_proto::{CredentialKind, CredentialStatus, Person, Reconciled};
use lintel_store::{PersonFilter, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::directory::Actor;
use crate::directory::Directory;
use crate::doors::{Doors, Opener};
use crate::error::{Result, ServiceError};
use crate::offboarding::{self, Departure};
use crate::people::{self, ExternalPerson, Identity};
use crate::workers::Workers;
use crate::{credentials, validate};

/// The `[slack]` settings.
#[derive(Clone, Debug)]
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
    pub reconcile_every: Duration,
    /// Where the doorbell posts (a channel id such as `C0123456`).
    pub doorbell_channel: Option<String>,
}

/// The external-id system under which Slack user ids are kept.
const SLACK_SYSTEM: &str = "slack";

/// How long a slash command may take before lintel answers "one moment" and sends the
/// real answer through the `response_url` (Slack gives 3 seconds).
const COMMAND_PATIENCE: Duration = Duration::from_millis(2000);

/// The `action_id` of the doorbell message's button.
const OPEN_DOOR: &str = "open_door";

pub struct Slack {
    config: SlackConfig,
    client: slack::Client,
    directory: Arc<Directory>,
    doors: Arc<Doors>,
    /// Answers and door openings that go on after Slack got its acknowledgement.
    workers: Workers,
    timezone: Tz,
    /// lintel's public URL, for the `/open/<door>` hint in a secret's message.
    public_url: Option<String>,
}

/// A slash command, as Slack posts it (form-encoded).
#[derive(Debug, Deserialize)]
pub struct SlashCommand {
    pub command: String,
    pub user_id: String,
    #[serde(default)]
    pub response_url: Option<String>,
}

/// A click in a message, as Slack posts it (the JSON in the form's `payload`).
#[derive(Debug, Deserialize)]
pub struct Interaction {
    #[serde(rename = "type")]
    pub kind: String,
    pub user: IdRef,
    #[serde(default)]
    pub actions: Vec<Action>,
    #[serde(default)]
    pub response_url: Option<String>,
    #[serde(default)]
    pub channel: Option<IdRef>,
    #[serde(default)]
    pub container: Option<Container>,
    #[serde(default)]
    pub message: Option<Message>,
}

#[derive(Debug, Deserialize)]
pub struct IdRef {
    pub id: String,
}

#[derive(Debug, Deserialize)]
pub struct Action {
    pub action_id: String,
    #[serde(default)]
    pub value: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Container {
    #[serde(default)]
    pub message_ts: Option<String>,
    #[serde(default)]
    pub channel_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Message {
    #[serde(default)]
    pub ts: Option<String>,
    #[serde(default)]
    pub blocks: Vec<Value>,
}

fn ephemeral(text: impl Into<String>) -> Value {
    json!({"response_type": "ephemeral", "text": text.into()})
}

fn secret_message(secret: &str, public_url: Option<&str>) -> String {
    let base = public_url.map_or("https://<lintel>", |u| u.trim_end_matches('/'));
    format!(
        "Your door secret (shown only now, keep it like a password):\n`{secret}`\n\
         Open a door with: `curl -X POST -H \"Authorization: Bearer {secret}\" {base}/open/<door>`\n\
         Lost it? `/regenerate-door-secret` replaces it."
    )
}

impl Slack {
    pub fn new(
        config: SlackConfig,
        directory: Arc<Directory>,
        doors: Arc<Doors>,
        workers: Workers,
        timezone: Tz,
        public_url: Option<String>,
    ) -> Self {
        let client = slack::Client::new(&config.api_base_url, &config.bot_token);
        Self { config, client, directory, doors, workers, timezone, public_url }
    }

    /// Admits a request from Slack: signed with the signing secret over its timestamp and
    /// its body exactly as received, recent, and not seen before.
    /// The requests seen are kept in the store until they would be too old anyway, keyed
    /// on the decoded MAC: a request replayed to any node, in any spelling, is refused.
    pub async fn admit(&self, timestamp: Option<&str>, signature: Option<&str>, body: &[u8]) -> Result<()> {
        let now = chrono::Utc::now().timestamp();
        let verified = slack::verify(&self.config.signing_secret, timestamp, signature, body, now)
            .map_err(|e| ServiceError::unauthorized(e.to_string()))?;
        let key = format!("slack:{}", hex::encode(verified.mac));
        if !self.directory.store.first_seen(&key, verified.acceptable_until).await? {
            return Err(ServiceError::unauthorized("this request was already received"));
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

    /// Posts `message` to a request's `response_url`, if it is Slack's.
    async fn respond(&self, response_url: &str, message: Value) {
        if !self.response_url_is_slack(response_url) {
            tracing::warn!("a Slack request named a response_url outside Slack; not answering there");
            return;
        }
        if let Err(e) = self.client.respond(response_url, &message).await {
            tracing::warn!(error = %e, "answer through response_url failed");
        }
    }

    /// The person linked to a Slack user, if there is one.
    async fn linked_person(&self, user_id: &str) -> Result<Option<Person>, StoreError> {
        let filter =
            PersonFilter { external_id: Some((SLACK_SYSTEM.into(), user_id.into())), limit: 1, ..Default::default() };
        Ok(self.directory.store.people(&filter).await?.0.pop())
    }

    /// Answers a slash command with the text only its caller sees. An answer that takes
    /// longer than Slack waits is "one moment", and the real one follows through the
    /// command's `response_url`.
    pub async fn command(self: &Arc<Self>, command: SlashCommand) -> Result<String> {
        let response_url = command.response_url.clone();
        let slack = self.clone();
        // Its own task: it finishes (and its answer is delivered) even if Slack hangs up.
        let mut work = tokio::spawn(async move { slack.answer(&command).await });
        let failed = |e: tokio::task::JoinError| {
            tracing::error!(error = %e, "slash command failed");
            ServiceError::unavailable("the command failed")
        };
        match (tokio::time::timeout(COMMAND_PATIENCE, &mut work).await, response_url) {
            (Ok(answer), _) => answer.map_err(failed)?,
            (Err(_), Some(response_url)) => {
                let slack = self.clone();
                self.workers.spawn(async move {
                    let text = match work.await {
                        Ok(Ok(text)) => text,
                        Ok(Err(e)) => format!("That did not work: {e}"),
                        Err(_) => "That did not work; please try again.".to_owned(),
                    };
                    slack.respond(&response_url, ephemeral(text)).await;
                });
                Ok("One moment…".to_owned())
            }
            // Nowhere to send a late answer: wait for it (a regenerated secret must be shown).
            (Err(_), None) => work.await.map_err(failed)?,
        }
    }

    /// `/door-secret` hands out a personal secret once; `/regenerate-door-secret` replaces it.
    async fn answer(&self, command: &SlashCommand) -> Result<String> {
        let regenerate = match command.command.as_str() {
            "/door-secret" => false,
            "/regenerate-door-secret" => true,
            other => return Ok(format!("lintel does not know {other}.")),
        };
        let person = match self.person_for(&command.user_id).await? {
            Ok(person) => person,
            Err(refusal) => return Ok(refusal.to_owned()),
        };
        // Membership is asserted on every call (it is idempotent), so a person created while
        // `group` was missing or misnamed gets in once the configuration is fixed.
        if let Some(group) = self.config.group.clone() {
            let member = person.clone();
            let joined = self
                .directory
                .write(&Actor::integration("slack"), move |store| async move {
                    store.set_member(&group, &member, true).await
                })
                .await;
            if let Err(StoreError::NotFound { .. }) = joined {
                tracing::error!("[slack] group names a group that does not exist");
                return Ok(
                    "lintel's Slack setup is incomplete (its group does not exist); please tell an admin.".to_owned()
                );
            }
            joined?;
        }
        let has_secret = self
            .directory
            .store
            .person_credentials(&person)
            .await?
            .iter()
            .any(|c| c.kind == CredentialKind::Secret && c.status == CredentialStatus::Active);
        if has_secret && !regenerate {
            return Ok("You already have a door secret. It was shown only once; if you lost it, \
                 `/regenerate-door-secret` replaces it."
                .to_owned());
        }
        if regenerate {
            let p = person.clone();
            self.directory
                .write(&Actor::integration("slack"), move |store| async move {
                    store.revoke_person_credentials(&p, Some(CredentialKind::Secret), "regenerated from Slack").await
                })
                .await?;
        }
        let credentials::Built { record, shown_once } = credentials::secret();
        self.directory
            .write(
                &Actor::integration("slack"),
                move |store| async move { store.issue_credential(&person, &record).await },
            )
            .await?;
        Ok(secret_message(&shown_once.unwrap_or_default(), self.public_url.as_deref()))
    }

    /// The person behind a Slack user: found by their Slack id, or made from `users.info`
    /// on first use as `slack-<id>`. Bots, deleted users and, unless allowed, guests get
    /// no person; the inner error says why, for them to read.
    async fn person_for(&self, user_id: &str) -> Result<std::result::Result<String, &'static str>> {
        if let Some(person) = self.linked_person(user_id).await? {
            return Ok(Ok(person.id));
        }
        let user = match self.client.user(user_id).await {
            Ok(user) => user,
            Err(e) => {
                tracing::warn!(error = %e, "users.info failed");
                return Ok(Err("lintel could not look you up in Slack just now; please try again in a minute."));
            }
        };
        if user.deleted || user.is_bot {
            return Ok(Err("Door secrets are for people who are members of this workspace."));
        }
        if user.is_guest() && !self.config.allow_guests {
            return Ok(Err("Guests of this workspace cannot have a door secret; ask an admin."));
        }
        let id = format!("slack-{}", user.id);
        validate::id("a Slack user id", &id)?;
        let mut person = ExternalPerson::new(SLACK_SYSTEM, user.id.clone(), Identity::Derived(id));
        person.name = Some(user.display_name());
        person.email = user.profile.email.clone();
        Ok(Ok(people::upsert(&self.directory, person).await?.id))
    }

    /// Whether a workspace user may still hold what the workspace gave: not deleted, and
    /// not a guest where guests are not allowed.
    fn stays(&self, deleted: bool, guest: bool) -> bool {
        !deleted && (self.config.allow_guests || !guest)
    }

    /// The Events API's events lintel acts on: a user deleted from the workspace, or made
    /// a guest where guests are not allowed, is offboarded at once.
    pub async fn event(&self, event: &Value) -> Result<()> {
        let user = &event["user"];
        let guest = user["is_restricted"] == true || user["is_ultra_restricted"] == true;
        let left = event["type"] == "user_change" && !self.stays(user["deleted"] == true, guest);
        if let (true, Some(user_id)) = (left, user["id"].as_str()) {
            let reason = if user["deleted"] == true { "left the Slack workspace" } else { "became a Slack guest" };
            self.revoke_user(user_id, reason).await?;
        }
        Ok(())
    }

    /// Compares the people linked to Slack with `users.list`: whoever is deleted or no
    /// longer listed loses every credential. Events can be missed; this heals it.
    pub async fn reconcile(&self) -> Result<Reconciled> {
        let users = self.client.users().await.map_err(|e| ServiceError::unavailable(format!("users.list: {e}")))?;
        let active: HashSet<&str> = users
            .iter()
            .filter(|u| self.stays(u.deleted, u.is_restricted || u.is_ultra_restricted))
            .map(|u| u.id.as_str())
            .collect();
        let linked = self.directory.store.external_ids(SLACK_SYSTEM).await?;
        let members = users.iter().filter(|u| !u.deleted).count();
        let mut result = Reconciled { members, departed: 0, revoked: 0 };
        for (_, user_id) in linked.iter().filter(|(_, u)| !active.contains(u.as_str())) {
            result.departed += 1;
            result.revoked += self.revoke_user(user_id, "no longer in the Slack workspace").await?;
        }
        Ok(result)
    }

    /// Runs [`Self::reconcile`] every `[slack] reconcile_every` until shutdown.
    pub fn spawn_reconciler(self: &Arc<Self>, workers: &Workers) {
        let slack = self.clone();
        let mut ticks = workers.one_node_every("slack-reconcile", slack.config.reconcile_every);
        workers.spawn(async move {
            // Not at start: the first reconciliation comes one period in.
            ticks.next().await;
            while ticks.next().await {
                match slack.reconcile().await {
                    Ok(r) if r.revoked > 0 => {
                        tracing::info!(
                            departed = r.departed,
                            revoked = r.revoked,
                            "Slack reconciliation revoked access"
                        )
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "Slack reconciliation failed"),
                }
            }
        });
    }

    /// Offboards the person with this Slack id, if there is one; returns how many
    /// credentials were revoked.
    async fn revoke_user(&self, user_id: &str, reason: &str) -> Result<usize> {
        let Some(person) = self.linked_person(user_id).await? else { return Ok(0) };
        let groups: Vec<String> = self.config.group.iter().cloned().collect();
        let departure = Departure { person_id: &person.id, source: SLACK_SYSTEM, reason, groups: &groups };
        Ok(offboarding::offboard(&self.directory, departure).await?.credentials.len())
    }

    /// Posts a plain message (a notification).
    pub(crate) async fn post_text(&self, channel: &str, text: &str) -> Result<(), slack::ApiError> {
        let blocks = json!([{"type": "section", "text": {"type": "mrkdwn", "text": text}}]);
        self.client.post_message(channel, text, &blocks).await.map(drop)
    }

    /// Posts the doorbell's message: the text, the picture when there is one, and the
    /// button that opens `door`.
    pub(crate) async fn post_ring(
        &self,
        channel: &str,
        text: &str,
        image_url: Option<&str>,
        door: &str,
    ) -> Result<(), slack::ApiError> {
        let mut blocks = vec![json!({"type": "section", "text": {"type": "mrkdwn", "text": text}})];
        if let Some(url) = image_url {
            blocks.push(json!({"type": "image", "image_url": url, "alt_text": "the doorbell camera's picture"}));
        }
        blocks.push(json!({"type": "actions", "block_id": "doorbell", "elements": [{
            "type": "button", "action_id": OPEN_DOOR, "style": "primary", "value": door,
            "text": {"type": "plain_text", "text": "Open door"},
        }]}));
        self.client.post_message(channel, text, &Value::Array(blocks)).await.map(drop)
    }

    /// A click on the doorbell's **Open door** button. Slack waits only 3 seconds, so the
    /// door is opened afterwards: decided for the member who clicked (recorded like any
    /// decision), driven, and the message updated; or the clicker alone is told why not.
    /// Other interactions are ignored.
    pub fn interaction(self: &Arc<Self>, interaction: Interaction) -> Result<()> {
        let Some(door) = interaction.actions.iter().find(|a| a.action_id == OPEN_DOOR).and_then(|a| a.value.clone())
        else {
            return Ok(());
        };
        if interaction.kind != "block_actions" {
            return Ok(());
        }
        validate::id("door", &door)?;
        let slack = self.clone();
        self.workers.spawn(async move { slack.open_for_click(interaction, door).await });
        Ok(())
    }

    async fn open_for_click(&self, interaction: Interaction, door: String) {
        let user = &interaction.user.id;
        let response_url = interaction.response_url.as_deref();
        let tell_clicker = |text: String| async move {
            if let Some(url) = response_url {
                self.respond(url, json!({"response_type": "ephemeral", "replace_original": false, "text": text})).await;
            }
        };
        let opened = match self.open_as(user, &door).await {
            Ok(Some(opened)) => opened,
            Ok(None) => {
                return tell_clicker(
                    "You cannot open this door: lintel does not know you (ask for a `/door-secret` first, or an admin)."
                        .into(),
                )
                .await;
            }
            Err(e) => return tell_clicker(format!("The door could not be opened: {e}")).await,
        };
        let driven = match opened.driven {
            None => return tell_clicker(format!("You cannot open this door: {}.", opened.decision.detail)).await,
            Some(driven) => match driven.error {
                Some(error) => {
                    return tell_clicker(format!("You may open this door, but it did not respond: {error}")).await;
                }
                None => driven,
            },
        };
        let at = chrono::Utc::now().with_timezone(&self.timezone).format("%H:%M");
        let done = if driven.confirmed { "Opened" } else { "Opening sent" };
        let note = format!("{done} by <@{user}> at {at}");
        let container = interaction.container.as_ref();
        let channel =
            interaction.channel.as_ref().map(|c| c.id.clone()).or(container.and_then(|c| c.channel_id.clone()));
        let ts =
            interaction.message.as_ref().and_then(|m| m.ts.clone()).or(container.and_then(|c| c.message_ts.clone()));
        let (Some(channel), Some(ts)) = (channel, ts) else {
            return tell_clicker(format!("{note}.")).await;
        };
        // The message keeps its text and picture; the button gives way to who opened and when.
        let mut blocks: Vec<Value> = interaction.message.as_ref().map(|m| m.blocks.clone()).unwrap_or_default();
        blocks.retain(|b| b["type"] != "actions");
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!(":unlock: {note}")}]}));
        let message = slack::MessageRef { channel, ts };
        if let Err(e) = self.client.update_message(&message, &note, &Value::Array(blocks)).await {
            tracing::warn!(error = %e, "doorbell message not updated");
        }
    }

    /// Opens `door` for the person linked to a Slack user; `None` when lintel does not know
    /// them.
    async fn open_as(&self, user: &str, door: &str) -> Result<Option<crate::doors::Opened>> {
        let Some(person) = self.linked_person(user).await? else { return Ok(None) };
        let Some(pk) = self.directory.store.person_pk(&person.id).await? else { return Ok(None) };
        let data = serde_json::Map::from_iter([("slack_user".to_owned(), Value::from(user))]);
        let opened = self.doors.open(door, Opener::Person { pk, via: "slack", data }, None).await?;
        Ok(Some(opened))
    }
}

#[cfg(test)]
mod tests {
    use lintel_proto::NewPerson;

    use super::*;
    use crate::testing;

    fn config(api_base_url: &str) -> SlackConfig {
        SlackConfig {
            signing_secret: "s".into(),
            bot_token: "xoxb".into(),
            api_base_url: api_base_url.into(),
            group: None,
            allow_guests: false,
            reconcile_every: Duration::from_secs(60),
            doorbell_channel: None,
        }
    }

    #[tokio::test]
    async fn answers_go_only_to_slack_or_the_configured_api_origin() {
        let (_dir, services) = testing::services(|c| c.slack = Some(config("http://127.0.0.1:4100/api"))).await;
        let slack = services.slack.expect("configured");
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

    async fn active_credentials(services: &crate::Services, person: &str) -> usize {
        let credentials = services.store().person_credentials(person).await.expect("credentials");
        credentials.iter().filter(|c| c.status == CredentialStatus::Active).count()
    }

    /// Only a `user_change` that says the user is deleted revokes, and only that user's
    /// person loses anything; Slack is not asked (the event says it all).
    #[tokio::test]
    async fn a_member_deleted_from_the_workspace_loses_every_credential() {
        let (_dir, services) = testing::services(|c| c.slack = Some(config("http://127.0.0.1:9/api"))).await;
        for (id, user, uid) in [("ann", "U1", "51AC0001"), ("bert", "U2", "51AC0002")] {
            let new = NewPerson {
                id: Some(id.into()),
                name: id.into(),
                external_ids: [(SLACK_SYSTEM.to_owned(), user.to_owned())].into(),
                ..Default::default()
            };
            testing::person(&services, new).await;
            for built in [credentials::secret(), credentials::card(uid, None).expect("a card")] {
                let (person, record) = (id.to_owned(), built.record);
                services
                    .directory
                    .write(&Actor::integration("slack"), move |store| async move {
                        store.issue_credential(&person, &record).await
                    })
                    .await
                    .expect("credential");
            }
        }
        let slack = services.slack.clone().expect("configured");
        for not_leaving in [
            json!({"type": "user_change", "user": {"id": "U1", "deleted": false}}),
            json!({"type": "team_join", "user": {"id": "U1", "deleted": true}}),
            json!({"type": "user_change", "user": {"id": "U9", "deleted": true}}),
        ] {
            slack.event(&not_leaving).await.expect("handled");
        }
        assert_eq!(active_credentials(&services, "ann").await, 2, "nothing revoked yet");

        slack.event(&json!({"type": "user_change", "user": {"id": "U1", "deleted": true}})).await.expect("handled");
        assert_eq!(active_credentials(&services, "ann").await, 0, "the card and the secret are revoked");
        assert_eq!(active_credentials(&services, "bert").await, 2, "another member keeps theirs");
        let revoked = services.store().person_credentials("ann").await.expect("credentials");
        assert!(revoked.iter().all(|c| c.status_reason.as_deref() == Some("left the Slack workspace")), "{revoked:?}");
    }
}
