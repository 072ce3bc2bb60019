//! Sessions of the web UI, kept in the store: a session made on one node works on the
//! others and outlives a restart, and signing out ends it everywhere. The session's id
//! (the cookie's value) is a secret: only its SHA-256 is kept; its CSRF token is derived
//! from it, so nothing a page needs is stored. A session lasts only as long as what it
//! was opened with: an admin token still valid, an operator still an active operator.

use std::time::Duration;

use lintel_core::{Digest, Role, RoleAt};
use lintel_store::Store;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::tokens::Tokens;
use crate::{decide, secrets};

/// A session unused for this long ends.
pub const IDLE: Duration = Duration::from_secs(12 * 3600);
/// And every session ends after this long, used or not.
pub const LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// More sessions than this at once: the least recently used go first.
const MAX_SESSIONS: i64 = 10_000;
/// A session's last use is written at most this often (not at every page).
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// Who a session belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Who {
    /// Signed in with an operator token, known by its name and its digest (hex), so that
    /// the session ends as soon as the token is revoked (and its role is the token's).
    Token { name: String, digest: String },
    /// Signed in through the OpenID issuer as a person the directory marks as operator.
    Operator { person_id: String, name: String },
}

impl Who {
    /// The holder of a session opened with this admin token.
    pub fn token(name: String, token: &str) -> Self {
        Self::Token { name, digest: hex::encode(secrets::digest(token)) }
    }

    /// How the session is named in the event log and on the page.
    pub fn label(&self) -> String {
        match self {
            Who::Token { name, .. } => format!("token {name:?}"),
            Who::Operator { person_id, .. } => format!("operator {person_id}"),
        }
    }

    /// Who the audit trail names for what they change.
    pub fn actor(&self) -> crate::Actor {
        match self {
            Who::Token { name, .. } => crate::Actor::token(name),
            Who::Operator { person_id, .. } => crate::Actor::operator(person_id),
        }
    }

    pub fn display(&self) -> String {
        match self {
            Who::Token { name, .. } => format!("token “{name}”"),
            Who::Operator { name, .. } => name.clone(),
        }
    }
}

/// A live session: its holder, their role now, and the token its forms must carry.
#[derive(Debug, Clone)]
pub struct Session {
    pub who: Who,
    /// Their role now, and the site it is limited to.
    pub role: RoleAt,
    pub csrf: String,
}

pub struct Sessions {
    store: Store,
    tokens: Tokens,
}

fn key(id: &str) -> String {
    hex::encode(secrets::digest(id))
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX / 4)
}

impl Sessions {
    pub fn new(store: Store, tokens: Tokens) -> Self {
        Self { store, tokens }
    }

    /// A new session; its id goes into the cookie, and nowhere else. A wall display's
    /// (the `display` role's) lasts until signed out or its token revoked, so that a
    /// screen on the wall is not signed out every week.
    pub async fn create(&self, who: Who) -> Result<String> {
        let id = secrets::generate("");
        let lasting = self.role_now(&who).await?.is_some_and(|at| at.role == Role::Display);
        let holder = serde_json::to_string(&who).expect("a holder serializes");
        self.store.create_session(&key(&id), &holder, decide::now_micros(), MAX_SESSIONS, lasting).await?;
        Ok(id)
    }

    /// The live session with this id (its last use noted), or `None`: unknown, expired, or
    /// opened with what no longer holds (it is ended then).
    pub async fn open(&self, id: &str) -> Result<Option<Session>> {
        let key = key(id);
        let Some(stored) = self.store.session(&key).await? else { return Ok(None) };
        let now = decide::now_micros();
        let alive =
            stored.lasting || (now - stored.seen_at < micros(IDLE) && now - stored.created_at < micros(LIFETIME));
        let who: Option<Who> = serde_json::from_str(&stored.holder).ok();
        let role = match &who {
            Some(who) if alive => self.role_now(who).await?,
            _ => None,
        };
        let (Some(who), Some(role)) = (who, role) else {
            self.store.end_session(&key).await?;
            return Ok(None);
        };
        if now - stored.seen_at >= micros(TOUCH_EVERY) {
            self.store.touch_session(&key, now).await?;
        }
        Ok(Some(Session { who, role, csrf: csrf(id) }))
    }

    /// Ends the session everywhere.
    pub async fn end(&self, id: &str) -> Result<()> {
        Ok(self.store.end_session(&key(id)).await?)
    }

    /// Forgets the sessions that expired (run now and then).
    pub async fn prune(&self) -> Result<u64> {
        let now = decide::now_micros();
        Ok(self.store.prune_sessions(now - micros(IDLE), now - micros(LIFETIME)).await?)
    }

    /// The holder's role now (what the session was opened with may have changed since),
    /// or `None` when it no longer lets them in.
    async fn role_now(&self, who: &Who) -> Result<Option<RoleAt>> {
        Ok(match who {
            Who::Token { digest, .. } => hex::decode(digest)
                .ok()
                .and_then(|d| Digest::try_from(d.as_slice()).ok())
                .and_then(|d| self.tokens.operator_digest(&d)),
            Who::Operator { person_id, .. } => match self.store.person(person_id).await {
                Ok(person) => crate::integrations::oidc::operator_role(&person),
                Err(lintel_store::StoreError::NotFound { .. }) => None,
                Err(e) => return Err(e.into()),
            },
        })
    }
}

/// The CSRF token of the session with this id: derived, so that it is never stored, and
/// unknowable without the id (an HttpOnly cookie).
fn csrf(id: &str) -> String {
    hex::encode(secrets::digest(&format!("csrf:{id}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn sessions() -> (tempfile::TempDir, Sessions, Store) {
        let (dir, store) = crate::testing::store().await;
        let tokens = Tokens::load(&store, Some("env-token-0123456789abcdef")).await.expect("tokens");
        (dir, Sessions::new(store.clone(), tokens), store)
    }

    #[tokio::test]
    async fn sessions_are_found_by_their_id_only_and_end_everywhere() {
        let (dir, sessions, store) = sessions().await;
        let id = sessions.create(Who::token("environment".into(), "env-token-0123456789abcdef")).await.unwrap();
        let session = sessions.open(&id).await.unwrap().expect("alive");
        assert_eq!(session.who.label(), "token \"environment\"");
        assert_eq!(session.role, Role::Owner.into());
        assert_eq!(session.csrf, csrf(&id));
        assert!(sessions.open("not-the-id").await.unwrap().is_none());
        // Another process on the same database sees it, and a sign-out there ends it here.
        let url = format!("sqlite://{}", dir.path().join("lintel.db").display());
        let other_store = Store::open(&url, lintel_store::SqliteSync::Normal).await.unwrap();
        let other = Sessions::new(other_store, Tokens::load(&store, Some("env-token-0123456789abcdef")).await.unwrap());
        assert!(other.open(&id).await.unwrap().is_some(), "made here, open there");
        other.end(&id).await.unwrap();
        assert!(sessions.open(&id).await.unwrap().is_none(), "ended there, ended here");
    }

    #[tokio::test]
    async fn a_wall_display_session_is_never_pruned_but_ends_with_its_token() {
        let (_dir, store) = crate::testing::store().await;
        let scope = lintel_store::TokenScope::Operator(Role::Display.into());
        let wall = crate::tokens::create(&store, "wall", &scope).await.unwrap();
        let viewer =
            crate::tokens::create(&store, "v", &lintel_store::TokenScope::Operator(Role::Viewer.into())).await.unwrap();
        let sessions = Sessions::new(store.clone(), Tokens::load(&store, None).await.unwrap());
        let on_the_wall = sessions.create(Who::token("wall".into(), &wall)).await.unwrap();
        let at_a_desk = sessions.create(Who::token("v".into(), &viewer)).await.unwrap();
        assert_eq!(sessions.open(&at_a_desk).await.unwrap().unwrap().role, Role::Viewer.into());
        // Pruning as if a year had passed.
        let later = decide::now_micros() + micros(Duration::from_secs(365 * 86_400));
        assert_eq!(store.prune_sessions(later, later).await.unwrap(), 1, "the viewer's session only");
        let session = sessions.open(&on_the_wall).await.unwrap().expect("the display's session stays");
        assert_eq!(session.role, Role::Display.into());
        store.revoke_token("wall").await.unwrap();
        let sessions = Sessions::new(store.clone(), Tokens::load(&store, None).await.unwrap());
        assert!(sessions.open(&on_the_wall).await.unwrap().is_none(), "its token revoked, it ends");
    }

    #[tokio::test]
    async fn a_session_ends_with_what_it_was_opened_with() {
        let (_dir, sessions, _store) = sessions().await;
        let id = sessions.create(Who::token("gone".into(), "a-token-nobody-has-0123456789")).await.unwrap();
        assert!(sessions.open(&id).await.unwrap().is_none(), "a token that is not (or no longer) valid");
        let id = sessions.create(Who::Operator { person_id: "nobody".into(), name: "N".into() }).await.unwrap();
        assert!(sessions.open(&id).await.unwrap().is_none(), "an operator who is not one");
    }
}
