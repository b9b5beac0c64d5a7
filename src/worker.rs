//! Background work: every task observes one shutdown token and is awaited, with a deadline, when
//! the process stops. No loop is spawned and forgotten.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub struct Workers {
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl Workers {
    #[must_use]
    pub fn new(shutdown: CancellationToken) -> Workers {
        Workers {
            shutdown,
            tracker: TaskTracker::new(),
        }
    }

    /// Runs `job` now and then every `interval` until shutdown. A failed run is logged and the
    /// job runs again at the next tick; a run in progress at shutdown is allowed to finish.
    pub fn every<F, Fut, T, E>(&self, name: &'static str, interval: Duration, mut job: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send,
        T: std::fmt::Debug,
        E: Display,
    {
        let shutdown = self.shutdown.clone();
        self.tracker.spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    () = shutdown.cancelled() => break,
                }
                match job().await {
                    Ok(outcome) => tracing::debug!(worker = name, ?outcome, "worker run finished"),
                    Err(e) => tracing::warn!(worker = name, error = %e, "worker run failed"),
                }
            }
            tracing::debug!(worker = name, "worker stopped");
        });
    }

    /// Runs a long-lived task that ends by itself on shutdown (it must observe the token).
    pub fn spawn<F>(&self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(async move {
            task.await;
            tracing::debug!(worker = name, "worker stopped");
        });
    }

    /// Waits for every worker to stop (the shutdown token must be cancelled), at most `deadline`.
    pub async fn stop(self, deadline: Duration) {
        self.tracker.close();
        if tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("background workers did not stop before the deadline");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(start_paused = true)]
    async fn runs_periodically_and_stops_on_shutdown() {
        let token = CancellationToken::new();
        let workers = Workers::new(token.clone());
        let runs = Arc::new(AtomicUsize::new(0));
        let counter = runs.clone();
        workers.every("test", Duration::from_secs(10), move || {
            let counter = counter.clone();
            async move {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                if n == 1 {
                    Err("second run fails")
                } else {
                    Ok(n)
                }
            }
        });
        tokio::time::sleep(Duration::from_secs(25)).await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            3,
            "runs at 0s, 10s and 20s, a failure included"
        );
        token.cancel();
        workers.stop(Duration::from_secs(1)).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }
}
