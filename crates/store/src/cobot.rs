//! Members of the coworking platform, and the check-ins their entries become.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, Store, StoreError, now_micros};

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

    /// Queues a check-in for every allowed entry at a door that counts attendance, by a
    /// member of the platform, that happened since `since_at` or was stored after event
    /// `since_seq` (an entry may be reported late, with an earlier time). The event's
    /// number is the idempotency key, so each entry is queued exactly once however often
    /// this runs over the same events.
    pub async fn enqueue_cobot_check_ins(&self, since_at: i64, since_seq: i64) -> Result<u64> {
        let now = now_micros();
        Ok(sqlx::query(
            "INSERT INTO outbox (target, kind, idempotency_key, payload, created_at, next_attempt_at) \
             SELECT 'cobot', 'check_in', 'cobot-check-in:' || CAST(e.seq AS TEXT), \
             '{\"membership_id\":\"' || m.membership_id || '\",\"event_id\":\"' || CAST(e.seq AS TEXT) || '\"}', $3, $3 \
             FROM events e JOIN doors d ON d.id = e.door_id JOIN cobot_members m ON m.person_id = e.person_id \
             WHERE e.kind = 'decision' AND e.allowed = 1 AND d.attendance = 1 AND (e.at >= $1 OR e.seq > $2) \
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
