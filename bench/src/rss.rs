//! Resident memory of server processes, read from `/proc/<pid>/status`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Reads a `kB` field (`VmRSS`, `VmHWM`) of a process's status, in bytes.
pub fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib * 1024)
    })
}

/// Resets the peak resident size (`VmHWM`) of a process to its current size.
fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// Returns the children of this process whose executable is named `name`.
pub fn children_named(name: &str) -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let parent = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|status| {
                status.lines().find_map(|line| {
                    line.strip_prefix("PPid:")
                        .and_then(|ppid| ppid.trim().parse::<u32>().ok())
                })
            });
        if parent != Some(me) {
            continue;
        }
        let program = std::fs::read(format!("/proc/{pid}/cmdline"))
            .ok()
            .and_then(|cmdline| {
                let first = cmdline.split(|byte| *byte == 0).next()?.to_vec();
                let first = String::from_utf8(first).ok()?;
                Some(first.rsplit('/').next().unwrap_or_default().to_owned())
            });
        if program.as_deref() == Some(name) {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    pids
}

/// Watches the resident size of some processes while a scenario runs: the kernel's peak
/// (`VmHWM`, reset at the start) and, as a cross-check, `VmRSS` sampled every 10 ms.
pub struct PeakWatch {
    pids: Vec<u32>,
    reset: bool,
    sampled: Arc<Vec<AtomicU64>>,
    stop: Arc<AtomicBool>,
    sampler: tokio::task::JoinHandle<()>,
}

impl PeakWatch {
    /// Starts watching `pids`.
    pub fn start(pids: Vec<u32>) -> PeakWatch {
        let reset = pids.iter().all(|pid| reset_peak(*pid));
        let sampled: Arc<Vec<AtomicU64>> =
            Arc::new(pids.iter().map(|_| AtomicU64::new(0)).collect());
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (pids, sampled, stop) = (pids.clone(), sampled.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    for (pid, peak) in pids.iter().zip(sampled.iter()) {
                        if let Some(rss) = status_bytes(*pid, "VmRSS") {
                            peak.fetch_max(rss, Ordering::Relaxed);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        };
        PeakWatch {
            pids,
            reset,
            sampled,
            stop,
            sampler,
        }
    }

    /// Stops and returns each process's peak resident size in bytes.
    pub async fn finish(self) -> Vec<(u32, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.sampler.await;
        self.pids
            .iter()
            .zip(self.sampled.iter())
            .map(|(pid, sampled)| {
                let sampled = sampled.load(Ordering::Relaxed);
                let kernel = if self.reset {
                    status_bytes(*pid, "VmHWM").unwrap_or(0)
                } else {
                    0
                };
                (*pid, sampled.max(kernel))
            })
            .collect()
    }
}

/// Bytes as MiB.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
