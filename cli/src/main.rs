//! `tavana`: run the whole suite, or bootstrap its data.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tavana::suite::{SuiteSettings, UpOptions};

/// mimalloc for every allocation of the process, SQLite's included (the `override` feature
/// replaces `malloc` and `free`). In the all-in-one process five services, the gateway and
/// SQLite's worker threads share one heap, and glibc's malloc was about a quarter of its
/// CPU in the remittance's profile; same-hour runs (BENCHMARKS.md) gained a fifth on
/// balance reads and a tenth on the salary day. The split services keep glibc: their
/// runs did not change beyond noise while their idle memory doubled.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "tavana", version, about = "Tavana welfare credit card")]
struct Cli {
    /// A TOML settings file (sections: identity, guarantee, credit,
    /// settlement, merchant_directory, gateway, redis, telemetry).
    #[arg(long, global = true, env = "TAVANA_CONFIG")]
    config: Option<PathBuf>,
    /// Where the SQLite files live.
    #[arg(long, global = true, default_value = "./data", env = "TAVANA_DATA_DIR")]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs all five services and the gateway in one process.
    Up {
        /// The gateway's address. Given more than once, a gateway replica listens on
        /// each (its own state and portal, sharing the store and the services, as
        /// replicas behind a load balancer do).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: Vec<String>,
        /// Dev mode: dev SMS provider, dev clock and `/v1/dev/*`.
        #[arg(long)]
        dev: bool,
        /// Loads the demo data set (see README) on start.
        #[arg(long)]
        demo: bool,
        /// Lets `--dev` listen on a non-loopback address (its dev SMS inbox and
        /// dev clock are then open to the network).
        #[arg(long)]
        allow_remote_dev: bool,
    },
    /// Bootstraps data directly in the databases (works while `up` runs).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Creates an organization.
    AddOrganization {
        id: String,
        name: String,
        #[arg(long)]
        contract_in_force: bool,
    },
    /// Imports employees from an HR CSV (same columns as `POST /v1/employees/import`).
    ImportEmployees { file: PathBuf },
    /// Grants a staff role.
    GrantRole {
        national_id: String,
        role: String,
        #[arg(long)]
        region: Option<String>,
    },
    /// Lists the undelivered outbox messages of every service, or retries one (R31).
    Outbox {
        /// Only the messages a receiver refused for good (dead letters).
        #[arg(long)]
        failed: bool,
        /// Makes the message `<service>:<id>` (as listed) due again at once.
        #[arg(long, value_name = "ID")]
        retry: Option<String>,
    },
    /// Compares credit's purchases with settlement's instalments and prints every
    /// difference (R31); exits with 1 when there is one.
    Reconcile,
    /// Prints an assertion (valid 60 s) for a gRPC call to one service, e.g. for grpcurl:
    /// `-H "x-tavana-assertion: $(tavana admin token --audience credit)"`.
    Token {
        /// The principal to sign as; its `<principal>.key` must be in the key directory.
        #[arg(long, default_value = "cli")]
        principal: String,
        /// The service called: identity, guarantee, credit, settlement, merchant-directory.
        #[arg(long)]
        audience: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings: SuiteSettings = tavana_kit::config::load(cli.config.as_deref())?;
    tavana_kit::telemetry::init("tavana", &settings.telemetry);
    match cli.command {
        Command::Up {
            listen,
            dev,
            demo,
            allow_remote_dev,
        } => {
            for address in &listen {
                tavana::suite::check_dev_listen(address, dev, allow_remote_dev)?;
            }
            let mut listen = listen.into_iter();
            let options = UpOptions {
                data_dir: cli.data_dir,
                listen: listen.next().context("--listen needs an address")?,
                gateway_replicas: listen.collect(),
                dev,
                settings,
            };
            up(options, demo).await
        }
        Command::Admin { command } => {
            let admin = || tavana::admin::Admin::open(&settings, &cli.data_dir);
            match command {
                AdminCommand::AddOrganization {
                    id,
                    name,
                    contract_in_force,
                } => {
                    admin()
                        .await?
                        .add_organization(&id, &name, contract_in_force)
                        .await?;
                    println!("organization {id} saved");
                }
                AdminCommand::ImportEmployees { file } => {
                    let csv = std::fs::read(&file)
                        .with_context(|| format!("cannot read {}", file.display()))?;
                    let report = admin().await?.import_employees(&csv).await?;
                    println!("{}", serde_json::to_string_pretty(&report)?);
                }
                AdminCommand::GrantRole {
                    national_id,
                    role,
                    region,
                } => {
                    admin()
                        .await?
                        .grant_role(&national_id, &role, region.as_deref())
                        .await?;
                    println!("role {role} granted");
                }
                AdminCommand::Outbox { failed, retry } => {
                    outbox(&settings, &cli.data_dir, failed, retry).await?;
                }
                AdminCommand::Reconcile => {
                    // Credit's and settlement's databases only, not identity's.
                    let report = tavana::reconcile::run(&settings, &cli.data_dir).await?;
                    tavana::reconcile::print(&report);
                    if !report.mismatches.is_empty() {
                        std::process::exit(1);
                    }
                }
                AdminCommand::Token {
                    principal,
                    audience,
                } => {
                    // The key directory of `tavana up` unless one is configured.
                    let keys_dir = match settings.trust.keys_dir.trim() {
                        "" => cli.data_dir.join("keys"),
                        dir => PathBuf::from(dir),
                    };
                    println!(
                        "{}",
                        tavana::admin::token(&keys_dir, &principal, &audience)?
                    );
                }
            }
            Ok(())
        }
    }
}

/// `tavana admin outbox [--failed] [--retry ID]`.
async fn outbox(
    settings: &SuiteSettings,
    data_dir: &std::path::Path,
    failed: bool,
    retry: Option<String>,
) -> anyhow::Result<()> {
    match retry {
        Some(id) => {
            let retried = tavana::outbox::retry(settings, data_dir, &id).await?;
            anyhow::ensure!(retried, "{id}: no undelivered message with this id");
            println!("{id} is due again; its service's relay delivers it");
        }
        None => {
            let messages = tavana::outbox::list(settings, data_dir, failed).await?;
            print!("{}", tavana::outbox::render(&messages));
            println!("{} message(s)", messages.len());
        }
    }
    Ok(())
}

async fn up(options: UpOptions, demo: bool) -> anyhow::Result<()> {
    let data_dir = options.data_dir.clone();
    let settings = options.settings.clone();
    let mut suite = tavana::suite::start(options).await?;
    if demo {
        tavana::demo::load(&suite, &settings, &data_dir).await?;
    }
    println!("tavana is up");
    println!("  gateway             {}", suite.gateway_url());
    for replica in &suite.gateway_replicas {
        println!("  gateway replica     http://{replica}");
    }
    for (name, address) in &suite.services {
        println!("  {name:<19} grpc://{address}");
    }
    if demo {
        println!("  demo data loaded: see README.md, \"Demo data\"");
    }
    tokio::select! {
        result = suite.wait() => result,
        _ = tokio::signal::ctrl_c() => {
            println!("stopping");
            suite.shutdown().await
        }
    }
}
