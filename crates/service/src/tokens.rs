//! Tokens (operators', each with a role; stations'; identity providers'): the SHA-256
//! digests of the tokens in the store (cached, refreshed when they change) and the token
//! from the environment (an owner's), compared in constant time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use lintel_core::credential::digests_equal;
use lintel_core::{Digest, Role, RoleAt};
use lintel_store::{Store, StoreError, TokenScope};

use crate::secrets::digest;

#[derive(Clone)]
pub struct Tokens {
    by_digest: Arc<ArcSwap<HashMap<Digest, (String, TokenScope)>>>,
    from_env: Option<Digest>,
}

async fn read_tokens(store: &Store) -> Result<HashMap<Digest, (String, TokenScope)>, StoreError> {
    let mut map = HashMap::new();
    for (name, hex_digest, scope) in store.token_digests().await? {
        if let Ok(bytes) = hex::decode(&hex_digest)
            && let Ok(d) = Digest::try_from(bytes.as_slice())
        {
            map.insert(d, (name, scope));
        }
    }
    Ok(map)
}

impl Tokens {
    pub async fn load(store: &Store, env_token: Option<&str>) -> Result<Self, StoreError> {
        Ok(Self {
            by_digest: Arc::new(ArcSwap::from_pointee(read_tokens(store).await?)),
            from_env: env_token.map(digest),
        })
    }

    pub fn spawn_refresher(&self, store: Store, every: Duration) {
        let tokens = self.by_digest.clone();
        tokio::spawn(async move {
            let mut seen = None;
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Ok(version) = store.tokens_version().await else { continue };
                if seen == Some(version) {
                    continue;
                }
                match read_tokens(&store).await {
                    Ok(map) => {
                        tokens.store(Arc::new(map));
                        seen = Some(version);
                    }
                    Err(e) => tracing::warn!(error = %e, "could not refresh admin tokens"),
                }
            }
        });
    }

    /// The name and role of the operator token presented, if it is one (a station's or
    /// an identity provider's token is not).
    pub fn operator(&self, presented: &str) -> Option<(String, RoleAt)> {
        match self.check_scoped(presented)? {
            (name, TokenScope::Operator(at)) => Some((name, at)),
            _ => None,
        }
    }

    /// The role of the operator token with this digest, if it is still one (a session
    /// opened with a token keeps only its digest, and its role follows the token's).
    pub fn operator_digest(&self, d: &Digest) -> Option<RoleAt> {
        if self.from_env.as_ref().is_some_and(|env| digests_equal(env, d)) {
            return Some(Role::Owner.into());
        }
        let map = self.by_digest.load();
        match map.get_key_value(d) {
            Some((stored, (_, TokenScope::Operator(at)))) if digests_equal(stored, d) => Some(at.clone()),
            _ => None,
        }
    }

    /// The name and scope of the token presented, if it is one.
    pub fn check_scoped(&self, presented: &str) -> Option<(String, TokenScope)> {
        let d = digest(presented);
        if self.from_env.as_ref().is_some_and(|env| digests_equal(env, &d)) {
            return Some(("environment".into(), TokenScope::Operator(Role::Owner.into())));
        }
        let map = self.by_digest.load();
        let (stored, token) = map.get_key_value(&d)?;
        digests_equal(stored, &d).then(|| token.clone())
    }
}

/// Creates a token and returns it, to be shown once; only its digest is kept. A name is
/// 1 to 64 letters, digits, `-`, `_` or `.`.
pub async fn create(store: &Store, name: &str, scope: &TokenScope) -> crate::error::Result<String> {
    let valid =
        !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !valid {
        return Err(crate::error::ServiceError::invalid("a token name is 1 to 64 letters, digits, - _ ."));
    }
    match scope {
        TokenScope::Decisions { door: Some(door) } => crate::validate::id("door", door)?,
        TokenScope::Operator(RoleAt { role: Role::Owner, site: Some(_) }) => {
            return Err(crate::error::ServiceError::invalid(
                "an owner holds at every site; limit an admin, front_desk, viewer or display to a site",
            ));
        }
        TokenScope::Operator(RoleAt { site: Some(site), .. }) => crate::validate::id("site", site)?,
        _ => {}
    }
    let token = crate::secrets::generate("lat_");
    store.create_token(name, &hex::encode(digest(&token)), scope).await?;
    Ok(token)
}
