//! `lintel backup` and `lintel restore`: a SQLite database and the key files it needs, in
//! one tar archive. One without the other is useless: the PIN key hashes the PINs, the
//! signing key signs users' certificates and controllers' lists.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use lintel_store::{Backend, SqliteSync, Store};

use crate::keys;

const DATABASE: &str = "lintel.db";
const KEY: &str = "lintel.key";
const SIGNING_KEY: &str = "lintel.signing.key";

/// Writes `out`: a consistent copy of the running database and both key files.
pub async fn create(store: &Store, key_file: &Path, out: &Path) -> anyhow::Result<u64> {
    if store.backend() != Backend::Sqlite {
        bail!("with PostgreSQL, back up with pg_dump and copy both key files (see the README's Backups)");
    }
    let signing_key_file = keys::signing_key_path(key_file);
    let key = keys::load(key_file)?;
    keys::load(&signing_key_file)?;
    ensure!(
        store.key_fingerprint().await? == Some(keys::fingerprint(&key)),
        "the key file {} is not this database's: a backup with it could not be used",
        key_file.display()
    );
    let dir = tempfile::tempdir_in(parent(out)).context("a temporary directory beside the backup")?;
    let copy = dir.path().join(DATABASE);
    store.copy_sqlite_to(&copy).await?;

    let partial = dir.path().join("backup.tar");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    // It holds the keys.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut archive = tar::Builder::new(options.open(&partial).context("creating the backup")?);
    archive.append_path_with_name(&copy, DATABASE)?;
    archive.append_path_with_name(key_file, KEY)?;
    archive.append_path_with_name(&signing_key_file, SIGNING_KEY)?;
    let file = archive.into_inner()?;
    file.sync_all()?;
    std::fs::rename(&partial, out).with_context(|| format!("writing {}", out.display()))?;
    Ok(std::fs::metadata(out)?.len())
}

/// Puts a backup in place of the SQLite database at `database` and the key files, after
/// checking that the backup's key is its database's. Existing files are replaced only
/// with `replace` (lintel must be stopped then).
pub async fn restore(backup: &Path, database: &Path, key_file: &Path, replace: bool) -> anyhow::Result<()> {
    let dir = tempfile::tempdir_in(parent(database)).context("a temporary directory beside the database")?;
    let mut archive = tar::Archive::new(File::open(backup).with_context(|| format!("opening {}", backup.display()))?);
    for entry in archive.entries().context("reading the backup")? {
        let mut entry = entry.context("reading the backup")?;
        let name = entry.path()?.to_string_lossy().into_owned();
        // Only the three files, by name: nothing lands outside the temporary directory.
        ensure!([DATABASE, KEY, SIGNING_KEY].contains(&name.as_str()), "{name:?} is not part of a lintel backup");
        entry.unpack(dir.path().join(&name))?;
    }
    for name in [DATABASE, KEY, SIGNING_KEY] {
        ensure!(dir.path().join(name).is_file(), "{} is not a lintel backup: it lacks {name}", backup.display());
    }
    let key = keys::load(&dir.path().join(KEY))?;
    keys::load(&dir.path().join(SIGNING_KEY))?;
    let url = format!("sqlite://{}", dir.path().join(DATABASE).display());
    let copy = Store::open_existing(&url, SqliteSync::Full).await?;
    let fingerprint = copy.key_fingerprint().await;
    copy.close().await;
    ensure!(
        fingerprint? == Some(keys::fingerprint(&key)),
        "the key in {} is not its database's: refusing a backup whose PINs could never be checked",
        backup.display()
    );

    let signing_key_file = keys::signing_key_path(key_file);
    let targets = [(DATABASE, database.to_owned()), (KEY, key_file.to_owned()), (SIGNING_KEY, signing_key_file)];
    if !replace {
        for (_, target) in &targets {
            ensure!(!target.exists(), "{} exists: stop lintel, then restore with --replace", target.display());
        }
    }
    // A WAL left by the database being replaced would be applied to the restored one.
    for suffix in ["-wal", "-shm"] {
        let mut stale = database.as_os_str().to_owned();
        stale.push(suffix);
        match std::fs::remove_file(PathBuf::from(stale)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    for (name, target) in targets {
        std::fs::rename(dir.path().join(name), &target).with_context(|| format!("writing {}", target.display()))?;
    }
    Ok(())
}

fn parent(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}
