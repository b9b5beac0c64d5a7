//! Group commit: one thread makes queued commits durable together.
//!
//! Making a transaction durable costs a sync (≈0.2 ms for `pds.wal`, 1–3 ms for redb here), far
//! more than building a commit. Writers queue their commit batches; the committer takes
//! everything queued, writes it in one transaction made durable by one sync
//! ([`PdsStore::commit_group`]), publishes the events in sequence order and only then answers
//! each writer. Under load, one sync serves many commits; alone, a writer waits for one.

use std::sync::mpsc;
use std::thread::JoinHandle;

use bytes::Bytes;
use tokio::sync::{broadcast, oneshot};

use crate::pds::store::{CommitBatch, CommitFailure, PdsStore, StoreError};

/// Commits taken into one transaction at most, so a burst cannot grow one without bound.
const MAX_GROUP: usize = 256;

/// What the committer answers a writer: the event's sequence number once durable.
pub type Outcome = Result<u64, CommitFailure>;

struct Job {
    batch: CommitBatch,
    reply: oneshot::Sender<Outcome>,
}

/// The handle writers queue commits on. Dropping it drains the queue and joins the thread,
/// so the database is released when the repositories are.
pub struct Committer {
    queue: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Committer {
    /// Starts the committer thread over `store`, publishing committed events on `events`.
    pub fn start(store: PdsStore, events: broadcast::Sender<(u64, Bytes)>) -> Committer {
        let (queue, jobs) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("pds-committer".into())
            .spawn(move || run(&store, &events, &jobs))
            .ok();
        Committer {
            queue: thread.is_some().then_some(queue),
            thread,
        }
    }

    /// Queues `batch`; the answer comes once it is durable (or failed).
    pub fn submit(&self, batch: CommitBatch) -> oneshot::Receiver<Outcome> {
        let (reply, answer) = oneshot::channel();
        let job = Job { batch, reply };
        let unsent = match &self.queue {
            Some(queue) => queue.send(job).err().map(|mpsc::SendError(job)| job),
            None => Some(job),
        };
        if let Some(job) = unsent {
            let _ = job
                .reply
                .send(Err(failed("the commit thread is not running".into())));
        }
        answer
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.queue.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn failed(why: String) -> CommitFailure {
    CommitFailure::Store(StoreError::Commit(why))
}

fn run(store: &PdsStore, events: &broadcast::Sender<(u64, Bytes)>, jobs: &mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let (batches, replies): (Vec<_>, Vec<_>) =
            group.into_iter().map(|j| (j.batch, j.reply)).unzip();
        match store.commit_group(batches) {
            Ok(outcomes) => {
                for (outcome, reply) in outcomes.into_iter().zip(replies) {
                    let answer = outcome.map(|(seq, frame)| {
                        // No receivers is fine: subscribers catch up from the log.
                        let _ = events.send((seq, Bytes::from(frame)));
                        seq
                    });
                    let _ = reply.send(answer);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, commits = replies.len(), "group commit failed");
                let message = e.to_string();
                let storage = e.is_storage_failure();
                for reply in replies {
                    let why = if storage {
                        StoreError::Unavailable(message.clone())
                    } else {
                        StoreError::Commit(message.clone())
                    };
                    let _ = reply.send(Err(CommitFailure::Store(why)));
                }
            }
        }
    }
    // Stopping cleanly: leave nothing for the next start to replay.
    if let Err(e) = store.checkpoint() {
        tracing::warn!(error = %e, "could not checkpoint pds.wal at stop");
    }
}
