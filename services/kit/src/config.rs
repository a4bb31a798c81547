//! Layered configuration: defaults in code, an optional TOML file, then the environment.
//!
//! Environment variables are `TAVANA_<SECTION>__<KEY>` (e.g. `TAVANA_DATABASE__URL`);
//! lists are comma-separated. Secrets are `SecretString` fields marked
//! `#[serde(skip_serializing)]` so that they never come from (or go into) the defaults.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::Context;
use config::{Config, Environment, File, FileFormat};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The prefix of the environment variables.
pub const ENV_PREFIX: &str = "TAVANA";

/// Collects the dotted lowercase paths of every list in the defaults.
fn list_keys(value: &serde_json::Value, path: &str, keys: &mut HashSet<String>) {
    match value {
        serde_json::Value::Array(_) => {
            keys.insert(path.to_lowercase());
        }
        serde_json::Value::Object(map) => {
            for (key, child) in map {
                let child_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                list_keys(child, &child_path, keys);
            }
        }
        _ => {}
    }
}

/// Loads the settings `T`: `T::default()`, then `file` (TOML) when given, then the
/// environment (`TAVANA_<SECTION>__<KEY>`, lists comma-separated).
pub fn load<T>(file: Option<&Path>) -> anyhow::Result<T>
where
    T: DeserializeOwned + Default + Serialize,
{
    load_from(file, std::env::vars())
}

/// Loads the settings like [`load`], from the given environment variables.
pub fn load_from<T>(
    file: Option<&Path>,
    vars: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<T>
where
    T: DeserializeOwned + Default + Serialize,
{
    let defaults = T::default();
    let defaults_json = serde_json::to_value(&defaults).context("cannot serialize defaults")?;
    let mut lists = HashSet::new();
    list_keys(&defaults_json, "", &mut lists);

    let mut builder = Config::builder()
        .add_source(Config::try_from(&defaults).context("cannot read the default settings")?);
    if let Some(file) = file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read config file {}", file.display()))?;
        builder = builder.add_source(File::from_str(&text, FileFormat::Toml));
    }

    let prefix = format!("{ENV_PREFIX}_");
    let mut plain = HashMap::new();
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix(&prefix) else {
            continue;
        };
        let key = rest.to_lowercase().replace("__", ".");
        if lists.contains(&key) {
            let items: Vec<String> = value
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect();
            builder = builder.set_override(key, items)?;
        } else {
            plain.insert(name, value);
        }
    }
    // Values stay strings here (no guessing), so "0123" is not read as the number 123;
    // the config crate converts them to numbers and booleans where the field needs one.
    builder = builder.add_source(
        Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("_")
            .separator("__")
            .source(Some(plain)),
    );
    let settings = builder.build().context("cannot load the settings")?;
    settings.try_deserialize().context("invalid settings")
}

/// Database connection settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DatabaseSettings {
    /// `sqlite://path?mode=rwc` or `postgres://user@host/db`; empty means the embedded default.
    pub url: String,
    /// The size of the connection pool.
    pub max_connections: u32,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings {
            url: String::new(),
            max_connections: 10,
        }
    }
}

impl DatabaseSettings {
    /// Returns the configured URL, or the embedded default: the service's
    /// SQLite file under `./data`.
    pub fn url_or_default(&self, service: &str) -> String {
        if self.url.is_empty() {
            crate::db::sqlite_url(std::path::Path::new("data"), service)
        } else {
            self.url.clone()
        }
    }
}

/// gRPC server settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GrpcSettings {
    /// The address to listen on; port 0 picks a free port.
    pub listen: String,
    /// The deadline of one request, in milliseconds.
    pub request_timeout_ms: u64,
    /// Serves gRPC reflection (v1 and v1alpha) for this port's own services.
    pub reflection: bool,
}

impl Default for GrpcSettings {
    fn default() -> Self {
        GrpcSettings {
            listen: "127.0.0.1:0".to_owned(),
            request_timeout_ms: 10_000,
            reflection: true,
        }
    }
}

impl GrpcSettings {
    /// Returns the request deadline.
    pub fn request_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.request_timeout_ms)
    }
}

/// Outbox settings of a service that sends messages to others.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OutboxSettings {
    /// How long the sender may hold up its own answer to deliver what it just wrote
    /// (read your writes, ARCHITECTURE.md), in milliseconds; what is not delivered by
    /// then is left to the relay.
    pub immediate_deadline_ms: u64,
    /// How long a relay's claim holds its messages, in milliseconds: the rows of a
    /// relay (or replica) that dies mid-delivery go to another once it expires. Keep it
    /// above the longest delivery, or a slow delivery is made twice (receivers are
    /// idempotent, so that costs only the repeat).
    pub lease_ms: u64,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        OutboxSettings {
            immediate_deadline_ms: 2_000,
            lease_ms: 30_000,
        }
    }
}

/// Logging and tracing settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TelemetrySettings {
    /// The OTLP (gRPC) collector endpoint; traces are exported only when it is set.
    pub otlp_endpoint: Option<String>,
    /// Writes JSON logs instead of human-readable ones.
    pub log_json: bool,
    /// The tracing filter (`RUST_LOG` overrides it).
    pub filter: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        TelemetrySettings {
            otlp_endpoint: None,
            log_json: false,
            filter: "info".to_owned(),
        }
    }
}

/// Redis settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RedisSettings {
    /// The Redis URL; without it an in-process store is used.
    pub url: Option<String>,
    /// Prefix of every key, so that several deployments can share a Redis.
    pub prefix: String,
}

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            url: None,
            prefix: "tavana:".into(),
        }
    }
}

impl RedisSettings {
    /// Connects the store these settings name: Redis, or in-process without a URL.
    pub async fn connect(&self) -> anyhow::Result<std::sync::Arc<dyn crate::store::KvStore>> {
        crate::store::connect_store(self.url.as_deref(), &self.prefix).await
    }
}

/// Where a process finds its keys (section `trust`, e.g. `TAVANA_TRUST__KEYS_DIR`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrustSettings {
    /// The key directory: `<principal>.key` of this process, `*.pub` of every principal
    /// it trusts (see `docs/security.md`).
    pub keys_dir: String,
}

impl TrustSettings {
    /// Loads the keyring of a process running `principals`; refuses to start without keys.
    pub fn keyring(&self, principals: &[&str]) -> anyhow::Result<crate::trust::Keyring> {
        anyhow::ensure!(
            !self.keys_dir.trim().is_empty(),
            "no key directory: set TAVANA_TRUST__KEYS_DIR (see docs/security.md)"
        );
        crate::trust::Keyring::load(Path::new(self.keys_dir.trim()), principals)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use secrecy::{ExposeSecret, SecretString};

    use super::*;

    #[derive(Debug, Serialize, Deserialize)]
    #[serde(default)]
    struct Settings {
        database: DatabaseSettings,
        grpc: GrpcSettings,
        redis: RedisSettings,
        allowed_origins: Vec<String>,
        #[serde(skip_serializing)]
        jwt_secret: SecretString,
    }

    impl Default for Settings {
        fn default() -> Self {
            Settings {
                database: DatabaseSettings::default(),
                grpc: GrpcSettings::default(),
                redis: RedisSettings::default(),
                allowed_origins: vec!["http://localhost".to_owned()],
                jwt_secret: SecretString::from(""),
            }
        }
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_apply_without_file_or_environment() {
        let settings: Settings = load_from(None, vars(&[])).unwrap();
        assert_eq!(settings.grpc.listen, "127.0.0.1:0");
        assert_eq!(settings.database.max_connections, 10);
        assert_eq!(settings.redis.url, None);
        assert_eq!(settings.allowed_origins, ["http://localhost"]);
    }

    #[test]
    fn environment_overrides_file_which_overrides_defaults() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            file,
            "[database]\nurl = \"sqlite://file.db\"\nmax_connections = 3\n[grpc]\nlisten = \"0.0.0.0:7000\""
        )
        .unwrap();

        let settings: Settings = load_from(
            Some(file.path()),
            vars(&[
                ("TAVANA_DATABASE__URL", "postgres://db/x"),
                ("TAVANA_GRPC__REQUEST_TIMEOUT_MS", "2500"),
                ("TAVANA_REDIS__URL", "redis://127.0.0.1:6379"),
                (
                    "TAVANA_ALLOWED_ORIGINS",
                    "https://a.example, https://b.example",
                ),
                ("TAVANA_JWT_SECRET", "0123"),
                ("OTHER_DATABASE__URL", "ignored"),
            ]),
        )
        .unwrap();

        assert_eq!(settings.database.url, "postgres://db/x");
        assert_eq!(settings.database.max_connections, 3);
        assert_eq!(settings.grpc.listen, "0.0.0.0:7000");
        assert_eq!(settings.grpc.request_timeout_ms, 2500);
        assert_eq!(
            settings.redis.url.as_deref(),
            Some("redis://127.0.0.1:6379")
        );
        assert_eq!(
            settings.allowed_origins,
            ["https://a.example", "https://b.example"]
        );
        assert_eq!(settings.jwt_secret.expose_secret(), "0123");
    }

    #[test]
    fn a_bad_value_is_reported() {
        let result: anyhow::Result<Settings> =
            load_from(None, vars(&[("TAVANA_DATABASE__MAX_CONNECTIONS", "many")]));
        assert!(result.is_err());
    }
}
