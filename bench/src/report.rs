//! `BENCHMARKS.md`: the machine, the scale, and one table row per scenario and topology.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::rss::mib;
use crate::scenarios::{Anchors, ModeResults, Outcome};
use crate::{Options, Scale};

/// Hand-written notes below this line of an existing report survive a new run.
const NOTES_MARKER: &str = "<!-- notes: kept across runs -->";

/// What ran where.
#[derive(Debug, Serialize)]
pub struct Meta {
    pub date: String,
    pub cores: usize,
    pub cpu: String,
    pub memory_gib: f64,
    pub profile: String,
    pub quick: bool,
    pub scale: Scale,
    pub commit: String,
    pub seconds: f64,
    /// PostgreSQL's autovacuum during the run, when PostgreSQL was reachable.
    pub autovacuum: Option<String>,
}

impl Meta {
    /// Reads the machine and the build.
    pub fn collect(options: &Options, scale: &Scale, bin_dir: &Path, elapsed: Duration) -> Meta {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        let memory_gib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|meminfo| {
                meminfo.lines().find_map(|line| {
                    let kib: f64 = line
                        .strip_prefix("MemTotal:")?
                        .trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse()
                        .ok()?;
                    Some(kib / 1024.0 / 1024.0)
                })
            })
            .unwrap_or(0.0);
        let commit = std::process::Command::new("git")
            .args(["describe", "--always", "--dirty"])
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        Meta {
            date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            cpu,
            memory_gib,
            profile: bin_dir
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default(),
            quick: options.quick,
            scale: scale.clone(),
            commit,
            seconds: elapsed.as_secs_f64(),
            autovacuum: None,
        }
    }
}

struct Row {
    topology: String,
    scenario: String,
    measured: String,
    anchor: String,
    ratio: String,
    target: &'static str,
    met: &'static str,
}

fn met(value: Option<bool>) -> &'static str {
    match value {
        Some(true) => "yes",
        Some(false) => "**no**",
        None => "-",
    }
}

fn anchor_text<T>(
    anchor: Option<&Outcome<T>>,
    show: impl Fn(&T) -> String,
) -> (String, Option<&T>) {
    match anchor {
        Some(Ok(value)) => (show(value), Some(value)),
        Some(Err(error)) => (format!("failed: {}", short(error)), None),
        None => ("n/a (no PostgreSQL)".to_owned(), None),
    }
}

/// A batch scenario's row: its seconds against a `COPY` anchor, met when `within` holds
/// for their ratio.
fn batch_row(
    topology: &str,
    scenario: String,
    target: &'static str,
    batch: &crate::scenarios::Batch,
    measured: String,
    (anchor, copy): (String, Option<&f64>),
    within: impl Fn(f64) -> bool,
) -> Row {
    let ratio = copy.map(|copy| batch.seconds / copy);
    Row {
        topology: topology.to_owned(),
        scenario,
        measured,
        anchor,
        ratio: ratio.map_or("-".into(), |r| format!("{r:.1}x")),
        target,
        met: met(ratio.map(within)),
    }
}

/// "12.34 s, <middle>peak RSS 56 MiB (per process)<suffix>".
fn seconds_and_memory(batch: &crate::scenarios::Batch, middle: &str, suffix: &str) -> String {
    format!(
        "{:.2} s, {middle}peak RSS {:.0} MiB{}{suffix}",
        batch.seconds,
        mib(batch.peak_rss_bytes),
        per_process(batch)
    )
}

/// The later asks of a request, as their median (none when it was asked once).
fn later_asks(seconds: &[f64]) -> String {
    let mut sorted = seconds.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = match sorted.len() {
        0 => return String::new(),
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    };
    let asks = if sorted.len() == 1 { "ask" } else { "asks" };
    format!("; {} later {asks}, median {median:.2} s", sorted.len())
}

fn short(error: &str) -> String {
    let line = error.lines().next().unwrap_or_default();
    let short: String = line.chars().take(120).collect();
    short.replace('|', "/")
}

fn rows(anchors: &Anchors, modes: &[ModeResults]) -> Vec<Row> {
    let mut rows = Vec::new();
    let failed = |topology: &str, scenario: String, target: &'static str, error: &str| Row {
        topology: topology.to_owned(),
        scenario,
        measured: format!("**failed**: {}", short(error)),
        anchor: "-".into(),
        ratio: "-".into(),
        target,
        met: "-",
    };
    for mode in modes {
        let topology = mode.label.to_owned();
        let clients = mode
            .purchase
            .as_ref()
            .map(|stats| stats.clients)
            .unwrap_or(16);
        let instalments = mode.seeding["instalments"].as_u64().unwrap_or(0);
        let merchants = mode.seeding["merchants"].as_u64().unwrap_or(0);

        let scenario = format!("purchase authorisation through the gateway, {clients} clients");
        let target = ">= 0.5";
        match &mode.purchase {
            Ok(stats) => {
                let (anchor, pgbench) = anchor_text(anchors.pgbench.as_ref(), |p| {
                    format!(
                        "pgbench TPC-B-like {:.0} tps (scale {}, {} clients)",
                        p.tps, p.scale, p.clients
                    )
                });
                let ratio = pgbench.map(|p| stats.per_second / p.tps);
                rows.push(Row {
                    topology: topology.clone(),
                    scenario,
                    measured: format!(
                        "{:.0} purchases/s, p50 {:.1} ms, p99 {:.1} ms{}",
                        stats.per_second,
                        stats.p50_ms,
                        stats.p99_ms,
                        errors(stats)
                    ),
                    anchor,
                    ratio: ratio.map_or("-".into(), |r| format!("{r:.2}")),
                    target,
                    met: met(ratio.map(|r| r >= 0.5)),
                });
            }
            Err(error) => rows.push(failed(&topology, scenario, target, error)),
        }

        let scenario = format!("balance read through the gateway, {clients} clients");
        let target = ">= 0.3";
        match &mode.balance {
            Ok(stats) => {
                let echo = anchors.tonic_echo.as_ref().ok();
                let anchor = match &anchors.tonic_echo {
                    Ok(echo) => format!(
                        "bare tonic unary {:.0} calls/s, p99 {:.2} ms",
                        echo.per_second, echo.p99_ms
                    ),
                    Err(error) => format!("failed: {}", short(error)),
                };
                let ratio = echo.map(|echo| stats.per_second / echo.per_second);
                rows.push(Row {
                    topology: topology.clone(),
                    scenario,
                    measured: format!(
                        "{:.0} reads/s, p50 {:.1} ms, p99 {:.1} ms{}",
                        stats.per_second,
                        stats.p50_ms,
                        stats.p99_ms,
                        errors(stats)
                    ),
                    anchor,
                    ratio: ratio.map_or("-".into(), |r| format!("{r:.2}")),
                    target,
                    met: met(ratio.map(|r| r >= 0.3)),
                });
            }
            Err(error) => rows.push(failed(&topology, scenario, target, error)),
        }

        let scenario = format!("remittance of {instalments} lines (CSV upload)");
        let target = "<= 10x, RSS < 512 MiB";
        match &mode.remittance {
            Ok(batch) => {
                let follow_up = batch.follow_up_seconds.map_or(String::new(), |seconds| {
                    format!(
                        "; credit had every purchase marked settled {seconds:.1} s after the answer"
                    )
                });
                rows.push(batch_row(
                    &topology,
                    scenario,
                    target,
                    batch,
                    seconds_and_memory(batch, "", &follow_up),
                    anchor_text(anchors.copy_in_seconds.as_ref(), |seconds| {
                        format!("PostgreSQL COPY of the same lines {seconds:.2} s")
                    }),
                    |ratio| ratio <= 10.0 && batch.peak_rss_bytes < 512 * 1024 * 1024,
                ));
            }
            Err(error) => rows.push(failed(&topology, scenario, target, error)),
        }

        let close_instalments = mode.seeding["close_instalments"].as_u64().unwrap_or(0);
        let scenario = format!("period close with {close_instalments} unpaid instalments (R29)");
        let target = "<= 10x";
        match &mode.period_close {
            Ok(batch) => rows.push(batch_row(
                &topology,
                scenario,
                target,
                batch,
                seconds_and_memory(batch, "", ""),
                anchor_text(anchors.copy_close_seconds.as_ref(), |seconds| {
                    format!("PostgreSQL COPY of as many lines {seconds:.2} s")
                }),
                |ratio| ratio <= 10.0,
            )),
            Err(error) => rows.push(failed(&topology, scenario, target, error)),
        }

        let scenario = "reconciliation of credit and settlement (R31)".to_owned();
        let target = "<= 10x";
        match &mode.reconciliation {
            Ok(batch) => rows.push(batch_row(
                &topology,
                format!("{scenario}, {} purchases", batch.items),
                target,
                batch,
                seconds_and_memory(
                    batch,
                    "no difference, ",
                    &later_asks(&batch.later_asks_seconds),
                ),
                anchor_text(anchors.copy_in_seconds.as_ref(), |seconds| {
                    format!("PostgreSQL COPY of {instalments} lines {seconds:.2} s")
                }),
                |ratio| ratio <= 10.0,
            )),
            Err(error) => rows.push(failed(&topology, scenario, target, error)),
        }

        let scenario = format!("deduction list of {instalments} instalments (CSV stream)");
        let target = "<= 5x";
        match &mode.deduction_list {
            Ok(batch) => rows.push(batch_row(
                &topology,
                scenario,
                target,
                batch,
                seconds_and_memory(
                    batch,
                    &format!("{:.0} MiB streamed, ", mib(batch.bytes)),
                    "",
                ),
                anchor_text(anchors.copy_out_seconds.as_ref(), |seconds| {
                    format!("PostgreSQL COPY ... TO of the same rows {seconds:.2} s")
                }),
                |ratio| ratio <= 5.0,
            )),
            Err(error) => rows.push(failed(&topology, scenario, target, error)),
        }

        let scenario = format!("merchant search over {merchants} merchants, {clients} clients");
        let target = "p99 < 20 ms";
        match &mode.merchant_search {
            Ok(stats) => rows.push(Row {
                topology: topology.clone(),
                scenario,
                measured: format!(
                    "p99 {:.1} ms (p50 {:.1} ms, {:.0} searches/s){}",
                    stats.p99_ms,
                    stats.p50_ms,
                    stats.per_second,
                    errors(stats)
                ),
                anchor: "-".into(),
                ratio: "-".into(),
                target,
                met: met(Some(stats.p99_ms < 20.0)),
            }),
            Err(error) => rows.push(failed(&topology, scenario, target, error)),
        }

        let scenario = format!(
            "salary day: balance reads, purchases, instalment lists, searches and logins together, {clients} clients"
        );
        match &mode.salary_day {
            Ok(stats) => rows.push(Row {
                topology: topology.clone(),
                scenario,
                measured: format!(
                    "{:.0} operations/s, p50 {:.1} ms, p99 {:.1} ms{}",
                    stats.per_second,
                    stats.p50_ms,
                    stats.p99_ms,
                    errors(stats)
                ),
                anchor: "-".into(),
                ratio: "-".into(),
                target: "p99 reported",
                met: "-",
            }),
            Err(error) => rows.push(failed(&topology, scenario, "p99 reported", error)),
        }

        let all_in_one = mode.mode == "all_in_one_sqlite";
        let scenario = if all_in_one {
            "idle memory of `tavana up`".to_owned()
        } else {
            "idle memory of the split processes (sum)".to_owned()
        };
        let target = if all_in_one { "< 200 MiB" } else { "-" };
        match &mode.idle {
            Ok(idle) => rows.push(Row {
                topology: topology.clone(),
                scenario,
                measured: format!(
                    "RSS {:.0} MiB (peak {:.0} MiB){}",
                    mib(idle.rss_bytes),
                    mib(idle.hwm_bytes),
                    if idle.processes > 1 {
                        format!(", {} processes", idle.processes)
                    } else {
                        String::new()
                    }
                ),
                anchor: "-".into(),
                ratio: "-".into(),
                target,
                met: if all_in_one {
                    met(Some(idle.rss_bytes < 200 * 1024 * 1024))
                } else {
                    "-"
                },
            }),
            Err(error) => rows.push(failed(&topology, scenario, target, error)),
        }
    }
    rows
}

fn errors(stats: &crate::load::LoadStats) -> String {
    if stats.errors == 0 {
        return String::new();
    }
    format!(
        ", {} errors ({})",
        stats.errors,
        short(stats.first_error.as_deref().unwrap_or_default())
    )
}

fn per_process(batch: &crate::scenarios::Batch) -> String {
    if batch.processes.len() <= 1 {
        return String::new();
    }
    let parts: Vec<String> = batch
        .processes
        .iter()
        .map(|(name, _, bytes)| {
            format!("{} {:.0}", name.trim_start_matches("tavana-"), mib(*bytes))
        })
        .collect();
    format!(" ({} MiB)", parts.join(", "))
}

/// Returns the results table in Markdown.
pub fn table(anchors: &Anchors, modes: &[ModeResults]) -> String {
    let mut out = String::from(
        "| topology | scenario | measured | anchor, same run | ratio | target | met |\n| --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for row in rows(anchors, modes) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            row.topology, row.scenario, row.measured, row.anchor, row.ratio, row.target, row.met
        );
    }
    out
}

/// Returns the whole report; notes below the marker of an existing report are kept.
pub fn markdown(meta: &Meta, anchors: &Anchors, modes: &[ModeResults], out: &Path) -> String {
    let mut text = String::from("# Benchmarks\n\n");
    let _ = writeln!(
        text,
        "Generated by `cargo run --release -p tavana-bench{}` on {} (commit {}), {} build.\n",
        if meta.quick { " -- --quick" } else { "" },
        meta.date,
        meta.commit,
        meta.profile
    );
    let _ = writeln!(
        text,
        "Machine: **{} cores** ({}), {:.0} GiB RAM. Everything (the suite, the load clients, \
         PostgreSQL, Redis) shares these cores.\n",
        meta.cores, meta.cpu, meta.memory_gib
    );
    let _ = writeln!(
        text,
        "Scale: {} s per load scenario at {} clients (closed loop), {} buyers with facilities \
         opened through the real approval flow, {} merchants and {} instalments seeded through \
         the services' gRPC; pgbench scale {}. PostgreSQL's autovacuum: {}. The whole run \
         took {:.0} s.\n",
        meta.scale.seconds,
        meta.scale.clients,
        meta.scale.buyers,
        meta.scale.merchants,
        meta.scale.instalments,
        meta.scale.pgbench_scale,
        meta.autovacuum.as_deref().unwrap_or("no server"),
        meta.seconds
    );
    text.push_str(&table(anchors, modes));
    text.push_str(
        "\nRatios: throughput / anchor throughput for the load scenarios (higher is better), \
         seconds / anchor seconds for the batch scenarios (lower is better). Targets are aims, \
         not assertions. Raw numbers: `target/bench/results.json`.\n",
    );
    for mode in modes {
        let _ = writeln!(
            text,
            "\nSeeding, {}: {}",
            mode.label,
            serde_json::to_string(&mode.seeding).unwrap_or_default()
        );
    }
    let notes = std::fs::read_to_string(out)
        .ok()
        .and_then(|old| old.find(NOTES_MARKER).map(|at| old[at..].to_owned()));
    text.push('\n');
    text.push_str(&notes.unwrap_or_else(|| format!("{NOTES_MARKER}\n")));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_asks_are_reported_by_their_median() {
        assert_eq!(later_asks(&[]), "");
        assert_eq!(later_asks(&[0.5]), "; 1 later ask, median 0.50 s");
        assert_eq!(
            later_asks(&[0.9, 0.5, 0.7]),
            "; 3 later asks, median 0.70 s"
        );
        assert_eq!(
            later_asks(&[0.8, 0.5, 0.6, 0.9]),
            "; 4 later asks, median 0.70 s"
        );
    }
}
