//! The group commit of decisions. Callers hand over one decision each and wait; one
//! writer takes everything that queued up meanwhile and commits it in one transaction,
//! using up passes and backup codes exactly once, so that a burst of taps costs one
//! commit and every answer leaves only once its event is durable.
//!
//! On SQLite the writer is a thread of its own with a plain SQLite connection: this is
//! the hot path of every tap, and a direct call costs a fraction of an async driver's
//! round trips. On PostgreSQL it is a task on the pool.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use lintel_core::index::{BACKUP_CODE_USED, NO_PASSES_LEFT};
use lintel_core::passback::{self, Direction, Passage, Presence, Strictness, ZoneDoor};
use lintel_core::{Change, CredentialKey, IndexCredential, PassGrant, Pk};
use lintel_proto::{Event, Reason};
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use sqlx::{Any, AnyPool, AssertSqlSafe, Row, Transaction};
use tokio::sync::{mpsc, oneshot};

use crate::events::{NewEvent, PassUse, insert_many, stored};
use crate::rows::{CredentialParts, grant_id, index_credential, index_credential_from};
use crate::{IndexUpdate, Result, SqliteSync, StoreError};

const MAX_BATCH: usize = 512;

/// A decision waiting for the group commit, with what it would use up.
#[derive(Debug, Clone)]
pub struct PendingDecision {
    pub event: NewEvent,
    /// Use one pass of the first of these grants that has one left (checking its holder
    /// in until the time given), unless its holder is checked in already; when none has
    /// one left, the decision becomes a denial.
    pub pass_grants: Vec<PassGrant>,
    /// Mark this backup code used; when it already is, the decision becomes a denial.
    pub backup_code: Option<Pk>,
}

/// A recorded decision: its event as stored (possibly turned into a denial) and the
/// changes its consumption made to the directory, with the directory version they made
/// (other nodes learn of them through the change feed).
#[derive(Debug, Clone)]
pub struct CommittedDecision {
    pub event: Event,
    pub changes: Vec<Change>,
    pub version: Option<i64>,
}

fn deny(event: &mut NewEvent, reason: Reason, detail: &'static str) {
    event.allowed = Some(false);
    event.reason = Some(reason);
    event.grant_id = None;
    if let serde_json::Value::Object(map) = &mut event.data {
        map.insert("detail".into(), detail.into());
    }
}

pub(crate) struct Job {
    decision: PendingDecision,
    reply: oneshot::Sender<Result<CommittedDecision, String>>,
}

/// What the writer is asked: record a decision, or record what is queued and stop.
#[expect(clippy::large_enum_variant, reason = "nearly every message is a decision; boxing would allocate per tap")]
enum Message {
    Decide(Job),
    Close(oneshot::Sender<()>),
}

/// Where decisions queue for the writer (a thread on SQLite, a task on PostgreSQL).
#[derive(Clone)]
pub(crate) struct DecisionLog {
    jobs: mpsc::Sender<Message>,
}

/// A WAL past this size is checkpointed completely and truncated (the writer waits for
/// that moment); below it, checkpoints never make anyone wait. Under continuous writes a
/// passive checkpoint alone never gets to restart the log, which then grows without bound.
const WAL_TRUNCATE_BYTES: u64 = 16 << 20;

/// How often the WAL's size is looked at: at tens of thousands of decisions a second it
/// grows by megabytes between looks.
const WAL_WATCH_EVERY: Duration = Duration::from_millis(50);

/// What SQLite leaves of a WAL once it restarts it.
const JOURNAL_SIZE_LIMIT: i64 = 16 << 20;

impl DecisionLog {
    /// Opens the SQLite writer's own connection (the migrations have run) and starts it.
    pub(crate) fn sqlite(path: PathBuf, sync: SqliteSync) -> Result<Self> {
        let conn = rusqlite::Connection::open(&path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", if sync == SqliteSync::Full { "FULL" } else { "NORMAL" })?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
        // Checkpoints run on a thread of their own, so a tap never waits for one.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpoints = rusqlite::Connection::open(&path)?;
        // A complete checkpoint holds writers back while it waits for readers: it gives up
        // soon and tries again, rather than stall taps behind a long read.
        checkpoints.busy_timeout(Duration::from_millis(250))?;
        checkpoints.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
        let mut wal = path.into_os_string();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        let (jobs, rx) = mpsc::channel(16 * MAX_BATCH);
        let (stop, stopped) = std_mpsc::channel::<()>();
        let checkpointer = std::thread::Builder::new()
            .name("lintel-checkpoint".into())
            .spawn(move || {
                let mut last_passive = std::time::Instant::now();
                while let Err(std_mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(WAL_WATCH_EVERY) {
                    let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
                    if size > WAL_TRUNCATE_BYTES {
                        checkpoint(&checkpoints, "TRUNCATE", size);
                    } else if last_passive.elapsed() >= Duration::from_secs(1) {
                        checkpoint(&checkpoints, "PASSIVE", size);
                        last_passive = std::time::Instant::now();
                    }
                }
            })
            .map_err(|e| StoreError::Invalid(format!("cannot start a thread: {e}")))?;
        std::thread::Builder::new()
            .name("lintel-decision-log".into())
            .spawn(move || {
                let closed = sqlite_writer(conn, rx);
                drop(stop);
                let _ = checkpointer.join();
                if let Some(closed) = closed {
                    let _ = closed.send(());
                }
            })
            .map_err(|e| StoreError::Invalid(format!("cannot start a thread: {e}")))?;
        Ok(Self { jobs })
    }

    pub(crate) fn postgres(pool: AnyPool) -> Self {
        let (jobs, rx) = mpsc::channel(16 * MAX_BATCH);
        tokio::spawn(any_writer(pool, rx));
        Self { jobs }
    }

    pub(crate) async fn commit(&self, decision: PendingDecision) -> Result<CommittedDecision> {
        let (reply, answer) = oneshot::channel();
        let sent = self.jobs.send(Message::Decide(Job { decision, reply })).await.is_ok();
        let stopped = || StoreError::Invalid("the decision log has stopped".into());
        if !sent {
            return Err(stopped());
        }
        answer.await.map_err(|_| stopped())?.map_err(StoreError::Invalid)
    }

    /// Records what is queued, then stops the writer and closes its connections (on
    /// SQLite, the last connection to close checkpoints the WAL and removes it).
    pub(crate) async fn close(&self) {
        let (closed, done) = oneshot::channel();
        if self.jobs.send(Message::Close(closed)).await.is_ok() {
            let _ = done.await;
        }
    }
}

/// One checkpoint, `PASSIVE` (never waits) or `TRUNCATE` (complete, restarting the log).
fn checkpoint(conn: &rusqlite::Connection, mode: &str, wal_bytes: u64) {
    let sql = if mode == "TRUNCATE" { "PRAGMA wal_checkpoint(TRUNCATE)" } else { "PRAGMA wal_checkpoint(PASSIVE)" };
    match conn.query_row(sql, [], |r| r.get::<_, i64>(0)) {
        Ok(0) => {}
        // Busy: readers or the writer held on past the busy timeout; tried again soon.
        Ok(_) => tracing::debug!(wal_bytes, mode, "WAL checkpoint could not complete"),
        Err(e) => tracing::warn!(error = %e, mode, "WAL checkpoint failed"),
    }
}

/// Takes what queued up behind `first`, up to a batch, stopping at a close.
fn batch_after(first: Job, rx: &mut mpsc::Receiver<Message>) -> (Vec<Job>, Option<oneshot::Sender<()>>) {
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(Message::Decide(job)) => batch.push(job),
            Ok(Message::Close(closed)) => return (batch, Some(closed)),
            Err(_) => break,
        }
    }
    (batch, None)
}

fn reply_all(replies: Vec<oneshot::Sender<Result<CommittedDecision, String>>>, result: Result<Vec<CommittedDecision>>) {
    match result {
        Ok(committed) => {
            for (reply, c) in replies.into_iter().zip(committed) {
                let _ = reply.send(Ok(c));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "group commit failed; the decisions in it are refused");
            for reply in replies {
                let _ = reply.send(Err(e.to_string()));
            }
        }
    }
}

/// Commits batches until asked to close (returns who asked) or every sender is gone.
fn sqlite_writer(mut conn: rusqlite::Connection, mut rx: mpsc::Receiver<Message>) -> Option<oneshot::Sender<()>> {
    while let Some(message) = rx.blocking_recv() {
        let first = match message {
            Message::Decide(job) => job,
            Message::Close(closed) => return Some(closed),
        };
        let (batch, closed) = batch_after(first, &mut rx);
        let (decisions, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|j| (j.decision, j.reply)).unzip();
        match commit_sqlite(&mut conn, decisions.clone()) {
            Ok(committed) => reply_all(replies, Ok(committed)),
            // One bad decision must not take the others down with it: commit them one by one.
            Err(_) if decisions.len() > 1 => {
                for (decision, reply) in decisions.into_iter().zip(replies) {
                    reply_all(vec![reply], commit_sqlite(&mut conn, vec![decision]));
                }
            }
            Err(e) => reply_all(replies, Err(e)),
        }
        if closed.is_some() {
            return closed;
        }
    }
    None
}

fn commit_sqlite(conn: &mut rusqlite::Connection, batch: Vec<PendingDecision>) -> Result<Vec<CommittedDecision>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut out = Vec::with_capacity(batch.len());
    let mut zones = HashMap::new();
    for mut pending in batch {
        let mut ledger = SqliteLedger { tx: &tx, zones: &mut zones };
        let changes = futures::executor::block_on(consume(&mut ledger, &mut pending))?;
        let e = &pending.event;
        tx.prepare_cached(
            "INSERT INTO events (at, kind, allowed, reason, person_id, door_id, credential_id, grant_id, data, pass_use) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?
        .execute(params![
            e.at,
            e.kind,
            e.allowed.map(i64::from),
            e.reason.map(|r| r.as_str()),
            e.person_id,
            e.door_id,
            e.credential_id,
            e.grant_id,
            serde_json::to_string(&e.data).expect("JSON values serialize"),
            e.pass_use.map(crate::PassUse::as_str),
        ])?;
        out.push(CommittedDecision { event: stored(e, tx.last_insert_rowid())?, changes, version: None });
    }
    let used: Vec<Change> = out.iter().flat_map(|c| c.changes.iter().cloned()).collect();
    if !used.is_empty() {
        let version = crate::changes::bump_version_sqlite(&tx, &IndexUpdate::Patch(used))?;
        for c in out.iter_mut().filter(|c| !c.changes.is_empty()) {
            c.version = Some(version);
        }
    }
    tx.commit()?;
    Ok(out)
}

async fn any_writer(pool: AnyPool, mut rx: mpsc::Receiver<Message>) {
    while let Some(message) = rx.recv().await {
        let first = match message {
            Message::Decide(job) => job,
            Message::Close(closed) => {
                let _ = closed.send(());
                return;
            }
        };
        let (batch, closed) = batch_after(first, &mut rx);
        let (decisions, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|j| (j.decision, j.reply)).unzip();
        match commit_any(&pool, decisions.clone()).await {
            Ok(committed) => reply_all(replies, Ok(committed)),
            // One bad decision must not take the others down with it: commit them one by one.
            Err(_) if decisions.len() > 1 => {
                for (decision, reply) in decisions.into_iter().zip(replies) {
                    reply_all(vec![reply], commit_any(&pool, vec![decision]).await);
                }
            }
            Err(e) => reply_all(replies, Err(e)),
        }
        if let Some(closed) = closed {
            let _ = closed.send(());
            return;
        }
    }
}

async fn commit_any(pool: &AnyPool, batch: Vec<PendingDecision>) -> Result<Vec<CommittedDecision>> {
    let mut tx = pool.begin().await?;
    // The same lock as every other event writer on PostgreSQL: sequence numbers become
    // visible in order.
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(crate::EVENTS_LOCK).execute(&mut *tx).await?;
    let mut events = Vec::with_capacity(batch.len());
    let mut all_changes = Vec::with_capacity(batch.len());
    let mut ledger = AnyLedger::new(&mut tx);
    for mut pending in batch {
        all_changes.push(consume(&mut ledger, &mut pending).await?);
        events.push(pending.event);
    }
    let mut out = Vec::with_capacity(events.len());
    for chunk in events.chunks(EVENTS_PER_STATEMENT) {
        out.extend(insert_many(&mut *tx, chunk).await?);
    }
    let used: Vec<Change> = all_changes.iter().flatten().cloned().collect();
    let version = match used.is_empty() {
        true => None,
        false => Some(crate::bump_version(&mut tx, &IndexUpdate::Patch(used)).await?),
    };
    tx.commit().await?;
    let committed = out.into_iter().zip(all_changes);
    Ok(committed
        .map(|(event, changes)| {
            let version = version.filter(|_| !changes.is_empty());
            CommittedDecision { event, changes, version }
        })
        .collect())
}

/// The most events one statement carries (10 parameters each, well under the limits).
const EVENTS_PER_STATEMENT: usize = 500;

/// What the consumption rules ask of the transaction the decisions are committed in, the
/// same on either driver.
pub(crate) trait Ledger {
    /// Until when the grant's holder is checked in, if they are.
    async fn checked_in_until(&mut self, grant: Pk) -> Result<Option<i64>>;
    /// Uses one pass of the grant if it has one left, checking its holder in until
    /// `until`; how many are used now.
    async fn take_pass(&mut self, grant: Pk, until: Option<i64>) -> Result<Option<i64>>;
    /// How many passes the grant has (none: unlimited, or the grant is gone).
    async fn passes(&mut self, grant: Pk) -> Result<Option<i64>>;
    /// Undoes [`Ledger::take_pass`]: one pass back, the check-in as it was.
    async fn give_back_pass(&mut self, grant: Pk, checked_in_until: Option<i64>) -> Result<()>;
    /// Marks the backup code used if it is still active; whether it was.
    async fn use_backup_code(&mut self, credential: Pk, at: i64) -> Result<bool>;
    /// The credential as the index keeps it.
    async fn credential(&mut self, credential: Pk) -> Result<(CredentialKey, IndexCredential)>;
    /// The anti-passback zone the door is in, if any.
    async fn zone_of(&mut self, door: &str) -> Result<Option<ZoneRule>>;
    /// The person's last passage in the zone.
    async fn presence(&mut self, zone: Pk, person: &str) -> Result<Option<Presence>>;
    /// Records the person's passage in the zone (nothing when the person is gone).
    async fn set_presence(&mut self, zone: Pk, person: &str, presence: Presence) -> Result<()>;
}

/// A door's anti-passback zone, as the decision log reads it.
#[derive(Debug, Clone)]
pub(crate) struct ZoneRule {
    pk: Pk,
    id: String,
    door: ZoneDoor,
}

/// A passage through a zone's door, judged, waiting to be recorded.
pub(crate) struct Judged {
    zone: ZoneRule,
    person: String,
    passage: Passage,
}

/// Judges an allowed entry or exit of a person at a door in an anti-passback zone.
pub(crate) async fn judge_passage(ledger: &mut impl Ledger, event: &NewEvent) -> Result<Option<Judged>> {
    let (Some(door), Some(person), Some(true)) = (&event.door_id, &event.person_id, event.allowed) else {
        return Ok(None);
    };
    let Some(zone) = ledger.zone_of(door).await? else {
        return Ok(None);
    };
    let known = ledger.presence(zone.pk, person).await?;
    let passage = passback::judge(zone.door, known, event.at);
    Ok(Some(Judged { zone, person: person.clone(), passage }))
}

/// Records a judged passage that let the person through: their new presence, and on the
/// event a second entry without an exit (`anti_passback: violation`, which raises an alarm).
pub(crate) async fn record_passage(ledger: &mut impl Ledger, event: &mut NewEvent, judged: Judged) -> Result<()> {
    let presence = match judged.passage {
        Passage::Passes(presence) => presence,
        Passage::Violation(presence) => {
            mark_violation(event);
            presence
        }
        // Refused is never recorded as a passage; a stale one changes nothing newer.
        Passage::Refused | Passage::Stale => return Ok(()),
    };
    if let serde_json::Value::Object(data) = &mut event.data {
        data.insert("zone".into(), judged.zone.id.clone().into());
    }
    ledger.set_presence(judged.zone.pk, &judged.person, presence).await
}

/// Records a passage a controller let through offline, in the order it happened: a
/// second entry it could not refuse is a violation, whatever the zone's strictness. One
/// older than what lintel knows since (another reader's passage, recorded while this
/// controller was cut off) changes nothing, but the controller's own finding of a second
/// entry (it saw both) still stands.
pub(crate) async fn record_offline_passage(ledger: &mut impl Ledger, event: &mut NewEvent) -> Result<()> {
    let Some(mut judged) = judge_passage(ledger, event).await? else {
        return Ok(());
    };
    let seen_twice = event.data.get("anti_passback_local").and_then(serde_json::Value::as_bool) == Some(true);
    match judged.passage {
        Passage::Refused => judged.passage = Passage::Violation(Presence { inside: true, at: event.at }),
        Passage::Stale if seen_twice => mark_violation(event),
        _ => {}
    }
    record_passage(ledger, event, judged).await
}

fn mark_violation(event: &mut NewEvent) {
    if let serde_json::Value::Object(data) = &mut event.data {
        data.insert("anti_passback".into(), "violation".into());
    }
}

fn zone_rule(pk: Pk, id: String, strictness: &str, reset_minutes: i64, direction: &str) -> Result<ZoneRule> {
    let bad = || StoreError::Corrupt(format!("zone {id} holds a value lintel does not know"));
    let strictness = Strictness::parse(strictness).ok_or_else(bad)?;
    let direction = Direction::parse(direction).ok_or_else(bad)?;
    let door = ZoneDoor { strictness, direction, reset_micros: reset_minutes.saturating_mul(60_000_000) };
    Ok(ZoneRule { pk, id, door })
}

/// Uses up what an allowed decision spends (one pass of the first of its grants that has
/// one left, unless a check-in covers the entry; its backup code), exactly once, or turns
/// it into a denial when it is gone; returns what changed for the index.
async fn consume(ledger: &mut impl Ledger, pending: &mut PendingDecision) -> Result<Vec<Change>> {
    let mut changes = Vec::new();
    // Before anything is used up: a refused second entry spends no pass.
    let judged = judge_passage(ledger, &pending.event).await?;
    if judged.as_ref().is_some_and(|j| j.passage == Passage::Refused) {
        deny(&mut pending.event, Reason::AntiPassback, passback::ENTERED_ALREADY);
        return Ok(changes);
    }
    let at = pending.event.at;
    // What the entry took, to give back if its backup code turns out used.
    let mut taken: Option<(Pk, Option<i64>)> = None;
    if !pending.pass_grants.is_empty() {
        let mut entered = false;
        for pass in &pending.pass_grants {
            let grant = pass.grant;
            let checked_in = ledger.checked_in_until(grant).await?;
            // An entry just before this one (same batch, another node) checked them in.
            if let Some(until) = checked_in.filter(|until| *until > at) {
                checked_in_event(&mut pending.event, grant, PassUse::CheckedIn, until);
                entered = true;
                break;
            }
            let until = (pass.checked_in_until != i64::MIN).then_some(pass.checked_in_until);
            match ledger.take_pass(grant, until).await? {
                Some(used) => {
                    let used = u32::try_from(used).unwrap_or(u32::MAX);
                    changes.push(Change::PassesUsed { grant, used, checked_in_until: pass.checked_in_until });
                    checked_in_event(&mut pending.event, grant, PassUse::Used, pass.checked_in_until);
                    taken = Some((grant, checked_in));
                    entered = true;
                    break;
                }
                // Used up elsewhere (another tap, another node): tell the index.
                None => {
                    if let Some(passes) = ledger.passes(grant).await? {
                        let used = u32::try_from(passes).unwrap_or(u32::MAX);
                        changes.push(Change::PassesUsed { grant, used, checked_in_until: i64::MIN });
                    }
                }
            }
        }
        if !entered {
            deny(&mut pending.event, Reason::NoPassesLeft, NO_PASSES_LEFT);
        }
    }
    if let (Some(credential), true) = (pending.backup_code, pending.event.allowed == Some(true)) {
        if ledger.use_backup_code(credential, pending.event.at).await? {
            let (key, cred) = ledger.credential(credential).await?;
            changes.push(Change::Credential(key, cred));
        } else {
            // Give back the pass this decision took: it did not let anyone in.
            if let Some((grant, checked_in)) = taken {
                changes.retain(|c| !matches!(c, Change::PassesUsed { grant: g, .. } if *g == grant));
                ledger.give_back_pass(grant, checked_in).await?;
            }
            deny(&mut pending.event, Reason::CredentialRevoked, BACKUP_CODE_USED);
        }
    }
    if let (Some(judged), Some(true)) = (judged, pending.event.allowed) {
        record_passage(ledger, &mut pending.event, judged).await?;
    }
    Ok(changes)
}

/// Marks the entry as made through `grant`'s pass, and shows until when its holder is
/// checked in.
fn checked_in_event(event: &mut NewEvent, grant: Pk, pass_use: PassUse, until: i64) {
    event.grant_id = Some(grant_id(grant));
    event.pass_use = Some(pass_use);
    if let (serde_json::Value::Object(data), Some(until)) =
        (&mut event.data, (until != i64::MIN).then(|| chrono::DateTime::from_timestamp_micros(until)).flatten())
    {
        data.insert("checked_in_until".into(), until.to_rfc3339().into());
    }
}

const CHECKED_IN_UNTIL: &str = "SELECT checked_in_until FROM grants WHERE pk = $1";
const TAKE_PASS: &str = "UPDATE grants SET passes_used = passes_used + 1, checked_in_until = $2 \
                         WHERE pk = $1 AND passes IS NOT NULL AND passes_used < passes RETURNING passes_used";
const PASSES: &str = "SELECT passes FROM grants WHERE pk = $1";
const GIVE_BACK_PASS: &str = "UPDATE grants SET passes_used = passes_used - 1, checked_in_until = $2 WHERE pk = $1";
const ZONE_OF: &str = "SELECT z.pk, z.id, z.strictness, z.reset_minutes, d.direction \
                       FROM zone_doors d JOIN zones z ON z.pk = d.zone_pk WHERE d.door_id = $1";
const PRESENCE: &str = "SELECT inside, at FROM zone_presence WHERE zone_pk = $1 AND person_id = $2";
const SET_PRESENCE: &str = "INSERT INTO zone_presence (zone_pk, person_id, inside, at) \
                            SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM people WHERE id = $2) \
                            ON CONFLICT (zone_pk, person_id) DO UPDATE SET inside = excluded.inside, at = excluded.at";
const USE_BACKUP_CODE: &str = "UPDATE credentials SET status = 'used', status_reason = 'used', revoked_at = $2 \
                               WHERE pk = $1 AND status = 'active'";

/// The SQLite writer's own transaction. Its calls never wait (a plain SQLite connection),
/// so [`consume`] runs to its end in one poll.
struct SqliteLedger<'a> {
    tx: &'a rusqlite::Transaction<'a>,
    /// Doors' zones as read in this transaction: a burst of taps at one door asks once.
    zones: &'a mut HashMap<String, Option<ZoneRule>>,
}

impl Ledger for SqliteLedger<'_> {
    async fn checked_in_until(&mut self, grant: Pk) -> Result<Option<i64>> {
        Ok(self.tx.prepare_cached(CHECKED_IN_UNTIL)?.query_row([grant], |r| r.get(0)).optional()?.flatten())
    }

    async fn take_pass(&mut self, grant: Pk, until: Option<i64>) -> Result<Option<i64>> {
        // By name: SQLite numbers `$n` in order of appearance, not by their digits.
        let params = rusqlite::named_params! {"$1": grant, "$2": until};
        Ok(self.tx.prepare_cached(TAKE_PASS)?.query_row(params, |r| r.get(0)).optional()?)
    }

    async fn passes(&mut self, grant: Pk) -> Result<Option<i64>> {
        Ok(self.tx.prepare_cached(PASSES)?.query_row([grant], |r| r.get(0)).optional()?.flatten())
    }

    async fn give_back_pass(&mut self, grant: Pk, checked_in_until: Option<i64>) -> Result<()> {
        self.tx
            .prepare_cached(GIVE_BACK_PASS)?
            .execute(rusqlite::named_params! {"$1": grant, "$2": checked_in_until})?;
        Ok(())
    }

    async fn use_backup_code(&mut self, credential: Pk, at: i64) -> Result<bool> {
        // By name: SQLite numbers `$n` in order of appearance, not by their digits.
        Ok(self.tx.prepare_cached(USE_BACKUP_CODE)?.execute(rusqlite::named_params! {"$1": credential, "$2": at})? == 1)
    }

    async fn credential(&mut self, credential: Pk) -> Result<(CredentialKey, IndexCredential)> {
        let parts = self.tx.query_row(
            "SELECT pk, person_pk, kind, card_uid, revocation_code, digest, status FROM credentials WHERE pk = $1",
            [credential],
            |r| {
                Ok(CredentialParts {
                    pk: r.get(0)?,
                    person_pk: r.get(1)?,
                    kind: r.get(2)?,
                    card_uid: r.get(3)?,
                    revocation_code: r.get(4)?,
                    digest: r.get(5)?,
                    status: r.get(6)?,
                })
            },
        )?;
        index_credential_from(parts)
    }

    async fn zone_of(&mut self, door: &str) -> Result<Option<ZoneRule>> {
        if let Some(known) = self.zones.get(door) {
            return Ok(known.clone());
        }
        let row = self
            .tx
            .prepare_cached(ZONE_OF)?
            .query_row([door], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, String>(2)?, r.get(3)?, r.get::<_, String>(4)?))
            })
            .optional()?;
        let zone = row
            .map(|(pk, id, strictness, reset, direction)| zone_rule(pk, id, &strictness, reset, &direction))
            .transpose()?;
        self.zones.insert(door.to_owned(), zone.clone());
        Ok(zone)
    }

    async fn presence(&mut self, zone: Pk, person: &str) -> Result<Option<Presence>> {
        let params = rusqlite::named_params! {"$1": zone, "$2": person};
        let row =
            self.tx.prepare_cached(PRESENCE)?.query_row(params, |r| Ok((r.get::<_, i64>(0)?, r.get(1)?))).optional()?;
        Ok(row.map(|(inside, at)| Presence { inside: inside != 0, at }))
    }

    async fn set_presence(&mut self, zone: Pk, person: &str, presence: Presence) -> Result<()> {
        let params =
            rusqlite::named_params! {"$1": zone, "$2": person, "$3": i64::from(presence.inside), "$4": presence.at};
        self.tx.prepare_cached(SET_PRESENCE)?.execute(params)?;
        Ok(())
    }
}

/// A transaction of the sqlx pool (PostgreSQL).
pub(crate) struct AnyLedger<'a> {
    tx: &'a mut Transaction<'static, Any>,
    /// Doors' zones as read in this transaction: a batch of taps at one door asks once
    /// (a round trip each on PostgreSQL).
    zones: HashMap<String, Option<ZoneRule>>,
}

impl<'a> AnyLedger<'a> {
    pub(crate) fn new(tx: &'a mut Transaction<'static, Any>) -> Self {
        Self { tx, zones: HashMap::new() }
    }
}

impl Ledger for AnyLedger<'_> {
    async fn checked_in_until(&mut self, grant: Pk) -> Result<Option<i64>> {
        let until: Option<Option<i64>> =
            sqlx::query_scalar(CHECKED_IN_UNTIL).bind(grant).fetch_optional(&mut **self.tx).await?;
        Ok(until.flatten())
    }

    async fn take_pass(&mut self, grant: Pk, until: Option<i64>) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(TAKE_PASS).bind(grant).bind(until).fetch_optional(&mut **self.tx).await?)
    }

    async fn passes(&mut self, grant: Pk) -> Result<Option<i64>> {
        let passes: Option<Option<i64>> = sqlx::query_scalar(PASSES).bind(grant).fetch_optional(&mut **self.tx).await?;
        Ok(passes.flatten())
    }

    async fn give_back_pass(&mut self, grant: Pk, checked_in_until: Option<i64>) -> Result<()> {
        sqlx::query(GIVE_BACK_PASS).bind(grant).bind(checked_in_until).execute(&mut **self.tx).await?;
        Ok(())
    }

    async fn use_backup_code(&mut self, credential: Pk, at: i64) -> Result<bool> {
        let done = sqlx::query(USE_BACKUP_CODE).bind(credential).bind(at).execute(&mut **self.tx).await?;
        Ok(done.rows_affected() == 1)
    }

    async fn credential(&mut self, credential: Pk) -> Result<(CredentialKey, IndexCredential)> {
        let sql =
            format!("SELECT {} FROM {} WHERE c.pk = $1", crate::rows::CREDENTIAL_COLUMNS, crate::rows::CREDENTIAL_FROM);
        let row = sqlx::query(AssertSqlSafe(sql)).bind(credential).fetch_one(&mut **self.tx).await?;
        index_credential(&row)
    }

    async fn zone_of(&mut self, door: &str) -> Result<Option<ZoneRule>> {
        if let Some(known) = self.zones.get(door) {
            return Ok(known.clone());
        }
        let row = sqlx::query(ZONE_OF).bind(door).fetch_optional(&mut **self.tx).await?;
        let zone = row
            .map(|r| {
                let strictness: String = r.try_get(2)?;
                let direction: String = r.try_get(4)?;
                zone_rule(r.try_get(0)?, r.try_get(1)?, &strictness, r.try_get(3)?, &direction)
            })
            .transpose()?;
        self.zones.insert(door.to_owned(), zone.clone());
        Ok(zone)
    }

    async fn presence(&mut self, zone: Pk, person: &str) -> Result<Option<Presence>> {
        let row = sqlx::query(PRESENCE).bind(zone).bind(person).fetch_optional(&mut **self.tx).await?;
        row.map(|r| Ok(Presence { inside: r.try_get::<i64, _>(0)? != 0, at: r.try_get(1)? })).transpose()
    }

    async fn set_presence(&mut self, zone: Pk, person: &str, presence: Presence) -> Result<()> {
        sqlx::query(SET_PRESENCE)
            .bind(zone)
            .bind(person)
            .bind(i64::from(presence.inside))
            .bind(presence.at)
            .execute(&mut **self.tx)
            .await?;
        Ok(())
    }
}
