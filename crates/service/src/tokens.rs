//! Admin tokens: the SHA-256 digests of the tokens in the store (cached, refreshed when
//! they change) and the token from the environment, compared in constant time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use lintel_core::Digest;
use lintel_core::credential::digests_equal;
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

    /// The name of the admin token presented, if it is one (a scoped token is not).
    pub fn check(&self, presented: &str) -> Option<String> {
        self.check_scoped(presented).and_then(|(name, scope)| (scope == TokenScope::Admin).then_some(name))
    }

    /// Whether this digest is an admin token's (a session opened with one keeps only it).
    pub fn admin_digest(&self, d: &Digest) -> bool {
        if self.from_env.as_ref().is_some_and(|env| digests_equal(env, d)) {
            return true;
        }
        let map = self.by_digest.load();
        map.get_key_value(d).is_some_and(|(stored, (_, scope))| digests_equal(stored, d) && *scope == TokenScope::Admin)
    }

    /// The name and scope of the token presented, if it is one.
    pub fn check_scoped(&self, presented: &str) -> Option<(String, TokenScope)> {
        let d = digest(presented);
        if self.from_env.as_ref().is_some_and(|env| digests_equal(env, &d)) {
            return Some(("environment".into(), TokenScope::Admin));
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
    if let TokenScope::Decisions { door: Some(door) } = scope {
        crate::validate::id("door", door)?;
    }
    let token = crate::secrets::generate("lat_");
    store.create_token(name, &hex::encode(digest(&token)), scope).await?;
    Ok(token)
}
