//! `tavana`: run the whole suite, or bootstrap its data.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tavana::suite::{SuiteSettings, UpOptions};

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
        /// The gateway's address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Dev mode: dev SMS provider, dev clock and `/v1/dev/*`.
        #[arg(long)]
        dev: bool,
        /// Loads the demo data set (see README) on start.
        #[arg(long)]
        demo: bool,
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings: SuiteSettings = tavana_kit::config::load(cli.config.as_deref())?;
    tavana_kit::telemetry::init("tavana", &settings.telemetry);
    match cli.command {
        Command::Up { listen, dev, demo } => {
            let options = UpOptions {
                data_dir: cli.data_dir,
                listen,
                dev,
                settings,
            };
            up(options, demo).await
        }
        Command::Admin { command } => {
            let admin = tavana::admin::Admin::open(&settings, &cli.data_dir).await?;
            match command {
                AdminCommand::AddOrganization {
                    id,
                    name,
                    contract_in_force,
                } => {
                    admin
                        .add_organization(&id, &name, contract_in_force)
                        .await?;
                    println!("organization {id} saved");
                }
                AdminCommand::ImportEmployees { file } => {
                    let csv = std::fs::read(&file)
                        .with_context(|| format!("cannot read {}", file.display()))?;
                    let report = admin.import_employees(&csv).await?;
                    println!("{}", serde_json::to_string_pretty(&report)?);
                }
                AdminCommand::GrantRole {
                    national_id,
                    role,
                    region,
                } => {
                    admin
                        .grant_role(&national_id, &role, region.as_deref())
                        .await?;
                    println!("role {role} granted");
                }
            }
            Ok(())
        }
    }
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
