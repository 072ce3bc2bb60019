//! Bulk import of people and their cards, a chunk per transaction. Each row is checked
//! against the store and the rest of its chunk before anything is written, so a rejected
//! row changes nothing; a re-run of the same file changes nothing either.

use std::collections::{BTreeSet, HashMap, HashSet};

use lintel_core::Pk;
use lintel_proto::PersonStatus;
use sqlx::AssertSqlSafe;
use sqlx::Row;

use crate::directory::query_in;
use crate::events::{NewEvent, insert};
use crate::{Result, Store, bump_version, now_micros};

/// One checked row of an import file.
#[derive(Debug, Clone)]
pub struct ImportRow {
    /// The line in the file, for the report.
    pub line: u64,
    pub id: String,
    pub name: String,
    pub email: Option<String>,
    /// Normalized hex UID, when the row has a card.
    pub card_uid: Option<String>,
    pub revocation_code: Option<String>,
    /// `None` when the file has no `groups` column: memberships stay as they are.
    pub groups: Option<BTreeSet<String>>,
    pub status: PersonStatus,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRow {
    pub line: u64,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub cards_issued: u64,
    pub cards_replaced: u64,
    pub memberships_added: u64,
    pub memberships_removed: u64,
    pub rejected: Vec<RejectedRow>,
}

impl ImportReport {
    pub fn add(&mut self, other: ImportReport) {
        self.created += other.created;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
        self.cards_issued += other.cards_issued;
        self.cards_replaced += other.cards_replaced;
        self.memberships_added += other.memberships_added;
        self.memberships_removed += other.memberships_removed;
        self.rejected.extend(other.rejected);
    }
}

struct Existing {
    pk: Pk,
    name: String,
    email: Option<String>,
    status: String,
}

enum CardAction {
    None,
    Issue,
    Replace(Pk),
}

impl Store {
    /// Imports one chunk (up to a few thousand rows) in one transaction.
    pub async fn import_chunk(&self, rows: &[ImportRow]) -> Result<ImportReport> {
        let mut report = ImportReport::default();
        if rows.is_empty() {
            return Ok(report);
        }
        let mut tx = self.begin().await?;
        let now = now_micros();

        let groups: HashMap<String, Pk> = sqlx::query("SELECT id, pk FROM access_groups")
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("pk")?)))
            .collect::<Result<_, sqlx::Error>>()?;

        let q = query_in(
            "SELECT pk, id, name, email, status FROM people WHERE id IN {IN}",
            rows.iter().map(|r| r.id.as_str()),
        );
        let mut existing: HashMap<String, Existing> = HashMap::new();
        for r in q.fetch_all(&mut *tx).await? {
            existing.insert(
                r.try_get("id")?,
                Existing {
                    pk: r.try_get("pk")?,
                    name: r.try_get("name")?,
                    email: r.try_get("email")?,
                    status: r.try_get("status")?,
                },
            );
        }

        let uids: Vec<&str> = rows.iter().filter_map(|r| r.card_uid.as_deref()).collect();
        let mut cards: HashMap<String, (Pk, Option<Pk>, Option<String>)> = HashMap::new();
        if !uids.is_empty() {
            let q = query_in(
                "SELECT pk, card_uid, person_pk, revocation_code FROM credentials WHERE status = 'active' AND card_uid IN {IN}",
                uids.iter().copied(),
            );
            for r in q.fetch_all(&mut *tx).await? {
                cards.insert(
                    r.try_get("card_uid")?,
                    (r.try_get("pk")?, r.try_get("person_pk")?, r.try_get("revocation_code")?),
                );
            }
        }

        // Check every row before writing any.
        let mut seen_ids = HashSet::new();
        let mut seen_uids = HashSet::new();
        let mut accepted: Vec<(&ImportRow, CardAction)> = Vec::new();
        for row in rows {
            let reject = |reason: String| RejectedRow { line: row.line, reason };
            if !seen_ids.insert(row.id.as_str()) {
                report.rejected.push(reject(format!("person {:?} appears twice in the file", row.id)));
                continue;
            }
            if let Some(unknown) = row.groups.iter().flatten().find(|g| !groups.contains_key(*g)) {
                report.rejected.push(reject(format!("unknown group {unknown:?} (create it first)")));
                continue;
            }
            let person = existing.get(&row.id).map(|e| e.pk);
            let action = match &row.card_uid {
                None => CardAction::None,
                Some(uid) => {
                    if !seen_uids.insert(uid.as_str()) {
                        report.rejected.push(reject(format!("card {uid} appears twice in the file")));
                        continue;
                    }
                    match cards.get(uid) {
                        None => CardAction::Issue,
                        Some((_, holder, _)) if holder.is_none() || *holder != person => {
                            report.rejected.push(reject(format!("card {uid} is already issued to another person")));
                            continue;
                        }
                        Some((_, _, code)) if *code == row.revocation_code => CardAction::None,
                        Some((pk, _, _)) => CardAction::Replace(*pk),
                    }
                }
            };
            accepted.push((row, action));
        }

        let mut pks: HashMap<&str, Pk> = HashMap::new();
        let mut new_rows = Vec::new();
        for (row, _) in &accepted {
            match existing.get(&row.id) {
                None => new_rows.push(*row),
                Some(e) => {
                    pks.insert(&row.id, e.pk);
                    if e.name != row.name || e.email != row.email || e.status != row.status.as_str() {
                        sqlx::query(
                            "UPDATE people SET name = $2, email = $3, status = $4, updated_at = $5 WHERE pk = $1",
                        )
                        .bind(e.pk)
                        .bind(&row.name)
                        .bind(&row.email)
                        .bind(row.status.as_str())
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                        report.updated += 1;
                    } else {
                        report.unchanged += 1;
                    }
                }
            }
        }
        for batch in new_rows.chunks(500) {
            let values: Vec<String> = (0..batch.len())
                .map(|i| {
                    let b = i * 4;
                    format!(
                        "(${}, ${}, ${}, ${}, ${}, ${})",
                        b + 1,
                        b + 2,
                        b + 3,
                        b + 4,
                        batch.len() * 4 + 1,
                        batch.len() * 4 + 1
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO people (id, name, email, status, created_at, updated_at) VALUES {} RETURNING pk, id",
                values.join(", ")
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for row in batch {
                q = q.bind(&row.id).bind(&row.name).bind(&row.email).bind(row.status.as_str());
            }
            let by_id: HashMap<&str, &ImportRow> = batch.iter().map(|row| (row.id.as_str(), *row)).collect();
            for r in q.bind(now).fetch_all(&mut *tx).await? {
                let id: String = r.try_get("id")?;
                let row = by_id[id.as_str()];
                pks.insert(&row.id, r.try_get("pk")?);
            }
            report.created += batch.len() as u64;
        }

        let mut new_cards: Vec<(Pk, &str, Option<&str>)> = Vec::new();
        for (row, action) in &accepted {
            let pk = pks[row.id.as_str()];
            match action {
                CardAction::None => {}
                CardAction::Issue => report.cards_issued += 1,
                CardAction::Replace(old) => {
                    sqlx::query("UPDATE credentials SET status = 'revoked', status_reason = 'replaced', revoked_at = $2 WHERE pk = $1")
                        .bind(*old)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    report.cards_replaced += 1;
                }
            }
            if !matches!(action, CardAction::None) {
                new_cards.push((
                    pk,
                    row.card_uid.as_deref().expect("card action implies a UID"),
                    row.revocation_code.as_deref(),
                ));
            }
        }
        for batch in new_cards.chunks(500) {
            let values: Vec<String> = (0..batch.len())
                .map(|i| {
                    format!(
                        "(${}, 'card', ${}, ${}, 'active', ${})",
                        i * 3 + 1,
                        i * 3 + 2,
                        i * 3 + 3,
                        batch.len() * 3 + 1
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO credentials (person_pk, kind, card_uid, revocation_code, status, created_at) VALUES {}",
                values.join(", ")
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for (pk, uid, code) in batch {
                q = q.bind(*pk).bind(*uid).bind(*code);
            }
            q.bind(now).execute(&mut *tx).await?;
        }

        // Memberships: the file is authoritative for the people it lists.
        let with_groups: Vec<(&ImportRow, Pk)> =
            accepted.iter().filter(|(r, _)| r.groups.is_some()).map(|(r, _)| (*r, pks[r.id.as_str()])).collect();
        if !with_groups.is_empty() {
            let q = query_in(
                "SELECT person_pk, group_pk FROM group_members WHERE person_pk IN {IN}",
                with_groups.iter().map(|(_, pk)| *pk),
            );
            let mut current: HashSet<(Pk, Pk)> = HashSet::new();
            for r in q.fetch_all(&mut *tx).await? {
                current.insert((r.try_get("person_pk")?, r.try_get("group_pk")?));
            }
            let mut added: Vec<(Pk, Pk)> = Vec::new();
            for (row, person) in &with_groups {
                let wanted: HashSet<Pk> = row.groups.iter().flatten().map(|g| groups[g]).collect();
                added.extend(wanted.iter().filter(|g| !current.contains(&(*person, **g))).map(|g| (*g, *person)));
                for (p, group) in current.iter().filter(|(p, _)| p == person) {
                    if !wanted.contains(group) {
                        sqlx::query("DELETE FROM group_members WHERE group_pk = $1 AND person_pk = $2")
                            .bind(*group)
                            .bind(*p)
                            .execute(&mut *tx)
                            .await?;
                        report.memberships_removed += 1;
                    }
                }
            }
            for batch in added.chunks(500) {
                let values: Vec<String> = (0..batch.len())
                    .map(|i| format!("(${}, ${}, ${})", i * 2 + 1, i * 2 + 2, batch.len() * 2 + 1))
                    .collect();
                let sql =
                    format!("INSERT INTO group_members (group_pk, person_pk, created_at) VALUES {}", values.join(", "));
                let mut q = sqlx::query(AssertSqlSafe(sql));
                for (group, person) in batch {
                    q = q.bind(*group).bind(*person);
                }
                q.bind(now).execute(&mut *tx).await?;
            }
            report.memberships_added += added.len() as u64;
        }

        let changed = report.created
            + report.updated
            + report.cards_issued
            + report.memberships_added
            + report.memberships_removed;
        if changed > 0 {
            let mut event = NewEvent::new("people.imported")
                .with("created", report.created)
                .with("updated", report.updated)
                .with("cards_issued", report.cards_issued)
                .with("cards_replaced", report.cards_replaced)
                .with("memberships_added", report.memberships_added)
                .with("memberships_removed", report.memberships_removed)
                .with("rejected", report.rejected.len());
            event.actor = self.actor.as_deref().map(str::to_owned);
            insert(&mut tx, &event).await?;
            // Many people at once: others reload rather than patch.
            bump_version(&mut tx, &crate::IndexUpdate::Reload).await?;
        }
        tx.commit().await?;
        Ok(report)
    }
}
