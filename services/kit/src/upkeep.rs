//! A service's upkeep: work beside its requests that keeps its tables in shape (purges of
//! what is past its retention, index merges), now and then at a fixed interval.

use std::future::Future;
use std::time::Duration;

use sea_orm::DbErr;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// Runs `work` now and then every `interval` on a task of its own, until the task is
/// aborted. `work` returns how many rows it changed; a failure is logged and the next
/// tick tries again.
pub fn spawn_every<F, Fut>(what: &'static str, interval: Duration, mut work: F) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<u64, DbErr>> + Send,
{
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        // A slow round is not made up for by a burst of them.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match work().await {
                Ok(0) => {}
                Ok(changed) => tracing::info!(upkeep = what, changed, "upkeep done"),
                Err(error) => tracing::warn!(upkeep = what, %error, "upkeep failed"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn work_runs_at_once_then_every_interval_and_a_failure_does_not_stop_it() {
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        let task = spawn_every("test", Duration::from_secs(60), move || {
            let run = counted.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if run == 2 {
                    Err(DbErr::Custom("database away".into()))
                } else {
                    Ok(u64::from(run))
                }
            }
        });
        // The paused clock advances only when every task waits: each step lets the
        // upkeep run exactly the ticks that are due.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1, "at once");
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            2,
            "after one interval (it fails)"
        );
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            3,
            "and again after the failure"
        );
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
    }
}
