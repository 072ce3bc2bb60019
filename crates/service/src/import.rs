//! Importing people and their cards from a CSV file (`id,name,email,card_uid` and
//! optionally `revocation_code`, `groups`, `status`): the CLI's `lintel import` and the
//! web UI's upload alike. Each row gets the API's checks; rejected rows are reported by
//! line and change nothing; a re-run of the same file changes nothing either.

use std::collections::{BTreeSet, HashSet};
use std::io::Read;

use lintel_core::credential::normalize_uid;
use lintel_proto::PersonStatus;
use lintel_store::{ImportReport, ImportRow, RejectedRow, Store};

use crate::directory::Actor;
use crate::error::{Result, ServiceError};
use crate::integrations::oidc::{OPERATOR_ATTRIBUTE, is_operator};
use crate::validate;

const CHUNK: usize = 2000;

struct Columns {
    id: usize,
    name: usize,
    email: usize,
    card_uid: usize,
    revocation_code: Option<usize>,
    groups: Option<usize>,
    status: Option<usize>,
}

fn columns(headers: &csv::StringRecord) -> Result<Columns> {
    let find = |name: &str| headers.iter().position(|h| h.trim().eq_ignore_ascii_case(name));
    let required = |name: &str| {
        find(name).ok_or_else(|| {
            ServiceError::invalid(format!("the header row needs a {name:?} column (id,name,email,card_uid)"))
        })
    };
    Ok(Columns {
        id: required("id")?,
        name: required("name")?,
        email: required("email")?,
        card_uid: required("card_uid")?,
        revocation_code: find("revocation_code"),
        groups: find("groups"),
        status: find("status"),
    })
}

/// Checks one record; what the store must check (cards of other people, groups) it does.
fn parse_row(c: &Columns, record: &csv::StringRecord, line: u64) -> Result<ImportRow, RejectedRow> {
    let reject = |reason: String| RejectedRow { line, reason };
    let get = |i: usize| record.get(i).map(str::trim).unwrap_or("");
    // The same checks as the API's, so that a row is accepted exactly when the
    // equivalent API call would be.
    let checked = |r: Result<()>| r.map_err(|e| reject(e.to_string()));
    let id = get(c.id);
    checked(validate::id("id", id))?;
    let name = get(c.name);
    checked(validate::name("name", name))?;
    let email = Some(get(c.email)).filter(|e| !e.is_empty());
    if let Some(e) = email {
        checked(validate::email(e))?;
    }
    let card_uid = match get(c.card_uid) {
        "" => None,
        uid => Some(normalize_uid(uid).map_err(|e| reject(format!("card_uid {uid:?}: {e}")))?),
    };
    let revocation_code = c.revocation_code.map(get).filter(|r| !r.is_empty()).map(str::to_owned);
    if let Some(code) = &revocation_code {
        checked(validate::text("revocation_code", code, 64))?;
    }
    if revocation_code.is_some() && card_uid.is_none() {
        return Err(reject("revocation_code given without a card_uid".into()));
    }
    let groups = match c.groups {
        None => None,
        Some(i) => {
            let set: BTreeSet<String> =
                get(i).split(';').map(str::trim).filter(|g| !g.is_empty()).map(str::to_owned).collect();
            for group in &set {
                checked(validate::id("a group", group))?;
            }
            Some(set)
        }
    };
    let status = match c.status.map(get).unwrap_or("") {
        "" | "active" => PersonStatus::Active,
        "suspended" => PersonStatus::Suspended,
        other => return Err(reject(format!("status {other:?} is active or suspended"))),
    };
    Ok(ImportRow {
        line,
        id: id.to_owned(),
        name: name.to_owned(),
        email: email.map(str::to_owned),
        card_uid,
        revocation_code,
        groups,
        status,
    })
}

/// The ids of the operators of the web UI: changing them is an owner's business.
async fn operators(store: &Store) -> Result<HashSet<String>> {
    let mut found = HashSet::new();
    for id in store.people_with_attribute(OPERATOR_ATTRIBUTE).await? {
        if let Ok(person) = store.person(&id).await
            && is_operator(&person)
        {
            found.insert(id);
        }
    }
    Ok(found)
}

/// Imports the CSV `input` as `by`'s change, a chunk of rows per transaction; `progress`
/// is told the bytes read and the report so far after each chunk. Unless `by` may manage
/// access (an owner, the CLI), rows for operators of the web UI are rejected: a front desk
/// could otherwise change an owner's email or suspend them.
pub async fn import_csv(
    store: &Store,
    by: &Actor,
    may_manage_access: bool,
    input: impl Read,
    mut progress: impl FnMut(u64, &ImportReport),
) -> Result<ImportReport> {
    let untouchable = if may_manage_access { HashSet::new() } else { operators(store).await? };
    let unreadable = |e: csv::Error| ServiceError::invalid(format!("the CSV could not be read: {e}"));
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
    let columns = columns(reader.headers().map_err(unreadable)?)?;
    let store = store.acting_as(by.as_str());
    let mut report = ImportReport::default();
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut record = csv::StringRecord::new();
    loop {
        let more = reader.read_record(&mut record).map_err(unreadable)?;
        if more {
            let line = record.position().map(|p| p.line()).unwrap_or(0);
            match parse_row(&columns, &record, line) {
                Ok(row) if untouchable.contains(&row.id) => report.rejected.push(RejectedRow {
                    line,
                    reason: format!("{:?} is an operator of the web UI: changing them is an owner's business", row.id),
                }),
                Ok(row) => chunk.push(row),
                Err(rejected) => report.rejected.push(rejected),
            }
        }
        if chunk.len() >= CHUNK || (!more && !chunk.is_empty()) {
            report.add(store.import_chunk(&chunk).await?);
            chunk.clear();
            progress(reader.position().byte(), &report);
        }
        if !more {
            break;
        }
    }
    report.rejected.sort_by_key(|r| r.line);
    Ok(report)
}
