//! Admin tokens, stored as SHA-256 digests (hex); the token itself is never stored.

use lintel_core::{Role, RoleAt};
use sqlx::Row;

use crate::events::{NewEvent, insert};
use sqlx::{Any, Transaction};

use crate::{Result, Store, StoreError, now_micros};

/// Tokens have a version of their own: a new token is no reason to reload the decision
/// index.
async fn bump_tokens_version(tx: &mut Transaction<'static, Any>) -> Result<()> {
    sqlx::query(
        "INSERT INTO meta (name, value) VALUES ('tokens_version', 1) \
         ON CONFLICT (name) DO UPDATE SET value = meta.value + 1",
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct TokenInfo {
    pub name: String,
    pub created_at: i64,
    pub scope: TokenScope,
}

/// What a token may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenScope {
    /// An operator's token: what its role allows (`owner` for tokens made before roles),
    /// at every site or at one.
    Operator(RoleAt),
    /// Only ask decisions (`POST /api/v1/decisions`), at this door only when given: what a
    /// station on the shop floor holds, so that a stolen one opens nothing else.
    Decisions { door: Option<String> },
    /// Only the SCIM 2.0 provisioning API (`/scim/v2`): what an identity provider holds.
    Scim,
}

impl TokenScope {
    fn from_row(row: &sqlx::any::AnyRow) -> Result<Self> {
        let scope: String = row.try_get("scope")?;
        match scope.as_str() {
            "admin" => {
                let role: Option<String> = row.try_get("role")?;
                let role = match role.as_deref() {
                    None => Role::Owner,
                    Some(name) => {
                        Role::parse(name).ok_or_else(|| StoreError::Corrupt(format!("token role {name:?}")))?
                    }
                };
                Ok(Self::Operator(RoleAt { role, site: row.try_get("site")? }))
            }
            "decisions" => Ok(Self::Decisions { door: row.try_get("door")? }),
            "scim" => Ok(Self::Scim),
            other => Err(StoreError::Corrupt(format!("token scope {other:?}"))),
        }
    }

    /// The stored scope, its door, its role and its site.
    fn columns(&self) -> (&'static str, Option<&str>, Option<&'static str>, Option<&str>) {
        match self {
            Self::Operator(at) => ("admin", None, Some(at.role.as_str()), at.site.as_deref()),
            Self::Decisions { door } => ("decisions", door.as_deref(), None, None),
            Self::Scim => ("scim", None, None, None),
        }
    }

    /// How the CLI and the events name it.
    pub fn label(&self) -> String {
        match self {
            Self::Operator(at) => at.label(),
            Self::Decisions { door: None } => "decisions".to_owned(),
            Self::Decisions { door: Some(door) } => format!("decisions:{door}"),
            Self::Scim => "scim".to_owned(),
        }
    }
}

impl Store {
    pub async fn create_token(&self, name: &str, digest_hex: &str, scope: &TokenScope) -> Result<()> {
        let (scope_name, door, role, site) = scope.columns();
        let mut tx = self.begin().await?;
        if let Some(site) = site {
            let known: Option<String> =
                sqlx::query_scalar("SELECT id FROM sites WHERE id = $1").bind(site).fetch_optional(&mut *tx).await?;
            if known.is_none() {
                return Err(StoreError::Invalid(format!("there is no site {site:?}")));
            }
        }
        sqlx::query(
            "INSERT INTO admin_tokens (name, digest, created_at, scope, door, role, site) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(name)
        .bind(digest_hex)
        .bind(now_micros())
        .bind(scope_name)
        .bind(door)
        .bind(role)
        .bind(site)
        .execute(&mut *tx)
        .await?;
        let mut event = NewEvent::new("token.created").with("name", name).with("scope", scope_name);
        if let Some(role) = role {
            event = event.with("role", role);
        }
        event.actor = self.actor.as_deref().map(str::to_owned);
        if let Some(door) = door {
            event = event.with("door", door);
        }
        if let Some(site) = site {
            event = event.with("site", site);
        }
        insert(&mut tx, &event).await?;
        bump_tokens_version(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Bumped by every token change, of any process.
    pub async fn tokens_version(&self) -> Result<i64> {
        let v: Option<i64> = sqlx::query_scalar("SELECT value FROM meta WHERE name = 'tokens_version'")
            .fetch_optional(&self.read)
            .await?;
        Ok(v.unwrap_or(0))
    }

    /// Every token's name, digest (hex) and scope, for the server's in-memory check.
    pub async fn token_digests(&self) -> Result<Vec<(String, String, TokenScope)>> {
        let rows =
            sqlx::query("SELECT name, digest, scope, door, role, site FROM admin_tokens").fetch_all(&self.read).await?;
        rows.iter().map(|r| Ok((r.try_get("name")?, r.try_get("digest")?, TokenScope::from_row(r)?))).collect()
    }

    pub async fn tokens(&self) -> Result<Vec<TokenInfo>> {
        let rows = sqlx::query("SELECT name, created_at, scope, door, role, site FROM admin_tokens ORDER BY pk")
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(TokenInfo {
                    name: r.try_get("name")?,
                    created_at: r.try_get("created_at")?,
                    scope: TokenScope::from_row(r)?,
                })
            })
            .collect()
    }

    pub async fn revoke_token(&self, name: &str) -> Result<u64> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("DELETE FROM admin_tokens WHERE name = $1").bind(name).execute(&mut *tx).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("token", name));
        }
        let mut event = NewEvent::new("token.revoked").with("name", name);
        event.actor = self.actor.as_deref().map(str::to_owned);
        insert(&mut tx, &event).await?;
        bump_tokens_version(&mut tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}

impl Store {
    /// The fingerprint of the key this database was set up with; `None` before the first start.
    pub async fn key_fingerprint(&self) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE name = 'key_fingerprint'")
            .fetch_optional(&self.read)
            .await?)
    }

    /// Ties the database to the server's key: the first start records the key's
    /// fingerprint, later starts must present the same one (a different key file would
    /// silently make every PIN unknown).
    pub async fn check_key_fingerprint(&self, fingerprint: i64) -> Result<bool> {
        let mut tx = self.begin().await?;
        let stored: Option<i64> = sqlx::query_scalar("SELECT value FROM meta WHERE name = 'key_fingerprint'")
            .fetch_optional(&mut *tx)
            .await?;
        let matches = match stored {
            Some(stored) => stored == fingerprint,
            None => {
                sqlx::query("INSERT INTO meta (name, value) VALUES ('key_fingerprint', $1)")
                    .bind(fingerprint)
                    .execute(&mut *tx)
                    .await?;
                true
            }
        };
        tx.commit().await?;
        Ok(matches)
    }
}
