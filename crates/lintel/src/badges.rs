//! `lintel import badges.csv`: another badge system's export, for the badge lookup. A
//! header row with a `badge` column (and no `card_uid`) marks such a file; the other
//! columns are kept as the badge's attributes (`user`, `fullname`, `email`, ...). An
//! import replaces the badges imported before: an export is the whole list.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use lintel_store::{BadgeRow, RejectedRow, Store, normalize_badge};

/// What an import did.
#[derive(Debug, Default)]
pub struct BadgeReport {
    pub imported: usize,
    pub replaced: u64,
    pub rejected: Vec<RejectedRow>,
}

fn header_names(path: &Path) -> anyhow::Result<Vec<String>> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_path(path)?;
    Ok(reader.headers()?.iter().map(|h| h.trim().to_ascii_lowercase()).collect())
}

/// Whether the file is a badge export: a `badge` column and no `card_uid` column.
pub fn is_badge_file(path: &Path) -> anyhow::Result<bool> {
    let headers = header_names(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(headers.iter().any(|h| h == "badge") && !headers.iter().any(|h| h == "card_uid"))
}

const MAX_BADGE: usize = 128;
const MAX_VALUE: usize = 1024;

pub async fn run(store: &Store, path: &Path, quiet: bool) -> anyhow::Result<BadgeReport> {
    let size = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let headers: Vec<String> = reader.headers()?.iter().map(|h| h.trim().to_ascii_lowercase()).collect();
    let Some(badge_column) = headers.iter().position(|h| h == "badge") else {
        bail!("a badge export needs a header row with a \"badge\" column (badge,user,...)");
    };
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(size) };
    bar.set_style(
        ProgressStyle::with_template("{spinner} reading badges [{bar:40}] {bytes}/{total_bytes} ({eta})")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let mut report = BadgeReport::default();
    let mut rows = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut record = csv::StringRecord::new();
    while reader.read_record(&mut record).context("reading the CSV")? {
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        let reject = |reason: String| RejectedRow { line, reason };
        let badge = normalize_badge(record.get(badge_column).unwrap_or(""));
        if badge.is_empty() {
            report.rejected.push(reject("the badge is empty".into()));
            continue;
        }
        if badge.len() > MAX_BADGE || badge.chars().any(char::is_control) {
            report.rejected.push(reject(format!("the badge is over {MAX_BADGE} characters or has control characters")));
            continue;
        }
        if let Some(first) = seen.get(&badge) {
            report.rejected.push(reject(format!("badge {badge:?} is also on line {first}")));
            continue;
        }
        let mut attributes = serde_json::Map::new();
        let mut too_long = false;
        for (i, value) in record.iter().enumerate() {
            let (Some(name), value) = (headers.get(i), value.trim()) else { continue };
            if i == badge_column || name.is_empty() || value.is_empty() {
                continue;
            }
            too_long |= value.len() > MAX_VALUE;
            attributes.insert(name.clone(), value.into());
        }
        if too_long {
            report.rejected.push(reject(format!("a value is over {MAX_VALUE} characters")));
            continue;
        }
        seen.insert(badge.clone(), line);
        rows.push(BadgeRow { badge, attributes });
        if rows.len() % 1000 == 0 {
            bar.set_position(reader.position().byte());
        }
    }
    bar.finish_and_clear();
    report.replaced = store.replace_badges(&rows).await?;
    report.imported = rows.len();
    Ok(report)
}

pub fn print(report: &BadgeReport) {
    println!(
        "badges imported: {} (replacing {}); {} rejected",
        report.imported,
        report.replaced,
        report.rejected.len()
    );
    for r in &report.rejected {
        println!("  line {}: {}", r.line, r.reason);
    }
}
