//! A closed-loop load driver: a fixed number of clients, each sending its next request
//! as soon as the previous one is answered, for a fixed time.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

/// What a run of one load scenario measured.
#[derive(Clone, Debug, Serialize)]
pub struct LoadStats {
    pub clients: usize,
    pub seconds: f64,
    pub ok: u64,
    pub errors: u64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The first error seen, to tell a broken scenario from a slow one.
    pub first_error: Option<String>,
}

/// Runs `clients` loops of `operation(client, sequence)` for `duration`; only successful
/// operations count in the rate and the latencies.
pub async fn run<F, Fut>(clients: usize, duration: Duration, operation: F) -> LoadStats
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let operation = Arc::new(operation);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(clients);
    for client in 0..clients {
        let operation = operation.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies: Vec<u32> = Vec::new();
            let mut errors = 0u64;
            let mut first_error = None;
            let mut sequence = 0u64;
            while Instant::now() < deadline {
                let sent = Instant::now();
                match operation(client, sequence).await {
                    Ok(()) => {
                        let micros = sent.elapsed().as_micros();
                        latencies.push(u32::try_from(micros).unwrap_or(u32::MAX));
                    }
                    Err(error) => {
                        errors += 1;
                        first_error.get_or_insert(error);
                    }
                }
                sequence += 1;
            }
            (latencies, errors, first_error)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for task in tasks {
        match task.await {
            Ok((mine, my_errors, my_first)) => {
                latencies.extend(mine);
                errors += my_errors;
                if first_error.is_none() {
                    first_error = my_first;
                }
            }
            Err(panic) => {
                errors += 1;
                first_error.get_or_insert(format!("a client panicked: {panic}"));
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let ok = latencies.len() as u64;
    LoadStats {
        clients,
        seconds,
        ok,
        errors,
        per_second: ok as f64 / seconds,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        max_ms: latencies
            .last()
            .map_or(0.0, |micros| f64::from(*micros) / 1000.0),
        first_error,
    }
}

/// The `q` quantile of sorted microseconds, in milliseconds (nearest rank).
fn percentile(sorted_micros: &[u32], q: f64) -> f64 {
    if sorted_micros.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted_micros.len() as f64).ceil() as usize).clamp(1, sorted_micros.len());
    f64::from(sorted_micros[rank - 1]) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_takes_the_nearest_rank() {
        let micros: Vec<u32> = (1..=100).map(|ms| ms * 1000).collect();
        assert_eq!(percentile(&micros, 0.50), 50.0);
        assert_eq!(percentile(&micros, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.99), 0.0);
    }
}
