//! `lintel import people.csv`: people and their cards from a CSV file, with a progress
//! bar, idempotent on re-run, and a report of every rejected row by line.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use lintel_core::credential::normalize_uid;
use lintel_proto::PersonStatus;
use lintel_service::validate;
use lintel_store::{ImportReport, ImportRow, RejectedRow, Store};

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

fn columns(headers: &csv::StringRecord) -> anyhow::Result<Columns> {
    let find = |name: &str| headers.iter().position(|h| h.trim().eq_ignore_ascii_case(name));
    let required = |name: &str| {
        find(name).with_context(|| format!("the header row needs a {name:?} column (id,name,email,card_uid)"))
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
    let checked = |r: Result<(), lintel_service::ServiceError>| r.map_err(|e| reject(e.to_string()));
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

pub async fn run(store: &Store, path: &Path, quiet: bool) -> anyhow::Result<ImportReport> {
    let size = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let columns = columns(reader.headers()?)?;
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(size) };
    bar.set_style(
        ProgressStyle::with_template("{spinner} importing [{bar:40}] {bytes}/{total_bytes} {msg} ({eta})")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let store = store.acting_as(lintel_service::Actor::cli().as_str());
    let mut report = ImportReport::default();
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut record = csv::StringRecord::new();
    loop {
        let more = reader.read_record(&mut record).context("reading the CSV")?;
        if more {
            let line = record.position().map(|p| p.line()).unwrap_or(0);
            match parse_row(&columns, &record, line) {
                Ok(row) => chunk.push(row),
                Err(rejected) => report.rejected.push(rejected),
            }
        }
        if chunk.len() >= CHUNK || (!more && !chunk.is_empty()) {
            report.add(store.import_chunk(&chunk).await?);
            chunk.clear();
            bar.set_position(reader.position().byte());
            bar.set_message(format!(
                "{} new, {} updated, {} rejected",
                report.created,
                report.updated,
                report.rejected.len()
            ));
        }
        if !more {
            break;
        }
    }
    bar.finish_and_clear();
    report.rejected.sort_by_key(|r| r.line);
    Ok(report)
}

pub fn print(report: &ImportReport) {
    println!(
        "imported: {} new, {} updated, {} unchanged; cards: {} issued, {} replaced; memberships: {} added, {} removed; {} rejected",
        report.created,
        report.updated,
        report.unchanged,
        report.cards_issued,
        report.cards_replaced,
        report.memberships_added,
        report.memberships_removed,
        report.rejected.len()
    );
    for r in &report.rejected {
        println!("  line {}: {}", r.line, r.reason);
    }
}

pub fn check_file(path: &Path) -> anyhow::Result<()> {
    if !path.is_file() {
        bail!("{} is not a file", path.display());
    }
    Ok(())
}
