//! Groups as a provisioning system (SCIM) states them: whole, with its own id for each and
//! every member listed. Only groups the provider created are its to read and change (an
//! operator's groups and their grants are not), and only people it provisioned are members
//! it may name. Saving one replaces its name, that id and its members in one transaction,
//! and only when the group is still as the provider read it, so a PUT or PATCH is never
//! half applied and two at once never lose one another's change.

use std::collections::BTreeSet;

use lintel_core::Change;
use lintel_proto::Group;

use crate::directory::{Tx, group_pk, person_pk, read_group};
use crate::events::NewEvent;
use crate::{IndexUpdate, Result, Store, StoreError, Written, conflict_on_unique, now_micros};

/// A group, its provider's id and its members' person ids, by id.
#[derive(Debug, Clone, PartialEq)]
pub struct ScimGroupRow {
    pub group: Group,
    pub external_id: Option<String>,
    pub members: Vec<String>,
}

/// What a provider says a group is.
#[derive(Debug, Clone)]
pub struct ScimGroupRecord {
    pub id: String,
    pub name: String,
    pub external_id: Option<String>,
    /// Person ids.
    pub members: BTreeSet<String>,
}

impl Store {
    /// Every group with its provider's id and members, by id.
    pub async fn scim_groups(&self) -> Result<Vec<ScimGroupRow>> {
        let mut tx = self.read.begin().await?;
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM access_groups WHERE scim_managed = 1 ORDER BY id")
            .fetch_all(&mut *tx)
            .await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(scim_group_row(&mut tx, &id).await?);
        }
        Ok(out)
    }

    pub async fn scim_group(&self, id: &str) -> Result<ScimGroupRow> {
        let mut tx = self.read.begin().await?;
        scim_group_row(&mut tx, id).await
    }

    /// Creates the group (`read` is `None`), or replaces the name, provider id and members
    /// of the group as it was `read`: people not listed leave it, people listed join it. A
    /// group changed since it was read is a [`StoreError::Conflict`] (read it again).
    pub async fn save_scim_group(
        &self,
        g: &ScimGroupRecord,
        read: Option<&ScimGroupRow>,
    ) -> Result<Written<ScimGroupRow>> {
        let mut tx = self.begin().await?;
        let mut changes = Vec::new();
        let mut events = Vec::new();
        let pk = if read.is_none() {
            let pk: i64 = sqlx::query_scalar(
                "INSERT INTO access_groups (id, name, scim_managed, scim_external_id, created_at) \
                 VALUES ($1, $2, 1, $3, $4) RETURNING pk",
            )
            .bind(&g.id)
            .bind(&g.name)
            .bind(&g.external_id)
            .bind(now_micros())
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| conflict_on_unique(e, || format!("a group with id {:?} exists already", g.id)))?;
            events.push(NewEvent::new("group.created").with("group", &g.id).with("doors", Vec::<String>::new()));
            changes.push(read_group(&mut tx, pk).await?.1);
            pk
        } else {
            if read != Some(&scim_group_row(&mut tx, &g.id).await?) {
                return Err(StoreError::Conflict(format!("the group {:?} changed meanwhile", g.id)));
            }
            let pk = group_pk(&mut tx, &g.id).await?;
            let before: String =
                sqlx::query_scalar("SELECT name FROM access_groups WHERE pk = $1").bind(pk).fetch_one(&mut *tx).await?;
            sqlx::query("UPDATE access_groups SET name = $1, scim_external_id = $2 WHERE pk = $3")
                .bind(&g.name)
                .bind(&g.external_id)
                .bind(pk)
                .execute(&mut *tx)
                .await?;
            if before != g.name {
                events.push(NewEvent::new("group.renamed").with("group", &g.id).with("name", &g.name));
            }
            pk
        };
        let current: BTreeSet<String> = sqlx::query_scalar(
            "SELECT p.id FROM group_members m JOIN people p ON p.pk = m.person_pk WHERE m.group_pk = $1",
        )
        .bind(pk)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        for person in g.members.difference(&current) {
            let provisioned: Option<i64> = sqlx::query_scalar(
                "SELECT p.pk FROM people p JOIN external_ids x ON x.person_pk = p.pk \
                 WHERE p.id = $1 AND x.system = 'scim:userName'",
            )
            .bind(person)
            .fetch_optional(&mut *tx)
            .await?;
            let person_pk = provisioned
                .ok_or_else(|| StoreError::Invalid(format!("member {person:?} is not a user the provider made")))?;
            sqlx::query("INSERT INTO group_members (group_pk, person_pk, created_at) VALUES ($1, $2, $3)")
                .bind(pk)
                .bind(person_pk)
                .bind(now_micros())
                .execute(&mut *tx)
                .await?;
            changes.push(Change::Membership { group: pk, person: person_pk, member: true });
            events.push(NewEvent::new("group.member_added").person(person).with("group", &g.id));
        }
        for person in current.difference(&g.members) {
            let person_pk = person_pk(&mut tx, person).await?;
            sqlx::query("DELETE FROM group_members WHERE group_pk = $1 AND person_pk = $2")
                .bind(pk)
                .bind(person_pk)
                .execute(&mut *tx)
                .await?;
            changes.push(Change::Membership { group: pk, person: person_pk, member: false });
            events.push(NewEvent::new("group.member_removed").person(person).with("group", &g.id));
        }
        let row = scim_group_row(&mut tx, &g.id).await?;
        self.finish(tx, row, IndexUpdate::Patch(changes), events).await
    }
}

/// A group the provider made, by id; any other is not found.
async fn scim_group_row(tx: &mut Tx, id: &str) -> Result<ScimGroupRow> {
    let pk: i64 = sqlx::query_scalar("SELECT pk FROM access_groups WHERE id = $1 AND scim_managed = 1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound { what: "group", id: id.to_owned() })?;
    let (group, _) = read_group(tx, pk).await?;
    let external_id: Option<String> = sqlx::query_scalar("SELECT scim_external_id FROM access_groups WHERE pk = $1")
        .bind(pk)
        .fetch_one(&mut **tx)
        .await?;
    let members = sqlx::query_scalar(
        "SELECT p.id FROM group_members m JOIN people p ON p.pk = m.person_pk WHERE m.group_pk = $1 ORDER BY p.id",
    )
    .bind(pk)
    .fetch_all(&mut **tx)
    .await?;
    Ok(ScimGroupRow { group, external_id, members })
}
