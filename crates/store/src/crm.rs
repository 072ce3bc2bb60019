//! Members of the makerspace CRM: when lintel last fetched each one (their person, status,
//! skills and card are in the directory like anyone's).

use lintel_core::Pk;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, Store};

/// What lintel knows of a CRM member besides the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrmMember {
    pub crm_id: String,
    pub person_id: String,
    /// When the CRM last answered about them (unix microseconds).
    pub fetched_at: i64,
    pub in_good_standing: bool,
    /// The revocation code the CRM gave (its external-id field).
    pub revocation_code: Option<String>,
}

fn member(row: &AnyRow) -> Result<CrmMember> {
    Ok(CrmMember {
        crm_id: row.try_get("crm_id")?,
        person_id: row.try_get("person_id")?,
        fetched_at: row.try_get("fetched_at")?,
        in_good_standing: row.try_get::<i64, _>("in_good_standing")? != 0,
        revocation_code: row.try_get("revocation_code")?,
    })
}

impl Store {
    pub async fn crm_member(&self, crm_id: &str) -> Result<Option<CrmMember>> {
        let row = sqlx::query(
            "SELECT crm_id, person_id, fetched_at, in_good_standing, revocation_code FROM crm_members \
             WHERE crm_id = $1",
        )
        .bind(crm_id)
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(member).transpose()
    }

    /// Records a fetch (insert or update).
    pub async fn save_crm_member(&self, m: &CrmMember) -> Result<()> {
        sqlx::query(
            "INSERT INTO crm_members (crm_id, person_id, fetched_at, in_good_standing, revocation_code) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (crm_id) DO UPDATE SET person_id = excluded.person_id, fetched_at = excluded.fetched_at, \
             in_good_standing = excluded.in_good_standing, revocation_code = excluded.revocation_code",
        )
        .bind(&m.crm_id)
        .bind(&m.person_id)
        .bind(m.fetched_at)
        .bind(i64::from(m.in_good_standing))
        .bind(&m.revocation_code)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// When each CRM member still in the directory was fetched, by their person's key (what
    /// a decision knows): loaded once, so that deciding never asks the store.
    pub async fn crm_fetched(&self) -> Result<Vec<(Pk, i64)>> {
        let rows = sqlx::query(
            "SELECT p.pk, m.fetched_at FROM crm_members m JOIN people p ON p.id = m.person_id ORDER BY p.pk",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|r| Ok((r.try_get("pk")?, r.try_get("fetched_at")?))).collect()
    }
}
