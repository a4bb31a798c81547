//! Split mode: each service binary and the gateway as its own process on
//! loopback, each service against its own PostgreSQL database (created and
//! migrated by `<service> migrate`, as the Kubernetes Job does), all on the
//! real Redis, with two replicas of credit and of settlement. Chosen with
//! `TAVANA_E2E_TOPOLOGY=split`; the binaries come from the target directory
//! (`cargo build --bins` first) or `TAVANA_BIN_DIR`. `scripts/split-up` runs the
//! same topology by hand (the `split-up` binary).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};

/// How long an answer may wait for its immediate delivery (read your writes) in the
/// test suites, where every service shares a loaded 2-core machine: the assertions that
/// follow an answer test the contract, not the machine's speed. Production keeps the
/// short default of [`tavana_kit::config::OutboxSettings`].
pub const IMMEDIATE_DEADLINE_MS: u64 = 30_000;

/// How long a relay's claim holds its messages in the split topology: short, so that the
/// rows of a replica a test kills go to the other replica within seconds, not the
/// production default's 30 s. A delivery slower than this is made twice, which the
/// receivers' idempotency absorbs.
pub const OUTBOX_LEASE_MS: u64 = 5_000;

/// A service of the split topology: binary, config section, replicas.
struct ServiceSpec {
    name: &'static str,
    section: &'static str,
    replicas: usize,
}

const SERVICES: [ServiceSpec; 5] = [
    ServiceSpec {
        name: "identity",
        section: "IDENTITY",
        replicas: 1,
    },
    ServiceSpec {
        name: "guarantee",
        section: "GUARANTEE",
        replicas: 1,
    },
    ServiceSpec {
        name: "credit",
        section: "CREDIT",
        replicas: 2,
    },
    ServiceSpec {
        name: "settlement",
        section: "SETTLEMENT",
        replicas: 2,
    },
    ServiceSpec {
        name: "merchant-directory",
        section: "MERCHANT_DIRECTORY",
        replicas: 1,
    },
];

/// A running split topology; its processes die with it.
pub struct SplitTopology {
    /// The gateway's base URL.
    pub gateway_url: String,
    /// Each service's URL list (comma-separated replicas).
    pub service_urls: HashMap<&'static str, String>,
    /// Each service's database URL.
    pub database_urls: HashMap<&'static str, String>,
    /// The Redis key prefix of this topology.
    pub redis_prefix: String,
    /// Each process's `/metrics` URL, by process name (`credit-0`, `gateway`).
    pub metrics_urls: Vec<(String, String)>,
    /// Every principal's key, made for this run (each process loads only its own
    /// private key from the directory).
    pub keyring: tavana_kit::trust::Keyring,
    _keys_dir: tempfile::TempDir,
    processes: std::sync::Mutex<Vec<(String, Child)>>,
    /// How each service replica was started, to start it again.
    commands: HashMap<String, Launch>,
    id: String,
    /// Declared after the processes, so that they are killed before their databases go.
    _databases: Databases,
}

/// A topology's databases, dropped with it: they are fresh copies of the migrated
/// templates, and nothing in them outlives the topology.
struct Databases {
    server_url: String,
    names: Vec<String>,
}

impl Drop for Databases {
    fn drop(&mut self) {
        tavana_kit::testing::drop_postgres_databases(&self.server_url, &self.names);
    }
}

/// A service replica's binary and environment.
struct Launch {
    binary: PathBuf,
    env: Vec<(String, String)>,
}

impl SplitTopology {
    /// Kills one process at once (SIGKILL), e.g. `credit-0`.
    pub fn kill(&self, process: &str) -> anyhow::Result<()> {
        let mut processes = self
            .processes
            .lock()
            .map_err(|_| anyhow::anyhow!("process list poisoned"))?;
        let (_, child) = processes
            .iter_mut()
            .find(|(name, _)| name == process)
            .with_context(|| format!("no process {process}"))?;
        child.start_kill()?;
        Ok(())
    }

    /// Stops one process as Kubernetes stops a pod (SIGTERM) and waits until it
    /// has exited: its graceful shutdown has then flushed its trace exporter.
    pub async fn stop(&self, process: &str) -> anyhow::Result<()> {
        let mut child = {
            let mut processes = self
                .processes
                .lock()
                .map_err(|_| anyhow::anyhow!("process list poisoned"))?;
            let at = processes
                .iter()
                .position(|(name, _)| name == process)
                .with_context(|| format!("no process {process}"))?;
            processes.remove(at).1
        };
        let pid = child
            .id()
            .with_context(|| format!("{process} has already exited"))?;
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .context("cannot run kill")?;
        anyhow::ensure!(sent.success(), "kill -TERM {pid} ({process}) failed");
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .with_context(|| format!("{process} did not stop within 30 s of SIGTERM"))??;
        anyhow::ensure!(status.success(), "{process} exited with {status}");
        Ok(())
    }

    /// Stops `processes` at once, as [`SplitTopology::stop`] does each.
    pub async fn stop_all(&self, processes: &[&str]) -> anyhow::Result<()> {
        futures::future::try_join_all(processes.iter().map(|process| self.stop(process)))
            .await
            .map(drop)
    }

    /// Starts a service replica stopped by [`SplitTopology::stop`] again, on its
    /// port, database and keys (its log goes to `<process>-again.log`).
    pub fn start_again(&self, process: &str) -> anyhow::Result<()> {
        let launch = self
            .commands
            .get(process)
            .with_context(|| format!("no service replica {process}"))?;
        let child = spawn(
            &self.id,
            &format!("{process}-again"),
            &launch.binary,
            &["serve"],
            &launch.env,
        )?;
        self.processes
            .lock()
            .map_err(|_| anyhow::anyhow!("process list poisoned"))?
            .push((process.to_owned(), child));
        Ok(())
    }
}

fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("TAVANA_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    // target/debug/deps/<test binary> or target/debug/<binary> -> target/debug
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("no target directory")?;
    Ok(match dir.file_name() {
        Some(name) if name == "deps" => dir.parent().context("no target directory")?,
        _ => dir,
    }
    .to_path_buf())
}

/// Picks a port for a process of the topology to listen on. It comes from below the
/// kernel's ephemeral range: a port the kernel hands out for `bind(0)` is also a port it
/// hands out as the local end of outgoing connections (to PostgreSQL, Redis, between the
/// services), and one of those could take it before the process binds it. Below that
/// range only another listener can, and the start lock keeps the other topologies out
/// until this one is bound. Free means that binding it succeeds now and that this process
/// has not handed it out before (a port picked and released is free again until its
/// process binds it, so two picks of one start could otherwise meet).
fn free_port() -> anyhow::Result<u16> {
    static ISSUED: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut issued = ISSUED
        .lock()
        .map_err(|_| anyhow::anyhow!("issued ports poisoned"))?;
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let low = 10_000.min(ephemeral_start / 2);
    let span = u64::from(ephemeral_start - low);
    for _ in 0..100 {
        // uuid's v4 bits are a random source the crate already has.
        let random = uuid::Uuid::new_v4().as_u64_pair().0;
        let port = low + u16::try_from(random % span)?;
        if !issued.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            issued.insert(port);
            return Ok(port);
        }
    }
    anyhow::bail!("no free port below the ephemeral range {ephemeral_start}")
}

fn database_url(base: &str, database: &str) -> String {
    match base.rfind('/') {
        Some(slash) if base[..slash].contains("://") && base[slash..].len() > 1 => {
            format!("{}/{database}", &base[..slash])
        }
        _ => format!("{}/{database}", base.trim_end_matches('/')),
    }
}

fn log_file(id: &str, process: &str) -> anyhow::Result<std::fs::File> {
    let dir = bin_dir()?.join("e2e-logs");
    std::fs::create_dir_all(&dir)?;
    Ok(std::fs::File::create(
        dir.join(format!("{id}-{process}.log")),
    )?)
}

fn spawn(
    id: &str,
    process: &str,
    binary: &PathBuf,
    args: &[&str],
    env: &[(String, String)],
) -> anyhow::Result<Child> {
    let log = log_file(id, process)?;
    let mut command = Command::new(binary);
    command
        .args(args)
        .envs(env.iter().cloned())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    command.spawn().with_context(|| {
        format!(
            "cannot start {} (run `cargo build --bins`)",
            binary.display()
        )
    })
}

/// Where a topology listens and keeps its data.
pub struct Layout {
    /// Names the databases, the Redis keys and the log files.
    pub id: String,
    /// The prefix of the databases' names, before `<id>_<service>`.
    pub database_prefix: &'static str,
    /// The gateway's port (a free one when `None`).
    pub gateway_port: Option<u16>,
    /// The Redis all processes share.
    pub redis_url: String,
    /// The OTLP collector every process exports its traces to.
    pub otlp_endpoint: Option<String>,
    /// The outbox's timing: the test suites' ([`IMMEDIATE_DEADLINE_MS`], a short lease), or
    /// the services' own defaults, as in production (the benchmark measures those).
    pub outbox: OutboxTiming,
}

/// How the services' outboxes are timed in a topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutboxTiming {
    /// The test suites': an answer may wait [`IMMEDIATE_DEADLINE_MS`] for its immediate
    /// delivery, and a claim holds its messages [`OUTBOX_LEASE_MS`].
    Tests,
    /// The services' defaults, as deployed.
    Production,
}

impl Layout {
    /// The layout of a test's fresh topology: `id` names its databases and keys, Redis
    /// comes from `TAVANA_TEST_REDIS_URL`, the outbox runs the test suites' timing.
    pub fn for_test(id: &str) -> anyhow::Result<Layout> {
        Ok(Layout {
            id: id.to_owned(),
            database_prefix: "tavana_test_e2e_",
            gateway_port: None,
            redis_url: tavana_kit::testing::test_redis_url()
                .context("split mode needs TAVANA_TEST_REDIS_URL")?,
            otlp_endpoint: None,
            outbox: OutboxTiming::Tests,
        })
    }
}

/// Starts a fresh split topology for a test; `id` names its databases and keys.
pub async fn start(id: &str) -> anyhow::Result<SplitTopology> {
    start_with(Layout::for_test(id)?).await
}

/// Starts a fresh split topology whose processes export traces to `otlp_endpoint`.
pub async fn start_traced(id: &str, otlp_endpoint: &str) -> anyhow::Result<SplitTopology> {
    start_with(Layout {
        otlp_endpoint: Some(otlp_endpoint.to_owned()),
        ..Layout::for_test(id)?
    })
    .await
}

/// Starts a split topology as `layout` says.
pub async fn start_with(layout: Layout) -> anyhow::Result<SplitTopology> {
    let id = layout.id.as_str();
    let bin_dir = bin_dir()?;
    // One topology starts at a time across the test processes: a port chosen
    // by `free_port` is free only until its process binds it, so two starts at
    // once could pick the same one. Ports are taken once the start is ready.
    let _starting = start_lock(&bin_dir).await?;
    let pg_base = tavana_kit::testing::test_pg_url();
    let redis_url = layout.redis_url.clone();
    let redis_prefix = format!("tavana-e2e-{id}:");

    let mut ports: HashMap<&'static str, Vec<u16>> = HashMap::new();
    for service in &SERVICES {
        let replicas = (0..service.replicas)
            .map(|_| free_port())
            .collect::<anyhow::Result<Vec<_>>>()?;
        ports.insert(service.name, replicas);
    }
    let service_urls: HashMap<&'static str, String> = ports
        .iter()
        .map(|(name, ports)| {
            let urls: Vec<String> = ports
                .iter()
                .map(|port| format!("http://127.0.0.1:{port}"))
                .collect();
            (*name, urls.join(","))
        })
        .collect();
    let database_names: HashMap<&'static str, String> = SERVICES
        .iter()
        .map(|service| {
            let database = format!(
                "{}{id}_{}",
                layout.database_prefix,
                service.name.replace('-', "_")
            );
            (service.name, database)
        })
        .collect();
    // Dropped on every way out, a failed start included.
    let databases = Databases {
        server_url: pg_base.clone(),
        names: database_names.values().cloned().collect(),
    };
    let database_urls: HashMap<&'static str, String> = database_names
        .iter()
        .map(|(service, database)| (*service, database_url(&pg_base, database)))
        .collect();

    let keys_dir = tempfile::Builder::new()
        .prefix("tavana-e2e-keys-")
        .tempdir()?;
    let keyring =
        tavana_kit::trust::Keyring::generate_dev(keys_dir.path(), &tavana_kit::trust::PRINCIPALS)?;
    let mut common = vec![
        (
            "TAVANA_TRUST__KEYS_DIR".to_owned(),
            keys_dir.path().display().to_string(),
        ),
        ("TAVANA_REDIS__URL".to_owned(), redis_url.clone()),
        ("TAVANA_REDIS__PREFIX".to_owned(), redis_prefix.clone()),
        ("TAVANA_DEV_CLOCK".to_owned(), "shared".to_owned()),
    ];
    if let Some(endpoint) = &layout.otlp_endpoint {
        common.push((
            "TAVANA_TELEMETRY__OTLP_ENDPOINT".to_owned(),
            endpoint.clone(),
        ));
        // Export every few milliseconds, not every five seconds.
        common.push(("OTEL_BSP_SCHEDULE_DELAY".to_owned(), "50".to_owned()));
    }
    let mut metrics_urls = Vec::new();
    let mut metrics_listen = |process: &str| -> anyhow::Result<(String, String)> {
        let port = free_port()?;
        metrics_urls.push((
            process.to_owned(),
            format!("http://127.0.0.1:{port}/metrics"),
        ));
        Ok((
            "TAVANA_METRICS__LISTEN".to_owned(),
            format!("127.0.0.1:{port}"),
        ))
    };
    let peer = |name: &str| service_urls[name].clone();
    let mut processes = Vec::new();
    let mut commands = HashMap::new();
    for service in &SERVICES {
        let section = service.section;
        let binary = bin_dir.join(format!("tavana-{}", service.name));
        let mut env = common.clone();
        env.push((
            format!("TAVANA_{section}__DATABASE__URL"),
            database_urls[service.name].clone(),
        ));
        env.push((
            format!("TAVANA_{section}__DATABASE__MAX_CONNECTIONS"),
            "5".into(),
        ));
        for (key, value) in [
            ("IDENTITY_URL", peer("identity")),
            ("GUARANTEE_URL", peer("guarantee")),
            ("CREDIT_URL", peer("credit")),
            ("SETTLEMENT_URL", peer("settlement")),
            ("MERCHANT_DIRECTORY_URL", peer("merchant-directory")),
        ] {
            env.push((format!("TAVANA_{section}__{key}"), value));
        }
        if service.name == "identity" {
            env.push(("TAVANA_IDENTITY__DEV".into(), "true".into()));
        }
        if service.name != "merchant-directory" && layout.outbox == OutboxTiming::Tests {
            env.push((
                format!("TAVANA_{section}__OUTBOX__IMMEDIATE_DEADLINE_MS"),
                IMMEDIATE_DEADLINE_MS.to_string(),
            ));
            env.push((
                format!("TAVANA_{section}__OUTBOX__LEASE_MS"),
                OUTBOX_LEASE_MS.to_string(),
            ));
        }
        migrated_database(
            id,
            &pg_base,
            service,
            &binary,
            &env,
            &database_names[service.name],
        )
        .await?;
        for (replica, port) in ports[service.name].iter().enumerate() {
            let mut env = env.clone();
            env.push((
                format!("TAVANA_{section}__GRPC__LISTEN"),
                format!("127.0.0.1:{port}"),
            ));
            let process = format!("{}-{replica}", service.name);
            env.push(metrics_listen(&process)?);
            let child = spawn(id, &process, &binary, &["serve"], &env)?;
            commands.insert(
                process.clone(),
                Launch {
                    binary: binary.clone(),
                    env,
                },
            );
            processes.push((process, child));
        }
    }

    let gateway_port = match layout.gateway_port {
        Some(port) => port,
        None => free_port()?,
    };
    let mut env = common.clone();
    env.extend([
        (
            "TAVANA_GATEWAY__LISTEN".to_owned(),
            format!("127.0.0.1:{gateway_port}"),
        ),
        ("TAVANA_GATEWAY__DEV".to_owned(), "true".to_owned()),
        (
            "TAVANA_GATEWAY__RATE_LIMIT_PER_IP_PER_MINUTE".to_owned(),
            "1000000".to_owned(),
        ),
        ("TAVANA_GATEWAY__IDENTITY_URL".to_owned(), peer("identity")),
        (
            "TAVANA_GATEWAY__GUARANTEE_URL".to_owned(),
            peer("guarantee"),
        ),
        ("TAVANA_GATEWAY__CREDIT_URL".to_owned(), peer("credit")),
        (
            "TAVANA_GATEWAY__SETTLEMENT_URL".to_owned(),
            peer("settlement"),
        ),
        (
            "TAVANA_GATEWAY__MERCHANT_DIRECTORY_URL".to_owned(),
            peer("merchant-directory"),
        ),
    ]);
    env.push(metrics_listen("gateway")?);
    let gateway = spawn(id, "gateway", &bin_dir.join("tavana-gateway"), &[], &env)?;
    processes.push(("gateway".to_owned(), gateway));

    let topology = SplitTopology {
        gateway_url: format!("http://127.0.0.1:{gateway_port}"),
        service_urls,
        database_urls,
        redis_prefix,
        metrics_urls,
        keyring,
        _keys_dir: keys_dir,
        processes: std::sync::Mutex::new(processes),
        commands,
        id: id.to_owned(),
        _databases: databases,
    };
    topology.wait_ready().await?;
    Ok(topology)
}

/// Creates a service's database as a copy of a template that `<service> migrate` built
/// once for this build of the binary (as the Kubernetes Job migrates), so that each
/// topology does not run every migration again.
async fn migrated_database(
    id: &str,
    pg_base: &str,
    service: &ServiceSpec,
    binary: &PathBuf,
    env: &[(String, String)],
    database: &str,
) -> anyhow::Result<()> {
    let built = std::fs::metadata(binary)
        .and_then(|metadata| metadata.modified())
        .with_context(|| format!("cannot read {}", binary.display()))?
        .duration_since(std::time::UNIX_EPOCH)?;
    let template = format!(
        "tavana_test_tpl_{:x}_{}",
        built.as_nanos(),
        service.name.replace('-', "_")
    );
    tavana_kit::testing::ensure_postgres_template(pg_base, &template, |url| async move {
        let url_key = format!("TAVANA_{}__DATABASE__URL", service.section);
        let mut env = env.to_vec();
        env.retain(|(key, _)| *key != url_key);
        env.push((url_key, url));
        let migration = spawn(
            id,
            &format!("{}-migrate", service.name),
            binary,
            &["migrate"],
            &env,
        )?
        .wait_with_output()
        .await?;
        anyhow::ensure!(
            migration.status.success(),
            "{} migrate failed (see target/debug/e2e-logs)",
            service.name
        );
        Ok(())
    })
    .await?;
    tavana_kit::testing::clone_postgres_database(pg_base, &template, database).await
}

/// Holds the lock file under the target directory until dropped.
async fn start_lock(bin_dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let dir = bin_dir.join("e2e-logs");
    std::fs::create_dir_all(&dir)?;
    let file = std::fs::File::create(dir.join(".start.lock"))?;
    tokio::task::spawn_blocking(move || file.lock().map(|()| file))
        .await?
        .context("cannot lock the split start")
}

impl SplitTopology {
    /// Waits until the gateway answers `/readyz`; fails at once, with the end
    /// of its log, when a process has exited meanwhile.
    async fn wait_ready(&self) -> anyhow::Result<()> {
        let client = tavana_kit::http::client();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut interval = tokio::time::interval(Duration::from_millis(100));
        loop {
            interval.tick().await;
            if let Ok(response) = client
                .get(format!("{}/readyz", self.gateway_url))
                .send()
                .await
                && response.status().is_success()
            {
                // The gateway is ready once one replica of each service answers: every
                // replica must listen too, and one that could not start fails the start
                // here, not a test later.
                if self.every_replica_listens().await {
                    return self.ensure_running();
                }
            }
            self.ensure_running()?;
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the split topology was not ready within 60 s (see target/debug/e2e-logs)"
            );
        }
    }

    /// Whether every service replica accepts connections on its gRPC port.
    async fn every_replica_listens(&self) -> bool {
        for urls in self.service_urls.values() {
            for url in urls.split(',') {
                let address = url.trim_start_matches("http://");
                if tokio::net::TcpStream::connect(address).await.is_err() {
                    return false;
                }
            }
        }
        true
    }

    fn ensure_running(&self) -> anyhow::Result<()> {
        let mut processes = self
            .processes
            .lock()
            .map_err(|_| anyhow::anyhow!("process list poisoned"))?;
        for (process, child) in processes.iter_mut() {
            if let Some(status) = child.try_wait()? {
                let log = bin_dir()?
                    .join("e2e-logs")
                    .join(format!("{}-{process}.log", self.id));
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(20).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                anyhow::bail!(
                    "{process} exited with {status} while the topology started; {}:\n{}",
                    log.display(),
                    tail.join("\n")
                );
            }
        }
        Ok(())
    }
}
