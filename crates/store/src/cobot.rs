//! Members of the coworking platform, and the check-ins their entries become.

use lintel_core::{Change, IndexGrant, Pk};
use lintel_proto::{Grant, PassLasts};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::directory::{NewGrantRecord, door_pk, person_pk, read_grants};
use crate::events::NewEvent;
use crate::rows::grant_id;
use crate::{IndexUpdate, Result, Store, StoreError, Written, now_micros};

/// What lintel knows of a membership: its person, what was applied, its check-in token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CobotMember {
    pub membership_id: String,
    pub person_id: String,
    pub plan_id: String,
    /// When access ends (unix microseconds), for a canceled membership.
    pub access_until: Option<i64>,
    pub check_in_token: String,
    pub token_registered: bool,
}

fn member(row: &AnyRow) -> Result<CobotMember> {
    Ok(CobotMember {
        membership_id: row.try_get("membership_id")?,
        person_id: row.try_get("person_id")?,
        plan_id: row.try_get("plan_id")?,
        access_until: row.try_get("access_until")?,
        check_in_token: row.try_get("check_in_token")?,
        token_registered: row.try_get::<i64, _>("token_registered")? != 0,
    })
}

const COLUMNS: &str = "membership_id, person_id, plan_id, access_until, check_in_token, token_registered";

/// Membership ids go into SQL-built JSON (see [`Store::enqueue_cobot_check_ins`]) and into
/// URLs: only letters, digits, `-` and `_`.
pub fn valid_membership_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Store {
    pub async fn cobot_member(&self, membership_id: &str) -> Result<Option<CobotMember>> {
        let row =
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM cobot_members WHERE membership_id = $1")))
                .bind(membership_id)
                .fetch_optional(&self.read)
                .await?;
        row.as_ref().map(member).transpose()
    }

    pub async fn cobot_members(&self) -> Result<Vec<CobotMember>> {
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM cobot_members ORDER BY membership_id")))
                .fetch_all(&self.read)
                .await?;
        rows.iter().map(member).collect()
    }

    /// Records what was applied for a membership (insert or update).
    pub async fn save_cobot_member(&self, m: &CobotMember) -> Result<()> {
        if !valid_membership_id(&m.membership_id) {
            return Err(StoreError::Invalid(format!("membership id {:?} is not usable", m.membership_id)));
        }
        sqlx::query(
            "INSERT INTO cobot_members (membership_id, person_id, plan_id, access_until, check_in_token, \
             token_registered, synced_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (membership_id) DO UPDATE SET plan_id = excluded.plan_id, \
             access_until = excluded.access_until, synced_at = excluded.synced_at",
        )
        .bind(&m.membership_id)
        .bind(&m.person_id)
        .bind(&m.plan_id)
        .bind(m.access_until)
        .bind(&m.check_in_token)
        .bind(i64::from(m.token_registered))
        .bind(now_micros())
        .execute(&self.write)
        .await?;
        Ok(())
    }

    pub async fn set_cobot_token_registered(&self, membership_id: &str) -> Result<()> {
        sqlx::query("UPDATE cobot_members SET token_registered = 1 WHERE membership_id = $1")
            .bind(membership_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Queues a check-in for every allowed entry by a member of the platform that used a
    /// pass (the platform counts passes by check-ins) or, without passes, came through a
    /// door that counts attendance; never for an entry on a check-in still running. Only
    /// entries since `since_at` or stored after event `since_seq` (an entry may be
    /// reported late, with an earlier time). The event's number is the idempotency key, so
    /// each entry is queued exactly once however often this runs over the same events.
    pub async fn enqueue_cobot_check_ins(&self, since_at: i64, since_seq: i64) -> Result<u64> {
        let now = now_micros();
        Ok(sqlx::query(
            "INSERT INTO outbox (target, kind, idempotency_key, payload, created_at, next_attempt_at) \
             SELECT 'cobot', 'check_in', 'cobot-check-in:' || CAST(e.seq AS TEXT), \
             '{\"membership_id\":\"' || m.membership_id || '\",\"event_id\":\"' || CAST(e.seq AS TEXT) || '\"}', $3, $3 \
             FROM events e JOIN doors d ON d.id = e.door_id JOIN cobot_members m ON m.person_id = e.person_id \
             WHERE e.kind = 'decision' AND e.allowed = 1 AND (e.at >= $1 OR e.seq > $2) \
             AND ((d.attendance = 1 AND e.pass_use IS NULL) OR e.pass_use = 'used') \
             ORDER BY e.seq \
             ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(since_at)
        .bind(since_seq)
        .bind(now)
        .execute(&self.write)
        .await?
        .rows_affected())
    }

    /// Records the person a booking gave access to, until when.
    pub async fn save_cobot_booking(
        &self,
        booking_id: &str,
        person_id: &str,
        visitor: bool,
        ends_at: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO cobot_bookings (booking_id, person_id, visitor, ends_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (booking_id) DO UPDATE SET person_id = excluded.person_id, visitor = excluded.visitor, \
             ends_at = excluded.ends_at",
        )
        .bind(booking_id)
        .bind(person_id)
        .bind(i64::from(visitor))
        .bind(ends_at)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// The person of a booking and whether they are a visitor lintel created.
    pub async fn cobot_booking(&self, booking_id: &str) -> Result<Option<(String, bool)>> {
        let row = sqlx::query("SELECT person_id, visitor FROM cobot_bookings WHERE booking_id = $1")
            .bind(booking_id)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| Ok((r.try_get("person_id")?, r.try_get::<i64, _>("visitor")? != 0))).transpose()
    }

    pub async fn forget_cobot_booking(&self, booking_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM cobot_bookings WHERE booking_id = $1").bind(booking_id).execute(&self.write).await?;
        Ok(())
    }

    /// Bookings whose access has ended: (booking id, person, visitor).
    pub async fn ended_cobot_bookings(&self, now: i64) -> Result<Vec<(String, String, bool)>> {
        let rows = sqlx::query("SELECT booking_id, person_id, visitor FROM cobot_bookings WHERE ends_at <= $1")
            .bind(now)
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("booking_id")?, r.try_get("person_id")?, r.try_get::<i64, _>("visitor")? != 0)))
            .collect()
    }
}

/// How long lintel looks back for entries that used a pass and that the platform may not
/// have counted yet: far longer than any check-in stays queued.
const UNCOUNTED_LOOKBACK_MICROS: i64 = 7 * 86_400 * 1_000_000;

impl Store {
    /// Makes a member's pass grants match the platform's unused passes: one grant per pass
    /// type in `wanted` (told apart by `source`, and kept across syncs so that a check-in
    /// stays open), each with `passes` set to the platform's count of unused passes.
    /// The person's other grants whose source is `source_prefix` or starts with it and a
    /// `:` are deleted.
    ///
    /// The platform counts a pass only once lintel's check-in for it arrives, so a count
    /// fetched at `asked_at` may still include passes used here. Every entry that used a
    /// pass and whose check-in was not done before `asked_at` is taken off the count: the
    /// member is never let in more often than the platform has passes (a pass counted
    /// twice comes back with the next refresh). All of it in one transaction under the
    /// decisions' lock, so that no entry commits between the count and the write.
    /// `value` says whether anything changed; nothing is written when not.
    pub async fn replace_cobot_pass_grants(
        &self,
        person_id: &str,
        source_prefix: &str,
        wanted: &[NewGrantRecord],
        asked_at: i64,
    ) -> Result<Written<bool>> {
        let mut tx = self.begin().await?;
        let person = person_pk(&mut tx, person_id).await?;
        let existing: Vec<(Grant, IndexGrant)> = read_grants(&mut tx, "WHERE g.person_pk = $1", Some(person))
            .await?
            .into_iter()
            .filter(|(g, _)| {
                g.source.as_deref().is_some_and(|s| {
                    s == source_prefix || s.strip_prefix(source_prefix).is_some_and(|rest| rest.starts_with(':'))
                })
            })
            .collect();
        let uncounted: Vec<Option<String>> = sqlx::query_scalar(
            "SELECT e.grant_id FROM events e WHERE e.person_id = $1 AND e.kind = 'decision' AND e.allowed = 1 \
             AND e.pass_use = 'used' AND e.at >= $2 AND NOT EXISTS (SELECT 1 FROM outbox o \
             WHERE o.idempotency_key = 'cobot-check-in:' || CAST(e.seq AS TEXT) \
             AND ((o.state = 'done' AND o.done_at < $3) OR o.state = 'failed'))",
        )
        .bind(person_id)
        .bind(asked_at - UNCOUNTED_LOOKBACK_MICROS)
        .bind(asked_at)
        .fetch_all(&mut *tx)
        .await?;
        let kept = |want: &NewGrantRecord| existing.iter().find(|(g, _)| g.source == want.source);
        // Uses by a grant that is kept count against it; the rest (their grant is gone)
        // against the first grants with passes to spare.
        let mut used: Vec<u32> = wanted
            .iter()
            .map(|w| {
                let id = kept(w).map(|(g, _)| g.id.as_str());
                let n = uncounted.iter().filter(|u| u.as_deref().is_some_and(|u| Some(u) == id)).count();
                u32::try_from(n).unwrap_or(u32::MAX)
            })
            .collect();
        let kept_ids: Vec<&str> = wanted.iter().filter_map(|w| kept(w).map(|(g, _)| g.id.as_str())).collect();
        let mut orphans = uncounted.iter().filter(|u| u.as_deref().is_none_or(|u| !kept_ids.contains(&u))).count();
        for (w, n) in wanted.iter().zip(used.iter_mut()) {
            let room = (w.passes.unwrap_or(0) as usize).saturating_sub(*n as usize).min(orphans);
            *n += u32::try_from(room).unwrap_or(0);
            orphans -= room;
        }

        let mut changes = Vec::new();
        let mut events = Vec::new();
        for (want, used) in wanted.iter().zip(used) {
            let used = used.min(want.passes.unwrap_or(0));
            let pk = match kept(want) {
                Some((have, _))
                    if have.passes == want.passes
                        && have.passes_used == used
                        && have.schedule == want.schedule
                        && have.pass_lasts == want.pass_lasts
                        && have.doors == want.doors =>
                {
                    continue;
                }
                Some((have, index)) => {
                    sqlx::query(
                        "UPDATE grants SET schedule = $2, passes = $3, passes_used = $4, pass_lasts = $5 WHERE pk = $1",
                    )
                    .bind(index.pk)
                    .bind(want.schedule.as_ref().map(crate::rows::to_json))
                    .bind(want.passes.map(i64::from))
                    .bind(i64::from(used))
                    .bind((want.pass_lasts != PassLasts::Entry).then(|| want.pass_lasts.stored()))
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("DELETE FROM grant_doors WHERE grant_pk = $1").bind(index.pk).execute(&mut *tx).await?;
                    events.push(NewEvent::new("grant.updated").grant(&have.id).person(person_id));
                    index.pk
                }
                None => {
                    let pk: Pk = sqlx::query_scalar(
                        "INSERT INTO grants (person_pk, has_doors, schedule, passes, passes_used, pass_lasts, source, \
                         created_at) VALUES ($1, 1, $2, $3, $4, $5, $6, $7) RETURNING pk",
                    )
                    .bind(person)
                    .bind(want.schedule.as_ref().map(crate::rows::to_json))
                    .bind(want.passes.map(i64::from))
                    .bind(i64::from(used))
                    .bind((want.pass_lasts != PassLasts::Entry).then(|| want.pass_lasts.stored()))
                    .bind(&want.source)
                    .bind(now_micros())
                    .fetch_one(&mut *tx)
                    .await?;
                    events.push(NewEvent::new("grant.created").grant(grant_id(pk)).person(person_id));
                    pk
                }
            };
            for door in want.doors.iter().flatten() {
                let door = door_pk(&mut tx, door).await?;
                sqlx::query("INSERT INTO grant_doors (grant_pk, door_pk) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                    .bind(pk)
                    .bind(door)
                    .execute(&mut *tx)
                    .await?;
            }
            let (_, index) =
                read_grants(&mut tx, "WHERE g.pk = $1", Some(pk)).await?.pop().expect("grant just written");
            changes.push(Change::Grant(pk, Some(index)));
        }
        for (have, index) in &existing {
            if !wanted.iter().any(|w| w.source == have.source) {
                sqlx::query("DELETE FROM grants WHERE pk = $1").bind(index.pk).execute(&mut *tx).await?;
                changes.push(Change::Grant(index.pk, None));
                events.push(NewEvent::new("grant.deleted").grant(&have.id).person(person_id));
            }
        }
        if changes.is_empty() {
            tx.rollback().await?;
            return Ok(Written { value: false, index: IndexUpdate::Patch(Vec::new()), events: Vec::new(), version: 0 });
        }
        self.finish(tx, true, IndexUpdate::Patch(changes), events).await
    }
}
