//! `lintel bench`: the figures the foundation asks for, in one table.
//!
//! 1. in-process decision latency (p50/p99) and index memory per credential, at 10k,
//!    100k and 1M credentials: cards read by UID, and station cards (a person id and a
//!    revocation code, the `member` kind);
//! 2. importing 100k people with cards into SQLite;
//! 3. HTTP decisions per second at concurrency 1 and 32, side by side with a trivial
//!    server answering a fixed 60-byte JSON (the floor), both driven by `wrk`;
//! 4. from an API write returning to the next decision reflecting it;
//! 5. a controller's offline list when every credential opens its door: what a change that
//!    concerns the door costs (the list built and signed) and what an unrelated one costs.
//!
//! Run it on a release build: `cargo run --release -p lintel -- bench`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use lintel_core::{
    Change, CompiledSchedule, CredentialKey, DoorSet, IndexBuilder, IndexCredential, IndexDoor, IndexGrant, IndexGroup,
    IndexPerson, MemberQuery, Query, Subject, revocation_hash,
};
use lintel_proto::{CredentialKind, CredentialStatus, Schedule, ScheduleRule, Weekday};

/// Bytes the process holds from the allocator (glibc's heap and its mmapped chunks), read
/// before and after building an index while nothing else allocates. (No counting
/// allocator: the production binary keeps the system's.)
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn allocated_bytes() -> Option<isize> {
    // SAFETY: mallinfo2 only reads the allocator's own counters.
    let info = unsafe { libc::mallinfo2() };
    isize::try_from(info.uordblks + info.hblkhd).ok()
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn allocated_bytes() -> Option<isize> {
    None
}

#[derive(clap::Args)]
pub struct Args {
    /// Smaller sizes and shorter runs: checks that the benchmark itself works.
    #[arg(long)]
    quick: bool,
    /// Seconds per HTTP load run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Only the in-process figures (latency, memory): no database, no HTTP.
    #[arg(long)]
    in_process_only: bool,
    /// Seconds of sustained decisions at the highest rate (32 connections), watching the
    /// SQLite WAL; 600 gives the ten-minute figure.
    #[arg(long, default_value_t = 60)]
    sustained_seconds: u64,
    /// Where to put the benchmark's database (a temporary directory by default).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Instead of the rest: two `lintel serve` nodes on this empty PostgreSQL database
    /// (`createdb lintel_bench`), a million people with cards in it (10k with --quick):
    /// how soon a write on one node is decided on the other, whether that needed a reload,
    /// and HTTP decisions per second on one node and on both.
    #[arg(long, value_name = "POSTGRES_URL")]
    two_nodes: Option<String>,
}

#[derive(clap::Args)]
pub struct FloorArgs {
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
}

fn uid(i: u64) -> [u8; 7] {
    let b = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x0400_0000_0000_0000).to_be_bytes();
    [0x04, b[1], b[2], b[3], b[4], b[5], b[6] ^ (i as u8)]
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// How the benchmark's readers ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asks {
    /// By the card's UID (no revocation code).
    Cards,
    /// As a makerspace station: the person's id and the card's revocation code.
    Stations,
}

/// The revocation code written on person `i`'s station card.
fn station_code(i: u64) -> String {
    format!("r{}", i % 997)
}

struct InProcess {
    asks: Asks,
    credentials: u64,
    p50_ns: u64,
    p99_ns: u64,
    bytes_per_credential: f64,
    patch_us: f64,
    /// Only for cards (the list is the same for station cards).
    offline: Option<OfflineList>,
}

/// A controller's list for the door every credential may open.
struct OfflineList {
    cards: usize,
    /// A card of a person who may open the door: which lists it touches, then building
    /// and signing that list, as the list keeper does.
    related_ms: f64,
    /// A PIN given to someone: which lists it touches (none).
    unrelated_us: f64,
}

/// A world like a real space: every person has one card and is in one of ten groups,
/// each with a group grant on the door (half of them with a weekly schedule).
fn in_process(n: u64, asks: Asks) -> InProcess {
    let before = allocated_bytes();
    let mut b = IndexBuilder::default();
    b.door(IndexDoor { pk: 1, id: "front".into(), required_skill: None, lockdown: false });
    for g in 0..10 {
        b.group(g + 1, IndexGroup { id: format!("group-{g}").into(), doors: Box::new([1]) });
        let schedule = (g % 2 == 0).then(|| {
            let days =
                vec![Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri, Weekday::Sat, Weekday::Sun];
            CompiledSchedule::compile(&Schedule {
                tz: "Europe/Berlin".into(),
                rules: vec![ScheduleRule { weekdays: days, from: "00:00".into(), to: "24:00".into() }],
            })
            .expect("valid schedule")
        });
        b.grant(IndexGrant {
            pk: g + 1,
            subject: Subject::Group(g + 1),
            doors: DoorSet::SubjectGroup,
            schedule,
            valid_from: i64::MIN,
            valid_until: i64::MAX,
            passes: None,
            passes_used: 0,
            pass_lasts: lintel_proto::PassLasts::Entry,
            checked_in_until: i64::MIN,
        });
    }
    for i in 1..=n as i64 {
        b.person(
            i,
            IndexPerson {
                id: format!("p-{i:08}").into(),
                suspended: false,
                lockdown_exempt: false,
                skills: Box::new([]),
            },
        );
        b.member((i % 10) + 1, i);
        let credential = IndexCredential {
            pk: i,
            person: Some(i),
            kind: CredentialKind::Card,
            status: CredentialStatus::Active,
            revocation: match asks {
                Asks::Cards => 0,
                Asks::Stations => revocation_hash(Some(&station_code(i as u64))),
            },
            digest: None,
        };
        b.credential(CredentialKey::card_bytes(&uid(i as u64)), credential);
    }
    let index = b.build();
    let bytes = before.zip(allocated_bytes()).map_or(f64::NAN, |(before, after)| (after - before) as f64);

    let probes = 1_000_000.min(n * 10);
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let people: Vec<u64> = (0..probes)
        .map(|_| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n + 1
        })
        .collect();
    let at = Utc::now();
    let mut times = Vec::with_capacity(people.len());
    let mut allowed = 0u64;
    match asks {
        Asks::Cards => {
            let keys: Vec<CredentialKey> = people.iter().map(|i| CredentialKey::card_bytes(&uid(*i))).collect();
            for key in &keys {
                let start = Instant::now();
                let d = index.decide(&Query { door: "front", key: *key, digest: None, revocation_code: None, at });
                times.push(start.elapsed().as_nanos() as u64);
                allowed += u64::from(d.allowed());
            }
        }
        Asks::Stations => {
            let cards: Vec<(String, String)> = people.iter().map(|i| (format!("p-{i:08}"), station_code(*i))).collect();
            for (person_id, code) in &cards {
                let start = Instant::now();
                let q = MemberQuery { door: "front", person_id, revocation_code: code, at };
                let d = index.decide_member(&q);
                times.push(start.elapsed().as_nanos() as u64);
                allowed += u64::from(d.allowed());
            }
        }
    }
    assert_eq!(allowed, probes, "every probe is an enrolled card with a grant");
    times.sort_unstable();

    let started = Instant::now();
    let rounds = 200;
    let mut current = index;
    for r in 0..rounds {
        let pk = n as i64 + 1 + r;
        let change = Change::Credential(
            CredentialKey::card_bytes(&uid(pk as u64)),
            IndexCredential {
                pk,
                person: Some(1),
                kind: CredentialKind::Card,
                status: CredentialStatus::Active,
                revocation: 0,
                digest: None,
            },
        );
        current = current.apply(&[change]);
    }
    let patch_us = started.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    let offline = (asks == Asks::Cards).then(|| offline_list(&current));
    InProcess {
        asks,
        credentials: n,
        p50_ns: percentile(&times, 0.5),
        p99_ns: percentile(&times, 0.99),
        bytes_per_credential: bytes / n as f64,
        patch_us,
        offline,
    }
}

/// What changes cost the keeper of the offline list of a controller driving `front`.
fn offline_list(index: &lintel_core::Index) -> OfflineList {
    use lintel_core::offline::{ListDoor, ListInput, build_list, content_digest};
    let authority = lintel_signed::Authority::from_secret_bytes(&[7; 32]).expect("a key");
    let doors = [ListDoor {
        id: "front".into(),
        fail_mode: Default::default(),
        open_seconds: 5,
        max_age_seconds: 86_400,
        zone: None,
    }];
    let codes = std::collections::HashMap::new();
    let card = Change::Credential(
        CredentialKey::card_bytes(&uid(u64::MAX / 2)),
        IndexCredential {
            pk: i64::MAX / 2,
            person: Some(1),
            kind: CredentialKind::Card,
            status: CredentialStatus::Active,
            revocation: 0,
            digest: None,
        },
    );
    let started = Instant::now();
    let next = index.apply(std::slice::from_ref(&card));
    let touched = index.offline_doors_touched(&next, &[card]);
    assert!(touched.concerns(["front"].into_iter()), "a card of someone with a grant there");
    let cards = next.offline_cards(&["front"]);
    let list = build_list(&ListInput {
        controller: "ctl-1",
        version: 1,
        issued_at: Utc::now().timestamp(),
        salt: [1; 16],
        doors: &doors,
        cards: &cards,
        revocation_codes: &codes,
        codes: &next.offline_backup_codes(&["front"]),
        credential_id: lintel_store::credential_id,
    });
    let _digest = content_digest(&list);
    let _signed = authority.sign_allow_list(&list);
    let related_ms = started.elapsed().as_secs_f64() * 1e3;

    let rounds = 1000;
    let started = Instant::now();
    for r in 0..rounds {
        let digest: lintel_core::Digest = [r as u8; 32];
        let pin = Change::Credential(
            CredentialKey::pin(&digest),
            IndexCredential {
                pk: i64::MAX / 4 + r,
                person: Some(1),
                kind: CredentialKind::Pin,
                status: CredentialStatus::Active,
                revocation: 0,
                digest: Some(Box::new(digest)),
            },
        );
        let touched = index.offline_doors_touched(&next, std::slice::from_ref(&pin));
        assert!(touched.is_empty(), "a PIN is in no list");
    }
    let unrelated_us = started.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    OfflineList { cards: list.cards.len(), related_ms, unrelated_us }
}

fn print_in_process(rows: &[InProcess]) {
    println!("| in-process decisions | p50 | p99 | index bytes/credential | patch (one change) |");
    println!("|---|---|---|---|---|");
    for r in rows {
        let what = match r.asks {
            Asks::Cards => "credentials",
            Asks::Stations => "station cards (member asks)",
        };
        println!(
            "| {} {what} | {} ns | {} ns | {:.0} | {:.0} µs |",
            r.credentials, r.p50_ns, r.p99_ns, r.bytes_per_credential, r.patch_us
        );
    }
    println!();
    println!(
        "| offline list of a door everyone opens | cards | change there: list built and signed | unrelated change |"
    );
    println!("|---|---|---|---|");
    for r in rows {
        if let Some(o) = &r.offline {
            println!(
                "| {} credentials | {} | {:.0} ms | {:.1} µs |",
                r.credentials, o.cards, o.related_ms, o.unrelated_us
            );
        }
    }
}

/// A trivial HTTP server: answers every request with the same 60-byte JSON.
pub async fn floor(args: FloorArgs) -> anyhow::Result<()> {
    const ANSWER: &str = r#"{"allowed":true,"reason":"granted","detail":"a fixed answer"}"#;
    debug_assert_eq!(ANSWER.len(), 60);
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    println!("floor listening on http://{}", listener.local_addr()?);
    let app =
        axum::Router::new().fallback(|| async { ([(axum::http::header::CONTENT_TYPE, "application/json")], ANSWER) });
    axum::serve(listener, app).await?;
    Ok(())
}

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str], env: &[(&str, &str)], prefix: &str) -> anyhow::Result<(Process, String)> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit()).env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    let base = line.trim().strip_prefix(prefix).with_context(|| format!("unexpected first line {line:?}"))?.to_owned();
    Ok((Process(child), base))
}

struct Load {
    rps: f64,
    p99_ms: f64,
    requests: u64,
}

fn wrk(base: &str, script: &Path, connections: u32, seconds: u64) -> anyhow::Result<Load> {
    let threads = connections.clamp(1, 2).to_string();
    let out = Command::new("wrk")
        .args(["-t", &threads, "-c", &connections.to_string(), "-d", &format!("{seconds}s"), "--latency", "-s"])
        .arg(script)
        .arg(format!("{base}/api/v1/decisions"))
        .output()
        .context("running wrk (apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("Non-2xx") {
        bail!("wrk saw error answers:\n{text}");
    }
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output:\n{text}"))?;
    let p99 = text.lines().find_map(|l| l.trim().strip_prefix("99%")).map(|v| v.trim().to_owned()).unwrap_or_default();
    let p99_ms = if let Some(us) = p99.strip_suffix("us") {
        us.parse::<f64>().unwrap_or(0.0) / 1000.0
    } else if let Some(ms) = p99.strip_suffix("ms") {
        ms.parse().unwrap_or(0.0)
    } else {
        p99.strip_suffix('s').and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0) * 1000.0
    };
    let requests = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse().ok())
        .with_context(|| format!("no request count in wrk's output:\n{text}"))?;
    Ok(Load { rps, p99_ms, requests })
}

/// What sustained load does to the SQLite WAL.
struct Sustained {
    seconds: u64,
    decisions: u64,
    max_wal: u64,
    end_wal: u64,
    /// Bytes the server wrote (WAL, checkpoints into the database, logs) per decision.
    written_per_decision: f64,
}

/// The bytes a process has written through `write(2)` and friends, from `/proc`.
fn bytes_written(pid: u32) -> anyhow::Result<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).context("reading /proc/<pid>/io")?;
    io.lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|v| v.trim().parse().ok())
        .context("no wchar in /proc/<pid>/io")
}

/// Decisions at 32 connections for `seconds`, the WAL's size sampled four times a second.
fn sustained(base: &str, script: &Path, pid: u32, wal: &Path, seconds: u64) -> anyhow::Result<Sustained> {
    let wal_size = || std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0);
    let written_before = bytes_written(pid)?;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = std::thread::spawn({
        let (done, wal) = (done.clone(), wal.to_owned());
        move || {
            let mut max = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                max = max.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
                std::thread::sleep(Duration::from_millis(250));
            }
            max
        }
    });
    let mut decisions = 0;
    let mut left = seconds;
    while left > 0 {
        let chunk = left.min(30);
        decisions += wrk(base, script, 32, chunk)?.requests;
        left -= chunk;
        eprintln!("sustained: {}/{seconds} s, {decisions} decisions, WAL {} MB", seconds - left, wal_size() >> 20);
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let max_wal = sampler.join().map_err(|_| anyhow::anyhow!("the WAL sampler panicked"))?;
    let written = bytes_written(pid)? - written_before;
    Ok(Sustained {
        seconds,
        decisions,
        max_wal: max_wal.max(wal_size()),
        end_wal: wal_size(),
        written_per_decision: written as f64 / decisions.max(1) as f64,
    })
}

const TOKEN: &str = "bench-admin-token-0123456789abcdef0123456789abcdef";

pub async fn run(args: Args) -> anyhow::Result<()> {
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; run `cargo run --release -p lintel -- bench` for real figures");
    }
    if let Some(url) = &args.two_nodes {
        let dir = std::env::temp_dir().join(format!("lintel-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let people: u64 = if args.quick { 10_000 } else { 1_000_000 };
        let seconds = if args.quick { 2 } else { args.seconds };
        let outcome = two_nodes(url, people, &dir, seconds).await;
        let _ = std::fs::remove_dir_all(&dir);
        return outcome;
    }
    let sizes: &[u64] = if args.quick { &[10_000, 100_000] } else { &[10_000, 100_000, 1_000_000] };
    let mut rows = Vec::new();
    for asks in [Asks::Cards, Asks::Stations] {
        for &n in sizes {
            eprintln!("in-process: building an index of {n} credentials ({asks:?}) ...");
            rows.push(in_process(n, asks));
        }
    }

    if args.in_process_only {
        print_in_process(&rows);
        return Ok(());
    }
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("lintel-bench-{}", std::process::id())),
    };
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let db = format!("sqlite://{}", dir.join("bench.db").display());
    let people: u64 = if args.quick { 10_000 } else { 100_000 };
    let store = lintel_store::Store::open(&db, lintel_store::SqliteSync::Normal).await?;
    let csv = members(&store, people, &dir).await?;
    eprintln!("import: {people} people with cards ...");
    let started = Instant::now();
    let report = crate::import::run(&store, &csv, true).await?;
    let import_s = started.elapsed().as_secs_f64();
    anyhow::ensure!(report.created == people && report.rejected.is_empty(), "import went wrong: {report:?}");
    let started = Instant::now();
    let again = crate::import::run(&store, &csv, true).await?;
    let reimport_s = started.elapsed().as_secs_f64();
    anyhow::ensure!(again.unchanged == people, "re-import changed something: {again:?}");
    store.close().await;

    eprintln!("http: starting lintel serve and the floor server ...");
    let (lintel, lintel_base) = spawn(
        &["serve", "--listen", "127.0.0.1:0", "--database-url", &db],
        &[("LINTEL_ADMIN_TOKEN", TOKEN), ("LINTEL_KEY_FILE", &dir.join("bench.key").display().to_string())],
        "lintel listening on ",
    )?;
    let (_floor, floor_base) = spawn(&["floor"], &[], "floor listening on ")?;
    let script = decision_script(&dir, people)?;
    let seconds = if args.quick { 2 } else { args.seconds };
    // Warm up both, then measure them alternately under the same conditions.
    wrk(&floor_base, &script, 8, 1)?;
    wrk(&lintel_base, &script, 8, 1)?;
    let mut http = Vec::new();
    for c in [1, 32] {
        eprintln!("http: concurrency {c} ...");
        let floor = wrk(&floor_base, &script, c, seconds)?;
        let lintel = wrk(&lintel_base, &script, c, seconds)?;
        http.push((c, floor, lintel));
    }

    let sustained_seconds = if args.quick { 5 } else { args.sustained_seconds };
    eprintln!("sustained: {sustained_seconds} s of decisions at 32 connections, watching the WAL ...");
    let sustained = sustained(&lintel_base, &script, lintel.0.id(), &dir.join("bench.db-wal"), sustained_seconds)?;

    eprintln!("write-to-decision: issuing cards and asking at once ...");
    let client = reqwest::Client::new();
    let mut delays = Vec::new();
    let mut writes = Vec::new();
    let mut stale = 0;
    for i in 0..200u64 {
        let started = Instant::now();
        let card = issue_card(&client, &lintel_base, i).await?;
        let written = Instant::now();
        writes.push(written.duration_since(started));
        let answer: serde_json::Value = client
            .post(format!("{lintel_base}/api/v1/decisions"))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"door": "front", "credential": {"kind": "card", "uid": card}}))
            .send()
            .await?
            .json()
            .await?;
        delays.push(written.elapsed());
        if answer["allowed"] != true {
            stale += 1;
        }
    }
    delays.sort();
    writes.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mb = |bytes: u64| bytes as f64 / f64::from(1 << 20);

    println!();
    println!(
        "lintel bench ({} build, {} cores)",
        if cfg!(debug_assertions) { "debug" } else { "release" },
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    println!();
    print_in_process(&rows);
    println!();
    println!("| HTTP decisions (wrk, {seconds} s) | floor req/s | lintel req/s | lintel / floor | lintel p99 |");
    println!("|---|---|---|---|---|");
    for (c, floor, lintel) in &http {
        println!(
            "| concurrency {c} | {:.0} | {:.0} | {:.0}% | {:.2} ms |",
            floor.rps,
            lintel.rps,
            100.0 * lintel.rps / floor.rps,
            lintel.p99_ms
        );
    }
    println!();
    println!("| other | figure |");
    println!("|---|---|");
    println!("| import {people} people with cards (SQLite) | {import_s:.2} s |");
    println!("| re-import, nothing changed | {reimport_s:.2} s |");
    println!(
        "| API write (issue a card) p50 / p99 | {:.2} / {:.2} ms |",
        ms(writes[writes.len() / 2]),
        ms(writes[writes.len() * 99 / 100])
    );
    println!(
        "| write returned -> next decision reflecting it, p50 / p99 | {:.2} / {:.2} ms ({stale} of {} stale) |",
        ms(delays[delays.len() / 2]),
        ms(delays[delays.len() * 99 / 100]),
        delays.len()
    );
    println!();
    println!("| sustained decisions (SQLite WAL) | figure |");
    println!("|---|---|");
    println!(
        "| {} decisions in {} s | {:.0} decisions/s |",
        sustained.decisions,
        sustained.seconds,
        sustained.decisions as f64 / sustained.seconds.max(1) as f64
    );
    println!(
        "| WAL size, largest seen / at the end | {:.1} / {:.1} MB |",
        mb(sustained.max_wal),
        mb(sustained.end_wal)
    );
    println!("| bytes written per decision (WAL + checkpoints) | {:.0} |", sustained.written_per_decision);
    drop(lintel);
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// A door everyone may open through the group `members`, and a CSV of `people` members
/// with cards to import into it; the CSV's path.
async fn members(store: &lintel_store::Store, people: u64, dir: &Path) -> anyhow::Result<PathBuf> {
    let csv = dir.join("people.csv");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&csv)?);
        writeln!(f, "id,name,email,card_uid,revocation_code,groups")?;
        for i in 1..=people {
            writeln!(f, "m{i},Member {i},m{i}@example.org,{},{},members", hex::encode_upper(uid(i)), i % 97)?;
        }
    }
    store
        .create_door(
            &lintel_proto::NewDoor {
                id: "front".into(),
                name: "Front".into(),
                driver: Default::default(),
                fail_mode: Default::default(),
                required_skill: None,
                open_seconds: None,
                attendance: None,
                site: None,
                unlock_schedule: None,
                egress: None,
                held_open_seconds: None,
            },
            5,
        )
        .await?;
    store.create_group("members", "Members", &["front".into()]).await?;
    store
        .create_grant(&lintel_store::NewGrantRecord { group_id: Some("members".into()), ..Default::default() })
        .await?;
    Ok(csv)
}

/// A wrk script asking about a thousand enrolled cards in turn, each with its code.
fn decision_script(dir: &Path, people: u64) -> anyhow::Result<PathBuf> {
    let script = dir.join("decide.lua");
    let bodies: Vec<String> = (1..=1000u64)
        .map(|i| {
            let member = i * (people / 1000);
            let body = serde_json::json!({"door": "front", "credential": {"kind": "card", "uid": hex::encode_upper(uid(member)), "revocation_code": (member % 97).to_string()}});
            format!("'{body}'")
        })
        .collect();
    std::fs::write(
        &script,
        format!(
            "local bodies = {{{}}}\nlocal i = 0\nwrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n\
             wrk.headers[\"Authorization\"] = \"Bearer {TOKEN}\"\n\
             request = function()\n  i = i % #bodies + 1\n  return wrk.format(nil, nil, nil, bodies[i])\nend\n",
            bodies.join(",")
        ),
    )?;
    Ok(script)
}

/// `lintel_index_updates_total{how}` as a node's metrics say.
/// Issues the `i`-th new card (to member `m<i+1>`) through the API; its UID.
async fn issue_card(client: &reqwest::Client, base: &str, i: u64) -> anyhow::Result<String> {
    let card = hex::encode_upper(uid(10_000_000 + i));
    let resp = client
        .post(format!("{base}/api/v1/people/m{}/credentials", i + 1))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"kind": "card", "uid": card}))
        .send()
        .await?;
    anyhow::ensure!(resp.status() == 201, "issuing a card: {}", resp.text().await?);
    Ok(card)
}

async fn index_updates(client: &reqwest::Client, base: &str, how: &str) -> anyhow::Result<u64> {
    let text = client.get(format!("{base}/metrics")).send().await?.text().await?;
    let prefix = format!("lintel_index_updates_total{{how=\"{how}\"}} ");
    Ok(text.lines().find_map(|l| l.strip_prefix(&prefix)).map_or(0, |n| n.trim().parse().unwrap_or(0)))
}

/// Two nodes on one PostgreSQL database holding `people` members with cards.
async fn two_nodes(url: &str, people: u64, dir: &Path, seconds: u64) -> anyhow::Result<()> {
    let store = lintel_store::Store::open(url, lintel_store::SqliteSync::Normal).await?;
    anyhow::ensure!(
        store.backend() == lintel_store::Backend::Postgres,
        "--two-nodes takes a postgres:// URL: several nodes share PostgreSQL"
    );
    let (existing, _) = store.people(&lintel_store::PersonFilter { limit: 1, ..Default::default() }).await?;
    anyhow::ensure!(
        existing.is_empty(),
        "{} has people already: give the benchmark an empty database",
        lintel_store::redact_url(url)
    );
    let csv = members(&store, people, dir).await?;
    eprintln!("import: {people} people with cards into PostgreSQL ...");
    let report = crate::import::run(&store, &csv, true).await?;
    anyhow::ensure!(report.created == people && report.rejected.is_empty(), "import went wrong: {report:?}");
    store.close().await;

    eprintln!("two nodes: starting them ...");
    let key = dir.join("bench.key").display().to_string();
    let env = [("LINTEL_ADMIN_TOKEN", TOKEN), ("LINTEL_KEY_FILE", key.as_str())];
    let node = || spawn(&["serve", "--listen", "127.0.0.1:0", "--database-url", url], &env, "lintel listening on ");
    let ((_a, a), (_b, b)) = (node()?, node()?);
    let client = reqwest::Client::new();
    let reloads_before = index_updates(&client, &b, "reload").await?;

    eprintln!("two nodes: a card issued on A, asked about on B until B knows it ...");
    let mut delays = Vec::new();
    for i in 0..200u64 {
        let card = issue_card(&client, &a, i).await?;
        let written = Instant::now();
        let ask = serde_json::json!({"door": "front", "credential": {"kind": "card", "uid": card}, "dry_run": true});
        loop {
            let answer: serde_json::Value =
                client.post(format!("{b}/api/v1/decisions")).bearer_auth(TOKEN).json(&ask).send().await?.json().await?;
            if answer["allowed"] == true {
                break;
            }
            anyhow::ensure!(written.elapsed() < Duration::from_secs(10), "B never saw A's card {card}: {answer}");
        }
        delays.push(written.elapsed());
    }
    delays.sort();
    let reloads = index_updates(&client, &b, "reload").await? - reloads_before;
    let patches = index_updates(&client, &b, "patch").await?;

    eprintln!("two nodes: HTTP decisions on one node, then on both at once ...");
    let script = decision_script(dir, people)?;
    wrk(&a, &script, 8, 1)?;
    wrk(&b, &script, 8, 1)?;
    let one = wrk(&a, &script, 32, seconds)?;
    let both = std::thread::scope(|scope| {
        let on_a = scope.spawn(|| wrk(&a, &script, 16, seconds));
        let on_b = wrk(&b, &script, 16, seconds);
        on_a.join().map_err(|_| anyhow::anyhow!("wrk on A panicked"))?.and_then(|on_a| Ok((on_a, on_b?)))
    })?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!();
    println!("| two nodes on PostgreSQL, {people} credentials | figure |");
    println!("|---|---|");
    println!(
        "| write on A returned -> B decides on it, p50 / p99 / max | {:.1} / {:.1} / {:.1} ms ({} writes) |",
        ms(delays[delays.len() / 2]),
        ms(delays[delays.len() * 99 / 100]),
        ms(delays[delays.len() - 1]),
        delays.len()
    );
    println!("| B's index: patches / full reloads meanwhile | {patches} / {reloads} |");
    println!("| HTTP decisions, one node, 32 connections | {:.0} req/s (p99 {:.2} ms) |", one.rps, one.p99_ms);
    println!(
        "| HTTP decisions, both nodes, 16 connections each | {:.0} + {:.0} = {:.0} req/s |",
        both.0.rps,
        both.1.rps,
        both.0.rps + both.1.rps
    );
    Ok(())
}
