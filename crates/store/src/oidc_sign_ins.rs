//! OpenID sign-ins to the web UI under way (see `migrations/*/0033_oidc_sign_ins.sql`):
//! kept by the digest of their `state`, taken once.

use sqlx::Row;

use crate::{Result, Store};

/// What the callback of a sign-in needs (times in unix microseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcSignIn {
    pub nonce: String,
    pub pkce_verifier: String,
    pub redirect_uri: String,
    /// The UI page to go to afterwards.
    pub next: String,
    pub created_at: i64,
}

impl Store {
    /// Keeps a sign-in under way (started by `client`) and forgets those made before
    /// `expired_before`; `false` when `max` are under way already, or `max_per_client` of
    /// this client's (nothing is kept).
    pub async fn create_oidc_sign_in(
        &self,
        state_digest: &str,
        sign_in: &OidcSignIn,
        client: &str,
        expired_before: i64,
        (max, max_per_client): (i64, i64),
    ) -> Result<bool> {
        // Serialised with the sessions (the UI's sign-in too), so that `max` holds across nodes.
        let mut tx = self.begin_under(crate::SESSIONS_LOCK).await?;
        sqlx::query("DELETE FROM oidc_sign_ins WHERE created_at < $1").bind(expired_before).execute(&mut *tx).await?;
        let kept = sqlx::query(
            "INSERT INTO oidc_sign_ins (state_digest, nonce, pkce_verifier, redirect_uri, next, created_at, client) \
             SELECT $1, $2, $3, $4, $5, $6, $8 WHERE (SELECT COUNT(*) FROM oidc_sign_ins) < $7 \
             AND (SELECT COUNT(*) FROM oidc_sign_ins WHERE client = $8) < $9",
        )
        .bind(state_digest)
        .bind(&sign_in.nonce)
        .bind(&sign_in.pkce_verifier)
        .bind(&sign_in.redirect_uri)
        .bind(&sign_in.next)
        .bind(sign_in.created_at)
        .bind(max)
        .bind(client)
        .bind(max_per_client)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(kept.rows_affected() == 1)
    }

    /// Takes the sign-in of this `state` (a second take finds nothing, on any node); one
    /// made before `expired_before` is taken but not returned.
    pub async fn take_oidc_sign_in(&self, state_digest: &str, expired_before: i64) -> Result<Option<OidcSignIn>> {
        let row = sqlx::query(
            "DELETE FROM oidc_sign_ins WHERE state_digest = $1 \
             RETURNING nonce, pkce_verifier, redirect_uri, next, created_at",
        )
        .bind(state_digest)
        .fetch_optional(&self.write)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let sign_in = OidcSignIn {
            nonce: row.try_get("nonce")?,
            pkce_verifier: row.try_get("pkce_verifier")?,
            redirect_uri: row.try_get("redirect_uri")?,
            next: row.try_get("next")?,
            created_at: row.try_get("created_at")?,
        };
        Ok((sign_in.created_at >= expired_before).then_some(sign_in))
    }
}
