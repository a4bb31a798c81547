//! `tavana admin …`: bootstrap operations straight on identity's database,
//! through identity's own library (the same store code its RPCs use), so
//! they work before anyone can log in and while `tavana up` runs.

use std::path::Path;

use anyhow::Context;
use sea_orm::DatabaseConnection;
use tavana_kit::caller::Role;
use tavana_kit::clock::{SharedClock, SystemClock};

use crate::suite::SuiteSettings;

/// Admin operations on identity's database.
pub struct Admin {
    db: DatabaseConnection,
    clock: SharedClock,
}

impl Admin {
    /// Opens identity's database as `tavana up` would with the same settings
    /// and data directory (migrating it if new).
    pub async fn open(settings: &SuiteSettings, data_dir: &Path) -> anyhow::Result<Admin> {
        let mut identity = settings.identity.clone();
        let default_url = tavana_identity::Settings::default().database.url;
        if identity.database.url.is_empty() || identity.database.url == default_url {
            identity.database.url = tavana_kit::db::sqlite_url(data_dir, "identity");
        }
        let db = tavana_identity::connect(&identity)
            .await
            .context("cannot open identity's database")?;
        Ok(Admin {
            db,
            clock: std::sync::Arc::new(SystemClock),
        })
    }

    /// Creates (or renames) an organization.
    pub async fn add_organization(
        &self,
        id: &str,
        name: &str,
        in_force: bool,
    ) -> anyhow::Result<()> {
        tavana_identity::admin::add_organization(&self.db, id, name, in_force).await
    }

    /// Imports employees from an HR CSV; bad lines are reported, not fatal.
    pub async fn import_employees(
        &self,
        csv: &[u8],
    ) -> anyhow::Result<tavana_identity::admin::ImportReport> {
        tavana_identity::admin::import_employees(&self.db, csv, &self.clock).await
    }

    /// Grants a staff role, scoped to a region for the regional roles.
    pub async fn grant_role(
        &self,
        national_id: &str,
        role: &str,
        region: Option<&str>,
    ) -> anyhow::Result<()> {
        let role = Role::parse(role).with_context(|| {
            format!("unknown role {role}: employee, region_admin, region_finance, region_welfare_manager, support, contracts")
        })?;
        // R6 (a regional role needs a region) is identity's rule: its use case answers.
        tavana_identity::admin::grant_role(&self.db, national_id, role, region).await
    }
}

/// Signs an assertion of `principal` (a service caller of itself) for `audience`, with the
/// private key in `keys_dir`: the credential of a grpcurl call (docs/security.md).
pub fn token(
    keys_dir: &std::path::Path,
    principal: &str,
    audience: &str,
) -> anyhow::Result<String> {
    anyhow::ensure!(
        tavana_kit::trust::PRINCIPALS.contains(&audience),
        "unknown audience {audience}: one of {}",
        tavana_kit::trust::PRINCIPALS.join(", ")
    );
    let keyring = tavana_kit::trust::Keyring::load(keys_dir, &[principal])?;
    let signer = keyring.signer(principal)?;
    signer
        .assertion(&tavana_kit::Caller::service(principal), audience, None)
        .map_err(|problem| anyhow::anyhow!("{problem}"))
}
