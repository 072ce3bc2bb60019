//! `lintel import people.csv`: the service's CSV import with a progress bar, and its
//! report of every rejected row by line.

use std::path::Path;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use lintel_store::{ImportReport, Store};

pub async fn run(store: &Store, path: &Path, quiet: bool) -> anyhow::Result<ImportReport> {
    let size = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(size) };
    bar.set_style(
        ProgressStyle::with_template("{spinner} importing [{bar:40}] {bytes}/{total_bytes} {msg} ({eta})")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let by = lintel_service::Actor::cli();
    let report = lintel_service::import::import_csv(store, &by, true, std::io::BufReader::new(file), |at, report| {
        bar.set_position(at);
        bar.set_message(format!(
            "{} new, {} updated, {} rejected",
            report.created,
            report.updated,
            report.rejected.len()
        ));
    })
    .await?;
    bar.finish_and_clear();
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
