//! Sites: the locations doors belong to. Not in the decision index (a door's site does
//! not change who may open it); written with an event like every directory change.

use lintel_proto::{NewSite, Site, SitePatch};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::directory::Tx;
use crate::events::NewEvent;
use crate::rows::time;
use crate::{IndexUpdate, Result, Store, StoreError, Written, conflict_on_unique, now_micros};

/// The site every lintel starts with, and where a door goes when none is named.
pub const DEFAULT_SITE: &str = "main";

const SITE_SELECT: &str = "SELECT s.id, s.name, s.time_zone, s.emergency_by, s.created_at, \
     (SELECT COUNT(*) FROM doors d WHERE d.site = s.id) AS doors FROM sites s";

fn site(row: &AnyRow) -> Result<Site> {
    Ok(Site {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        time_zone: row.try_get("time_zone")?,
        emergency_by: row.try_get("emergency_by")?,
        doors: u64::try_from(row.try_get::<i64, _>("doors")?).unwrap_or(0),
        created_at: time(row.try_get("created_at")?)?,
    })
}

async fn read_site(tx: &mut Tx, id: &str) -> Result<Site> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("{SITE_SELECT} WHERE s.id = $1")))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::not_found("site", id))?;
    site(&row)
}

/// Refuses a door's site that does not exist (the caller named it in the body: 422).
pub(crate) async fn check_site_exists(tx: &mut Tx, id: &str) -> Result<()> {
    let found: Option<i64> =
        sqlx::query_scalar("SELECT 1 FROM sites WHERE id = $1").bind(id).fetch_optional(&mut **tx).await?;
    found.map(|_| ()).ok_or_else(|| StoreError::Invalid(format!("there is no site {id:?}")))
}

impl Store {
    pub async fn create_site(&self, s: &NewSite) -> Result<Written<Site>> {
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO sites (id, name, time_zone, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&s.id)
            .bind(&s.name)
            .bind(&s.time_zone)
            .bind(now_micros())
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict_on_unique(e, || format!("a site with id {:?} exists already", s.id)))?;
        let created = read_site(&mut tx, &s.id).await?;
        let event = NewEvent::new("site.created").with("site", &s.id);
        self.finish(tx, created, IndexUpdate::Patch(Vec::new()), vec![event]).await
    }

    pub async fn site(&self, id: &str) -> Result<Site> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{SITE_SELECT} WHERE s.id = $1")))
            .bind(id)
            .fetch_optional(&self.read)
            .await?
            .ok_or_else(|| StoreError::not_found("site", id))?;
        site(&row)
    }

    pub async fn sites(&self) -> Result<Vec<Site>> {
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(format!("{SITE_SELECT} ORDER BY s.id"))).fetch_all(&self.read).await?;
        rows.iter().map(site).collect()
    }

    pub async fn patch_site(&self, id: &str, patch: &SitePatch) -> Result<Written<Site>> {
        let mut tx = self.begin().await?;
        let mut s = read_site(&mut tx, id).await?;
        let before = s.clone();
        if let Some(name) = &patch.name {
            s.name = name.clone();
        }
        if let Some(tz) = &patch.time_zone {
            s.time_zone = tz.clone();
        }
        sqlx::query("UPDATE sites SET name = $2, time_zone = $3 WHERE id = $1")
            .bind(id)
            .bind(&s.name)
            .bind(&s.time_zone)
            .execute(&mut *tx)
            .await?;
        let event = NewEvent::new("site.updated").with("site", id).changed(&before, &s);
        self.finish(tx, s, IndexUpdate::Patch(Vec::new()), vec![event]).await
    }

    /// Removes a site without doors; the default site stays (new doors go there).
    pub async fn delete_site(&self, id: &str) -> Result<Written<()>> {
        if id == DEFAULT_SITE {
            return Err(StoreError::Conflict(format!("{DEFAULT_SITE:?} is the default site; it stays")));
        }
        let mut tx = self.begin().await?;
        let s = read_site(&mut tx, id).await?;
        if s.doors > 0 {
            return Err(StoreError::Conflict(format!(
                "the site {id:?} still has {} door(s); move or remove them first",
                s.doors
            )));
        }
        // What is limited to the site keeps it.
        let limited = [
            ("SELECT COUNT(*) FROM webhook_endpoints WHERE site = $1", "webhook endpoint(s)", "change them first"),
            ("SELECT COUNT(*) FROM admin_tokens WHERE site = $1", "operator token(s)", "revoke them first"),
        ];
        for (count, what, mend) in limited {
            let n: i64 = sqlx::query_scalar(count).bind(id).fetch_one(&mut *tx).await?;
            if n > 0 {
                return Err(StoreError::Conflict(format!("{n} {what} are limited to the site {id:?}; {mend}")));
            }
        }
        sqlx::query("DELETE FROM sites WHERE id = $1").bind(id).execute(&mut *tx).await?;
        let event = NewEvent::new("site.deleted").with("site", id);
        self.finish(tx, (), IndexUpdate::Patch(Vec::new()), vec![event]).await
    }
}
