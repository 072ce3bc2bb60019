//! Reading the whole directory into a decision index.

use std::collections::HashMap;

use futures::TryStreamExt;
use lintel_core::{Index, IndexBuilder, IndexGroup, Pk};
use sqlx::Row;

use crate::directory::{GRANT_SELECT, grant_from_row};
use crate::rows::{index_credential, index_door, index_person};
use crate::{Backend, Result, Store};

impl Store {
    /// Builds a fresh index from one consistent snapshot of the store, with the directory
    /// version that snapshot had.
    pub async fn load_index(&self) -> Result<(Index, i64)> {
        let mut tx = match self.backend {
            Backend::Sqlite => self.read.begin().await?,
            Backend::Postgres => self.read.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?,
        };
        let version: i64 =
            sqlx::query_scalar("SELECT value FROM meta WHERE name = 'directory_version'").fetch_one(&mut *tx).await?;
        let mut b = IndexBuilder::default();
        {
            let mut rows = sqlx::query("SELECT pk, id, status, skills, attributes FROM people").fetch(&mut *tx);
            while let Some(row) = rows.try_next().await? {
                let (pk, person) = index_person(&row)?;
                b.person(pk, person);
            }
        }
        {
            // Revoked first, so that a live credential sharing a key always ends up on top.
            let mut rows = sqlx::query(
                "SELECT pk, person_pk, kind, card_uid, revocation_code, digest, status FROM credentials \
                 ORDER BY CASE status WHEN 'active' THEN 1 ELSE 0 END, pk",
            )
            .fetch(&mut *tx);
            while let Some(row) = rows.try_next().await? {
                let (key, credential) = index_credential(&row)?;
                b.credential(key, credential);
            }
        }
        for row in sqlx::query("SELECT pk, id, required_skill, lockdown_by FROM doors").fetch_all(&mut *tx).await? {
            b.door(index_door(&row)?);
        }
        let mut group_doors: HashMap<Pk, Vec<Pk>> = HashMap::new();
        for row in sqlx::query("SELECT group_pk, door_pk FROM group_doors").fetch_all(&mut *tx).await? {
            group_doors.entry(row.try_get("group_pk")?).or_default().push(row.try_get("door_pk")?);
        }
        for row in sqlx::query("SELECT pk, id FROM access_groups").fetch_all(&mut *tx).await? {
            let pk: Pk = row.try_get("pk")?;
            let doors = group_doors.remove(&pk).unwrap_or_default().into_boxed_slice();
            b.group(pk, IndexGroup { id: row.try_get::<String, _>("id")?.into(), doors });
        }
        {
            let mut rows = sqlx::query("SELECT group_pk, person_pk FROM group_members").fetch(&mut *tx);
            while let Some(row) = rows.try_next().await? {
                b.member(row.try_get("group_pk")?, row.try_get("person_pk")?);
            }
        }
        let mut grant_doors: HashMap<Pk, Vec<(Pk, String)>> = HashMap::new();
        for row in sqlx::query("SELECT gd.grant_pk, d.pk, d.id FROM grant_doors gd JOIN doors d ON d.pk = gd.door_pk")
            .fetch_all(&mut *tx)
            .await?
        {
            grant_doors.entry(row.try_get("grant_pk")?).or_default().push((row.try_get("pk")?, row.try_get("id")?));
        }
        {
            let mut rows = sqlx::query(GRANT_SELECT).fetch(&mut *tx);
            while let Some(row) = rows.try_next().await? {
                let pk: Pk = row.try_get("pk")?;
                let (_, grant) = grant_from_row(&row, grant_doors.remove(&pk).unwrap_or_default())?;
                b.grant(grant);
            }
        }
        tx.commit().await?;
        Ok((b.build(), version))
    }
}
