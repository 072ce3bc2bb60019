//! People, credentials, doors, groups and grants: every write is one transaction that
//! appends its event, bumps the directory version and reads back its index changes.

use std::collections::{BTreeMap, HashMap};

use lintel_core::{Change, CompiledSchedule, DoorSet, IndexGrant, IndexGroup, Pk, Subject};
use lintel_proto::{
    Credential, CredentialKind, Door, DoorPatch, Grant, Group, NewDoor, NewPerson, PassLasts, Person, PersonPatch,
    PersonStatus, Schedule,
};
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::changes::Touched;
use crate::events::{NewEvent, insert};
use crate::rows::{self, CREDENTIAL_COLUMNS, CREDENTIAL_FROM, DOOR_COLUMNS, PERSON_COLUMNS, json, to_json};
use crate::sites::{DEFAULT_SITE, check_site_exists};
use crate::{IndexUpdate, Result, Store, StoreError, Written, bump_version, conflict_on_unique, now_micros};

pub(crate) type Tx = Transaction<'static, Any>;

/// Filters of the people listing; `after` is the cursor (a row key).
#[derive(Debug, Clone, Default)]
pub struct PersonFilter {
    pub email: Option<String>,
    pub phone: Option<String>,
    pub external_id: Option<(String, String)>,
    /// People with an external id in this system.
    pub system: Option<String>,
    pub q: Option<String>,
    pub after: Option<Pk>,
    pub limit: i64,
}

/// A credential to store, its secret parts already digested by the caller.
#[derive(Debug, Clone)]
pub struct NewCredentialRecord {
    pub kind: CredentialKind,
    pub card_uid: Option<String>,
    pub revocation_code: Option<String>,
    pub digest: Option<String>,
}

/// Whether a membership call changed anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberChange {
    Added,
    Removed,
    Unchanged,
}

/// A grant to store, references already named by id.
#[derive(Debug, Clone, Default)]
pub struct NewGrantRecord {
    pub person_id: Option<String>,
    pub group_id: Option<String>,
    pub doors: Option<Vec<String>>,
    pub door_group: Option<String>,
    pub schedule: Option<Schedule>,
    pub valid_from: Option<i64>,
    pub valid_until: Option<i64>,
    pub passes: Option<u32>,
    pub pass_lasts: PassLasts,
    pub source: Option<String>,
}

pub(crate) async fn person_pk(tx: &mut Tx, id: &str) -> Result<Pk> {
    sqlx::query_scalar("SELECT pk FROM people WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::not_found("person", id))
}

pub(crate) async fn door_pk(tx: &mut Tx, id: &str) -> Result<Pk> {
    sqlx::query_scalar("SELECT pk FROM doors WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::not_found("door", id))
}

pub(crate) async fn group_pk(tx: &mut Tx, id: &str) -> Result<Pk> {
    sqlx::query_scalar("SELECT pk FROM access_groups WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::not_found("group", id))
}

/// A query whose `{IN}` becomes `($1, $2, ...)`, bound to `values` in order. Only the
/// placeholders are spliced into the SQL; the values travel as parameters. Callers pass
/// at least one value (`IN ()` is not SQL).
pub(crate) fn query_in<'q, V>(
    sql: &str,
    values: impl IntoIterator<Item = V>,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>
where
    V: 'q + Send + sqlx::Encode<'q, Any> + sqlx::Type<Any>,
{
    let values: Vec<V> = values.into_iter().collect();
    let list: Vec<String> = (1..=values.len()).map(|i| format!("${i}")).collect();
    let mut query = sqlx::query(AssertSqlSafe(sql.replace("{IN}", &format!("({})", list.join(", ")))));
    for value in values {
        query = query.bind(value);
    }
    query
}

fn base_person(row: &AnyRow) -> Result<(Pk, Person)> {
    Ok((
        row.try_get("pk")?,
        Person {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            email: row.try_get("email")?,
            phone: row.try_get("phone")?,
            email_verified: row.try_get::<i64, _>("email_verified")? != 0,
            phone_verified: row.try_get::<i64, _>("phone_verified")? != 0,
            external_ids: BTreeMap::new(),
            status: rows::person_status(&row.try_get::<String, _>("status")?)?,
            skills: json(&row.try_get::<String, _>("skills")?)?,
            attributes: json(&row.try_get::<String, _>("attributes")?)?,
            groups: Vec::new(),
            created_at: rows::time(row.try_get("created_at")?)?,
            updated_at: rows::time(row.try_get("updated_at")?)?,
        },
    ))
}

/// Fills in external ids and groups for people read from their table.
async fn complete_people(exec: &mut sqlx::AnyConnection, people: &mut [(Pk, Person)]) -> Result<()> {
    if people.is_empty() {
        return Ok(());
    }
    let pks: Vec<Pk> = people.iter().map(|(pk, _)| *pk).collect();
    let by_pk: HashMap<Pk, usize> = pks.iter().enumerate().map(|(i, pk)| (*pk, i)).collect();
    let ids = query_in(
        "SELECT person_pk, system, external_id FROM external_ids WHERE person_pk IN {IN} ORDER BY system",
        pks.iter().copied(),
    );
    for row in ids.fetch_all(&mut *exec).await? {
        let i = by_pk[&row.try_get::<i64, _>("person_pk")?];
        people[i].1.external_ids.insert(row.try_get("system")?, row.try_get("external_id")?);
    }
    let groups = query_in(
        "SELECT m.person_pk, g.id FROM group_members m JOIN access_groups g ON g.pk = m.group_pk \
         WHERE m.person_pk IN {IN} ORDER BY g.id",
        pks.iter().copied(),
    );
    for row in groups.fetch_all(&mut *exec).await? {
        let i = by_pk[&row.try_get::<i64, _>("person_pk")?];
        people[i].1.groups.push(row.try_get("id")?);
    }
    Ok(())
}

async fn read_person(tx: &mut Tx, pk: Pk) -> Result<(Person, Change)> {
    let row = sqlx::query(AssertSqlSafe(format!("SELECT {PERSON_COLUMNS} FROM people WHERE pk = $1")))
        .bind(pk)
        .fetch_one(&mut **tx)
        .await?;
    let (_, index) = rows::index_person(&row)?;
    let mut people = vec![base_person(&row)?];
    complete_people(tx, &mut people).await?;
    Ok((people.pop().expect("one person").1, Change::Person(pk, Some(index))))
}

async fn write_external_ids(tx: &mut Tx, pk: Pk, ids: &BTreeMap<String, String>) -> Result<()> {
    sqlx::query("DELETE FROM external_ids WHERE person_pk = $1").bind(pk).execute(&mut **tx).await?;
    for (system, id) in ids {
        sqlx::query("INSERT INTO external_ids (system, external_id, person_pk) VALUES ($1, $2, $3)")
            .bind(system)
            .bind(id)
            .bind(pk)
            .execute(&mut **tx)
            .await
            .map_err(|e| conflict_on_unique(e, || format!("another person already has the {system} id {id:?}")))?;
    }
    Ok(())
}

async fn read_credential(tx: &mut Tx, pk: Pk) -> Result<(Credential, Change)> {
    let row = sqlx::query(AssertSqlSafe(format!("SELECT {CREDENTIAL_COLUMNS} FROM {CREDENTIAL_FROM} WHERE c.pk = $1")))
        .bind(pk)
        .fetch_one(&mut **tx)
        .await?;
    let (key, index) = rows::index_credential(&row)?;
    Ok((rows::credential(&row)?, Change::Credential(key, index)))
}

pub(crate) async fn read_group(tx: &mut Tx, pk: Pk) -> Result<(Group, Change)> {
    let row = sqlx::query("SELECT pk, id, name FROM access_groups WHERE pk = $1").bind(pk).fetch_one(&mut **tx).await?;
    let doors = sqlx::query(
        "SELECT d.pk, d.id FROM group_doors gd JOIN doors d ON d.pk = gd.door_pk WHERE gd.group_pk = $1 ORDER BY d.id",
    )
    .bind(pk)
    .fetch_all(&mut **tx)
    .await?;
    let members: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM group_members WHERE group_pk = $1")
        .bind(pk)
        .fetch_one(&mut **tx)
        .await?;
    let id: String = row.try_get("id")?;
    let door_pks = doors.iter().map(|d| d.try_get::<i64, _>("pk")).collect::<Result<Box<[Pk]>, _>>()?;
    let group = Group {
        id: id.clone(),
        name: row.try_get("name")?,
        doors: doors.iter().map(|d| d.try_get("id")).collect::<Result<_, _>>()?,
        members: members as u64,
    };
    Ok((group, Change::Group(pk, Some(IndexGroup { id: id.into(), doors: door_pks }))))
}

pub(crate) const GRANT_SELECT: &str = "SELECT g.pk, g.person_pk, g.group_pk, g.door_group_pk, g.has_doors, g.schedule, \
     g.valid_from, g.valid_until, g.passes, g.passes_used, g.pass_lasts, g.checked_in_until, g.source, g.created_at, \
     p.id AS person_id, ag.id AS group_id, dg.id AS door_group_id \
     FROM grants g LEFT JOIN people p ON p.pk = g.person_pk LEFT JOIN access_groups ag ON ag.pk = g.group_pk \
     LEFT JOIN access_groups dg ON dg.pk = g.door_group_pk";

/// Reads a grant row (from [`GRANT_SELECT`]) and its doors into the API form and the index form.
pub(crate) fn grant_from_row(row: &AnyRow, doors: Vec<(Pk, String)>) -> Result<(Grant, IndexGrant)> {
    let pk: Pk = row.try_get("pk")?;
    let schedule: Option<Schedule> = row.try_get::<Option<String>, _>("schedule")?.as_deref().map(json).transpose()?;
    let compiled = schedule
        .as_ref()
        .map(CompiledSchedule::compile)
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("grant {pk} schedule: {e}")))?;
    let person: Option<Pk> = row.try_get("person_pk")?;
    let group: Option<Pk> = row.try_get("group_pk")?;
    let door_group: Option<Pk> = row.try_get("door_group_pk")?;
    let has_doors = row.try_get::<i64, _>("has_doors")? != 0;
    let valid_from: Option<i64> = row.try_get("valid_from")?;
    let valid_until: Option<i64> = row.try_get("valid_until")?;
    let passes = row.try_get::<Option<i64>, _>("passes")?.map(|p| u32::try_from(p).unwrap_or(u32::MAX));
    let passes_used = u32::try_from(row.try_get::<i64, _>("passes_used")?).unwrap_or(u32::MAX);
    let pass_lasts = match row.try_get::<Option<String>, _>("pass_lasts")? {
        None => PassLasts::Entry,
        Some(s) => {
            PassLasts::from_stored(&s).ok_or_else(|| StoreError::Corrupt(format!("grant {pk} pass_lasts {s:?}")))?
        }
    };
    let checked_in_until: Option<i64> = row.try_get("checked_in_until")?;
    let subject = match (person, group) {
        (Some(p), None) => Subject::Person(p),
        (None, Some(g)) => Subject::Group(g),
        _ => return Err(StoreError::Corrupt(format!("grant {pk} has no single subject"))),
    };
    let door_set = match (has_doors, door_group) {
        (true, _) => DoorSet::Doors(doors.iter().map(|(pk, _)| *pk).collect()),
        (false, Some(g)) => DoorSet::Group(g),
        (false, None) => DoorSet::SubjectGroup,
    };
    let grant = Grant {
        id: rows::grant_id(pk),
        person_id: row.try_get("person_id")?,
        group_id: row.try_get("group_id")?,
        doors: has_doors.then(|| doors.into_iter().map(|(_, id)| id).collect()),
        door_group: row.try_get("door_group_id")?,
        schedule,
        valid_from: rows::opt_time(valid_from)?,
        valid_until: rows::opt_time(valid_until)?,
        passes,
        passes_used,
        pass_lasts,
        checked_in_until: rows::opt_time(checked_in_until)?,
        source: row.try_get("source")?,
        created_at: rows::time(row.try_get("created_at")?)?,
    };
    let index = IndexGrant {
        pk,
        subject,
        doors: door_set,
        schedule: compiled,
        valid_from: valid_from.unwrap_or(i64::MIN),
        valid_until: valid_until.unwrap_or(i64::MAX),
        passes,
        passes_used,
        pass_lasts,
        checked_in_until: checked_in_until.unwrap_or(i64::MIN),
    };
    Ok((grant, index))
}

pub(crate) async fn read_grants(
    exec: &mut sqlx::AnyConnection,
    filter: &str,
    bind: Option<Pk>,
) -> Result<Vec<(Grant, IndexGrant)>> {
    let sql = format!("{GRANT_SELECT} {filter} ORDER BY g.pk");
    let rows = match bind {
        Some(b) => sqlx::query(AssertSqlSafe(sql)).bind(b).fetch_all(&mut *exec).await?,
        None => sqlx::query(AssertSqlSafe(sql)).fetch_all(&mut *exec).await?,
    };
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let pk: Pk = row.try_get("pk")?;
        let doors = sqlx::query("SELECT d.pk, d.id FROM grant_doors gd JOIN doors d ON d.pk = gd.door_pk WHERE gd.grant_pk = $1 ORDER BY d.id")
            .bind(pk)
            .fetch_all(&mut *exec)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("pk")?, r.try_get("id")?)))
            .collect::<Result<Vec<_>>>()?;
        out.push(grant_from_row(&row, doors)?);
    }
    Ok(out)
}

/// Adds a person in `tx`, with the index change and the event that say so.
pub(crate) async fn insert_person(
    tx: &mut Tx,
    p: &NewPerson,
    id: &str,
    changes: &mut Vec<Change>,
    events: &mut Vec<NewEvent>,
) -> Result<Person> {
    let now = now_micros();
    let pk: Pk = sqlx::query_scalar(
        "INSERT INTO people (id, name, email, phone, email_verified, phone_verified, status, skills, attributes, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING pk",
    )
    .bind(id)
    .bind(&p.name)
    .bind(&p.email)
    .bind(&p.phone)
    .bind(i64::from(p.email_verified))
    .bind(i64::from(p.phone_verified))
    .bind(p.status.as_str())
    .bind(to_json(&p.skills))
    .bind(to_json(&p.attributes))
    .bind(now)
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| conflict_on_unique(e, || format!("a person with id {id:?} exists already")))?;
    write_external_ids(tx, pk, &p.external_ids).await?;
    let (person, change) = read_person(tx, pk).await?;
    events.push(NewEvent::new("person.created").person(id).with("name", &person.name));
    changes.push(change);
    Ok(person)
}

/// Adds a grant in `tx`, with the index change and the event that say so.
pub(crate) async fn insert_grant(
    tx: &mut Tx,
    g: &NewGrantRecord,
    changes: &mut Vec<Change>,
    events: &mut Vec<NewEvent>,
) -> Result<Grant> {
    let person = match &g.person_id {
        Some(id) => Some(person_pk(tx, id).await?),
        None => None,
    };
    let group = match &g.group_id {
        Some(id) => Some(group_pk(tx, id).await?),
        None => None,
    };
    let door_group = match &g.door_group {
        Some(id) => Some(group_pk(tx, id).await?),
        None => None,
    };
    let mut door_pks = Vec::new();
    for door in g.doors.iter().flatten() {
        door_pks.push(door_pk(tx, door).await?);
    }
    let pk: Pk = sqlx::query_scalar(
        "INSERT INTO grants (person_pk, group_pk, door_group_pk, has_doors, schedule, valid_from, valid_until, passes, \
         pass_lasts, source, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING pk",
    )
    .bind(person)
    .bind(group)
    .bind(door_group)
    .bind(i64::from(g.doors.is_some()))
    .bind(g.schedule.as_ref().map(to_json))
    .bind(g.valid_from)
    .bind(g.valid_until)
    .bind(g.passes.map(i64::from))
    .bind((g.pass_lasts != PassLasts::Entry).then(|| g.pass_lasts.stored()))
    .bind(&g.source)
    .bind(now_micros())
    .fetch_one(&mut **tx)
    .await?;
    for door in door_pks {
        sqlx::query("INSERT INTO grant_doors (grant_pk, door_pk) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(pk)
            .bind(door)
            .execute(&mut **tx)
            .await?;
    }
    let (grant, index) = read_grants(tx, "WHERE g.pk = $1", Some(pk)).await?.pop().expect("grant just written");
    let mut event = NewEvent::new("grant.created").grant(&grant.id);
    event.person_id = grant.person_id.clone();
    if let Some(group) = &grant.group_id {
        event = event.with("group", group);
    }
    events.push(event);
    changes.push(Change::Grant(pk, Some(index)));
    Ok(grant)
}

/// Removes a person in `tx`; their credentials stay on record, revoked.
pub(crate) async fn remove_person(
    tx: &mut Tx,
    id: &str,
    changes: &mut Vec<Change>,
    events: &mut Vec<NewEvent>,
) -> Result<()> {
    let pk = person_pk(tx, id).await?;
    let now = now_micros();
    let live: Vec<Pk> = sqlx::query_scalar("SELECT pk FROM credentials WHERE person_pk = $1 AND status = 'active'")
        .bind(pk)
        .fetch_all(&mut **tx)
        .await?;
    sqlx::query(
        "UPDATE credentials SET status = 'revoked', status_reason = 'person deleted', revoked_at = $2 \
         WHERE person_pk = $1 AND status = 'active'",
    )
    .bind(pk)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    let groups: Vec<Pk> = sqlx::query_scalar("SELECT group_pk FROM group_members WHERE person_pk = $1")
        .bind(pk)
        .fetch_all(&mut **tx)
        .await?;
    let grants: Vec<Pk> =
        sqlx::query_scalar("SELECT pk FROM grants WHERE person_pk = $1").bind(pk).fetch_all(&mut **tx).await?;
    sqlx::query("DELETE FROM people WHERE pk = $1").bind(pk).execute(&mut **tx).await?;
    changes.push(Change::Person(pk, None));
    for c in &live {
        changes.push(read_credential(tx, *c).await?.1);
    }
    changes.extend(groups.into_iter().map(|group| Change::Membership { group, person: pk, member: false }));
    changes.extend(grants.into_iter().map(|g| Change::Grant(g, None)));
    let event = NewEvent::new("person.deleted").person(id).with("credentials_revoked", live.len());
    events.push(event);
    Ok(())
}

impl Store {
    /// Ends a directory write: its events (each naming who made it, when this store acts
    /// for someone), the change feed's entry, the commit.
    pub(crate) async fn finish<T>(
        &self,
        mut tx: Tx,
        value: T,
        index: IndexUpdate,
        events: Vec<NewEvent>,
    ) -> Result<Written<T>> {
        let mut stored = Vec::with_capacity(events.len());
        for mut e in events {
            if e.actor.is_none() {
                e.actor = self.actor.as_deref().map(str::to_owned);
            }
            stored.push(insert(&mut tx, &e).await?);
        }
        let version = bump_version(&mut tx, &index).await?;
        tx.commit().await?;
        Ok(Written { value, index, events: stored, version })
    }
}

/// `token` in place of `id` in the events, their index by person and the attendance
/// entries; the events' details emptied (they can name the person). How many events.
async fn pseudonymise(tx: &mut Tx, id: &str, token: &str) -> Result<u64> {
    let events = sqlx::query("UPDATE events SET person_id = $2, data = '{}' WHERE person_id = $1")
        .bind(id)
        .bind(token)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    for table in ["event_people", "attendance_entries"] {
        sqlx::query(AssertSqlSafe(format!("UPDATE {table} SET person_id = $2 WHERE person_id = $1")))
            .bind(id)
            .bind(token)
            .execute(&mut **tx)
            .await?;
    }
    Ok(events)
}

impl Store {
    pub async fn create_person(&self, p: &NewPerson, id: &str) -> Result<Written<Person>> {
        let mut tx = self.begin().await?;
        let (mut changes, mut events) = (Vec::new(), Vec::new());
        let person = insert_person(&mut tx, p, id, &mut changes, &mut events).await?;
        self.finish(tx, person, IndexUpdate::Patch(changes), events).await
    }

    pub async fn person(&self, id: &str) -> Result<Person> {
        let row = sqlx::query(AssertSqlSafe(format!("SELECT {PERSON_COLUMNS} FROM people WHERE id = $1")))
            .bind(id)
            .fetch_optional(&self.read)
            .await?
            .ok_or_else(|| StoreError::not_found("person", id))?;
        let mut people = vec![base_person(&row)?];
        complete_people(&mut *self.read.acquire().await?, &mut people).await?;
        Ok(people.pop().expect("one person").1)
    }

    /// The ids of the people whose attributes name `key` (a coarse match on the stored
    /// JSON; the caller reads the value).
    pub async fn people_with_attribute(&self, key: &str) -> Result<Vec<String>> {
        let pattern = format!("%{}%", serde_json::Value::String(key.to_owned()));
        Ok(sqlx::query_scalar("SELECT id FROM people WHERE attributes LIKE $1")
            .bind(pattern)
            .fetch_all(&self.read)
            .await?)
    }

    /// The key a person has in the decision index (for deciding on a person's own authority).
    pub async fn person_pk(&self, id: &str) -> Result<Option<Pk>> {
        Ok(sqlx::query_scalar("SELECT pk FROM people WHERE id = $1").bind(id).fetch_optional(&self.read).await?)
    }

    /// A person's display name by their key in the decision index (what a station shows).
    pub async fn person_name(&self, pk: Pk) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT name FROM people WHERE pk = $1").bind(pk).fetch_optional(&self.read).await?)
    }

    pub async fn people(&self, f: &PersonFilter) -> Result<(Vec<Person>, Option<String>)> {
        let mut sql = format!("SELECT {PERSON_COLUMNS} FROM people WHERE pk > $1");
        let mut binds: Vec<String> = Vec::new();
        if let Some(email) = &f.email {
            binds.push(email.to_lowercase());
            sql.push_str(&format!(" AND lower(email) = ${}", binds.len() + 1));
        }
        if let Some(phone) = &f.phone {
            binds.push(phone.clone());
            sql.push_str(&format!(" AND phone = ${}", binds.len() + 1));
        }
        if let Some((system, id)) = &f.external_id {
            binds.push(system.clone());
            binds.push(id.clone());
            sql.push_str(&format!(
                " AND pk IN (SELECT person_pk FROM external_ids WHERE system = ${} AND external_id = ${})",
                binds.len(),
                binds.len() + 1
            ));
        }
        if let Some(system) = &f.system {
            binds.push(system.clone());
            sql.push_str(&format!(
                " AND pk IN (SELECT person_pk FROM external_ids WHERE system = ${})",
                binds.len() + 1
            ));
        }
        if let Some(q) = &f.q {
            let escaped = q.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
            binds.push(format!("%{escaped}%"));
            let n = binds.len() + 1;
            sql.push_str(&format!(
                " AND (lower(name) LIKE ${n} ESCAPE '\\' OR lower(COALESCE(email, '')) LIKE ${n} ESCAPE '\\' OR lower(id) LIKE ${n} ESCAPE '\\')"
            ));
        }
        let limit = f.limit.clamp(1, 500);
        sql.push_str(&format!(" ORDER BY pk LIMIT {}", limit + 1));
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(f.after.unwrap_or(0));
        for b in &binds {
            q = q.bind(b);
        }
        let rows = q.fetch_all(&self.read).await?;
        let mut people = rows.iter().take(limit as usize).map(base_person).collect::<Result<Vec<_>>>()?;
        complete_people(&mut *self.read.acquire().await?, &mut people).await?;
        let next = (rows.len() as i64 > limit).then(|| people.last().map(|(pk, _)| pk.to_string())).flatten();
        Ok((people.into_iter().map(|(_, p)| p).collect(), next))
    }

    pub async fn patch_person(&self, id: &str, patch: &PersonPatch) -> Result<Written<Person>> {
        let mut tx = self.begin().await?;
        let pk = person_pk(&mut tx, id).await?;
        let (mut p, _) = read_person(&mut tx, pk).await?;
        let before = p.clone();
        if let Some(v) = &patch.name {
            p.name = v.clone();
        }
        if let Some(v) = &patch.email {
            p.email = v.clone();
        }
        if let Some(v) = &patch.phone {
            p.phone = v.clone();
        }
        if let Some(v) = patch.email_verified {
            p.email_verified = v;
        }
        if let Some(v) = patch.phone_verified {
            p.phone_verified = v;
        }
        if let Some(v) = patch.status {
            p.status = v;
        }
        if let Some(v) = &patch.skills {
            p.skills = v.clone();
        }
        if let Some(v) = &patch.attributes {
            for (k, value) in v {
                if value.is_null() {
                    p.attributes.remove(k);
                } else {
                    p.attributes.insert(k.clone(), value.clone());
                }
            }
        }
        sqlx::query(
            "UPDATE people SET name = $2, email = $3, phone = $4, email_verified = $5, phone_verified = $6, status = $7, \
             skills = $8, attributes = $9, updated_at = $10 WHERE pk = $1",
        )
        .bind(pk)
        .bind(&p.name)
        .bind(&p.email)
        .bind(&p.phone)
        .bind(i64::from(p.email_verified))
        .bind(i64::from(p.phone_verified))
        .bind(p.status.as_str())
        .bind(to_json(&p.skills))
        .bind(to_json(&p.attributes))
        .bind(now_micros())
        .execute(&mut *tx)
        .await?;
        if let Some(ids) = &patch.external_ids {
            write_external_ids(&mut tx, pk, ids).await?;
        }
        let (person, change) = read_person(&mut tx, pk).await?;
        let mut event = NewEvent::new("person.updated").person(id).changed(&before, &person);
        if patch.status == Some(PersonStatus::Suspended) {
            event = event.with("status", "suspended");
        }
        self.finish(tx, person, IndexUpdate::Patch(vec![change]), vec![event]).await
    }

    /// Removes a person; their credentials stay on record, revoked, so that a card
    /// presented later is answered `credential_revoked` rather than `unknown_credential`.
    pub async fn delete_person(&self, id: &str) -> Result<Written<()>> {
        let mut tx = self.begin().await?;
        let (mut changes, mut events) = (Vec::new(), Vec::new());
        remove_person(&mut tx, id, &mut changes, &mut events).await?;
        self.finish(tx, (), IndexUpdate::Patch(changes), events).await
    }

    /// Erases a person (`lintel person forget`): the person with their contacts, external
    /// ids, keys, memberships and grants; their credentials deleted, not just revoked; the
    /// other systems' links to them. Their events, the events' index by person and their
    /// attendance entries carry `token` in place of their id, the events' details emptied
    /// (they can name them). A `person.forgotten` event under the token records the
    /// erasure. Returns how many events were pseudonymised.
    pub async fn forget_person(&self, id: &str, token: &str) -> Result<Written<u64>> {
        let mut tx = self.begin().await?;
        let pk = person_pk(&mut tx, id).await?;
        sqlx::query("DELETE FROM credentials WHERE person_pk = $1").bind(pk).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM people WHERE pk = $1").bind(pk).execute(&mut *tx).await?;
        for table in ["cobot_members", "cobot_bookings", "crm_members", "lockcloud_users"] {
            sqlx::query(AssertSqlSafe(format!("DELETE FROM {table} WHERE person_id = $1")))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let events = pseudonymise(&mut tx, id, token).await?;
        let event = NewEvent::new("person.forgotten").person(token).with("events_pseudonymised", events);
        // Rare, and it touches credentials, memberships and grants at once: reload.
        self.finish(tx, events, IndexUpdate::Reload, vec![event]).await
    }

    /// Puts `token` in place of a forgotten person's id in events written since
    /// [`Store::forget_person`] (decisions by nodes that had not yet seen the erasure).
    pub async fn pseudonymise_events(&self, id: &str, token: &str) -> Result<u64> {
        let mut tx = self.begin().await?;
        let events = pseudonymise(&mut tx, id, token).await?;
        tx.commit().await?;
        Ok(events)
    }

    pub async fn issue_credential(
        &self,
        person_id: &str,
        c: &crate::NewCredentialRecord,
    ) -> Result<Written<Credential>> {
        let written = self.issue_credentials(person_id, std::slice::from_ref(c)).await?;
        let Written { value, index, events, version } = written;
        Ok(Written { value: value.into_iter().next().expect("one credential issued"), index, events, version })
    }

    /// Issues several credentials in one transaction: all of them, or none.
    pub async fn issue_credentials(
        &self,
        person_id: &str,
        records: &[crate::NewCredentialRecord],
    ) -> Result<Written<Vec<Credential>>> {
        let mut tx = self.begin().await?;
        let person = person_pk(&mut tx, person_id).await?;
        let now = now_micros();
        let mut changes = Vec::new();
        let mut events = Vec::new();
        let mut issued = Vec::with_capacity(records.len());
        for c in records {
            issued.push(issue_in(&mut tx, person, person_id, c, now, &mut changes, &mut events).await?);
        }
        self.finish(tx, issued, IndexUpdate::Patch(changes), events).await
    }

    pub async fn revoke_credential(&self, id: &str, reason: &str) -> Result<Written<Credential>> {
        let pk = rows::parse_credential_id(id).ok_or_else(|| StoreError::not_found("credential", id))?;
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE credentials SET status = 'revoked', status_reason = $2, revoked_at = $3 WHERE pk = $1 AND status = 'active'",
        )
        .bind(pk)
        .bind(reason)
        .bind(now_micros())
        .execute(&mut *tx)
        .await?;
        let exists: Option<Pk> =
            sqlx::query_scalar("SELECT pk FROM credentials WHERE pk = $1").bind(pk).fetch_optional(&mut *tx).await?;
        if exists.is_none() {
            return Err(StoreError::not_found("credential", id));
        }
        let (credential, change) = read_credential(&mut tx, pk).await?;
        let mut events = Vec::new();
        if done.rows_affected() == 1 {
            let mut e = NewEvent::new("credential.revoked").credential(id).with("reason", reason);
            e.person_id = credential.person_id.clone();
            events.push(e);
        }
        self.finish(tx, credential, IndexUpdate::Patch(vec![change]), events).await
    }

    pub async fn credential(&self, id: &str) -> Result<Credential> {
        let pk = rows::parse_credential_id(id).ok_or_else(|| StoreError::not_found("credential", id))?;
        let row =
            sqlx::query(AssertSqlSafe(format!("SELECT {CREDENTIAL_COLUMNS} FROM {CREDENTIAL_FROM} WHERE c.pk = $1")))
                .bind(pk)
                .fetch_optional(&self.read)
                .await?
                .ok_or_else(|| StoreError::not_found("credential", id))?;
        rows::credential(&row)
    }

    /// Each person's first active card (by when it was issued): its UID and revocation
    /// code, by person id (the people export).
    pub async fn active_cards(&self) -> Result<std::collections::HashMap<String, (String, Option<String>)>> {
        let rows = sqlx::query(
            "SELECT p.id AS person_id, c.card_uid, c.revocation_code FROM credentials c \
             JOIN people p ON p.pk = c.person_pk WHERE c.kind = 'card' AND c.status = 'active' ORDER BY c.pk DESC",
        )
        .fetch_all(&self.read)
        .await?;
        let mut cards = std::collections::HashMap::new();
        for r in rows {
            // Newest first: the oldest card is inserted last and stays.
            cards.insert(r.try_get("person_id")?, (r.try_get("card_uid")?, r.try_get("revocation_code")?));
        }
        Ok(cards)
    }

    pub async fn person_credentials(&self, person_id: &str) -> Result<Vec<Credential>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM {CREDENTIAL_FROM} WHERE p.id = $1 ORDER BY c.pk"
        )))
        .bind(person_id)
        .fetch_all(&self.read)
        .await?;
        if rows.is_empty() {
            self.person(person_id).await?;
        }
        rows.iter().map(rows::credential).collect()
    }

    pub async fn create_door(&self, d: &NewDoor, open_seconds: u32) -> Result<Written<Door>> {
        const DEFAULT_HELD_OPEN_SECONDS: u32 = 30;
        let mut tx = self.begin().await?;
        let now = now_micros();
        let site = d.site.as_deref().unwrap_or(DEFAULT_SITE);
        check_site_exists(&mut tx, site).await?;
        let pk: Pk = sqlx::query_scalar(
            "INSERT INTO doors (id, name, driver, fail_mode, required_skill, open_seconds, attendance, site, \
             unlock_schedule, egress, held_open_seconds, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $10, $11, $12, $9, $9) RETURNING pk",
        )
        .bind(&d.id)
        .bind(&d.name)
        .bind(to_json(&d.driver))
        .bind(d.fail_mode.as_str())
        .bind(&d.required_skill)
        .bind(i64::from(open_seconds))
        .bind(i64::from(d.attendance.unwrap_or(true)))
        .bind(site)
        .bind(now)
        .bind(d.unlock_schedule.as_ref().map(to_json))
        .bind(i64::from(d.egress.unwrap_or(false)))
        .bind(i64::from(d.held_open_seconds.unwrap_or(DEFAULT_HELD_OPEN_SECONDS)))
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| conflict_on_unique(e, || format!("a door with id {:?} exists already", d.id)))?;
        let (door, change) = read_door(&mut tx, pk).await?;
        let event = NewEvent::new("door.created").door(&d.id).with("driver", d.driver.kind()).with("site", site);
        self.finish(tx, door, IndexUpdate::Patch(vec![change]), vec![event]).await
    }

    pub async fn door(&self, id: &str) -> Result<Door> {
        let row = sqlx::query(AssertSqlSafe(format!("SELECT {DOOR_COLUMNS} FROM doors WHERE id = $1")))
            .bind(id)
            .fetch_optional(&self.read)
            .await?
            .ok_or_else(|| StoreError::not_found("door", id))?;
        rows::door(&row)
    }

    /// Every door, or a site's.
    pub async fn doors(&self, site: Option<&str>) -> Result<Vec<Door>> {
        let rows = match site {
            None => {
                sqlx::query(AssertSqlSafe(format!("SELECT {DOOR_COLUMNS} FROM doors ORDER BY id")))
                    .fetch_all(&self.read)
                    .await?
            }
            Some(site) => {
                sqlx::query(AssertSqlSafe(format!("SELECT {DOOR_COLUMNS} FROM doors WHERE site = $1 ORDER BY id")))
                    .bind(site)
                    .fetch_all(&self.read)
                    .await?
            }
        };
        rows.iter().map(rows::door).collect()
    }

    pub async fn patch_door(&self, id: &str, patch: &DoorPatch) -> Result<Written<Door>> {
        let mut tx = self.begin().await?;
        let pk = door_pk(&mut tx, id).await?;
        let (mut d, _) = read_door(&mut tx, pk).await?;
        let before = d.clone();
        if let Some(v) = &patch.name {
            d.name = v.clone();
        }
        if let Some(v) = &patch.driver {
            d.driver = v.clone().with_secrets_from(&d.driver);
        }
        if let Some(v) = patch.fail_mode {
            d.fail_mode = v;
        }
        if let Some(v) = &patch.required_skill {
            d.required_skill = v.clone();
        }
        if let Some(v) = patch.open_seconds {
            d.open_seconds = v;
        }
        if let Some(v) = patch.attendance {
            d.attendance = v;
        }
        if let Some(v) = &patch.site {
            check_site_exists(&mut tx, v).await?;
            d.site = v.clone();
        }
        if let Some(v) = &patch.unlock_schedule {
            d.unlock_schedule = v.clone();
        }
        if let Some(v) = patch.egress {
            d.egress = v;
        }
        if let Some(v) = patch.held_open_seconds {
            d.held_open_seconds = v;
        }
        sqlx::query(
            "UPDATE doors SET name = $2, driver = $3, fail_mode = $4, required_skill = $5, open_seconds = $6, \
             attendance = $7, site = $8, updated_at = $9, unlock_schedule = $10, egress = $11, held_open_seconds = $12 \
             WHERE pk = $1",
        )
        .bind(pk)
        .bind(&d.name)
        .bind(to_json(&d.driver))
        .bind(d.fail_mode.as_str())
        .bind(&d.required_skill)
        .bind(i64::from(d.open_seconds))
        .bind(i64::from(d.attendance))
        .bind(&d.site)
        .bind(now_micros())
        .bind(d.unlock_schedule.as_ref().map(to_json))
        .bind(i64::from(d.egress))
        .bind(i64::from(d.held_open_seconds))
        .execute(&mut *tx)
        .await?;
        let (door, change) = read_door(&mut tx, pk).await?;
        // Drivers' secrets never go into the log.
        let shown = |d: &Door| Door { driver: d.driver.redacted(), state: Default::default(), ..d.clone() };
        let event = NewEvent::new("door.updated").door(id).changed(&shown(&before), &shown(&door));
        self.finish(tx, door, IndexUpdate::Patch(vec![change]), vec![event]).await
    }

    pub async fn delete_door(&self, id: &str) -> Result<Written<()>> {
        let mut tx = self.begin().await?;
        let pk = door_pk(&mut tx, id).await?;
        sqlx::query("DELETE FROM doors WHERE pk = $1").bind(pk).execute(&mut *tx).await?;
        self.finish(tx, (), IndexUpdate::Reload, vec![NewEvent::new("door.deleted").door(id)]).await
    }

    pub async fn create_group(&self, id: &str, name: &str, doors: &[String]) -> Result<Written<Group>> {
        let mut tx = self.begin().await?;
        let pk: Pk =
            sqlx::query_scalar("INSERT INTO access_groups (id, name, created_at) VALUES ($1, $2, $3) RETURNING pk")
                .bind(id)
                .bind(name)
                .bind(now_micros())
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| conflict_on_unique(e, || format!("a group with id {id:?} exists already")))?;
        for door in doors {
            let door = door_pk(&mut tx, door).await?;
            sqlx::query("INSERT INTO group_doors (group_pk, door_pk) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(pk)
                .bind(door)
                .execute(&mut *tx)
                .await?;
        }
        let (group, change) = read_group(&mut tx, pk).await?;
        let event = NewEvent::new("group.created").with("group", id).with("doors", &group.doors);
        self.finish(tx, group, IndexUpdate::Patch(vec![change]), vec![event]).await
    }

    pub async fn group(&self, id: &str) -> Result<Group> {
        let mut tx = self.read.begin().await?;
        let pk = group_pk(&mut tx, id).await?;
        Ok(read_group(&mut tx, pk).await?.0)
    }

    pub async fn groups(&self) -> Result<Vec<Group>> {
        let mut tx = self.read.begin().await?;
        let pks: Vec<Pk> = sqlx::query_scalar("SELECT pk FROM access_groups ORDER BY id").fetch_all(&mut *tx).await?;
        let mut out = Vec::with_capacity(pks.len());
        for pk in pks {
            out.push(read_group(&mut tx, pk).await?.0);
        }
        Ok(out)
    }

    pub async fn delete_group(&self, id: &str) -> Result<Written<()>> {
        let mut tx = self.begin().await?;
        let pk = group_pk(&mut tx, id).await?;
        sqlx::query("DELETE FROM access_groups WHERE pk = $1").bind(pk).execute(&mut *tx).await?;
        self.finish(tx, (), IndexUpdate::Reload, vec![NewEvent::new("group.deleted").with("group", id)]).await
    }

    pub async fn set_member(&self, group_id: &str, person_id: &str, member: bool) -> Result<Written<MemberChange>> {
        let mut tx = self.begin().await?;
        let group = group_pk(&mut tx, group_id).await?;
        let person = person_pk(&mut tx, person_id).await?;
        let done = if member {
            sqlx::query("INSERT INTO group_members (group_pk, person_pk, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(group)
                .bind(person)
                .bind(now_micros())
                .execute(&mut *tx)
                .await?
        } else {
            sqlx::query("DELETE FROM group_members WHERE group_pk = $1 AND person_pk = $2")
                .bind(group)
                .bind(person)
                .execute(&mut *tx)
                .await?
        };
        let outcome = match (done.rows_affected(), member) {
            (0, _) => MemberChange::Unchanged,
            (_, true) => MemberChange::Added,
            (_, false) => MemberChange::Removed,
        };
        let events = match outcome {
            MemberChange::Unchanged => vec![],
            MemberChange::Added => vec![NewEvent::new("group.member_added").person(person_id).with("group", group_id)],
            MemberChange::Removed => {
                vec![NewEvent::new("group.member_removed").person(person_id).with("group", group_id)]
            }
        };
        let changes = vec![Change::Membership { group, person, member }];
        self.finish(tx, outcome, IndexUpdate::Patch(changes), events).await
    }

    pub async fn create_grant(&self, g: &NewGrantRecord) -> Result<Written<Grant>> {
        let mut tx = self.begin().await?;
        let (mut changes, mut events) = (Vec::new(), Vec::new());
        let grant = insert_grant(&mut tx, g, &mut changes, &mut events).await?;
        self.finish(tx, grant, IndexUpdate::Patch(changes), events).await
    }

    /// Changes a grant in place: its doors, hours, validity and passes (`g`'s holder and
    /// source are the grant's own, as the caller read them). `seen` is the grant the
    /// change was made from: if it changed meanwhile (another operator's edit, a pass
    /// used), nothing is written, so that no edit is silently lost.
    pub async fn update_grant(&self, id: &str, seen: &Grant, g: &NewGrantRecord) -> Result<Written<Grant>> {
        let pk = rows::parse_grant_id(id).ok_or_else(|| StoreError::not_found("grant", id))?;
        let mut tx = self.begin().await?;
        let (before, _) = read_grants(&mut tx, "WHERE g.pk = $1", Some(pk))
            .await?
            .pop()
            .ok_or_else(|| StoreError::not_found("grant", id))?;
        if before != *seen {
            return Err(StoreError::Conflict(format!("the grant {id} changed meanwhile: read it again and retry")));
        }
        let door_group = match &g.door_group {
            Some(group) => Some(group_pk(&mut tx, group).await?),
            None => None,
        };
        let mut door_pks = Vec::new();
        for door in g.doors.iter().flatten() {
            door_pks.push(door_pk(&mut tx, door).await?);
        }
        sqlx::query(
            "UPDATE grants SET door_group_pk = $2, has_doors = $3, schedule = $4, valid_from = $5, valid_until = $6, \
             passes = $7, pass_lasts = $8 WHERE pk = $1",
        )
        .bind(pk)
        .bind(door_group)
        .bind(i64::from(g.doors.is_some()))
        .bind(g.schedule.as_ref().map(to_json))
        .bind(g.valid_from)
        .bind(g.valid_until)
        .bind(g.passes.map(i64::from))
        .bind((g.pass_lasts != PassLasts::Entry).then(|| g.pass_lasts.stored()))
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM grant_doors WHERE grant_pk = $1").bind(pk).execute(&mut *tx).await?;
        for door in door_pks {
            sqlx::query("INSERT INTO grant_doors (grant_pk, door_pk) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(pk)
                .bind(door)
                .execute(&mut *tx)
                .await?;
        }
        let (grant, index) =
            read_grants(&mut tx, "WHERE g.pk = $1", Some(pk)).await?.pop().expect("grant just written");
        let mut event = NewEvent::new("grant.updated").grant(id).changed(&before, &grant);
        event.person_id = grant.person_id.clone();
        if let Some(group) = &grant.group_id {
            event = event.with("group", group);
        }
        self.finish(tx, grant, IndexUpdate::Patch(vec![Change::Grant(pk, Some(index))]), vec![event]).await
    }

    pub async fn grant(&self, id: &str) -> Result<Grant> {
        let pk = rows::parse_grant_id(id).ok_or_else(|| StoreError::not_found("grant", id))?;
        let mut conn = self.read.acquire().await?;
        read_grants(&mut conn, "WHERE g.pk = $1", Some(pk))
            .await?
            .pop()
            .map(|(g, _)| g)
            .ok_or_else(|| StoreError::not_found("grant", id))
    }

    /// All grants, or a person's own (not those of their groups).
    pub async fn grants(&self, person_id: Option<&str>) -> Result<Vec<Grant>> {
        let mut conn = self.read.acquire().await?;
        let found = match person_id {
            Some(id) => {
                let pk: Option<Pk> = sqlx::query_scalar("SELECT pk FROM people WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?;
                let pk = pk.ok_or_else(|| StoreError::not_found("person", id))?;
                read_grants(&mut conn, "WHERE g.person_pk = $1", Some(pk)).await?
            }
            None => read_grants(&mut conn, "", None).await?,
        };
        Ok(found.into_iter().map(|(g, _)| g).collect())
    }

    pub async fn delete_grant(&self, id: &str) -> Result<Written<()>> {
        let pk = rows::parse_grant_id(id).ok_or_else(|| StoreError::not_found("grant", id))?;
        let mut tx = self.begin().await?;
        let done = sqlx::query("DELETE FROM grants WHERE pk = $1").bind(pk).execute(&mut *tx).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::not_found("grant", id));
        }
        self.finish(
            tx,
            (),
            IndexUpdate::Patch(vec![Change::Grant(pk, None)]),
            vec![NewEvent::new("grant.deleted").grant(id)],
        )
        .await
    }
}

/// What `touched` is now, as the change that brings an index to it (`None`: nothing for
/// the index, e.g. a credential that is gone).
pub(crate) async fn read_touched(tx: &mut Tx, touched: Touched) -> Result<Option<Change>> {
    let exists = async |tx: &mut Tx, sql: &'static str, pk: Pk| -> Result<bool> {
        Ok(sqlx::query(sql).bind(pk).fetch_optional(&mut **tx).await?.is_some())
    };
    Ok(Some(match touched {
        Touched::Person(pk) => match exists(tx, "SELECT 1 FROM people WHERE pk = $1", pk).await? {
            true => read_person(tx, pk).await?.1,
            false => Change::Person(pk, None),
        },
        Touched::Credential(pk) => match exists(tx, "SELECT 1 FROM credentials WHERE pk = $1", pk).await? {
            true => read_credential(tx, pk).await?.1,
            false => return Ok(None),
        },
        Touched::Door(pk) => match exists(tx, "SELECT 1 FROM doors WHERE pk = $1", pk).await? {
            true => read_door(tx, pk).await?.1,
            false => Change::Door(pk, None),
        },
        Touched::Group(pk) => match exists(tx, "SELECT 1 FROM access_groups WHERE pk = $1", pk).await? {
            true => read_group(tx, pk).await?.1,
            false => Change::Group(pk, None),
        },
        Touched::Membership(group, person) => {
            let member = sqlx::query("SELECT 1 FROM group_members WHERE group_pk = $1 AND person_pk = $2")
                .bind(group)
                .bind(person)
                .fetch_optional(&mut **tx)
                .await?
                .is_some();
            Change::Membership { group, person, member }
        }
        Touched::Grant(pk) => match read_grants(tx, "WHERE g.pk = $1", Some(pk)).await?.pop() {
            Some((_, index)) => Change::Grant(pk, Some(index)),
            None => Change::Grant(pk, None),
        },
    }))
}

pub(crate) async fn read_door(tx: &mut Tx, pk: Pk) -> Result<(Door, Change)> {
    let row = sqlx::query(AssertSqlSafe(format!("SELECT {DOOR_COLUMNS} FROM doors WHERE pk = $1")))
        .bind(pk)
        .fetch_one(&mut **tx)
        .await?;
    Ok((rows::door(&row)?, Change::Door(pk, Some(rows::index_door(&row)?))))
}

impl Store {
    /// A group's members as (id, name), by name.
    pub async fn group_members(&self, group_id: &str) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT p.id, p.name FROM group_members m JOIN people p ON p.pk = m.person_pk \
             JOIN access_groups g ON g.pk = m.group_pk WHERE g.id = $1 ORDER BY p.name, p.id",
        )
        .bind(group_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|r| Ok((r.try_get("id")?, r.try_get("name")?))).collect()
    }

    /// Every membership as (person id, group id).
    pub async fn memberships(&self) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT p.id AS person_id, g.id AS group_id FROM group_members m \
             JOIN people p ON p.pk = m.person_pk JOIN access_groups g ON g.pk = m.group_pk",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|r| Ok((r.try_get("person_id")?, r.try_get("group_id")?))).collect()
    }
}

impl Store {
    /// Revokes a person's live credentials (of one kind, or all) at once, saying why.
    pub async fn revoke_person_credentials(
        &self,
        person_id: &str,
        kind: Option<CredentialKind>,
        reason: &str,
    ) -> Result<Written<Vec<Credential>>> {
        let mut tx = self.begin().await?;
        let person = person_pk(&mut tx, person_id).await?;
        let live: Vec<Pk> = sqlx::query_scalar(
            "SELECT pk FROM credentials WHERE person_pk = $1 AND status = 'active' AND ($2 IS NULL OR kind = $2)",
        )
        .bind(person)
        .bind(kind.map(CredentialKind::as_str))
        .fetch_all(&mut *tx)
        .await?;
        let now = now_micros();
        let mut revoked = Vec::with_capacity(live.len());
        let mut changes = Vec::with_capacity(live.len());
        let mut events = Vec::with_capacity(live.len());
        for pk in live {
            sqlx::query("UPDATE credentials SET status = 'revoked', status_reason = $2, revoked_at = $3 WHERE pk = $1")
                .bind(pk)
                .bind(reason)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            let (credential, change) = read_credential(&mut tx, pk).await?;
            events.push(
                NewEvent::new("credential.revoked").person(person_id).credential(&credential.id).with("reason", reason),
            );
            revoked.push(credential);
            changes.push(change);
        }
        self.finish(tx, revoked, IndexUpdate::Patch(changes), events).await
    }
}

impl Store {
    /// Every (person id, id in that system) for one external system, e.g. `slack`.
    pub async fn external_ids(&self, system: &str) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT p.id AS person_id, e.external_id FROM external_ids e JOIN people p ON p.pk = e.person_pk \
             WHERE e.system = $1 ORDER BY p.pk",
        )
        .bind(system)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|r| Ok((r.try_get("person_id")?, r.try_get("external_id")?))).collect()
    }
}

pub(crate) async fn issue_in(
    tx: &mut Tx,
    person: Pk,
    person_id: &str,
    c: &crate::NewCredentialRecord,
    now: i64,
    changes: &mut Vec<Change>,
    events: &mut Vec<NewEvent>,
) -> Result<Credential> {
    if let Some(uid) = &c.card_uid {
        // Re-issuing a person's own card (a new revocation code) replaces the old one;
        // a card that belongs to someone else is a conflict.
        let holder: Option<(Pk, Option<Pk>)> =
            sqlx::query("SELECT pk, person_pk FROM credentials WHERE card_uid = $1 AND status = 'active'")
                .bind(uid)
                .fetch_optional(&mut **tx)
                .await?
                .map(|r| Ok::<_, sqlx::Error>((r.try_get("pk")?, r.try_get("person_pk")?)))
                .transpose()?;
        if let Some((old, holder)) = holder {
            if holder != Some(person) {
                return Err(StoreError::Conflict(format!("card {uid} is already issued to another person")));
            }
            sqlx::query(
                "UPDATE credentials SET status = 'revoked', status_reason = 'replaced', revoked_at = $2 WHERE pk = $1",
            )
            .bind(old)
            .bind(now)
            .execute(&mut **tx)
            .await?;
            changes.push(read_credential(tx, old).await?.1);
            events.push(
                NewEvent::new("credential.revoked")
                    .person(person_id)
                    .credential(rows::credential_id(old))
                    .with("reason", "replaced"),
            );
        }
    }
    let pk: Pk = sqlx::query_scalar(
        "INSERT INTO credentials (person_pk, kind, card_uid, revocation_code, digest, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, 'active', $6) RETURNING pk",
    )
    .bind(person)
    .bind(c.kind.as_str())
    .bind(&c.card_uid)
    .bind(&c.revocation_code)
    .bind(&c.digest)
    .bind(now)
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| conflict_on_unique(e, || format!("this {} is already in use", c.kind.as_str())))?;
    let (credential, change) = read_credential(tx, pk).await?;
    changes.push(change);
    events.push(
        NewEvent::new("credential.issued").person(person_id).credential(&credential.id).with("kind", c.kind.as_str()),
    );
    Ok(credential)
}
