//! The decision index kept in step with the store. Every directory write runs under one
//! lock: the store commits, then the index is patched from what the store read back, and
//! only then does the caller get its answer, so the next decision already sees the change.
//! Writes by other processes (the CLI, other nodes) show up as a directory version this
//! node did not make; it then patches the index with what the change feed says those
//! versions touched (or reloads it whole when that is simpler).

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use lintel_core::{Change, Index, OfflineDoors};
use lintel_proto::Event;
use lintel_store::{Channel, EventFilter, Feed, IndexUpdate, NewEvent, Store, StoreError, Written};
use tokio::sync::{Mutex, MutexGuard, broadcast};

/// Who makes a directory change, as the audit trail names them: every write says. An
/// operator limited to one site carries it, and the writes keep them to its doors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    label: String,
    site: Option<String>,
}

impl Actor {
    /// An operator's token (the API, or the web UI signed in with it).
    pub fn token(name: &str) -> Self {
        Self::named(format!("token:{name}"))
    }

    /// An operator signed in to the web UI through OpenID.
    pub fn operator(person_id: &str) -> Self {
        Self::named(format!("operator:{person_id}"))
    }

    /// Another system: a membership platform, an identity provider, a directory.
    pub fn integration(name: &str) -> Self {
        Self::named(format!("integration:{name}"))
    }

    /// A member acting through a signed operation (sharing a lock).
    pub fn user(person_id: &str) -> Self {
        Self::named(format!("user:{person_id}"))
    }

    /// A device reporting what it saw (`controller:<id>`).
    pub fn device(name: &str) -> Self {
        Self::named(name.to_owned())
    }

    /// Someone at the server's command line.
    pub fn cli() -> Self {
        Self::named("cli".to_owned())
    }

    /// lintel itself (expirations, a station's own bookkeeping).
    pub fn lintel() -> Self {
        Self::named("lintel".to_owned())
    }

    /// One named before, as the store kept it.
    pub(crate) fn recorded(label: String) -> Self {
        Self::named(label)
    }

    fn named(label: String) -> Self {
        Self { label, site: None }
    }

    /// The same operator, whose role holds only at this site's doors (when `Some`).
    pub fn limited_to(self, site: Option<String>) -> Self {
        Self { site, ..self }
    }

    /// The one site this operator is limited to, if any.
    pub fn site(&self) -> Option<&str> {
        self.site.as_deref()
    }

    pub fn as_str(&self) -> &str {
        &self.label
    }
}

pub struct Directory {
    pub store: Store,
    index: ArcSwap<Index>,
    /// Held for every write; guards which directory versions the index reflects.
    version: Mutex<Versions>,
    events: broadcast::Sender<Event>,
    /// The doors whose offline lists the changes since the last [`Directory::take_offline_touched`]
    /// may have altered.
    offline_touched: std::sync::Mutex<OfflineDoors>,
}

/// The index reflects every directory change up to `complete`, and our own writes up to
/// `newest_patch` (beyond `complete` when another process wrote in between).
#[derive(Debug, Clone, Copy)]
struct Versions {
    complete: i64,
    newest_patch: i64,
}

pub struct WriteGuard<'a> {
    directory: &'a Directory,
    version: MutexGuard<'a, Versions>,
}

impl Directory {
    /// Loads the index and follows other processes' writes every `follow_every`.
    pub async fn open(store: Store, follow_every: Duration) -> Result<Arc<Self>, StoreError> {
        let (events, _) = broadcast::channel(4096);
        let directory = Self::load(store, events).await?;
        directory.spawn_follower(follow_every);
        directory.spawn_events_of_others();
        Ok(directory)
    }

    pub async fn load(store: Store, events: broadcast::Sender<Event>) -> Result<Arc<Self>, StoreError> {
        let (index, version) = store.load_index().await?;
        Ok(Arc::new(Self {
            store,
            index: ArcSwap::from_pointee(index),
            version: Mutex::new(Versions { complete: version, newest_patch: version }),
            events,
            offline_touched: std::sync::Mutex::new(OfflineDoors::All),
        }))
    }

    /// The current snapshot; readers never wait.
    pub fn index(&self) -> arc_swap::Guard<Arc<Index>> {
        self.index.load()
    }

    /// The doors whose offline lists may have changed since the last call (every door at
    /// the first), for the one keeper of the controllers' lists.
    pub fn take_offline_touched(&self) -> OfflineDoors {
        std::mem::replace(
            &mut self.offline_touched.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
            OfflineDoors::none(),
        )
    }

    /// Swaps the snapshot, noting which doors' offline lists that may alter.
    fn replace_index(&self, index: Index, touched: OfflineDoors) {
        self.index.store(Arc::new(index));
        self.offline_touched.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend(touched);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    pub fn publish(&self, events: &[Event]) {
        for e in events {
            // No subscriber is fine: the log is in the store.
            let _ = self.events.send(e.clone());
        }
    }

    /// Records an event that changes nothing else (a door opened, a sync's report) and
    /// shows it on the live streams: the one way such an event is written.
    pub async fn record(&self, event: NewEvent) -> Result<Event, StoreError> {
        let recorded = self.store.append_event(&event).await?;
        self.publish(std::slice::from_ref(&recorded));
        Ok(recorded)
    }

    pub async fn lock(&self) -> WriteGuard<'_> {
        WriteGuard { directory: self, version: self.version.lock().await }
    }

    /// Runs a store write under the lock, recorded as `by`'s, and brings the index up to
    /// date with it. It runs as a task of its own: a caller that goes away (a client hanging up) cannot
    /// leave a committed write out of the index.
    pub async fn write<T, F, Fut>(self: &Arc<Self>, by: &Actor, write: F) -> Result<Written<T>, StoreError>
    where
        F: FnOnce(Store) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Written<T>, StoreError>> + Send,
        T: Send + Sync + 'static,
    {
        let me = self.clone();
        let store = self.store.acting_as(by.as_str());
        let task = tokio::spawn(async move {
            let mut guard = me.lock().await;
            let written = write(store).await?;
            guard.absorb(&written).await?;
            let behind = guard.version.complete < written.version;
            drop(guard);
            me.publish(&written.events);
            if behind {
                // Another process wrote too: fetch its changes now, not at the next tick.
                let me = me.clone();
                tokio::spawn(async move {
                    if let Err(e) = me.follow().await {
                        tracing::warn!(error = %e, "could not reload the index");
                    }
                });
            }
            Ok(written)
        });
        task.await.map_err(|e| StoreError::Invalid(format!("the write task failed: {e}")))?
    }

    /// Brings the index up to date with what other processes wrote (other nodes, the CLI):
    /// the change feed's patch when there is one, else a reload. Called on a timer and on
    /// other nodes' notifications.
    pub async fn follow(&self) -> Result<bool, StoreError> {
        let stored = self.store.directory_version().await?;
        if stored == self.version.lock().await.complete {
            return Ok(false);
        }
        {
            // Read under the write lock, so that no write of ours lands between what the
            // feed reads and its patch (which would then undo it).
            let mut guard = self.lock().await;
            match self.store.changes_since(guard.version.complete).await? {
                Feed::Current => return Ok(false),
                Feed::Patch { changes, version } => {
                    guard.apply(&changes);
                    let v = &mut *guard.version;
                    *v = Versions { complete: version, newest_patch: v.newest_patch.max(version) };
                    metrics::counter!("lintel_index_updates_total", "how" => "patch").increment(1);
                    return Ok(true);
                }
                Feed::Reload => {}
            }
        }
        // The load runs without the write lock (at a million people it takes seconds): the
        // lock is taken only to swap, and only if no write of ours came after the load's
        // snapshot (its patch would be lost).
        let (index, version) = self.store.load_index().await?;
        let mut guard = self.lock().await;
        metrics::counter!("lintel_index_updates_total", "how" => "reload").increment(1);
        if guard.version.newest_patch > version {
            // A write of ours landed during the load: load again, this time holding the lock.
            guard.reload().await?;
            return Ok(true);
        }
        self.replace_index(index, OfflineDoors::All);
        *guard.version = Versions { complete: version, newest_patch: version };
        Ok(true)
    }

    /// Follows other processes' writes: at once when another node says it wrote
    /// (PostgreSQL's notifications), and every `every` regardless (SQLite, or a missed one).
    pub fn spawn_follower(self: &Arc<Self>, every: Duration) {
        let me = Arc::downgrade(self);
        let mut woken = self.store.notifications(Channel::Directory);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                match &mut woken {
                    Some(woken) => tokio::select! {
                        _ = tick.tick() => {}
                        _ = woken.recv() => {}
                    },
                    None => {
                        tick.tick().await;
                    }
                }
                let Some(directory) = me.upgrade() else { return };
                if let Err(e) = directory.follow().await {
                    tracing::warn!(error = %e, "could not follow the directory's changes");
                }
            }
        });
    }
}

impl Directory {
    /// Publishes other nodes' events to this node's live streams (the API's event stream,
    /// the dashboard, the facility display), read from the log when those nodes say they
    /// wrote some (PostgreSQL's notifications). The streams put them in order and drop
    /// what they already have.
    fn spawn_events_of_others(self: &Arc<Self>) {
        let Some(mut woken) = self.store.notifications(Channel::Events) else { return };
        let me = Arc::downgrade(self);
        let store = self.store.clone();
        tokio::spawn(async move {
            // What came before is in the log for whoever asks; from here on, it is pushed.
            let mut read_up_to = store.last_event_seq().await.unwrap_or(0);
            while woken.recv().await.is_some() {
                let Some(directory) = me.upgrade() else { return };
                match directory.publish_stored_after(read_up_to).await {
                    Ok(seq) => read_up_to = seq,
                    Err(e) => tracing::warn!(error = %e, "other nodes' events not read"),
                }
            }
        });
    }

    /// Publishes the events stored after `after`; returns the last one's place.
    async fn publish_stored_after(&self, mut after: i64) -> Result<i64, StoreError> {
        loop {
            let page =
                self.store.events(&EventFilter { after: Some(after), limit: 1000, ..Default::default() }).await?;
            let Some(last) = page.last() else { return Ok(after) };
            after = crate::follow::seq(last);
            self.publish(&page);
            if page.len() < 1000 {
                return Ok(after);
            }
        }
    }
}

impl WriteGuard<'_> {
    pub fn apply(&mut self, changes: &[Change]) {
        if !changes.is_empty() {
            let before = self.directory.index.load_full();
            let next = before.apply(changes);
            let touched = before.offline_doors_touched(&next, changes);
            self.directory.replace_index(next, touched);
        }
    }

    /// Applies what this process changed at `version` (a write's rows read back, what a
    /// decision used up). The rows read back are current, so the patch is right even when
    /// another process wrote meanwhile; its other changes come with the follower, which
    /// sees the version gap (the version only moves on when there was none).
    pub fn apply_at(&mut self, changes: &[Change], version: i64) {
        self.apply(changes);
        let v = &mut *self.version;
        v.newest_patch = v.newest_patch.max(version);
        if version == v.complete + 1 {
            v.complete = version;
        }
    }

    async fn absorb<T>(&mut self, written: &Written<T>) -> Result<(), StoreError> {
        match &written.index {
            IndexUpdate::Patch(changes) => {
                self.apply_at(changes, written.version);
                Ok(())
            }
            IndexUpdate::Reload => self.reload().await,
        }
    }

    async fn reload(&mut self) -> Result<(), StoreError> {
        let (index, version) = self.directory.store.load_index().await?;
        self.directory.replace_index(index, OfflineDoors::All);
        *self.version = Versions { complete: version, newest_patch: version };
        Ok(())
    }
}
