//! People's photos, kept as `<person id>.jpg` in one folder: fetched there by the CRM for
//! its members, put there by an operator for anyone, shown by the web UI and the API.

use std::path::PathBuf;

use lintel_store::Store;

use crate::error::Result;
use crate::validate;

#[derive(Debug, Clone)]
pub struct Photos {
    dir: PathBuf,
}

impl Photos {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// Where a person's photo is kept; `None` for an id that could leave the folder.
    fn path(&self, person_id: &str) -> Option<PathBuf> {
        let safe = validate::id("id", person_id).is_ok() && !person_id.contains("..");
        safe.then(|| self.dir.join(format!("{person_id}.jpg")))
    }

    /// A person's photo (JPEG); `None` when there is none. An unknown person is not found.
    pub async fn read(&self, store: &Store, person_id: &str) -> Result<Option<Vec<u8>>> {
        let Some(path) = self.path(person_id) else { return Ok(None) };
        store.person(person_id).await?;
        match tokio::fs::read(&path).await {
            Ok(jpeg) => Ok(Some(jpeg)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "photo not readable");
                Ok(None)
            }
        }
    }

    /// Whether a person has a photo (pages show initials otherwise).
    pub async fn exists(&self, person_id: &str) -> bool {
        let Some(path) = self.path(person_id) else { return false };
        tokio::fs::try_exists(&path).await.unwrap_or(false)
    }

    /// Keeps a photo, replacing the one before whole (written aside, then renamed).
    pub async fn save(&self, person_id: &str, jpeg: &[u8]) -> Result<(), String> {
        let Some(path) = self.path(person_id) else { return Err(format!("{person_id:?} is not a usable file name")) };
        let partial = path.with_extension("jpg.partial");
        async {
            tokio::fs::create_dir_all(&self.dir).await?;
            tokio::fs::write(&partial, jpeg).await?;
            tokio::fs::rename(&partial, &path).await
        }
        .await
        .map_err(|e| format!("not saved in {}: {e}", self.dir.display()))
    }

    pub async fn remove(&self, person_id: &str) -> Result<(), String> {
        let Some(path) = self.path(person_id) else { return Ok(()) };
        match tokio::fs::remove_file(&path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.to_string()),
            _ => Ok(()),
        }
    }
}
