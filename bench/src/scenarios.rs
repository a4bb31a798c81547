//! The run: anchors, then each topology with its data and scenarios, then the report.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::anchors::{Pgbench, Postgres};
use crate::load::{self, LoadStats};
use crate::report;
use crate::rss::{self, PeakWatch};
use crate::seed::{self, Actors, Http};
use crate::system::{self, Mode, System};
use crate::{Options, Scale};

/// The outcome of one measurement: its result, or why it could not be taken.
pub type Outcome<T> = Result<T, String>;

/// How long purchases run before the measurements, to fill the tables a running system
/// keeps full (at most a scenario's own length).
const WARM_UP: Duration = Duration::from_secs(3);

/// A batch request (deduction list, remittance): time and memory of the servers.
#[derive(Clone, Debug, Serialize)]
pub struct Batch {
    pub seconds: f64,
    /// The largest peak resident size among the server processes involved.
    pub peak_rss_bytes: u64,
    /// Each server process's peak: name, pid, bytes.
    pub processes: Vec<(String, u32, u64)>,
    /// Rows streamed, or instalments settled.
    pub items: u64,
    pub bytes: u64,
    /// Seconds after the answer until the sender's outbox was delivered (the remittance's
    /// settled marks in credit), when measured.
    pub follow_up_seconds: Option<f64>,
    /// Seconds of each later ask of the same request (the reconciliation's), when asked
    /// again.
    pub later_asks_seconds: Vec<f64>,
}

/// Resident memory of an idle system.
#[derive(Clone, Debug, Serialize)]
pub struct Idle {
    pub rss_bytes: u64,
    pub hwm_bytes: u64,
    pub processes: usize,
}

/// Everything measured on one topology.
#[derive(Debug, Serialize)]
pub struct ModeResults {
    pub mode: &'static str,
    pub label: &'static str,
    pub idle: Outcome<Idle>,
    pub seeding: serde_json::Value,
    pub balance: Outcome<LoadStats>,
    pub purchase: Outcome<LoadStats>,
    pub merchant_search: Outcome<LoadStats>,
    pub deduction_list: Outcome<Batch>,
    pub remittance: Outcome<Batch>,
    pub period_close: Outcome<Batch>,
    /// R31 over the bulk purchases and every purchase of the run.
    pub reconciliation: Outcome<Batch>,
    pub salary_day: Outcome<LoadStats>,
}

impl ModeResults {
    fn failed(mode: Mode, why: &str) -> ModeResults {
        let failed = || Err(why.to_owned());
        ModeResults {
            mode: mode.key(),
            label: mode.label(),
            idle: Err(why.to_owned()),
            seeding: json!(null),
            balance: failed(),
            purchase: failed(),
            merchant_search: failed(),
            deduction_list: Err(why.to_owned()),
            remittance: Err(why.to_owned()),
            period_close: Err(why.to_owned()),
            reconciliation: Err(why.to_owned()),
            salary_day: failed(),
        }
    }

    /// Returns true when every scenario produced a measurement.
    pub fn all_ok(&self) -> bool {
        self.idle.is_ok()
            && self.balance.is_ok()
            && self.purchase.is_ok()
            && self.merchant_search.is_ok()
            && self.deduction_list.is_ok()
            && self.remittance.is_ok()
            && self.period_close.is_ok()
            && self.reconciliation.is_ok()
            && self.salary_day.is_ok()
    }
}

/// The anchors, measured once per run.
#[derive(Debug, Serialize)]
pub struct Anchors {
    pub tonic_echo: Outcome<LoadStats>,
    pub pgbench: Option<Outcome<Pgbench>>,
    pub copy_in_seconds: Option<Outcome<f64>>,
    pub copy_out_seconds: Option<Outcome<f64>>,
    /// `COPY` of as many lines as the period close marks overdue.
    pub copy_close_seconds: Option<Outcome<f64>>,
}

/// Runs everything; returns true when no scenario failed.
pub async fn run_all(options: Options, bin_dir: PathBuf) -> anyhow::Result<bool> {
    let scale = options.scale();
    let target_dir = bin_dir
        .parent()
        .context("no target directory")?
        .to_path_buf();
    let bench_dir = target_dir.join("bench");
    let log_dir = bench_dir.join("logs");
    std::fs::create_dir_all(&log_dir)?;
    let started = Instant::now();
    println!("tavana-bench: scale {scale:?}");

    println!("building the suite's binaries");
    tokio::task::block_in_place(|| system::build_binaries(&bin_dir))?;

    let pg_url = std::env::var("TAVANA_TEST_PG_URL").unwrap_or_default();
    let redis_url = std::env::var("TAVANA_TEST_REDIS_URL").unwrap_or_default();
    let postgres = tokio::task::block_in_place(|| Postgres::detect(&pg_url));
    let redis = tokio::task::block_in_place(|| crate::redis_answers(&redis_url));
    println!(
        "PostgreSQL: {}, Redis: {}",
        if postgres.is_some() {
            "reachable"
        } else {
            "not reachable"
        },
        if redis { "reachable" } else { "not reachable" }
    );
    let split_runs = !options.no_split && postgres.is_some() && redis;
    system::ensure_built(
        &bin_dir,
        if split_runs {
            &system::SUITE
        } else {
            &system::SUITE[..1]
        },
    )?;
    // Kept until the run ends: dropping them drops the anchors' scratch database and puts
    // the server's setting back.
    let _scratch = postgres.as_ref().map(Postgres::scratch_dropper);
    let mut restore_autovacuum = None;
    let autovacuum = match &postgres {
        Some(postgres) if !options.quick && !options.server_as_is => {
            restore_autovacuum = tokio::task::block_in_place(|| postgres.autovacuum_for_the_run())?;
            Some(if restore_autovacuum.is_some() {
                println!("PostgreSQL: autovacuum was off, on for this run");
                "on for this run (the server has it off)"
            } else {
                "on (as the server has it)"
            })
        }
        Some(postgres) => {
            let setting = tokio::task::block_in_place(|| {
                postgres.psql(&postgres.server_url, "show autovacuum")
            })?;
            Some(if setting.trim() == "on" {
                "on (as the server has it)"
            } else {
                "off (as the server has it)"
            })
        }
        None => None,
    };
    let duration = Duration::from_secs(scale.seconds);

    println!("anchor: tonic unary echo, {} clients", scale.clients);
    let tonic_echo = crate::anchors::tonic_echo(scale.clients, duration)
        .await
        .map_err(|error| format!("{error:#}"))
        .and_then(nonzero);
    let pgbench = match &postgres {
        Some(postgres) => {
            println!(
                "anchor: pgbench -s {} -c {}",
                scale.pgbench_scale, scale.clients
            );
            Some(
                tokio::task::block_in_place(|| {
                    postgres.pgbench(scale.pgbench_scale, scale.clients, duration)
                })
                .map_err(|error| format!("{error:#}")),
            )
        }
        None => None,
    };

    let remittance_csv = bench_dir.join("remittance.csv");
    write_remittance_csv(&remittance_csv, scale.instalments)?;
    let close_csv = bench_dir.join("close.csv");
    write_remittance_csv(&close_csv, scale.close_instalments)?;
    let deduction_csv = bench_dir.join("deductions.csv");

    let mut modes = Vec::new();
    let mut wanted = Vec::new();
    if !options.no_all_in_one {
        wanted.push(Mode::AllInOne);
    }
    if !options.no_split {
        if split_runs {
            wanted.push(Mode::Split);
        } else {
            println!("split mode skipped: PostgreSQL or Redis is not reachable");
        }
    }
    for mode in wanted {
        println!("== {}", mode.label());
        let results = run_mode(
            mode,
            &scale,
            &bin_dir,
            &log_dir,
            &remittance_csv,
            &deduction_csv,
            postgres.as_ref(),
        )
        .await
        .unwrap_or_else(|error| {
            eprintln!("{}: {error:#}", mode.label());
            ModeResults::failed(mode, &format!("{error:#}"))
        });
        modes.push(results);
    }

    let (copy_in_seconds, copy_out_seconds, copy_close_seconds) = match &postgres {
        Some(postgres) => {
            println!("anchor: COPY in and out");
            let copy_in = tokio::task::block_in_place(|| postgres.copy_in(&remittance_csv))
                .map_err(|error| format!("{error:#}"));
            let copy_close = tokio::task::block_in_place(|| postgres.copy_in(&close_csv))
                .map_err(|error| format!("{error:#}"));
            let copy_out = if deduction_csv.exists() {
                tokio::task::block_in_place(|| {
                    postgres.copy_out(&deduction_csv, &bench_dir.join("deductions.copy.csv"))
                })
                .map_err(|error| format!("{error:#}"))
            } else {
                Err("no deduction list was downloaded".to_owned())
            };
            (Some(copy_in), Some(copy_out), Some(copy_close))
        }
        None => (None, None, None),
    };
    let anchors = Anchors {
        tonic_echo,
        pgbench,
        copy_in_seconds,
        copy_out_seconds,
        copy_close_seconds,
    };

    let all_ok = anchors.tonic_echo.is_ok() && modes.iter().all(ModeResults::all_ok);
    let mut meta = report::Meta::collect(&options, &scale, &bin_dir, started.elapsed());
    meta.autovacuum = autovacuum.map(str::to_owned);
    let results_file = bench_dir.join("results.json");
    std::fs::write(
        &results_file,
        serde_json::to_string_pretty(&json!({
            "meta": meta,
            "anchors": anchors,
            "modes": modes,
        }))?,
    )?;
    let markdown = report::markdown(&meta, &anchors, &modes, &options.out);
    if let Some(parent) = options.out.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&options.out, &markdown)?;
    println!("{}", report::table(&anchors, &modes));
    println!(
        "wrote {} and {} in {:.0} s",
        options.out.display(),
        results_file.display(),
        started.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_file(&remittance_csv);
    let _ = std::fs::remove_file(&close_csv);
    drop(restore_autovacuum);
    Ok(all_ok)
}

fn nonzero(stats: LoadStats) -> Outcome<LoadStats> {
    if stats.ok == 0 {
        return Err(format!(
            "no request succeeded: {}",
            stats.first_error.unwrap_or_default()
        ));
    }
    Ok(stats)
}

fn write_remittance_csv(path: &Path, lines: u64) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    std::io::Write::write_all(&mut out, b"national_id,amount\n")?;
    for i in 0..lines {
        std::io::Write::write_all(
            &mut out,
            format!("{},{}\n", seed::bulk_national_id(i), seed::bulk_amount(i)).as_bytes(),
        )?;
    }
    std::io::Write::flush(&mut out)?;
    Ok(())
}

async fn run_mode(
    mode: Mode,
    scale: &Scale,
    bin_dir: &Path,
    log_dir: &Path,
    remittance_csv: &Path,
    deduction_csv: &Path,
    postgres: Option<&Postgres>,
) -> anyhow::Result<ModeResults> {
    let system = match mode {
        Mode::AllInOne => system::start_all_in_one(bin_dir, log_dir).await?,
        Mode::Split => system::start_split().await?,
    };
    let results = measure(&system, scale, remittance_csv, deduction_csv, postgres).await;
    // The split topology drops its databases as it stops.
    system.stop().await;
    results
}

async fn measure(
    system: &System,
    scale: &Scale,
    remittance_csv: &Path,
    deduction_csv: &Path,
    postgres: Option<&Postgres>,
) -> anyhow::Result<ModeResults> {
    let mode = system.mode;
    let duration = Duration::from_secs(scale.seconds);
    let idle = idle(system, if scale.seconds <= 2 { 1 } else { 5 }).await;

    let timer = Instant::now();
    let merchants = seed::merchants(system, scale.merchants).await?;
    println!(
        "  {} merchants in {:.1} s ({:.0}/s, {} retries)",
        scale.merchants,
        timer.elapsed().as_secs_f64(),
        merchants.per_second,
        merchants.retries
    );
    let timer = Instant::now();
    // SQLite answers concurrent writers of settlement with "database is locked" (see
    // BENCHMARKS.md): few writers there, many on PostgreSQL.
    let writers = if mode == Mode::AllInOne { 2 } else { 32 };
    let instalments =
        seed::instalments(system, seed::BULK_ORGANIZATION, scale.instalments, writers).await?;
    // Unpaid until the period-close scenario marks them overdue (R29).
    seed::instalments(
        system,
        seed::CLOSE_ORGANIZATION,
        scale.close_instalments,
        writers,
    )
    .await?;
    println!(
        "  {} instalments in {:.1} s ({:.0}/s, {} writers, {} retries)",
        scale.instalments,
        timer.elapsed().as_secs_f64(),
        instalments.per_second,
        writers,
        instalments.retries
    );
    // Credit's side of the same purchases, as credit would hold them in production (its
    // purchase table is not empty on salary day); the reconciliation reads both sides.
    let timer = Instant::now();
    seed::ledger(system, seed::BULK_ORGANIZATION, scale.instalments).await?;
    seed::ledger(system, seed::CLOSE_ORGANIZATION, scale.close_instalments).await?;
    let ledger_seconds = timer.elapsed().as_secs_f64();
    println!(
        "  credit's side of {} bulk purchases in {ledger_seconds:.1} s",
        scale.instalments + scale.close_instalments
    );
    let seeding = json!({
        "ledger_seconds": ledger_seconds,
        "merchants": scale.merchants,
        "merchants_per_second": merchants.per_second.round(),
        "merchants_retried": merchants.retries,
        "instalments": scale.instalments,
        "instalments_per_second": instalments.per_second.round(),
        "instalments_writers": writers,
        "instalments_retried": instalments.retries,
        "close_instalments": scale.close_instalments,
    });

    // Last, so that the access tokens (15 minutes) outlive the scenarios.
    let http = Http::new(&system.gateway_url)?;
    let timer = Instant::now();
    let actors = seed::actors(system, &http, scale.buyers, scale.login_pool).await?;
    let actors_seconds = timer.elapsed().as_secs_f64();
    println!(
        "  {} buyers with facilities in {actors_seconds:.1} s",
        scale.buyers
    );
    // Autovacuum analyzes a freshly loaded table within a minute or so (when it runs), and
    // until then every connection keeps the plans it prepared on the statistics of an empty
    // table: settlement's ledger query scans the whole organization per chunk of 1,000
    // lines (quadratic, see BENCHMARKS.md), credit reads every purchase per purchase. The
    // data is loaded by now, employees and facilities included. `--no-analyze` shows that.
    let analyze = || -> anyhow::Result<bool> {
        match (postgres, scale.analyze) {
            (Some(postgres), true) if mode == Mode::Split => {
                for database in &system.databases {
                    let url = crate::anchors::database_url(&postgres.server_url, database);
                    tokio::task::block_in_place(|| postgres.psql(&url, "analyze"))?;
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    };
    let analyzed = analyze()?;
    // Balance reads first, while each buyer has only the holds of the seeding.
    println!("  balance reads");
    let balance = balance(&http, &actors, scale.clients, duration).await;
    // A running system's churning tables (the outboxes, the idempotency records) hold rows
    // that autovacuum has analyzed; freshly seeded they are empty, analyzed empty above,
    // and every connection would plan its statements on them for an empty table
    // (sequential scans) for the whole measurement. A few seconds of purchases fill them,
    // as a system that has been taking purchases for a while has them, and they are
    // analyzed again.
    println!("  warm-up purchases");
    let warm_up = purchases(&http, &actors, scale.clients, duration.min(WARM_UP)).await;
    analyze()?;
    let seeding = {
        let mut seeding = seeding;
        seeding["analyzed_after_seeding"] = json!(analyzed);
        seeding["buyers"] = json!(scale.buyers);
        seeding["login_pool"] = json!(scale.login_pool);
        seeding["actors_seconds"] = json!(actors_seconds);
        seeding["warm_up_purchases"] = json!(warm_up.map(|stats| stats.ok).unwrap_or(0));
        seeding
    };
    println!("  purchases");
    let purchase = purchases(&http, &actors, scale.clients, duration).await;
    println!("  merchant search");
    let merchant_search = merchant_search(&http, scale, duration).await;
    println!("  salary day (reads, purchases, searches and logins together)");
    let salary_day = salary_day(&http, &actors, scale, duration).await;
    println!("  deduction list");
    let deduction_list = deduction_list(system, &http, &actors, deduction_csv, scale.instalments)
        .await
        .map_err(|error| format!("{error:#}"));
    println!("  remittance");
    let remittance = match remittance(system, &http, &actors, remittance_csv, scale.instalments)
        .await
    {
        Ok(batch) => Ok(batch),
        Err(error) => {
            // Still measure the service, so that the report says where the time goes.
            let error = format!("{error:#}");
            println!(
                "  remittance through the gateway failed ({error}); again straight to settlement's gRPC"
            );
            match remittance_grpc(system, remittance_csv, scale.instalments).await {
                Ok(batch) => Err(format!(
                    "through the gateway: {}; straight to settlement's gRPC: {:.2} s, peak RSS {:.0} MiB",
                    error.lines().next().unwrap_or_default(),
                    batch.seconds,
                    rss::mib(batch.peak_rss_bytes)
                )),
                Err(grpc_error) => Err(format!("{error}; gRPC: {grpc_error:#}")),
            }
        }
    };
    println!("  period close");
    let period_close = period_close(system, &http, &actors, scale.close_instalments)
        .await
        .map_err(|error| format!("{error:#}"));
    println!("  reconciliation");
    let reconciliation = reconciliation(system, &http, &actors, scale)
        .await
        .map_err(|error| format!("{error:#}"));
    Ok(ModeResults {
        mode: mode.key(),
        label: mode.label(),
        idle,
        seeding,
        balance,
        purchase,
        merchant_search,
        deduction_list,
        remittance,
        period_close,
        reconciliation,
        salary_day,
    })
}

async fn idle(system: &System, settle_seconds: u64) -> Outcome<Idle> {
    tokio::time::sleep(Duration::from_secs(settle_seconds)).await;
    let pids: Vec<u32> = match system.all_in_one_pid() {
        Some(pid) => vec![pid],
        // The split processes: every binary of the suite but the all-in-one one.
        None => system::SUITE[1..]
            .iter()
            .flat_map(|name| rss::children_named(name))
            .collect(),
    };
    if pids.is_empty() {
        return Err("no server process found".into());
    }
    let sum = |field: &str| {
        pids.iter()
            .map(|pid| rss::status_bytes(*pid, field).unwrap_or(0))
            .sum()
    };
    Ok(Idle {
        rss_bytes: sum("VmRSS"),
        hwm_bytes: sum("VmHWM"),
        processes: pids.len(),
    })
}

async fn balance(
    http: &Http,
    actors: &Actors,
    clients: usize,
    duration: Duration,
) -> Outcome<LoadStats> {
    let (http, tokens) = (http.clone(), Arc::new(actors.buyers.clone()));
    let url = http.url("/v1/me/balance");
    nonzero(
        load::run(clients, duration, move |client, _| {
            let request = http
                .client
                .get(&url)
                .bearer_auth(&tokens[client % tokens.len()]);
            async move {
                let response = request.send().await.map_err(|error| error.to_string())?;
                let status = response.status();
                let body = response.bytes().await.map_err(|error| error.to_string())?;
                if status != 200 {
                    return Err(format!("{status} {}", String::from_utf8_lossy(&body)));
                }
                Ok(())
            }
        })
        .await,
    )
}

async fn purchases(
    http: &Http,
    actors: &Actors,
    clients: usize,
    duration: Duration,
) -> Outcome<LoadStats> {
    let (http, tokens) = (http.clone(), Arc::new(actors.buyers.clone()));
    let url = http.url("/v1/me/purchases");
    let body =
        Arc::new(json!({ "merchant_id": actors.merchant_id, "kind": "credit", "amount": 1000 }));
    nonzero(
        load::run(clients, duration, move |client, _| {
            let request = http
                .client
                .post(&url)
                .bearer_auth(&tokens[client % tokens.len()])
                .header("idempotency-key", uuid::Uuid::new_v4().to_string())
                .json(&*body);
            async move {
                let response = request.send().await.map_err(|error| error.to_string())?;
                let status = response.status();
                let body = response.bytes().await.map_err(|error| error.to_string())?;
                if status != 201 {
                    return Err(format!("{status} {}", String::from_utf8_lossy(&body)));
                }
                Ok(())
            }
        })
        .await,
    )
}

async fn merchant_search(http: &Http, scale: &Scale, duration: Duration) -> Outcome<LoadStats> {
    let http = http.clone();
    let url = http.url("/v1/merchants");
    let merchants = scale.merchants.max(1);
    nonzero(
        load::run(scale.clients, duration, move |client, sequence| {
            // A spread of names, most of them rare: the search cannot stop early.
            let i = (client as u64 * 7_919 + sequence * 104_729) % merchants;
            let request = http.client.get(&url).query(&[
                ("q", seed::merchant_name(i)),
                ("page_size", "20".to_owned()),
            ]);
            async move {
                let response = request.send().await.map_err(|error| error.to_string())?;
                let status = response.status();
                let body = response.bytes().await.map_err(|error| error.to_string())?;
                if status != 200 {
                    return Err(format!("{status} {}", String::from_utf8_lossy(&body)));
                }
                Ok(())
            }
        })
        .await,
    )
}

/// A salary day: in every twenty operations, eleven balance reads, four purchases, two
/// instalment lists, two merchant searches and one SMS login of an employee who has not
/// logged in yet (R3 allows a mobile one code a minute), all at once.
async fn salary_day(
    http: &Http,
    actors: &Actors,
    scale: &Scale,
    duration: Duration,
) -> Outcome<LoadStats> {
    let http = http.clone();
    let tokens = Arc::new(actors.buyers.clone());
    let purchase =
        Arc::new(json!({ "merchant_id": actors.merchant_id, "kind": "credit", "amount": 1000 }));
    let next_login = Arc::new(AtomicU32::new(0));
    let (pool, merchants) = (actors.login_pool, scale.merchants.max(1));
    nonzero(
        load::run(scale.clients, duration, move |client, sequence| {
            let (http, token) = (http.clone(), tokens[client % tokens.len()].clone());
            let (purchase, next_login) = (purchase.clone(), next_login.clone());
            async move {
                let (request, expected) = match sequence % 20 {
                    0..=10 => (http.client.get(http.url("/v1/me/balance")), 200),
                    11..=14 => (
                        http.client
                            .post(http.url("/v1/me/purchases"))
                            .header("idempotency-key", uuid::Uuid::new_v4().to_string())
                            .json(&*purchase),
                        201,
                    ),
                    15..=16 => (http.client.get(http.url("/v1/me/instalments")), 200),
                    17..=18 => {
                        let i = (client as u64 * 7_919 + sequence * 104_729) % merchants;
                        let search = http.client.get(http.url("/v1/merchants")).query(&[
                            ("q", seed::merchant_name(i)),
                            ("page_size", "20".to_owned()),
                        ]);
                        (search, 200)
                    }
                    _ => {
                        let n = next_login.fetch_add(1, Ordering::Relaxed);
                        if n < pool {
                            return seed::login(&http, seed::LOGIN_POOL_BASE + n)
                                .await
                                .map(|_| ())
                                .map_err(|error| format!("login: {error:#}"));
                        }
                        (http.client.get(http.url("/v1/me/balance")), 200)
                    }
                };
                let response = request
                    .bearer_auth(&token)
                    .send()
                    .await
                    .map_err(|error| error.to_string())?;
                let status = response.status();
                let body = response.bytes().await.map_err(|error| error.to_string())?;
                if status != expected {
                    return Err(format!("{status} {}", String::from_utf8_lossy(&body)));
                }
                Ok(())
            }
        })
        .await,
    )
}

/// Closes [`seed::PERIOD`] for [`seed::CLOSE_ORGANIZATION`], none of whose instalments
/// was remitted: every one becomes overdue and is re-aged (R29).
async fn period_close(
    system: &System,
    http: &Http,
    actors: &Actors,
    instalments: u64,
) -> anyhow::Result<Batch> {
    let request = http
        .client
        .post(http.url(&format!(
            "/v1/organizations/{}/periods/{}/close",
            seed::CLOSE_ORGANIZATION,
            seed::PERIOD
        )))
        .bearer_auth(&actors.support)
        .json(&json!({}));
    let timed = timed("period close", system.settlement_processes(), request).await?;
    set_aside_unknown_sms(system).await?;
    let overdue = timed.answer["overdue_instalments"].as_u64().unwrap_or(0);
    anyhow::ensure!(
        overdue == instalments,
        "the close marked {overdue} of {instalments} instalments overdue: {}",
        truncate(&timed.answer.to_string())
    );
    Ok(timed.batch(overdue, 0))
}

/// R31 through the gateway: credit's ledger against settlement's instalments, over the
/// bulk and close purchases (credit's side seeded with them) and every purchase the load
/// scenarios made. The two sides must agree.
async fn reconciliation(
    system: &System,
    http: &Http,
    actors: &Actors,
    scale: &Scale,
) -> anyhow::Result<Batch> {
    let request = || {
        http.client
            .get(http.url("/v1/admin/reconciliation"))
            .bearer_auth(&actors.support)
    };
    let names = system.processes_named(&["tavana-gateway", "tavana-settlement", "tavana-credit"]);
    let first = timed("reconciliation", names.clone(), request()).await?;
    let checked = first.answer["checked_purchases"].as_u64().unwrap_or(0);
    let bulk = scale.instalments + scale.close_instalments;
    anyhow::ensure!(
        checked >= bulk,
        "the reconciliation checked {checked} purchases, fewer than the {bulk} bulk ones"
    );
    let mismatches = first.answer["mismatches"].as_array().map_or(0, Vec::len);
    anyhow::ensure!(
        mismatches == 0,
        "credit and settlement disagree on {mismatches} of {checked} purchases (R31): {}",
        truncate(&first.answer.to_string())
    );
    let mut later_asks_seconds = Vec::new();
    for _ in 1..scale.reconcile_asks {
        let later = timed("reconciliation", names.clone(), request()).await?;
        anyhow::ensure!(
            later.answer["checked_purchases"] == first.answer["checked_purchases"]
                && later.answer["mismatches"] == first.answer["mismatches"],
            "a later reconciliation answered otherwise: {}",
            truncate(&later.answer.to_string())
        );
        later_asks_seconds.push(later.seconds);
    }
    let mut batch = first.batch(checked, 0);
    batch.later_asks_seconds = later_asks_seconds;
    Ok(batch)
}

/// A request to the gateway, timed while the peak memory of `processes` is watched.
struct Timed {
    /// The 200 answer's body.
    answer: serde_json::Value,
    seconds: f64,
    peak_rss_bytes: u64,
    processes: Vec<(String, u32, u64)>,
}

impl Timed {
    fn batch(self, items: u64, bytes: u64) -> Batch {
        Batch {
            seconds: self.seconds,
            peak_rss_bytes: self.peak_rss_bytes,
            processes: self.processes,
            items,
            bytes,
            follow_up_seconds: None,
            later_asks_seconds: Vec::new(),
        }
    }
}

/// Sends `request`, timing it and watching `processes`; fails unless it answers 200 with JSON.
async fn timed(
    what: &str,
    processes: Vec<(String, u32)>,
    request: reqwest::RequestBuilder,
) -> anyhow::Result<Timed> {
    let watch = PeakWatch::start(processes.iter().map(|(_, pid)| *pid).collect());
    let started = Instant::now();
    let response = request.send().await?;
    let status = response.status();
    let text = response.text().await?;
    let seconds = started.elapsed().as_secs_f64();
    let (peak_rss_bytes, processes) = peak_of(&watch.finish().await, &processes);
    anyhow::ensure!(status == 200, "{what}: {status} {}", truncate(&text));
    Ok(Timed {
        answer: serde_json::from_str(&text)?,
        seconds,
        peak_rss_bytes,
        processes,
    })
}

fn peak_of(peaks: &[(u32, u64)], names: &[(String, u32)]) -> (u64, Vec<(String, u32, u64)>) {
    let processes: Vec<(String, u32, u64)> = peaks
        .iter()
        .map(|(pid, bytes)| {
            let name = names
                .iter()
                .find(|(_, p)| p == pid)
                .map(|(name, _)| name.clone())
                .unwrap_or_default();
            (name, *pid, *bytes)
        })
        .collect();
    let peak = processes
        .iter()
        .map(|(_, _, bytes)| *bytes)
        .max()
        .unwrap_or(0);
    (peak, processes)
}

async fn deduction_list(
    system: &System,
    http: &Http,
    actors: &Actors,
    out: &Path,
    instalments: u64,
) -> anyhow::Result<Batch> {
    let names = system.settlement_processes();
    let watch = PeakWatch::start(names.iter().map(|(_, pid)| *pid).collect());
    let started = Instant::now();
    let mut response = http
        .client
        .get(http.url(&format!(
            "/v1/organizations/{}/deductions/{}",
            seed::BULK_ORGANIZATION,
            seed::PERIOD
        )))
        .bearer_auth(&actors.support)
        .header(reqwest::header::ACCEPT, "text/csv")
        .send()
        .await?;
    anyhow::ensure!(
        response.status() == 200,
        "deduction list: {}",
        response.status()
    );
    let mut file = tokio::io::BufWriter::new(tokio::fs::File::create(out).await?);
    let (mut bytes, mut lines) = (0u64, 0u64);
    while let Some(chunk) = response.chunk().await? {
        bytes += chunk.len() as u64;
        lines += chunk.iter().filter(|byte| **byte == b'\n').count() as u64;
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    let seconds = started.elapsed().as_secs_f64();
    let (peak_rss_bytes, processes) = peak_of(&watch.finish().await, &names);
    // A header, one line per employee, the totals line.
    anyhow::ensure!(
        lines == instalments + 2,
        "the deduction list has {lines} lines, expected {}",
        instalments + 2
    );
    Ok(Batch {
        seconds,
        peak_rss_bytes,
        processes,
        items: lines.saturating_sub(2),
        bytes,
        follow_up_seconds: None,
        later_asks_seconds: Vec::new(),
    })
}

async fn remittance(
    system: &System,
    http: &Http,
    actors: &Actors,
    csv: &Path,
    instalments: u64,
) -> anyhow::Result<Batch> {
    let body = tokio::fs::read(csv).await?;
    let bytes = body.len() as u64;
    let request = http
        .client
        .post(http.url("/v1/remittances"))
        .query(&[
            ("organization_id", seed::BULK_ORGANIZATION.to_owned()),
            ("period", seed::PERIOD.to_owned()),
            (
                "bank_reference",
                format!("BENCH-{}", uuid::Uuid::new_v4().simple()),
            ),
        ])
        .bearer_auth(&actors.support)
        .header(reqwest::header::CONTENT_TYPE, "text/csv")
        .body(body);
    let timed = timed("remittance", system.settlement_processes(), request).await?;
    let settled = timed.answer["settled_instalments"].as_u64().unwrap_or(0);
    anyhow::ensure!(
        settled == instalments,
        "the remittance settled {settled} of {instalments} instalments: {}",
        truncate(&timed.answer.to_string())
    );
    // Credit marks the purchases settled from settlement's outbox after the answer; the
    // next scenario starts once that is done.
    let follow_up = Instant::now();
    seed::outbox_drained(
        &system.settlement_database_url,
        "credit.mark_purchases_settled",
    )
    .await?;
    set_aside_unknown_sms(system).await?;
    Ok(Batch {
        follow_up_seconds: Some(follow_up.elapsed().as_secs_f64()),
        later_asks_seconds: Vec::new(),
        ..timed.batch(settled, bytes)
    })
}

/// Keeps identity's retries of the bulk employees' SMS out of the next scenarios: see
/// [`seed::set_aside_unknown_sms`].
async fn set_aside_unknown_sms(system: &System) -> anyhow::Result<()> {
    let set_aside = seed::set_aside_unknown_sms(&system.settlement_database_url).await?;
    println!("    set aside {set_aside} SMS requests for the bulk employees, unknown to identity");
    Ok(())
}

fn truncate(text: &str) -> String {
    text.chars().take(500).collect()
}

/// Records the remittance with settlement's `RecordRemittance` as a support user, as the
/// gateway does: the CSV file as it came.
async fn remittance_grpc(system: &System, csv: &Path, instalments: u64) -> anyhow::Result<Batch> {
    use tavana_kit::caller::{Caller, Role, RoleGrant};
    use tavana_proto::settlement::v1 as pb;

    let csv = tokio::fs::read(csv).await?;
    let bytes = csv.len() as u64;
    let channel = tavana_kit::grpc::Dialer::new(
        system.keyring.suite_signer(tavana_kit::trust::GATEWAY)?,
        Duration::from_secs(3600),
    )
    .channel(&system.settlement_url)?;
    let mut client = pb::settlement_service_client::SettlementServiceClient::new(channel)
        .max_decoding_message_size(256 * 1024 * 1024)
        .max_encoding_message_size(256 * 1024 * 1024);
    let mut request = tonic::Request::new(pb::RecordRemittanceRequest {
        organization_id: seed::BULK_ORGANIZATION.to_owned(),
        period: seed::PERIOD.to_owned(),
        bank_reference: format!("BENCH-GRPC-{}", uuid::Uuid::new_v4().simple()),
        lines: Vec::new(),
        csv,
    });
    Caller::User {
        employee_id: "bench-support".into(),
        national_id: String::new(),
        grants: vec![RoleGrant::global(Role::Support)],
    }
    .write_metadata(request.metadata_mut());
    let names = system.settlement_processes();
    let watch = PeakWatch::start(names.iter().map(|(_, pid)| *pid).collect());
    let started = Instant::now();
    let answer = client.record_remittance(request).await;
    let seconds = started.elapsed().as_secs_f64();
    let (peak_rss_bytes, processes) = peak_of(&watch.finish().await, &names);
    let result = answer?.into_inner().result.context("no result")?;
    anyhow::ensure!(
        u64::from(result.settled_instalments) == instalments,
        "settled {} of {instalments}",
        result.settled_instalments
    );
    Ok(Batch {
        seconds,
        peak_rss_bytes,
        processes,
        items: u64::from(result.settled_instalments),
        bytes,
        follow_up_seconds: None,
        later_asks_seconds: Vec::new(),
    })
}
