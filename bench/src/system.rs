//! The system under test: `tavana up` as a child process on SQLite files (all-in-one), or
//! the split topology of the end-to-end suite (each service a process on PostgreSQL and
//! Redis, two replicas of credit and settlement).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tavana::admin::Admin;
use tavana::suite::SuiteSettings;
use tavana_e2e::split;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// Which topology runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    AllInOne,
    Split,
}

impl Mode {
    /// Returns the name used in the report.
    pub fn label(self) -> &'static str {
        match self {
            Mode::AllInOne => "all-in-one (SQLite)",
            Mode::Split => "split (PostgreSQL + Redis)",
        }
    }

    /// Returns the key used in the JSON file.
    pub fn key(self) -> &'static str {
        match self {
            Mode::AllInOne => "all_in_one_sqlite",
            Mode::Split => "split_postgres_redis",
        }
    }
}

enum Processes {
    AllInOne(Child),
    Split(split::SplitTopology),
}

/// A running system and the handles the benchmark needs.
pub struct System {
    pub mode: Mode,
    pub gateway_url: String,
    pub settlement_url: String,
    pub merchants_url: String,
    /// Credit's database: the bench writes the bulk purchases' ledger there.
    pub credit_database_url: String,
    /// Settlement's database: the bench waits for its outbox after the remittance.
    pub settlement_database_url: String,
    pub admin: Admin,
    /// Every principal's key: the bench seeds as the gateway and as credit.
    pub keyring: tavana_kit::trust::Keyring,
    /// The split topology's databases (it drops them as it stops).
    pub databases: Vec<String>,
    processes: Processes,
    _data_dir: tempfile::TempDir,
}

impl System {
    /// Returns the server processes that do the work of a settlement request, by name.
    pub fn settlement_processes(&self) -> Vec<(String, u32)> {
        self.processes_named(&["tavana-gateway", "tavana-settlement"])
    }

    /// Returns the server processes of the given binaries in the split topology (the one
    /// process of the all-in-one), by name.
    pub fn processes_named(&self, binaries: &[&str]) -> Vec<(String, u32)> {
        match &self.processes {
            Processes::AllInOne(child) => child
                .id()
                .map(|pid| vec![("tavana".to_owned(), pid)])
                .unwrap_or_default(),
            Processes::Split(_) => binaries
                .iter()
                .flat_map(|name| {
                    crate::rss::children_named(name)
                        .into_iter()
                        .map(|pid| ((*name).to_owned(), pid))
                })
                .collect(),
        }
    }

    /// Returns the pid of the all-in-one process.
    pub fn all_in_one_pid(&self) -> Option<u32> {
        match &self.processes {
            Processes::AllInOne(child) => child.id(),
            Processes::Split(_) => None,
        }
    }

    /// Stops every process of the system.
    pub async fn stop(self) {
        match self.processes {
            Processes::AllInOne(mut child) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
            Processes::Split(topology) => drop(topology),
        }
    }
}

/// Starts `tavana up --dev` on fresh SQLite files and waits until it prints its addresses.
pub async fn start_all_in_one(bin_dir: &Path, log_dir: &Path) -> anyhow::Result<System> {
    let data_dir = tempfile::Builder::new().prefix("tavana-bench-").tempdir()?;
    let binary = bin_dir.join("tavana");
    let log = std::fs::File::create(log_dir.join("all-in-one.log"))?;
    let mut child = Command::new(&binary)
        .arg("--data-dir")
        .arg(data_dir.path())
        .args(["up", "--dev", "--listen", "127.0.0.1:0"])
        .env("TAVANA_GATEWAY__RATE_LIMIT_PER_IP_PER_MINUTE", "1000000000")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut addresses: Vec<(String, String)> = Vec::new();
    let read = async {
        while let Some(line) = lines.next_line().await? {
            let mut words = line.split_whitespace();
            if let (Some(name), Some(address), None) = (words.next(), words.next(), words.next())
                && (address.starts_with("http://") || address.starts_with("grpc://"))
            {
                let address = address.replacen("grpc://", "http://", 1);
                addresses.push((name.to_owned(), address));
                if addresses.len() == 6 {
                    return anyhow::Ok(());
                }
            }
        }
        anyhow::bail!("tavana up stopped before it printed its addresses (see its log)")
    };
    tokio::time::timeout(Duration::from_secs(300), read)
        .await
        .context("tavana up did not start within 300 s")??;
    // Keep reading (the log goes to stdout), so that the child never blocks on a full pipe.
    let mut log = tokio::fs::OpenOptions::new()
        .append(true)
        .open(log_dir.join("all-in-one.log"))
        .await?;
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = log.write_all(line.as_bytes()).await;
            let _ = log.write_all(b"\n").await;
        }
    });
    let address = |name: &str| {
        addresses
            .iter()
            .find(|(service, _)| service == name)
            .map(|(_, address)| address.clone())
            .with_context(|| format!("tavana up printed no address for {name}"))
    };
    let admin = Admin::open(&SuiteSettings::default(), data_dir.path()).await?;
    let keyring = tavana_kit::trust::Keyring::load(
        &data_dir.path().join("keys"),
        &tavana_kit::trust::PRINCIPALS,
    )?;
    Ok(System {
        mode: Mode::AllInOne,
        gateway_url: address("gateway")?,
        settlement_url: address("settlement")?,
        merchants_url: address("merchant-directory")?,
        credit_database_url: tavana_kit::db::sqlite_url(data_dir.path(), "credit"),
        settlement_database_url: tavana_kit::db::sqlite_url(data_dir.path(), "settlement"),
        admin,
        keyring,
        databases: Vec::new(),
        processes: Processes::AllInOne(child),
        _data_dir: data_dir,
    })
}

/// Starts the split topology (binaries from `TAVANA_BIN_DIR`, PostgreSQL and Redis from
/// `TAVANA_TEST_PG_URL` and `TAVANA_TEST_REDIS_URL`).
pub async fn start_split() -> anyhow::Result<System> {
    let data_dir = tempfile::Builder::new().prefix("tavana-bench-").tempdir()?;
    let id = format!("bench{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    // The services' own outbox timing, as deployed: an answer waits at most the default
    // immediate deadline for its deliveries (the test suites allow far more).
    let topology = split::start_with(split::Layout {
        outbox: split::OutboxTiming::Production,
        ..split::Layout::for_test(&id)?
    })
    .await?;
    let mut settings = SuiteSettings::default();
    settings.identity.database.url = topology.database_urls["identity"].clone();
    let admin = Admin::open(&settings, data_dir.path()).await?;
    let databases = topology
        .database_urls
        .values()
        .filter_map(|url| url.rsplit('/').next().map(str::to_owned))
        .collect();
    Ok(System {
        mode: Mode::Split,
        gateway_url: topology.gateway_url.clone(),
        settlement_url: topology.service_urls["settlement"].clone(),
        merchants_url: topology.service_urls["merchant-directory"].clone(),
        credit_database_url: topology.database_urls["credit"].clone(),
        settlement_database_url: topology.database_urls["settlement"].clone(),
        admin,
        keyring: topology.keyring.clone(),
        databases,
        processes: Processes::Split(topology),
        _data_dir: data_dir,
    })
}

/// Returns the directory of this binary, where cargo also puts the suite's binaries.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.parent().context("no binary directory")?.to_path_buf())
}

/// The suite's packages; each one's binary has its name. The all-in-one mode starts the
/// first alone, the split mode all of them.
pub const SUITE: [&str; 7] = [
    "tavana",
    "tavana-identity",
    "tavana-guarantee",
    "tavana-credit",
    "tavana-settlement",
    "tavana-merchant-directory",
    "tavana-gateway",
];

/// Fails, naming them, when any of the binaries `names` is not in `bin_dir`: a run whose
/// build was skipped (`CARGO` a no-op) learns it before its first scenario, not when a
/// mode that needs them starts a quarter of an hour later.
pub fn ensure_built(bin_dir: &Path, names: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|name| {
            !bin_dir
                .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
                .is_file()
        })
        .collect();
    anyhow::ensure!(
        missing.is_empty(),
        "no {} in {}: build them first (cargo build --bins with -p for each of them)",
        missing.join(", "),
        bin_dir.display()
    );
    Ok(())
}

/// Builds the suite's binaries in this binary's profile, so that one `cargo run` is enough.
pub fn build_binaries(bin_dir: &Path) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = std::process::Command::new(cargo);
    command.args(["build", "--bins"]);
    for package in SUITE {
        command.args(["-p", package]);
    }
    if bin_dir.file_name().and_then(|name| name.to_str()) == Some("release") {
        command.arg("--release");
    }
    // The workspace this binary was built from, when it is still there; a binary whose
    // source tree was removed (a finished worktree) builds from the current directory.
    if let Some(manifest) =
        option_env!("CARGO_MANIFEST_DIR").filter(|manifest| Path::new(manifest).is_dir())
    {
        command.current_dir(manifest);
    }
    // `cargo run` hands this binary the package's own variables (CARGO_PKG_NAME, ...).
    // Build scripts such as ring's watch them, so passing them on would rebuild ring and
    // everything above it here, and again at the next plain `cargo build`.
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_MANIFEST_")
            || matches!(
                key,
                "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE" | "OUT_DIR"
            )
        {
            command.env_remove(key);
        }
    }
    let status = command
        .status()
        .with_context(|| format!("cannot run {:?} build", command.get_program()))?;
    anyhow::ensure!(
        status.success(),
        "cargo build of the suite's binaries failed"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binary_the_run_needs_and_the_build_left_out_is_named_before_the_run() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path()
                .join(format!("tavana{}", std::env::consts::EXE_SUFFIX)),
            b"",
        )
        .unwrap();

        ensure_built(dir.path(), &SUITE[..1]).unwrap();
        let error = ensure_built(dir.path(), &SUITE).unwrap_err().to_string();
        assert!(
            error.starts_with("no tavana-identity, tavana-guarantee,"),
            "{error}"
        );
        assert!(error.contains("tavana-gateway in "), "{error}");
    }
}
