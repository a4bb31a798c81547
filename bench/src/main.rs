//! `tavana-bench`: starts the suite (all-in-one on SQLite, and split on PostgreSQL + Redis
//! when both are reachable), loads synthetic data, runs each hot path at fixed concurrency
//! for a fixed time beside an anchor measured on the same machine in the same run, and
//! writes `BENCHMARKS.md` and `target/bench/results.json`.
//!
//! ```sh
//! cargo run --release -p tavana-bench                 # full scale
//! cargo run -p tavana-bench -- --quick --out target/bench/BENCHMARKS.quick.md
//! ```

// Statistics over f64 and seed indices over small counts: a benchmark tool's
// conversions, not money. Unwraps and expects report a broken run at once.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap,
    clippy::unwrap_used,
    clippy::expect_used
)]

mod anchors;
mod load;
mod report;
mod rss;
mod scenarios;
mod seed;
mod system;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// Command line of the benchmark.
#[derive(Parser, Debug, Clone)]
#[command(version, about = "Tavana's hot paths against the machine's own limits")]
pub struct Options {
    /// Small scale and about 2 s per scenario (for CI).
    #[arg(long)]
    pub quick: bool,
    /// Where to write the Markdown table.
    #[arg(long, default_value = "BENCHMARKS.md")]
    pub out: PathBuf,
    /// Seconds per load scenario (default 2 with --quick, 30 otherwise).
    #[arg(long)]
    pub seconds: Option<u64>,
    /// Instalments of the deduction list and lines of the remittance.
    #[arg(long)]
    pub instalments: Option<u64>,
    /// Merchants in the directory.
    #[arg(long)]
    pub merchants: Option<u64>,
    /// Concurrent clients of the load scenarios.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Skip the split topology even when PostgreSQL and Redis are reachable.
    #[arg(long)]
    pub no_split: bool,
    /// Skip the all-in-one topology.
    #[arg(long)]
    pub no_all_in_one: bool,
    /// Do not ANALYZE the split topology's databases after seeding (as right after a bulk
    /// load, before autovacuum gets to them).
    #[arg(long)]
    pub no_analyze: bool,
    /// Leave PostgreSQL's autovacuum as the server has it. By default a full run turns it
    /// on for the run when it is off (production servers run it); a quick run never
    /// touches the server's settings.
    #[arg(long)]
    pub server_as_is: bool,
    /// Asks for the reconciliation this many times. The table reports the first ask (the
    /// first read of what the remittance, the period close and credit's marking wrote) and
    /// the median of the others, which compares code with code between runs.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub reconcile_asks: u32,
}

/// The scale of one run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Scale {
    /// Seconds each load scenario runs.
    pub seconds: u64,
    /// Concurrent clients of each load scenario.
    pub clients: usize,
    /// Employees with a facility who buy.
    pub buyers: u32,
    /// Instalment lines in the remittance scenario.
    pub instalments: u64,
    /// Merchants in the directory scenario.
    pub merchants: u64,
    /// Unpaid instalments of the period-close scenario (R29).
    pub close_instalments: u64,
    /// Employees the salary-day load may log in, each once.
    pub login_pool: u32,
    /// pgbench's scale factor for the TPC-B anchor.
    pub pgbench_scale: u32,
    /// Whether to run `EXPLAIN ANALYZE` on the hot queries.
    pub analyze: bool,
    /// How many times the reconciliation is asked for.
    pub reconcile_asks: u32,
}

impl Options {
    fn scale(&self) -> Scale {
        let (seconds, instalments, merchants, pgbench_scale) = if self.quick {
            (2, 2_000, 500, 2)
        } else {
            (30, 1_000_000, 100_000, 16)
        };
        let seconds = self.seconds.unwrap_or(seconds);
        let instalments = self.instalments.unwrap_or(instalments);
        Scale {
            seconds,
            clients: self.clients,
            buyers: 16,
            instalments,
            merchants: self.merchants.unwrap_or(merchants),
            // A tenth of the bulk set: 100,000 at full scale, as the scenario asks.
            close_instalments: (instalments / 10).max(1),
            // A login is one operation in twenty of the salary-day load; a pool of 100 a
            // second covers it on this machine.
            login_pool: u32::try_from(seconds.saturating_mul(100)).unwrap_or(u32::MAX),
            pgbench_scale,
            analyze: !self.no_analyze,
            reconcile_asks: self.reconcile_asks,
        }
    }
}

/// Where PostgreSQL and Redis are expected, as in `.ci/run`.
const DEFAULT_PG_URL: &str = "postgres://postgres:postgres@127.0.0.1:5432/postgres";
const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Sets what the child processes read from the environment: long deadlines (a remittance
/// of a million lines is one call), the binaries' directory, PostgreSQL and Redis.
fn prepare_environment(bin_dir: &std::path::Path) {
    let mut variables: Vec<(String, String)> = vec![(
        "TAVANA_GATEWAY__SERVICE_TIMEOUT_MS".into(),
        "3600000".into(),
    )];
    for service in [
        "IDENTITY",
        "GUARANTEE",
        "CREDIT",
        "SETTLEMENT",
        "MERCHANT_DIRECTORY",
    ] {
        variables.push((
            format!("TAVANA_{service}__GRPC__REQUEST_TIMEOUT_MS"),
            "3600000".into(),
        ));
    }
    for (key, default) in [
        ("RUST_LOG", "info".to_owned()),
        ("TAVANA_BIN_DIR", bin_dir.display().to_string()),
        ("TAVANA_TEST_PG_URL", DEFAULT_PG_URL.to_owned()),
        ("TAVANA_TEST_REDIS_URL", DEFAULT_REDIS_URL.to_owned()),
    ] {
        if std::env::var_os(key).is_none() {
            variables.push((key.to_owned(), default));
        }
    }
    for (key, value) in variables {
        // SAFETY: called from `main` before the runtime or any other thread starts.
        unsafe { std::env::set_var(key, value) };
    }
}

/// Returns true when a Redis server answers PING at `url` (`redis://host:port`).
fn redis_answers(url: &str) -> bool {
    let rest = url
        .trim_start_matches("redis://")
        .trim_start_matches("rediss://");
    let host_port = rest.rsplit('@').next().unwrap_or(rest);
    let host_port = host_port.split('/').next().unwrap_or(host_port);
    let address = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:6379")
    };
    let Ok(addresses) = std::net::ToSocketAddrs::to_socket_addrs(&address) else {
        return false;
    };
    addresses.into_iter().any(|address| {
        let Ok(mut stream) = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2))
        else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let mut answer = [0u8; 16];
        stream.write_all(b"PING\r\n").is_ok()
            && stream
                .read(&mut answer)
                .is_ok_and(|read| answer[..read].starts_with(b"+PONG"))
    })
}

fn main() -> ExitCode {
    let options = Options::parse();
    let bin_dir = match system::bin_dir() {
        Ok(dir) => dir,
        Err(error) => {
            eprintln!("tavana-bench: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    prepare_environment(&bin_dir);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tavana-bench: {error}");
            return ExitCode::FAILURE;
        }
    };
    let run = async {
        tokio::select! {
            result = scenarios::run_all(options, bin_dir) => result,
            // Dropping the run drops what it set up: its processes stop, its databases are
            // dropped and autovacuum is put back as the server had it.
            () = tavana_kit::signal::shutdown_signal() => {
                Err(anyhow::anyhow!("interrupted; what the run set up was put back"))
            }
        }
    };
    match runtime.block_on(run) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("tavana-bench: a scenario failed (see the report)");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("tavana-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}
