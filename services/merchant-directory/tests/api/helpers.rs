//! `spawn_service()` and the callers and merchants the tests use.

use std::sync::Arc;
use std::time::Duration;

use tavana_kit::Shared;
use tavana_kit::caller::{Caller, Role, RoleGrant, attach};
use tavana_kit::clock::AdjustableClock;
use tavana_kit::config::DatabaseSettings;
use tavana_kit::error::Problem;
use tavana_kit::grpc::Channel;
use tavana_kit::store::{KvStore, MemoryStore};
use tavana_kit::testing::{RunningService, TestDb, test_db};
use tavana_merchant_directory::Settings;
use tavana_merchant_directory_migration::Migrator;
use tavana_proto::merchant_directory::v1::merchant_directory_service_client::MerchantDirectoryServiceClient;
use tavana_proto::merchant_directory::v1::*;

/// A running merchant directory on a fresh database.
pub struct TestApp {
    pub client: MerchantDirectoryServiceClient<Channel>,
    /// The service's gRPC URL.
    pub url: String,
    pub db: Arc<TestDb>,
    pub store: Arc<dyn KvStore>,
    _running: RunningService,
}

/// Starts the service on a fresh database with an in-process store and the default TTL.
pub async fn spawn_service() -> TestApp {
    spawn_with(
        Arc::new(test_db::<Migrator>().await),
        Arc::new(MemoryStore::new()),
        30,
    )
    .await
}

/// Starts the service on `db` with `store` and a listing cache TTL in seconds.
pub async fn spawn_with(
    db: Arc<TestDb>,
    store: Arc<dyn KvStore>,
    cache_ttl_seconds: u64,
) -> TestApp {
    let settings = Settings {
        cache_ttl_seconds,
        ..Settings::default()
    };
    spawn_with_settings(db, store, settings).await
}

/// Starts the service on `db` with `settings` (its database URL set to `db`'s).
pub async fn spawn_with_settings(
    db: Arc<TestDb>,
    store: Arc<dyn KvStore>,
    settings: Settings,
) -> TestApp {
    let settings = Settings {
        database: DatabaseSettings {
            url: db.url.clone(),
            max_connections: 5,
        },
        ..settings
    };
    let shared = Shared {
        clock: AdjustableClock::new().shared(),
        store: store.clone(),
        keyring: tavana_kit::testing::test_keyring(),
        in_process: tavana_kit::grpc::InProcess::default(),
    };
    let running = tavana_kit::testing::spawn_app(|listener, shutdown| {
        tavana_merchant_directory::serve(settings, shared, listener, shutdown)
    })
    .await;
    TestApp {
        client: MerchantDirectoryServiceClient::new(running.channel(Duration::from_secs(10))),
        url: running.url.clone(),
        db,
        store,
        _running: running,
    }
}

fn user(id: &str, grants: Vec<RoleGrant>) -> Caller {
    Caller::User {
        employee_id: id.into(),
        national_id: "0012345679".into(),
        grants,
    }
}

/// A welfare manager of one region.
pub fn manager(region: &str) -> Caller {
    user(
        &format!("manager-{region}"),
        vec![
            RoleGrant::global(Role::Employee),
            RoleGrant::regional(Role::RegionWelfareManager, region),
        ],
    )
}

/// The contracts department.
pub fn contracts() -> Caller {
    user(
        "contracts-1",
        vec![
            RoleGrant::global(Role::Employee),
            RoleGrant::global(Role::Contracts),
        ],
    )
}

/// A plain employee.
pub fn employee() -> Caller {
    user("employee-1", vec![RoleGrant::global(Role::Employee)])
}

/// Another Tavana service.
pub fn credit_service() -> Caller {
    Caller::service("credit")
}

/// An online store.
pub fn online(name: &str, website: &str) -> MerchantData {
    MerchantData {
        name: name.into(),
        kind: MerchantKind::Online as i32,
        website: Some(website.into()),
        city: None,
        province: None,
        address: None,
        categories: vec!["کتاب".into()],
        supports_credit: true,
        supports_instalment: true,
        contact_phone: "021-88000000".into(),
    }
}

/// A shop in a city.
pub fn in_person(name: &str, city: &str) -> MerchantData {
    MerchantData {
        name: name.into(),
        kind: MerchantKind::InPerson as i32,
        website: None,
        city: Some(city.into()),
        province: Some("تهران".into()),
        address: Some("خیابان انقلاب، پلاک ۱۲".into()),
        categories: vec!["پوشاک".into()],
        supports_credit: true,
        supports_instalment: false,
        contact_phone: "۰۲۱۶۶۴۰۰۰۰۰".into(),
    }
}

impl TestApp {
    /// Proposes as `caller`.
    pub async fn propose(
        &self,
        caller: &Caller,
        data: MerchantData,
    ) -> Result<Proposal, tonic::Status> {
        self.client
            .clone()
            .propose_merchant(attach(
                ProposeMerchantRequest {
                    data: Some(data),
                    ..Default::default()
                },
                caller,
            ))
            .await
            .map(|response| response.into_inner().proposal.unwrap())
    }

    /// Proposes as `caller` in the region `region_code` (R26).
    pub async fn propose_in(
        &self,
        caller: &Caller,
        region_code: &str,
        data: MerchantData,
    ) -> Result<Proposal, tonic::Status> {
        self.client
            .clone()
            .propose_merchant(attach(
                ProposeMerchantRequest {
                    data: Some(data),
                    region_code: region_code.to_owned(),
                },
                caller,
            ))
            .await
            .map(|response| response.into_inner().proposal.unwrap())
    }

    /// Decides as `caller`.
    pub async fn decide(
        &self,
        caller: &Caller,
        proposal_id: &str,
        approve: bool,
        reason: Option<&str>,
    ) -> Result<DecideProposalResponse, tonic::Status> {
        self.client
            .clone()
            .decide_proposal(attach(
                DecideProposalRequest {
                    proposal_id: proposal_id.into(),
                    approve,
                    reason: reason.map(str::to_owned),
                },
                caller,
            ))
            .await
            .map(tonic::Response::into_inner)
    }

    /// Proposes in region R01 and approves; returns (merchant id, API key).
    pub async fn add_merchant(&self, data: MerchantData) -> (String, String) {
        let proposal = self.propose(&manager("R01"), data).await.unwrap();
        let decided = self
            .decide(&contracts(), &proposal.proposal_id, true, None)
            .await
            .unwrap();
        (decided.merchant_id.unwrap(), decided.api_key.unwrap())
    }

    /// Lists contracted merchants anonymously.
    pub async fn list(&self, request: ListMerchantsRequest) -> ListMerchantsResponse {
        self.client
            .clone()
            .list_merchants(attach(request, &Caller::Anonymous))
            .await
            .unwrap()
            .into_inner()
    }

    /// Returns the names found by `q`.
    pub async fn names_for(&self, q: &str) -> Vec<String> {
        self.list(ListMerchantsRequest {
            q: q.into(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .items
        .into_iter()
        .map(|merchant| merchant.data.unwrap().name)
        .collect()
    }

    /// Suspends as contracts.
    pub async fn suspend(&self, merchant_id: &str) -> Merchant {
        self.client
            .clone()
            .suspend_merchant(attach(
                SuspendMerchantRequest {
                    merchant_id: merchant_id.into(),
                    reason: Some("تخلف از قرارداد".into()),
                },
                &contracts(),
            ))
            .await
            .unwrap()
            .into_inner()
            .merchant
            .unwrap()
    }
}

/// Returns the problem carried by a status.
pub fn problem(status: &tonic::Status) -> Problem {
    Problem::from_status(status)
}

/// Writes a contracted merchant row straight into the database, bypassing the service
/// (and so its cache invalidation).
pub async fn insert_merchant_row(app: &TestApp, id: &str, name: &str, website_host: &str) {
    use sea_orm::{ActiveValue::Set, EntityTrait};
    use tavana_merchant_directory::domain::normalize::normalize_text;
    use tavana_merchant_directory::store::merchant;

    let now = chrono::Utc::now().fixed_offset();
    merchant::Entity::insert(merchant::ActiveModel {
        id: Set(id.into()),
        name: Set(name.into()),
        name_normalized: Set(normalize_text(name)),
        kind: Set("online".into()),
        website: Set(Some(format!("https://{website_host}"))),
        website_host: Set(Some(website_host.into())),
        city: Set(None),
        city_normalized: Set(String::new()),
        province: Set(None),
        province_normalized: Set(String::new()),
        address: Set(None),
        categories: Set("|کتاب|".into()),
        supports_credit: Set(true),
        supports_instalment: Set(true),
        contact_phone: Set("02100000000".into()),
        status: Set("contracted".into()),
        region_code: Set("R01".into()),
        proposal_id: Set(format!("p-{id}")),
        api_key_hash: Set(format!("hash-{id}")),
        created_at: Set(now),
        created_micros: Set(now.timestamp_micros()),
        suspended_at: Set(None),
        suspension_reason: Set(None),
    })
    .exec(&app.db.db)
    .await
    .unwrap();
}

/// Sets a merchant's status straight in the database, bypassing the service.
pub async fn set_status_row(app: &TestApp, id: &str, status: &str) {
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    use tavana_merchant_directory::store::merchant;

    merchant::Entity::update_many()
        .col_expr(merchant::Column::Status, Expr::value(status.to_owned()))
        .filter(merchant::Column::Id.eq(id))
        .exec(&app.db.db)
        .await
        .unwrap();
}
