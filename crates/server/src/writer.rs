//! The group commit of decisions. Handlers hand their decision to one writer task and
//! wait; the writer takes everything that queued up meanwhile and commits it in one
//! transaction, so a burst of taps costs one commit, and each answer leaves only once its
//! event is durable.

use std::sync::Arc;

use lintel_store::{CommittedDecision, PendingDecision};
use tokio::sync::{mpsc, oneshot};

use crate::directory::Directory;

const MAX_BATCH: usize = 512;

struct Job {
    decision: PendingDecision,
    reply: oneshot::Sender<Result<CommittedDecision, String>>,
}

#[derive(Clone)]
pub struct DecisionWriter {
    jobs: mpsc::Sender<Job>,
}

#[derive(Debug, thiserror::Error)]
#[error("the decision could not be recorded: {0}")]
pub struct WriteError(pub String);

impl DecisionWriter {
    pub fn spawn(directory: Arc<Directory>) -> Self {
        let (jobs, rx) = mpsc::channel(16 * MAX_BATCH);
        tokio::spawn(run(directory, rx));
        Self { jobs }
    }

    pub async fn commit(&self, decision: PendingDecision) -> Result<CommittedDecision, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(Job { decision, reply }).await.map_err(|_| WriteError("the writer has stopped".into()))?;
        answer.await.map_err(|_| WriteError("the writer has stopped".into()))?.map_err(WriteError)
    }
}

async fn run(directory: Arc<Directory>, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let consumes = batch.iter().any(|j| j.decision.pass_grant.is_some() || j.decision.backup_code.is_some());
        let (decisions, replies): (Vec<_>, Vec<_>) = batch.drain(..).map(|j| (j.decision, j.reply)).unzip();
        // Using up passes changes the directory: hold the write lock so that the index
        // patch lands in order with other writes.
        let mut guard = if consumes { Some(directory.lock().await) } else { None };
        match directory.store.commit_decisions(decisions).await {
            Ok(committed) => {
                if let Some(guard) = guard.as_mut() {
                    let changes: Vec<_> = committed.iter().flat_map(|c| c.changes.iter().cloned()).collect();
                    guard.apply(&changes);
                }
                drop(guard);
                let events: Vec<_> = committed.iter().map(|c| c.event.clone()).collect();
                directory.publish(&events);
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
}
