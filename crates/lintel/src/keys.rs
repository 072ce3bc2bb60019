//! The server's key material: a file beside the database, created on first start with
//! mode 0600. It holds the key that PINs are hashed with, so a copy of the database alone
//! is not enough to try all PINs.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The file of a SQLite database URL; `None` for PostgreSQL (or an in-memory database).
pub fn sqlite_file(database_url: &str) -> Option<PathBuf> {
    let file = database_url.strip_prefix("sqlite://").or_else(|| database_url.strip_prefix("sqlite:"))?;
    let file = file.split('?').next().unwrap_or(file);
    (!file.is_empty() && file != ":memory:").then(|| PathBuf::from(file))
}

/// The default key file: beside a SQLite database, else in the working directory.
pub fn default_path(database_url: &str) -> PathBuf {
    match sqlite_file(database_url) {
        Some(db) => db.with_file_name(format!("{}.key", db.file_stem().and_then(|s| s.to_str()).unwrap_or("lintel"))),
        None => PathBuf::from("lintel.key"),
    }
}

/// lintel's Ed25519 signing key (the authority of users' certificates) lives beside the
/// key file: `lintel.key` -> `lintel.signing.key`. A file of its own, so that the PIN key
/// and the signing key can be rotated or guarded apart.
pub fn signing_key_path(key_file: &Path) -> PathBuf {
    key_file.with_extension("signing.key")
}

/// Reads a 32-byte key (hex).
pub fn load(path: &Path) -> anyhow::Result<[u8; 32]> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!("reading the key file {} (restore it from the backup of this database)", path.display())
    })?;
    let bytes = hex::decode(text.trim()).with_context(|| format!("{} is not a lintel key file", path.display()))?;
    let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice()) else {
        bail!("{} does not hold a 32-byte key", path.display())
    };
    Ok(key)
}

/// Reads a 32-byte key (hex), or creates one from the OS's randomness with mode 0600.
pub fn load_or_create(path: &Path) -> anyhow::Result<[u8; 32]> {
    match std::fs::metadata(path) {
        Ok(_) => load(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("no randomness from the OS: {e}"))?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(path).with_context(|| format!("creating the key file {}", path.display()))?;
            writeln!(file, "{}", hex::encode(key))?;
            file.sync_all()?;
            tracing::info!(path = %path.display(), "created the key file; back it up with the database");
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("reading the key file {}", path.display())),
    }
}

/// A fingerprint of the key that tells keys apart without revealing them.
pub fn fingerprint(key: &[u8; 32]) -> i64 {
    let digest = lintel_core::credential::pin_digest(key, "lintel key fingerprint");
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}
