//! Signed operations' state: users' registered keys, lock administrators, used operation
//! ids (replay protection) and unlocks queued for a door that did not answer.

use lintel_proto::{ShareableLock, UserKey};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::directory::person_pk;
use crate::events::{NewEvent, insert};
use crate::rows::{opt_time, time};
use crate::{Result, Store, StoreError, now_micros};

const KEY_COLUMNS: &str = "k.id, p.id AS person_id, k.public_key, k.not_after, k.created_at, k.revoked_at FROM user_keys k JOIN people p ON p.pk = k.person_pk";

fn user_key(row: &AnyRow) -> Result<UserKey> {
    Ok(UserKey {
        id: row.try_get("id")?,
        user_id: row.try_get("person_id")?,
        public_key: row.try_get("public_key")?,
        not_after: time(row.try_get("not_after")?)?,
        created_at: time(row.try_get("created_at")?)?,
        revoked_at: opt_time(row.try_get("revoked_at")?)?,
    })
}

/// An unlock waiting for its door.
#[derive(Debug, Clone)]
pub struct QueuedOperation {
    pub issuer: String,
    pub jti: String,
    pub door_id: String,
    pub expires_at: i64,
}

impl Store {
    /// Registers a key for a person, or renews the certificate of a key they registered
    /// before. A key of someone else's, or a revoked one, is a conflict.
    pub async fn register_key(
        &self,
        person_id: &str,
        id: &str,
        public_key: &str,
        serial: &str,
        not_after: i64,
    ) -> Result<UserKey> {
        let mut tx = self.begin().await?;
        let pk = person_pk(&mut tx, person_id).await?;
        let existing = sqlx::query("SELECT person_pk, revoked_at FROM user_keys WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        match existing {
            Some(row) if row.try_get::<i64, _>("person_pk")? != pk => {
                return Err(StoreError::Conflict("this key is registered to another user".into()));
            }
            Some(row) if row.try_get::<Option<i64>, _>("revoked_at")?.is_some() => {
                return Err(StoreError::Conflict("this key was revoked; generate a new one".into()));
            }
            Some(_) => {
                sqlx::query("UPDATE user_keys SET serial = $1, not_after = $2 WHERE id = $3")
                    .bind(serial)
                    .bind(not_after)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            None => {
                sqlx::query(
                    "INSERT INTO user_keys (id, person_pk, public_key, serial, not_after, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(id)
                .bind(pk)
                .bind(public_key)
                .bind(serial)
                .bind(not_after)
                .bind(now_micros())
                .execute(&mut *tx)
                .await?;
            }
        }
        insert(&mut tx, &NewEvent::new("key.registered").person(person_id).with("key_id", id).with("serial", serial))
            .await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {KEY_COLUMNS} WHERE k.id = $1")))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let key = user_key(&row)?;
        tx.commit().await?;
        Ok(key)
    }

    pub async fn user_key(&self, id: &str) -> Result<Option<UserKey>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {KEY_COLUMNS} WHERE k.id = $1")))
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(user_key).transpose()
    }

    /// Keys of one person, or of everyone; oldest first.
    pub async fn user_keys(&self, person_id: Option<&str>) -> Result<Vec<UserKey>> {
        let order = "ORDER BY k.created_at, k.id";
        let rows = match person_id {
            Some(id) => {
                sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {KEY_COLUMNS} WHERE p.id = $1 {order}")))
                    .bind(id)
                    .fetch_all(&self.read)
                    .await?
            }
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {KEY_COLUMNS} {order}"))).fetch_all(&self.read).await?
            }
        };
        rows.iter().map(user_key).collect()
    }

    /// Revokes a key (of `owner`, when given); operations signed with it stop at once.
    pub async fn revoke_key(&self, id: &str, owner: Option<&str>) -> Result<()> {
        let mut tx = self.begin().await?;
        let key = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {KEY_COLUMNS} WHERE k.id = $1")))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(user_key)
            .transpose()?
            .filter(|k| owner.is_none_or(|o| o == k.user_id))
            .ok_or_else(|| StoreError::not_found("key", id))?;
        sqlx::query("UPDATE user_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now_micros())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        insert(&mut tx, &NewEvent::new("key.revoked").person(&key.user_id).with("key_id", id)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Makes a person an administrator of a lock (who may share it), or not.
    pub async fn set_lock_admin(&self, door_id: &str, person_id: &str, admin: bool) -> Result<()> {
        let mut tx = self.begin().await?;
        let door: i64 = sqlx::query_scalar("SELECT pk FROM doors WHERE id = $1")
            .bind(door_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::not_found("door", door_id))?;
        let person = person_pk(&mut tx, person_id).await?;
        let changed = if admin {
            sqlx::query("INSERT INTO lock_admins (door_pk, person_pk) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        } else {
            sqlx::query("DELETE FROM lock_admins WHERE door_pk = $1 AND person_pk = $2")
        }
        .bind(door)
        .bind(person)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed > 0 {
            let kind = if admin { "lock_admin.added" } else { "lock_admin.removed" };
            insert(&mut tx, &NewEvent::new(kind).door(door_id).person(person_id)).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn lock_admins(&self, door_id: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT p.id FROM lock_admins a JOIN people p ON p.pk = a.person_pk JOIN doors d ON d.pk = a.door_pk \
             WHERE d.id = $1 ORDER BY p.id",
        )
        .bind(door_id)
        .fetch_all(&self.read)
        .await?)
    }

    /// The locks a person administers.
    pub async fn administered_locks(&self, person_id: &str) -> Result<Vec<ShareableLock>> {
        let rows = sqlx::query(
            "SELECT d.id, d.name FROM lock_admins a JOIN people p ON p.pk = a.person_pk \
             JOIN doors d ON d.pk = a.door_pk WHERE p.id = $1 ORDER BY d.id",
        )
        .bind(person_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|r| Ok(ShareableLock { id: r.try_get("id")?, name: r.try_get("name")? })).collect()
    }

    /// Records an operation id as used; `false` if it was used before (a replay). Ids
    /// are kept until their operation expires, then forgotten.
    pub async fn claim_operation(&self, issuer: &str, jti: &str, expires_at: i64) -> Result<bool> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM used_operations WHERE expires_at < $1").bind(now_micros()).execute(&mut *tx).await?;
        let claimed = sqlx::query(
            "INSERT INTO used_operations (issuer, jti, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(issuer)
        .bind(jti)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        tx.commit().await?;
        Ok(claimed)
    }

    /// Whether this is the first replay of a claimed operation id (only that one is
    /// recorded); `false` for every later one.
    pub async fn first_replay(&self, issuer: &str, jti: &str) -> Result<bool> {
        let marked = sqlx::query(
            "UPDATE used_operations SET replay_recorded = 1 WHERE issuer = $1 AND jti = $2 AND replay_recorded = 0",
        )
        .bind(issuer)
        .bind(jti)
        .execute(&self.write)
        .await?;
        Ok(marked.rows_affected() == 1)
    }

    /// Forgets a claimed operation id whose operation could not be applied (a store or
    /// device failure), so that the client's retry is not taken for a replay.
    pub async fn release_operation(&self, issuer: &str, jti: &str) -> Result<()> {
        sqlx::query("DELETE FROM used_operations WHERE issuer = $1 AND jti = $2")
            .bind(issuer)
            .bind(jti)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    pub async fn queue_operation(&self, op: &QueuedOperation) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO queued_operations (issuer, jti, door_id, expires_at, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&op.issuer)
        .bind(&op.jti)
        .bind(&op.door_id)
        .bind(op.expires_at)
        .bind(now_micros())
        .execute(&mut *tx)
        .await?;
        insert(&mut tx, &NewEvent::new("operation.queued").door(&op.door_id).person(&op.issuer).with("jti", &op.jti))
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn queued_operations(&self) -> Result<Vec<QueuedOperation>> {
        let rows = sqlx::query("SELECT issuer, jti, door_id, expires_at FROM queued_operations ORDER BY created_at")
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(QueuedOperation {
                    issuer: r.try_get("issuer")?,
                    jti: r.try_get("jti")?,
                    door_id: r.try_get("door_id")?,
                    expires_at: r.try_get("expires_at")?,
                })
            })
            .collect()
    }

    /// Takes an operation off the queue, recording why (`operation.applied`,
    /// `operation.expired`, ...). `false` if another node took it first.
    pub async fn dequeue_operation(&self, op: &QueuedOperation, event: NewEvent) -> Result<bool> {
        let mut tx = self.begin().await?;
        let taken = sqlx::query("DELETE FROM queued_operations WHERE issuer = $1 AND jti = $2")
            .bind(&op.issuer)
            .bind(&op.jti)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if taken {
            insert(&mut tx, &event).await?;
        }
        tx.commit().await?;
        Ok(taken)
    }
}
