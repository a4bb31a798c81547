//! What the same machine does at best, measured in the same run: PostgreSQL (`pgbench`,
//! `COPY`) and a bare tonic unary call.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::load::{self, LoadStats};

/// The scratch database of the anchors, one per process: a concurrent run (CI) must not
/// drop it under this one.
fn scratch() -> String {
    format!("tavana_bench_scratch_{}", std::process::id())
}

/// A reachable PostgreSQL server and its command-line tools.
#[derive(Clone)]
pub struct Postgres {
    pub server_url: String,
    bin_dir: Option<PathBuf>,
}

/// Returns `base` with its database replaced by `database`.
pub fn database_url(base: &str, database: &str) -> String {
    match base.rfind('/') {
        Some(slash) if base[..slash].contains("://") && base[slash..].len() > 1 => {
            format!("{}/{database}", &base[..slash])
        }
        _ => format!("{}/{database}", base.trim_end_matches('/')),
    }
}

impl Postgres {
    /// Returns the server when `psql` reaches it.
    pub fn detect(server_url: &str) -> Option<Postgres> {
        let bin_dir = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|entries| {
                let mut versions: Vec<PathBuf> = entries
                    .flatten()
                    .map(|entry| entry.path().join("bin"))
                    .filter(|bin| bin.join("pgbench").exists())
                    .collect();
                versions.sort();
                versions.pop()
            });
        let postgres = Postgres {
            server_url: server_url.to_owned(),
            bin_dir,
        };
        postgres.psql(server_url, "select 1").ok()?;
        Some(postgres)
    }

    fn tool(&self, name: &str) -> PathBuf {
        match &self.bin_dir {
            Some(dir) if dir.join(name).exists() => dir.join(name),
            _ => PathBuf::from(name),
        }
    }

    /// Runs SQL (or a psql meta-command) with `psql` on a database; returns its output.
    pub fn psql(&self, url: &str, sql: &str) -> anyhow::Result<String> {
        let output = Command::new(self.tool("psql"))
            .args([url, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .context("cannot run psql")?;
        anyhow::ensure!(
            output.status.success(),
            "psql failed on {sql:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Turns autovacuum on for the run when the server has it off (a CI server may; no
    /// production server does): without it the tables a run fills from empty are never
    /// analyzed, and the plans each connection prepared while they were empty (sequential
    /// scans) stay for the whole run. Returns the guard that puts the setting back, or
    /// `None` when it was on already.
    pub fn autovacuum_for_the_run(&self) -> anyhow::Result<Option<AutovacuumGuard>> {
        if self.psql(&self.server_url, "show autovacuum")?.trim() == "on" {
            return Ok(None);
        }
        self.psql(&self.server_url, "alter system set autovacuum = on")?;
        self.psql(&self.server_url, "select pg_reload_conf()")?;
        Ok(Some(AutovacuumGuard {
            postgres: self.clone(),
        }))
    }

    /// Creates (again) the scratch database; returns its URL.
    pub fn fresh_scratch(&self) -> anyhow::Result<String> {
        self.psql(
            &self.server_url,
            &format!("drop database if exists {} with (force)", scratch()),
        )?;
        self.psql(&self.server_url, &format!("create database {}", scratch()))?;
        Ok(database_url(&self.server_url, &scratch()))
    }

    /// Returns the guard that drops the scratch database when the run ends, however it
    /// ends.
    pub fn scratch_dropper(&self) -> ScratchDropper {
        ScratchDropper {
            postgres: self.clone(),
        }
    }

    fn drop_scratch(&self) {
        let _ = self.psql(
            &self.server_url,
            &format!("drop database if exists {} with (force)", scratch()),
        );
    }

    /// Initialises pgbench's tables at `scale` and runs the TPC-B-like script with
    /// `clients` clients for `duration`.
    pub fn pgbench(
        &self,
        scale: u32,
        clients: usize,
        duration: Duration,
    ) -> anyhow::Result<Pgbench> {
        let url = self.fresh_scratch()?;
        let init = Command::new(self.tool("pgbench"))
            .args(["-i", "-q", "-s", &scale.to_string(), &url])
            .output()
            .context("cannot run pgbench")?;
        anyhow::ensure!(
            init.status.success(),
            "pgbench -i failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let run = Command::new(self.tool("pgbench"))
            .args([
                "-n",
                "-c",
                &clients.to_string(),
                "-j",
                "2",
                "-T",
                &duration.as_secs().max(1).to_string(),
                &url,
            ])
            .output()
            .context("cannot run pgbench")?;
        let stdout = String::from_utf8_lossy(&run.stdout);
        anyhow::ensure!(
            run.status.success(),
            "pgbench failed: {stdout} {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let number_after = |prefix: &str| {
            stdout.lines().find_map(|line| {
                line.trim()
                    .strip_prefix(prefix)?
                    .split_whitespace()
                    .next()?
                    .parse::<f64>()
                    .ok()
            })
        };
        Ok(Pgbench {
            scale,
            clients,
            tps: number_after("tps = ").context("no tps in pgbench's output")?,
            latency_average_ms: number_after("latency average = ").unwrap_or(0.0),
        })
    }

    /// Times `COPY` of a CSV file (header `national_id,amount`) into a plain table.
    pub fn copy_in(&self, csv: &Path) -> anyhow::Result<f64> {
        let url = database_url(&self.server_url, &scratch());
        self.psql(
            &url,
            "drop table if exists bench_remittance; create table bench_remittance (national_id text not null, amount bigint not null)",
        )?;
        let started = Instant::now();
        self.psql(
            &url,
            &format!(
                "\\copy bench_remittance from '{}' with (format csv, header true)",
                csv.display()
            ),
        )?;
        Ok(started.elapsed().as_secs_f64())
    }

    /// Loads the deduction list's CSV rows into a plain table, then times `COPY ... TO`
    /// of them in national ID order, written to a file as the client would.
    pub fn copy_out(&self, csv: &Path, out: &Path) -> anyhow::Result<f64> {
        let url = database_url(&self.server_url, &scratch());
        self.psql(
            &url,
            "drop table if exists bench_deductions; create table bench_deductions (national_id text, full_name text, total bigint, instalment_ids text)",
        )?;
        self.psql(
            &url,
            &format!(
                "\\copy bench_deductions from '{}' with (format csv, header true)",
                csv.display()
            ),
        )?;
        self.psql(&url, "vacuum analyze bench_deductions")?;
        let started = Instant::now();
        self.psql(
            &url,
            &format!(
                "\\copy (select * from bench_deductions order by national_id) to '{}' with (format csv, header true)",
                out.display()
            ),
        )?;
        Ok(started.elapsed().as_secs_f64())
    }
}

/// What pgbench measured.
#[derive(Clone, Debug, Serialize)]
pub struct Pgbench {
    pub scale: u32,
    pub clients: usize,
    pub tps: f64,
    pub latency_average_ms: f64,
}

/// Serves `grpc.health.v1.Health` (a bare tonic unary method, no application code) on
/// loopback and calls `Check` from `clients` loops for `duration`.
pub async fn tonic_echo(clients: usize, duration: Duration) -> anyhow::Result<LoadStats> {
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            }),
    );
    let channel =
        tavana_kit::grpc::unsigned_channel(&format!("http://{address}"), Duration::from_secs(10))?;
    let client = HealthClient::new(channel);
    let stats = load::run(clients, duration, move |_, _| {
        let mut client = client.clone();
        async move {
            client
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .map(|_| ())
                .map_err(|status| status.to_string())
        }
    })
    .await;
    let _ = stop.send(());
    let _ = server.await;
    Ok(stats)
}

/// Drops the scratch database of the anchors when dropped.
pub struct ScratchDropper {
    postgres: Postgres,
}

impl Drop for ScratchDropper {
    fn drop(&mut self) {
        self.postgres.drop_scratch();
    }
}

/// Puts the server's own autovacuum setting back when dropped (`alter system reset`).
pub struct AutovacuumGuard {
    postgres: Postgres,
}

impl Drop for AutovacuumGuard {
    fn drop(&mut self) {
        let url = &self.postgres.server_url;
        if let Err(error) = self
            .postgres
            .psql(url, "alter system reset autovacuum")
            .and_then(|_| self.postgres.psql(url, "select pg_reload_conf()"))
        {
            eprintln!("autovacuum not put back as the server had it: {error:#}");
        }
    }
}
