//! `spawn_service()`: identity on 127.0.0.1:0 against a fresh database, a frozen clock.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeZone;
use tavana_identity::Settings;
use tavana_identity::admin::RawEmployee;
use tavana_identity_migration::Migrator;
use tavana_kit::Shared;
use tavana_kit::caller::{Caller, Role, RoleGrant};
use tavana_kit::clock::{AdjustableClock, SharedClock};
use tavana_kit::error::Problem;
use tavana_kit::grpc::Channel;
use tavana_kit::store::KvStore;
use tavana_kit::testing::{RunningService, TestDb, wait_until};
use tavana_proto::identity::v1 as pb;
use tavana_proto::identity::v1::identity_service_client::IdentityServiceClient;

pub const ORG: &str = "ORG-01";

pub struct TestService {
    pub client: IdentityServiceClient<Channel>,
    /// The service's gRPC URL.
    pub url: String,
    pub db: TestDb,
    pub clock: Arc<AdjustableClock>,
    #[allow(dead_code)]
    pub store: Arc<dyn KvStore>,
    _running: RunningService,
}

/// A national ID with a valid check digit (R2), distinct per `n`.
pub fn national_id(n: u32) -> String {
    let base = format!("{:09}", 100_000_000 + n);
    let sum: u32 = base
        .chars()
        .zip((2..=10).rev())
        .map(|(digit, weight)| digit.to_digit(10).unwrap() * weight)
        .sum();
    let remainder = sum % 11;
    let check = if remainder < 2 {
        remainder
    } else {
        11 - remainder
    };
    format!("{base}{check}")
}

/// A distinct mobile per `n`: `09120000001`.
pub fn mobile(n: u32) -> String {
    format!("0912{n:07}")
}

pub async fn spawn_service() -> TestService {
    spawn_with(|_| {}).await
}

pub async fn spawn_with(configure: impl FnOnce(&mut Settings)) -> TestService {
    let db = tavana_kit::testing::test_db::<Migrator>().await;
    let store = tavana_kit::testing::test_store().await;
    // At the top of an hour, so that the hourly window of R3 spans the whole test.
    let clock =
        AdjustableClock::frozen(chrono::Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 0).unwrap());
    let mut settings = Settings {
        dev: true,
        ..Settings::default()
    };
    settings.database.url = db.url.clone();
    settings.database.max_connections = 5;
    settings.app_download_url = "https://app.tavana.test/get".into();
    configure(&mut settings);

    let shared = Shared {
        clock: clock.shared(),
        store: store.clone(),
        keyring: tavana_kit::testing::test_keyring(),
        in_process: tavana_kit::grpc::InProcess::default(),
    };
    // The tests move security time too (code expiry, rate windows, token lifetimes).
    let security = tavana_kit::clock::SecurityClock::for_tests(clock.shared());
    let running = tavana_kit::testing::spawn_app(|listener, shutdown| {
        tavana_identity::serve_with_security_clock(settings, shared, security, listener, shutdown)
    })
    .await;
    let service = TestService {
        client: IdentityServiceClient::new(running.channel(Duration::from_secs(10))),
        url: running.url.clone(),
        db,
        clock,
        store,
        _running: running,
    };
    service
        .admin_add_organization(ORG, "اداره آموزش و پرورش منطقه ۱", true)
        .await;
    service
}

pub fn support() -> Caller {
    staff("support-1", vec![RoleGrant::global(Role::Support)])
}

pub fn region_admin(region: &str) -> Caller {
    staff(
        "admin-1",
        vec![RoleGrant::regional(Role::RegionAdmin, region)],
    )
}

pub fn staff(id: &str, mut grants: Vec<RoleGrant>) -> Caller {
    grants.insert(0, RoleGrant::global(Role::Employee));
    Caller::User {
        employee_id: id.into(),
        national_id: national_id(999),
        grants,
    }
}

pub fn as_caller<T>(message: T, caller: &Caller) -> tonic::Request<T> {
    tavana_kit::caller::attach(message, caller)
}

/// The problem code and kind of a failed call.
pub fn problem(status: tonic::Status) -> Problem {
    Problem::from_status(&status)
}

pub fn raw_employee(n: u32, region: &str) -> RawEmployee {
    RawEmployee {
        national_id: national_id(n),
        full_name: format!("کارمند {n}"),
        mobile: mobile(n),
        organization_id: ORG.into(),
        region_code: region.into(),
        net_salary: "200000000".into(),
        service_start_date: "2012-09-23".into(),
    }
}

impl TestService {
    pub fn shared_clock(&self) -> SharedClock {
        self.clock.shared()
    }

    pub fn advance(&self, seconds: i64) {
        self.clock.advance(chrono::Duration::seconds(seconds));
    }

    pub async fn admin_add_organization(&self, id: &str, name: &str, in_force: bool) {
        tavana_identity::admin::add_organization(&self.db.db, id, name, in_force)
            .await
            .unwrap();
    }

    /// Creates employee `n` in `region` with `mobile(n)`.
    pub async fn add_employee(&self, n: u32, region: &str) {
        tavana_identity::admin::upsert_employee(
            &self.db.db,
            &raw_employee(n, region),
            &self.shared_clock(),
        )
        .await
        .unwrap();
    }

    pub async fn start_login(
        &self,
        national_id: &str,
        mobile: &str,
    ) -> Result<pb::StartLoginResponse, tonic::Status> {
        self.client
            .clone()
            .start_login(pb::StartLoginRequest {
                national_id: national_id.into(),
                mobile: mobile.into(),
            })
            .await
            .map(|r| r.into_inner())
    }

    pub async fn verify(
        &self,
        challenge_id: &str,
        code: &str,
    ) -> Result<pb::TokenPair, tonic::Status> {
        self.client
            .clone()
            .verify_login(pb::VerifyLoginRequest {
                challenge_id: challenge_id.into(),
                code: code.into(),
            })
            .await
            .map(|r| r.into_inner().tokens.unwrap())
    }

    pub async fn refresh(&self, refresh_token: &str) -> Result<pb::TokenPair, tonic::Status> {
        self.client
            .clone()
            .refresh_session(pb::RefreshSessionRequest {
                refresh_token: refresh_token.into(),
            })
            .await
            .map(|r| r.into_inner().tokens.unwrap())
    }

    /// The dev SMS kept for a mobile, newest first.
    pub async fn sms_to(&self, mobile: &str) -> Vec<pb::DevSms> {
        self.client
            .clone()
            .list_dev_sms(pb::ListDevSmsRequest {
                mobile: mobile.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .items
    }

    /// Waits until the outbox has delivered everything.
    pub async fn outbox_drained(&self) {
        wait_until("the outbox drains", Duration::from_secs(10), async || {
            tavana_kit::outbox::pending_count(&self.db.db)
                .await
                .unwrap()
                == 0
        })
        .await;
    }

    /// Waits for the newest login code sent to a mobile.
    pub async fn code_for(&self, mobile: &str) -> String {
        self.outbox_drained().await;
        self.sms_to(mobile)
            .await
            .into_iter()
            .find_map(|sms| sms.code)
            .expect("a login code was sent")
    }

    /// Logs employee `n` in and returns its tokens.
    pub async fn login(&self, n: u32) -> pb::TokenPair {
        let challenge = self.start_login(&national_id(n), &mobile(n)).await.unwrap();
        let code = self.code_for(&mobile(n)).await;
        self.verify(&challenge.challenge_id, &code).await.unwrap()
    }
}

/// Decodes an access token's claims with the service's published keys.
pub async fn claims(service: &TestService, token: &str) -> tavana_identity::domain::tokens::Claims {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    let keys = service
        .client
        .clone()
        .get_signing_keys(pb::GetSigningKeysRequest {})
        .await
        .unwrap()
        .into_inner()
        .keys;
    let header = jsonwebtoken::decode_header(token).unwrap();
    let key = keys
        .iter()
        .find(|key| Some(&key.kid) == header.kid.as_ref())
        .expect("the token's kid is published");
    assert_eq!(key.algorithm, "EdDSA");
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&["tavana"]);
    validation.set_audience(&["tavana"]);
    // The test clock stands in 2026; expiry is checked against the real time otherwise.
    validation.validate_exp = false;
    jsonwebtoken::decode(
        token,
        &DecodingKey::from_ed_pem(key.public_key_pem.as_bytes()).unwrap(),
        &validation,
    )
    .unwrap()
    .claims
}

/// The caller the gateway would send for an access token.
pub async fn caller_of(service: &TestService, token: &str) -> Caller {
    let claims = claims(service, token).await;
    Caller::User {
        employee_id: claims.sub,
        national_id: claims.nid,
        grants: claims
            .roles
            .iter()
            .filter_map(|r| RoleGrant::parse(r))
            .collect(),
    }
}
