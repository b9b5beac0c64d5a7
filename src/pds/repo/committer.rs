//! Group commit: one thread makes queued commits durable together.
//!
//! Making a transaction durable costs a sync (≈0.1–0.2 ms for `pds.wal`, 1–3 ms for redb here),
//! far more than building a commit. Writers queue their commit batches; the committer takes
//! everything queued, writes it in one transaction made durable by one sync
//! ([`PdsStore::commit_group`]), publishes the events in sequence order and only then answers
//! each writer. Under load, one sync serves many commits; alone, a writer waits for one.
//!
//! A writer alone (no other write in progress, nothing queued, nobody committing) commits its
//! batch itself, on its own thread, when the log alone will make it durable: handing it to the
//! committer thread and waking the writer again would cost two thread wake-ups, on a VM as long
//! as the commit. Concurrent writers, a redb sync (a checkpoint, a broken log) and every writer
//! that comes while a commit runs go to the thread, so groups still form under load and a
//! writer blocks its thread for its own logged commit (plus, when the collector or an account
//! write holds redb's writer at that moment, the wait for it); a slow disk turns the direct path
//! off. A panic during a direct commit stops all committing until a restart, as one on the
//! thread does.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{broadcast, oneshot};

use crate::pds::store::{CommitBatch, CommitFailure, PdsStore, StoreError};

/// Commits taken into one transaction at most, so a burst cannot grow one without bound.
const MAX_GROUP: usize = 256;

/// A direct commit taking longer than this is slow (a logged commit takes ≈0.3 ms here, the
/// log's growth by a step a few). A second slow one within [`SLOW_BACKOFF`] of the first — a
/// disk that keeps stalling, not one hiccup — sends the writers of the next [`SLOW_BACKOFF`] to
/// the thread, so that runtime threads do not wait on the disk.
const SLOW_DIRECT: Duration = Duration::from_millis(10);
const SLOW_BACKOFF: Duration = Duration::from_secs(1);

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
    shared: Arc<Shared>,
}

/// What the thread and direct writers share.
struct Shared {
    store: PdsStore,
    events: broadcast::Sender<(u64, Bytes)>,
    /// Held while a group is committed, by the thread or a direct writer: one at a time, in
    /// the order they were submitted.
    committing: Mutex<Backoff>,
    /// Jobs sent to the thread and not yet answered: while any is, writers queue behind them.
    queued: AtomicUsize,
    /// Writers between [`Committer::writing`] and the end of their write.
    writers: AtomicUsize,
    /// Commits made by their writers, for tests.
    direct: AtomicUsize,
}

/// A writer at work; see [`Committer::writing`].
pub struct Writing<'a>(&'a AtomicUsize);

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether slow direct commits have turned the direct path off.
#[derive(Default)]
struct Backoff {
    /// Until when the direct path is off.
    off_until: Option<Instant>,
    /// When the last slow direct commit ended.
    last_slow: Option<Instant>,
}

impl Backoff {
    fn is_off(&self, now: Instant) -> bool {
        self.off_until.is_some_and(|until| now < until)
    }

    /// Counts a direct commit that took `took` and ended `now`; `true` when it turns the
    /// direct path off.
    fn record(&mut self, took: Duration, now: Instant) -> bool {
        if took <= SLOW_DIRECT {
            return false;
        }
        let again = self
            .last_slow
            .is_some_and(|last| now.duration_since(last) < SLOW_BACKOFF);
        self.last_slow = Some(now);
        if again {
            self.off_until = Some(now + SLOW_BACKOFF);
        }
        again
    }
}

impl Committer {
    /// Starts the committer thread over `store`, publishing committed events on `events`.
    pub fn start(store: PdsStore, events: broadcast::Sender<(u64, Bytes)>) -> Committer {
        let (queue, jobs) = mpsc::channel::<Job>();
        let shared = Arc::new(Shared {
            store,
            events,
            committing: Mutex::new(Backoff::default()),
            queued: AtomicUsize::new(0),
            writers: AtomicUsize::new(0),
            direct: AtomicUsize::new(0),
        });
        let on_thread = shared.clone();
        let thread = std::thread::Builder::new()
            .name("pds-committer".into())
            .spawn(move || run(&on_thread, &jobs))
            .ok();
        Committer {
            queue: thread.is_some().then_some(queue),
            thread,
            shared,
        }
    }

    /// Queues `batch`; the answer comes once it is durable (or failed).
    pub fn submit(&self, batch: CommitBatch) -> oneshot::Receiver<Outcome> {
        let (reply, answer) = oneshot::channel();
        let job = Job { batch, reply };
        let Some(job) = self.commit_directly(job) else {
            return answer;
        };
        self.shared.queued.fetch_add(1, Ordering::SeqCst);
        let unsent = match &self.queue {
            Some(queue) => queue.send(job).err().map(|mpsc::SendError(job)| job),
            None => Some(job),
        };
        if unsent.is_some() {
            self.shared.queued.fetch_sub(1, Ordering::SeqCst);
        }
        if let Some(job) = unsent {
            let _ = job
                .reply
                .send(Err(failed("the commit thread is not running".into())));
        }
        answer
    }

    /// Counts a writer until the guard drops: a commit is made directly only by a writer alone,
    /// since concurrent ones are better served together, by one sync on the thread.
    pub fn writing(&self) -> Writing<'_> {
        self.shared.writers.fetch_add(1, Ordering::SeqCst);
        Writing(&self.shared.writers)
    }

    /// How many commits their writers made on their own threads.
    #[cfg(test)]
    pub(super) fn direct_commits(&self) -> usize {
        self.shared.direct.load(Ordering::Relaxed)
    }

    /// Commits `job` on this thread if its writer is alone, nothing is queued or committing and
    /// the log alone will make it durable; else gives it back for the thread.
    fn commit_directly(&self, job: Job) -> Option<Job> {
        let shared = &*self.shared;
        if self.queue.is_none()
            || shared.writers.load(Ordering::SeqCst) > 1
            || shared.queued.load(Ordering::SeqCst) > 0
        {
            return Some(job);
        }
        let Ok(mut backoff) = shared.committing.try_lock() else {
            return Some(job);
        };
        // Checked again under the lock: a writer counts a job before it sends it to the thread,
        // which uncounts it only after committing it under this lock; so no job is waiting for
        // the thread that this one would overtake.
        if shared.queued.load(Ordering::SeqCst) > 0
            || backoff.is_off(Instant::now())
            || !shared.store.next_commit_is_logged()
        {
            return Some(job);
        }
        let started = Instant::now();
        run_group(&shared.store, &shared.events, vec![job]);
        shared.direct.fetch_add(1, Ordering::Relaxed);
        let took = started.elapsed();
        if backoff.record(took, Instant::now()) {
            tracing::debug!(
                ?took,
                "direct commits were slow twice in a second: commits go to the thread for a while"
            );
        }
        None
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

fn run(shared: &Shared, jobs: &mpsc::Receiver<Job>) {
    let mut poisoned = false;
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let taken = group.len();
        if let Ok(_committing) = shared.committing.lock() {
            run_group(&shared.store, &shared.events, group);
        } else {
            // A commit panicked on a writer's thread, possibly halfway through the log and
            // redb: nothing more is committed until a restart (which replays the log), as when
            // this thread itself panics.
            if !poisoned {
                tracing::error!("a commit panicked: every later commit fails until a restart");
            }
            poisoned = true;
            for job in group {
                let _ = job.reply.send(Err(failed(
                    "an earlier commit failed unexpectedly; restart the node".into(),
                )));
            }
        }
        shared.queued.fetch_sub(taken, Ordering::SeqCst);
    }
    if poisoned {
        return;
    }
    // Stopping cleanly: leave nothing for the next start to replay.
    if let Err(e) = shared.store.checkpoint() {
        tracing::warn!(error = %e, "could not checkpoint pds.wal at stop");
    }
}

fn run_group(store: &PdsStore, events: &broadcast::Sender<(u64, Bytes)>, group: Vec<Job>) {
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{Backoff, SLOW_BACKOFF};

    /// One slow direct commit (a hiccup) leaves the direct path on; a second within a second
    /// (a stalling disk) turns it off for a second; a slow one long after starts counting anew.
    #[test]
    fn the_direct_path_goes_off_after_two_slow_commits_in_a_second() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let (fast, slow) = (Duration::from_micros(300), Duration::from_millis(14));
        let mut backoff = Backoff::default();
        assert!(!backoff.record(fast, at(0)));
        assert!(!backoff.record(slow, at(10)));
        assert!(!backoff.is_off(at(11)));
        assert!(backoff.record(slow, at(500)));
        assert!(backoff.is_off(at(501)));
        assert!(backoff.is_off(at(1_499)));
        assert!(!backoff.is_off(at(500) + SLOW_BACKOFF));
        assert!(!backoff.record(slow, at(3_000)));
        assert!(!backoff.is_off(at(3_001)));
    }
}
