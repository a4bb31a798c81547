//! `tavana admin outbox`: the undelivered and the failed (dead-letter) outbox messages
//! of every service, read straight from each service's database as `tavana up` would
//! open it, and an operator's retry of one once the cause is fixed (R31; ARCHITECTURE.md,
//! "Order and dead letters").

use std::path::Path;

use anyhow::Context;
use tavana_kit::config::DatabaseSettings;
use tavana_kit::outbox::OutboxEntry;

use crate::suite::{SuiteSettings, database_or_data_dir};

/// The services that have an outbox, as named in message ids (`credit:42`).
pub const SERVICES: [&str; 4] = ["identity", "guarantee", "credit", "settlement"];

/// At most this many messages per service are listed.
const LIST_LIMIT: u64 = 1_000;

/// One message and the service whose outbox holds it.
#[derive(Clone, Debug)]
pub struct ServiceMessage {
    /// `identity`, `guarantee`, `credit` or `settlement`.
    pub service: &'static str,
    /// The message.
    pub entry: OutboxEntry,
}

impl ServiceMessage {
    /// The id an operator passes to `--retry`: `<service>:<row id>`.
    pub fn id(&self) -> String {
        format!("{}:{}", self.service, self.entry.id)
    }
}

fn database(settings: &SuiteSettings, data_dir: &Path, service: &str) -> DatabaseSettings {
    let (configured, default) = match service {
        "identity" => (
            &settings.identity.database,
            tavana_identity::Settings::default().database,
        ),
        "guarantee" => (
            &settings.guarantee.database,
            tavana_guarantee::Settings::default().database,
        ),
        "credit" => (
            &settings.credit.database,
            tavana_credit::Settings::default().database,
        ),
        _ => (
            &settings.settlement.database,
            tavana_settlement::Settings::default().database,
        ),
    };
    let mut database = configured.clone();
    database_or_data_dir(&mut database, &default, data_dir, service);
    database
}

/// Opens a service's database; `None` for a SQLite file that does not exist (the service
/// never ran in this data directory).
async fn open(
    settings: &SuiteSettings,
    data_dir: &Path,
    service: &str,
) -> anyhow::Result<Option<sea_orm::DatabaseConnection>> {
    let url = database(settings, data_dir, service).url;
    if let Some(path) = url.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap_or(path);
        if !Path::new(path).exists() {
            return Ok(None);
        }
    }
    let db = tavana_kit::db::connect(&url, 1)
        .await
        .with_context(|| format!("cannot open {service}'s database"))?;
    Ok(Some(db))
}

/// Returns the undelivered messages of every service (only the failed ones with
/// `failed_only`), service by service, oldest first.
pub async fn list(
    settings: &SuiteSettings,
    data_dir: &Path,
    failed_only: bool,
) -> anyhow::Result<Vec<ServiceMessage>> {
    let mut messages = Vec::new();
    for service in SERVICES {
        let Some(db) = open(settings, data_dir, service).await? else {
            continue;
        };
        let entries = tavana_kit::outbox::undelivered(&db, failed_only, LIST_LIMIT)
            .await
            .with_context(|| format!("cannot read {service}'s outbox"))?;
        messages.extend(
            entries
                .into_iter()
                .map(|entry| ServiceMessage { service, entry }),
        );
        db.close().await.ok();
    }
    Ok(messages)
}

/// Makes the message `id` (`<service>:<row id>`, as listed) due again at once; its
/// service's relay delivers it. Returns false when that service has no undelivered
/// message with this id.
pub async fn retry(settings: &SuiteSettings, data_dir: &Path, id: &str) -> anyhow::Result<bool> {
    let (service, row) = id
        .split_once(':')
        .with_context(|| format!("{id}: expected <service>:<id>, e.g. credit:42"))?;
    let service = SERVICES
        .into_iter()
        .find(|known| *known == service)
        .with_context(|| format!("{service}: not one of {}", SERVICES.join(", ")))?;
    let row: i64 = row
        .parse()
        .with_context(|| format!("{row}: not a message id"))?;
    let Some(db) = open(settings, data_dir, service).await? else {
        return Ok(false);
    };
    let retried = tavana_kit::outbox::retry(&db, row).await?;
    db.close().await.ok();
    Ok(retried)
}

/// One line per message, for the terminal.
pub fn render(messages: &[ServiceMessage]) -> String {
    let mut out = String::new();
    for message in messages {
        let entry = &message.entry;
        let state = match entry.failed_at {
            Some(at) => format!("FAILED {}", at.to_rfc3339()),
            None => format!("due {}", entry.next_attempt_at.to_rfc3339()),
        };
        let order = match (&entry.ordering_key, entry.version) {
            (Some(key), Some(version)) => format!(" order={key}@{version}"),
            (Some(key), None) => format!(" order={key}"),
            _ => String::new(),
        };
        out.push_str(&format!(
            "{id}  {topic}  key={key}{order}  attempts={attempts}  created {created}  {state}",
            id = message.id(),
            topic = entry.topic,
            key = entry.dedup_key,
            attempts = entry.attempts,
            created = entry.created_at.to_rfc3339(),
        ));
        if let Some(error) = &entry.last_error {
            out.push_str(&format!("  last_error: {error}"));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use sea_orm::ConnectionTrait;
    use tavana_kit::outbox::{Message, enqueue_many};

    use super::*;

    /// A data directory where credit ran and has two messages, one of them refused for
    /// good; no other service ran there.
    async fn data_dir_with_a_dead_letter() -> (tempfile::TempDir, SuiteSettings, i64) {
        let dir = tempfile::tempdir().unwrap();
        let settings = SuiteSettings::default();
        let credit = database(&settings, dir.path(), "credit");
        let mut credit_settings = settings.credit.clone();
        credit_settings.database = credit.clone();
        tavana_credit::migrate(&credit_settings).await.unwrap();
        let db = tavana_kit::db::connect(&credit.url, 1).await.unwrap();
        let enqueued = enqueue_many(
            &db,
            vec![
                Message::new("settlement.record_schedule", "p-1", b"s".to_vec()).ordered("p-1", 1),
                Message::new("identity.notify_employee", "receipt:p-1", b"r".to_vec()),
            ],
        )
        .await
        .unwrap();
        let failed = enqueued.ids()[0];
        db.execute_unprepared(&format!(
            "UPDATE outbox SET failed_at = created_at, attempts = 1, \
             last_error = 'InvalidArgument: zero-rial instalment' WHERE id = {failed}"
        ))
        .await
        .unwrap();
        db.close().await.unwrap();
        (dir, settings, failed)
    }

    #[tokio::test]
    async fn r31_admin_outbox_lists_undelivered_and_failed_messages_of_every_service() {
        // Arrange
        let (dir, settings, failed) = data_dir_with_a_dead_letter().await;

        // Act
        let all = list(&settings, dir.path(), false).await.unwrap();
        let dead = list(&settings, dir.path(), true).await.unwrap();

        // Assert
        assert_eq!(all.len(), 2);
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].id(), format!("credit:{failed}"));
        let shown = render(&dead);
        assert!(shown.contains("settlement.record_schedule"), "{shown}");
        assert!(shown.contains("order=p-1@1"), "{shown}");
        assert!(shown.contains("FAILED"), "{shown}");
        assert!(shown.contains("zero-rial instalment"), "{shown}");
        assert!(!dir.path().join("identity.db").exists(), "nothing created");
    }

    #[tokio::test]
    async fn r31_admin_outbox_retry_makes_a_dead_letter_due_again() {
        // Arrange
        let (dir, settings, failed) = data_dir_with_a_dead_letter().await;

        // Act
        let retried = retry(&settings, dir.path(), &format!("credit:{failed}"))
            .await
            .unwrap();

        // Assert
        assert!(retried);
        assert!(list(&settings, dir.path(), true).await.unwrap().is_empty());
        assert_eq!(list(&settings, dir.path(), false).await.unwrap().len(), 2);
        assert!(!retry(&settings, dir.path(), "credit:999999").await.unwrap());
        assert!(retry(&settings, dir.path(), "billing:1").await.is_err());
        assert!(retry(&settings, dir.path(), "credit").await.is_err());
    }
}
