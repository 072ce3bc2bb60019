//! The decision index kept in step with the store. Every directory write runs under one
//! lock: the store commits, then the index is patched from what the store read back, and
//! only then does the caller get its answer, so the next decision already sees the change.
//! Writes by other processes (the CLI, other nodes) show up as a directory version this
//! node did not make; it then reloads the index whole.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use lintel_core::{Change, Index};
use lintel_proto::Event;
use lintel_store::{IndexUpdate, Store, StoreError, Written};
use tokio::sync::{Mutex, MutexGuard, broadcast};

pub struct Directory {
    pub store: Store,
    index: ArcSwap<Index>,
    /// Held for every write; guards the directory version the index reflects.
    version: Mutex<i64>,
    events: broadcast::Sender<Event>,
}

pub struct WriteGuard<'a> {
    directory: &'a Directory,
    version: MutexGuard<'a, i64>,
}

impl Directory {
    pub async fn load(store: Store, events: broadcast::Sender<Event>) -> Result<Arc<Self>, StoreError> {
        let (index, version) = store.load_index().await?;
        Ok(Arc::new(Self { store, index: ArcSwap::from_pointee(index), version: Mutex::new(version), events }))
    }

    /// The current snapshot; readers never wait.
    pub fn index(&self) -> arc_swap::Guard<Arc<Index>> {
        self.index.load()
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

    pub async fn lock(&self) -> WriteGuard<'_> {
        WriteGuard { directory: self, version: self.version.lock().await }
    }

    /// Runs a store write under the lock and brings the index up to date with it. It
    /// runs as a task of its own: a caller that goes away (a client hanging up) cannot
    /// leave a committed write out of the index.
    pub async fn write<T, F, Fut>(self: &Arc<Self>, write: F) -> Result<Written<T>, StoreError>
    where
        F: FnOnce(Store) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Written<T>, StoreError>> + Send,
        T: Send + Sync + 'static,
    {
        let me = self.clone();
        let task = tokio::spawn(async move {
            let mut guard = me.lock().await;
            let written = write(me.store.clone()).await?;
            guard.absorb(&written).await?;
            me.publish(&written.events);
            Ok(written)
        });
        task.await.map_err(|e| StoreError::Invalid(format!("the write task failed: {e}")))?
    }

    /// Reloads the index when another process changed the directory. Called on a timer.
    pub async fn follow(&self) -> Result<bool, StoreError> {
        let stored = self.store.directory_version().await?;
        let mut guard = self.lock().await;
        if stored == *guard.version {
            return Ok(false);
        }
        guard.reload().await?;
        Ok(true)
    }

    pub fn spawn_follower(self: &Arc<Self>, every: Duration) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(directory) = me.upgrade() else { return };
                match directory.follow().await {
                    Ok(true) => tracing::info!("directory changed elsewhere; index reloaded"),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "could not check the directory version"),
                }
            }
        });
    }
}

impl WriteGuard<'_> {
    pub fn apply(&mut self, changes: &[Change]) {
        if !changes.is_empty() {
            let next = self.directory.index.load().apply(changes);
            self.directory.index.store(Arc::new(next));
        }
    }

    async fn absorb<T>(&mut self, written: &Written<T>) -> Result<(), StoreError> {
        match &written.index {
            // Only our own write happened since the index was built: patch it.
            IndexUpdate::Patch(changes) if written.version == *self.version + 1 => {
                self.apply(changes);
                *self.version = written.version;
                Ok(())
            }
            _ => self.reload().await,
        }
    }

    async fn reload(&mut self) -> Result<(), StoreError> {
        let (index, version) = self.directory.store.load_index().await?;
        self.directory.index.store(Arc::new(index));
        *self.version = version;
        Ok(())
    }
}
