//! Lockdown: doors that refuse every credential but those of people exempt from it. Kept
//! on the doors themselves, so that the decision index, every node (through the change
//! feed) and the controllers' offline lists follow it like any other change of a door.

use sqlx::Row;

use crate::directory::{Tx, door_pk, read_door};
use crate::events::NewEvent;
use crate::{IndexUpdate, Result, Store, StoreError, Written, now_micros};

/// Which doors a lockdown (or its lifting) concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockdownScope {
    /// Every door of a site (those it has now).
    Site(String),
    /// These doors.
    Doors(Vec<String>),
}

async fn scope_doors(tx: &mut Tx, scope: &LockdownScope) -> Result<Vec<(i64, String)>> {
    match scope {
        LockdownScope::Site(site) => {
            let known: Option<String> =
                sqlx::query_scalar("SELECT id FROM sites WHERE id = $1").bind(site).fetch_optional(&mut **tx).await?;
            if known.is_none() {
                return Err(StoreError::not_found("site", site));
            }
            let rows = sqlx::query("SELECT pk, id FROM doors WHERE site = $1 ORDER BY id")
                .bind(site)
                .fetch_all(&mut **tx)
                .await?;
            rows.iter().map(|r| Ok((r.try_get("pk")?, r.try_get("id")?))).collect()
        }
        LockdownScope::Doors(ids) => {
            let mut doors = Vec::with_capacity(ids.len());
            for id in ids {
                doors.push((door_pk(tx, id).await?, id.clone()));
            }
            Ok(doors)
        }
    }
}

impl Store {
    /// Puts the scope's doors in lockdown (`on`) or lifts it, in one transaction; answers
    /// the doors whose state changed (a door already so is left as it is). A lifted door
    /// is recorded secure until the mode worker puts it back into its mode now.
    pub async fn set_lockdown(&self, scope: &LockdownScope, on: bool) -> Result<Written<Vec<String>>> {
        let mut tx = self.begin().await?;
        let doors = scope_doors(&mut tx, scope).await?;
        let by = self.actor.as_deref().unwrap_or("lintel").to_owned();
        let (mut changed, mut changes, mut events) = (Vec::new(), Vec::new(), Vec::new());
        for (pk, id) in doors {
            let done = match on {
                true => sqlx::query(
                    "UPDATE doors SET lockdown_by = $2, lockdown_at = $3, mode = 'lockdown' WHERE pk = $1 AND lockdown_by IS NULL",
                )
                .bind(pk)
                .bind(&by)
                .bind(now_micros()),
                false => sqlx::query(
                    "UPDATE doors SET lockdown_by = NULL, lockdown_at = NULL, mode = 'secure' \
                     WHERE pk = $1 AND lockdown_by IS NOT NULL",
                )
                .bind(pk),
            }
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                continue;
            }
            // An unlocked hold ends with the lockdown: lifting it must not open the door.
            let ended_hold = on
                && sqlx::query(
                    "UPDATE doors SET hold_state = NULL, hold_until = NULL, hold_by = NULL \
                     WHERE pk = $1 AND hold_state = 'unlocked'",
                )
                .bind(pk)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    > 0;
            if ended_hold {
                events.push(NewEvent::new("door.hold_ended").door(&id).with("by_lockdown", true));
            }
            let (_, change) = read_door(&mut tx, pk).await?;
            changes.push(change);
            let kind = if on { "door.lockdown_started" } else { "door.lockdown_ended" };
            let mut event = NewEvent::new(kind).door(&id);
            if let LockdownScope::Site(site) = scope {
                event = event.with("site", site);
            }
            events.push(event);
            changed.push(id);
        }
        self.finish(tx, changed, IndexUpdate::Patch(changes), events).await
    }
}
