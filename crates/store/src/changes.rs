//! The change feed: each directory version records what it touched, in the transaction
//! that made it (see `migrations/*/0013_changes.sql`). A process that did not make a
//! version (another node, or a server beside the CLI) reads what the versions it has not
//! seen touched, as they are now, and patches its index with that instead of reloading the
//! whole directory. Versions commit in order (every writer bumps the one version row), so
//! the feed has no gaps; a reader that finds one, or is too far behind, reloads.

use std::collections::BTreeSet;

use lintel_core::{Change, Pk};
use serde::{Deserialize, Serialize};
use sqlx::{Any, Row, Transaction};

use crate::directory::read_touched;
use crate::{Backend, IndexUpdate, Result, Store, StoreError};

/// How many versions a reader may be behind and still patch; further behind, it reloads.
const MAX_BEHIND: i64 = 10_000;

/// How many versions the feed keeps; readers further behind reload anyway.
const KEPT: i64 = 2 * MAX_BEHIND;

/// What a version touched, to be read again by whoever applies it. Ordered so that a
/// patch creates people, doors and groups before what refers to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) enum Touched {
    #[serde(rename = "p")]
    Person(Pk),
    #[serde(rename = "d")]
    Door(Pk),
    #[serde(rename = "g")]
    Group(Pk),
    /// A group's membership of a person: (group, person).
    #[serde(rename = "m")]
    Membership(Pk, Pk),
    #[serde(rename = "r")]
    Grant(Pk),
    #[serde(rename = "c")]
    Credential(Pk),
}

impl Touched {
    fn of(change: &Change) -> Self {
        match change {
            Change::Person(pk, _) => Self::Person(*pk),
            Change::Credential(_, credential) => Self::Credential(credential.pk),
            Change::Door(pk, _) => Self::Door(*pk),
            Change::Group(pk, _) => Self::Group(*pk),
            Change::Membership { group, person, .. } => Self::Membership(*group, *person),
            Change::Grant(pk, _) | Change::PassesUsed { grant: pk, .. } => Self::Grant(*pk),
        }
    }
}

/// The feed's entry of one version: what it touched, or that it must be reloaded.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Entry {
    Touched(Vec<Touched>),
    Reload,
}

/// The feed's entry for what `update` touched.
fn entry(update: &IndexUpdate) -> String {
    let entry = match update {
        IndexUpdate::Patch(changes) => Entry::Touched(changes.iter().map(Touched::of).collect()),
        IndexUpdate::Reload => Entry::Reload,
    };
    serde_json::to_string(&entry).expect("the feed's entries serialize")
}

const RECORD: &str = "INSERT INTO changes (version, touched) VALUES ($1, $2)";
const BUMP: &str = "UPDATE meta SET value = value + 1 WHERE name = 'directory_version' RETURNING value";
const FORGET: &str = "DELETE FROM changes WHERE version <= $1";

/// Whether a version is one after which the feed forgets what no reader would patch from.
fn forgets_at(version: i64) -> bool {
    version % 1024 == 0
}

/// Marks the transaction as a directory change that touched what `update` says; returns
/// the new version.
pub(crate) async fn bump_version(tx: &mut Transaction<'static, Any>, update: &IndexUpdate) -> Result<i64> {
    let version: i64 = sqlx::query_scalar(BUMP).fetch_one(&mut **tx).await?;
    sqlx::query(RECORD).bind(version).bind(entry(update)).execute(&mut **tx).await?;
    if forgets_at(version) {
        sqlx::query(FORGET).bind(version - KEPT).execute(&mut **tx).await?;
    }
    Ok(version)
}

/// [`bump_version`] on the decision log's own SQLite connection.
pub(crate) fn bump_version_sqlite(tx: &rusqlite::Transaction<'_>, update: &IndexUpdate) -> Result<i64> {
    let version: i64 = tx.prepare_cached(BUMP)?.query_row([], |r| r.get(0))?;
    tx.prepare_cached(RECORD)?.execute(rusqlite::params![version, entry(update)])?;
    if forgets_at(version) {
        tx.prepare_cached(FORGET)?.execute([version - KEPT])?;
    }
    Ok(version)
}

/// What a reader at some directory version must do to be current.
#[derive(Debug)]
pub enum Feed {
    /// Nothing changed.
    Current,
    /// These changes, read as of `version`, bring the index to `version`.
    Patch { changes: Vec<Change>, version: i64 },
    /// Too far behind, a structural change, or a feed with a gap: load the index whole.
    Reload,
}

impl Store {
    /// What happened to the directory after version `after`, as changes read in one
    /// consistent snapshot.
    pub async fn changes_since(&self, after: i64) -> Result<Feed> {
        let mut tx = match self.backend {
            Backend::Sqlite => self.read.begin().await?,
            Backend::Postgres => self.read.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?,
        };
        let version: i64 =
            sqlx::query_scalar("SELECT value FROM meta WHERE name = 'directory_version'").fetch_one(&mut *tx).await?;
        if version == after {
            return Ok(Feed::Current);
        }
        // Behind the reader (a restored database) or too far ahead of it.
        if version < after || version - after > MAX_BEHIND {
            return Ok(Feed::Reload);
        }
        let rows = sqlx::query("SELECT version, touched FROM changes WHERE version > $1 AND version <= $2")
            .bind(after)
            .bind(version)
            .fetch_all(&mut *tx)
            .await?;
        if i64::try_from(rows.len()).ok() != Some(version - after) {
            // Versions made before the feed existed, or already dropped from it.
            return Ok(Feed::Reload);
        }
        let mut touched = BTreeSet::new();
        for row in &rows {
            let text: String = row.try_get("touched")?;
            match serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("change feed: {e}")))? {
                Entry::Touched(entities) => touched.extend(entities),
                Entry::Reload => return Ok(Feed::Reload),
            }
        }
        let mut changes = Vec::with_capacity(touched.len());
        for t in touched {
            changes.extend(read_touched(&mut tx, t).await?);
        }
        Ok(Feed::Patch { changes, version })
    }
}
