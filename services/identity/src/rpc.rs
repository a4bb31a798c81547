//! tonic handlers of `IdentityService`: read the caller, parse the request into domain
//! types, authorize, call domain and store, encode the answer.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use tavana_kit::Shared;
use tavana_kit::caller::{Caller, Role, RoleGrant};
use tavana_kit::error::Violation;
use tavana_kit::ids::{Mobile, NationalId};
use tavana_kit::outbox::OutboxHandle;
use tavana_kit::revocation;
use tavana_kit::store::check_rate;
use tavana_proto::identity::v1 as pb;
use tavana_proto::identity::v1::identity_service_server::IdentityService;
use tonic::{Request, Response, Status};

use crate::Settings;
use crate::domain::access;
use crate::domain::employee::{EmployeeData, RawEmployee};
use crate::domain::login::{CODES_PER_HOUR, CODES_PER_MINUTE, Challenge, LoginCode, rate_window};
use crate::domain::sms::{SmsMessage, SmsTemplate};
use crate::domain::tehran_today;
use crate::domain::tokens::{
    ACCESS_TOKEN_SECONDS, ALGORITHM_NAME, TokenSigner, account_grants, hash_refresh_token,
    new_refresh_token,
};
use crate::error::IdentityError;
use crate::sms::SmsProviderKind;
use crate::store::{self, EmployeeView, NewRefreshToken, OpenedSession, Rotation};

type Result<T> = std::result::Result<T, IdentityError>;

/// The identity service's gRPC handlers.
pub struct IdentityRpc {
    db: DatabaseConnection,
    shared: Shared,
    signer: TokenSigner,
    settings: Arc<Settings>,
    outbox: OutboxHandle,
}

impl IdentityRpc {
    /// Records revoked sessions for the gateway, which then refuses their
    /// access tokens at once. The database already holds the revocation
    /// (refresh stops); failing to record it here is logged, not fatal,
    /// since access tokens expire within 15 minutes anyway.
    async fn revoke_access_of_sessions(&self, session_ids: &[String]) {
        for session_id in session_ids {
            let store = self.shared.store.as_ref();
            if let Err(error) = revocation::revoke_session(store, session_id).await {
                tracing::error!(%error, "cannot record the revocation of access tokens");
            }
        }
    }
}

fn challenge_key(challenge_id: &str) -> String {
    format!("identity:login:{challenge_id}")
}

fn tries_key(challenge_id: &str) -> String {
    format!("identity:login:{challenge_id}:tries")
}

fn field_error(field: &str, code: &str, en: &str, fa: &str) -> IdentityError {
    IdentityError::InvalidFields(vec![Violation::new(field, code, en, fa)])
}

fn parse_national_id(field: &str, text: &str) -> std::result::Result<NationalId, Violation> {
    NationalId::parse(text).map_err(|error| {
        Violation::new(
            field,
            error.code(),
            "The national ID is invalid.",
            error.message_fa(),
        )
    })
}

fn parse_mobile(field: &str, text: &str) -> std::result::Result<Mobile, Violation> {
    Mobile::parse(text).map_err(|error| {
        Violation::new(
            field,
            error.code(),
            "The mobile number is invalid.",
            error.message_fa(),
        )
    })
}

fn required_text(field: &str, text: &str) -> std::result::Result<String, Violation> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > 200 {
        return Err(Violation::new(
            field,
            "required",
            "This field is required (at most 200 characters).",
            "این فیلد لازم است (حداکثر ۲۰۰ نویسه).",
        ));
    }
    Ok(text.to_owned())
}

fn require_user(caller: &Caller) -> Result<&str> {
    match caller {
        Caller::User { employee_id, .. } => Ok(employee_id),
        Caller::Anonymous => Err(IdentityError::Unauthenticated),
        _ => Err(IdentityError::PermissionDenied),
    }
}

fn require_known(caller: &Caller) -> Result<()> {
    match caller {
        Caller::Anonymous => Err(IdentityError::Unauthenticated),
        _ => Ok(()),
    }
}

fn allow(caller: &Caller, allowed: bool) -> Result<()> {
    require_known(caller)?;
    if allowed {
        Ok(())
    } else {
        Err(IdentityError::PermissionDenied)
    }
}

/// Converts a kit role to its protobuf value.
pub fn role_to_pb(role: Role) -> pb::Role {
    match role {
        Role::Employee => pb::Role::Employee,
        Role::RegionAdmin => pb::Role::RegionAdmin,
        Role::RegionFinance => pb::Role::RegionFinance,
        Role::RegionWelfareManager => pb::Role::RegionWelfareManager,
        Role::Support => pb::Role::Support,
        Role::Contracts => pb::Role::Contracts,
        Role::Merchant => pb::Role::Merchant,
    }
}

/// Converts a protobuf role to the kit's; `None` for unspecified or unknown values.
pub fn role_from_pb(value: i32) -> Option<Role> {
    match pb::Role::try_from(value).ok()? {
        pb::Role::Unspecified => None,
        pb::Role::Employee => Some(Role::Employee),
        pb::Role::RegionAdmin => Some(Role::RegionAdmin),
        pb::Role::RegionFinance => Some(Role::RegionFinance),
        pb::Role::RegionWelfareManager => Some(Role::RegionWelfareManager),
        pb::Role::Support => Some(Role::Support),
        pb::Role::Contracts => Some(Role::Contracts),
        pb::Role::Merchant => Some(Role::Merchant),
    }
}

fn grants_to_pb(grants: &[RoleGrant]) -> Vec<pb::RoleGrant> {
    grants
        .iter()
        .map(|grant| pb::RoleGrant {
            role: role_to_pb(grant.role) as i32,
            region_code: grant.region.clone(),
        })
        .collect()
}

fn employee_to_pb(view: &EmployeeView) -> pb::Employee {
    let grants = if view.has_account {
        account_grants(&view.grants)
    } else {
        view.grants.clone()
    };
    let employee = &view.employee;
    pb::Employee {
        employee_id: employee.id.clone(),
        national_id: employee.national_id.clone(),
        full_name: employee.full_name.clone(),
        mobile: employee.mobile.clone(),
        organization_id: employee.organization_id.clone(),
        region_code: employee.region_code.clone(),
        net_salary: employee.net_salary,
        service_start_date: employee.service_start_date.format("%Y-%m-%d").to_string(),
        has_account: view.has_account,
        roles: grants_to_pb(&grants),
    }
}

fn organization_to_pb(model: &store::entities::organization::Model) -> pb::Organization {
    pb::Organization {
        organization_id: model.id.clone(),
        name: model.name.clone(),
        contract_in_force: model.contract_in_force,
    }
}

fn template_from_pb(value: i32) -> Option<SmsTemplate> {
    match pb::SmsTemplate::try_from(value).ok()? {
        pb::SmsTemplate::Unspecified => None,
        pb::SmsTemplate::LoginCode => Some(SmsTemplate::LoginCode),
        pb::SmsTemplate::Welcome => Some(SmsTemplate::Welcome),
        pb::SmsTemplate::RequestStatus => Some(SmsTemplate::RequestStatus),
        pb::SmsTemplate::GuaranteeRequested => Some(SmsTemplate::GuaranteeRequested),
        pb::SmsTemplate::PurchaseReceipt => Some(SmsTemplate::PurchaseReceipt),
        pb::SmsTemplate::Settlement => Some(SmsTemplate::Settlement),
        pb::SmsTemplate::MobileChanged => Some(SmsTemplate::MobileChanged),
    }
}

/// Whether notifications came one by one (`NotifyEmployee`) or in a batch
/// (`NotifyEmployees`): it names their fields in violations.
#[derive(Clone, Copy)]
enum Notifications {
    One,
    Many,
}

impl Notifications {
    /// Returns the name of field `name` of the notification at `index`.
    fn field(self, index: usize, name: &str) -> String {
        match self {
            Notifications::One => name.to_owned(),
            Notifications::Many => format!("notifications[{index}].{name}"),
        }
    }
}

/// Returns the template a notification asks for, or the violations that refuse it (R28):
/// identity's own templates (login codes, mobile changes) cannot be requested, and a dedup
/// key is required. `field` names a field of the notification.
fn check_notification(
    notification: &pb::NotifyEmployeeRequest,
    field: impl Fn(&str) -> String,
) -> std::result::Result<SmsTemplate, Vec<Violation>> {
    let template = template_from_pb(notification.template).filter(|template| {
        !matches!(
            template,
            SmsTemplate::LoginCode | SmsTemplate::MobileChanged
        )
    });
    let mut violations = Vec::new();
    if template.is_none() {
        violations.push(Violation::new(
            field("template"),
            "template_invalid",
            "This template cannot be sent on request.",
            "این الگوی پیامک را نمی‌توان درخواست کرد.",
        ));
    }
    let dedup_key = notification.dedup_key.trim();
    if dedup_key.is_empty() || dedup_key.len() > 200 {
        violations.push(Violation::new(
            field("dedup_key"),
            "required",
            "The dedup key is required (at most 200 characters).",
            "کلید یکتایی لازم است (حداکثر ۲۰۰ نویسه).",
        ));
    }
    match template {
        Some(template) if violations.is_empty() => Ok(template),
        _ => Err(violations),
    }
}

fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

impl IdentityRpc {
    /// Creates the handlers.
    pub fn new(
        db: DatabaseConnection,
        shared: Shared,
        signer: TokenSigner,
        settings: Settings,
        outbox: OutboxHandle,
    ) -> IdentityRpc {
        IdentityRpc {
            db,
            shared,
            signer,
            settings: Arc::new(settings),
            outbox,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.shared.clock.now()
    }

    fn token_pair(&self, opened: &OpenedSession, refresh_token: String) -> Result<pb::TokenPair> {
        let grants = account_grants(&opened.grants);
        let access_token = self.signer.sign(
            &opened.employee.id,
            &opened.employee.national_id,
            &grants,
            &opened.session_id,
            self.now(),
        )?;
        Ok(pb::TokenPair {
            access_token,
            refresh_token,
            expires_in: ACCESS_TOKEN_SECONDS,
            roles: grants_to_pb(&grants),
        })
    }

    fn new_refresh(&self) -> (String, NewRefreshToken) {
        let token = new_refresh_token();
        let days = i64::from(self.settings.jwt.refresh_token_days.max(1));
        let refresh = NewRefreshToken {
            token_hash: hash_refresh_token(&token),
            expires_at: self.now() + chrono::Duration::days(days),
        };
        (token, refresh)
    }

    /// With the dev provider, waits (at most 5 s) until the SMS queued under `dedup_key`
    /// is in the dev inbox, so that a local client or test can read it right after the
    /// call that sent it. Other providers never wait.
    async fn settle_dev_sms(&self, dedup_key: &str) {
        self.settle_dev_sms_all(&[dedup_key.to_owned()]).await;
    }

    /// Waits as [`Self::settle_dev_sms`] does, for every SMS of `dedup_keys` (without
    /// repeats) and at most 5 s in all.
    async fn settle_dev_sms_all(&self, dedup_keys: &[String]) {
        if self.settings.sms_provider() != SmsProviderKind::Dev || dedup_keys.is_empty() {
            return;
        }
        let waited = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            loop {
                match store::sms_all_delivered(&self.db, dedup_keys).await {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(error) => {
                        tracing::warn!(%error, "cannot check the dev sms delivery");
                        break;
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        })
        .await;
        if waited.is_err() {
            tracing::warn!(sms = dedup_keys.len(), "dev sms not delivered within 5 s");
        }
    }

    /// R3: the answer is the same whether national ID and mobile match or not; the code
    /// is sent only on a match. The per-mobile limits count every request, so that they
    /// reveal nothing either.
    #[tracing::instrument(skip_all)]
    async fn start_login_inner(
        &self,
        request: pb::StartLoginRequest,
    ) -> Result<pb::StartLoginResponse> {
        let national_id = parse_national_id("national_id", &request.national_id);
        let mobile = parse_mobile("mobile", &request.mobile);
        let (national_id, mobile) = match (national_id, mobile) {
            (Ok(national_id), Ok(mobile)) => (national_id, mobile),
            (national_id, mobile) => {
                let violations = [national_id.err(), mobile.err()].into_iter().flatten();
                return Err(IdentityError::InvalidFields(violations.collect()));
            }
        };
        let now = self.now();
        let store = self.shared.store.as_ref();
        for rule in [CODES_PER_MINUTE, CODES_PER_HOUR] {
            let (key, left) = rate_window("identity:sms", mobile.as_str(), rule, now);
            if check_rate(store, &key, rule).await?.is_err() {
                tracing::info!(mobile = %mobile.masked(), "login codes rate limited");
                return Err(IdentityError::TooManyCodes {
                    retry_after_seconds: left.as_secs().max(1),
                });
            }
        }
        let ttl = self.settings.code_ttl();
        let challenge_id = uuid::Uuid::new_v4().to_string();
        let employee =
            store::find_employee_for_login(&self.db, national_id.as_str(), mobile.as_str()).await?;
        if let Some(employee) = employee {
            let code = LoginCode::generate();
            let challenge = Challenge::new(employee.id, &code, now);
            let value = serde_json::to_string(&challenge).map_err(anyhow::Error::from)?;
            store
                .set(&challenge_key(&challenge_id), &value, ttl)
                .await?;
            let sms =
                SmsMessage::login_code(mobile.as_str(), code.as_str(), ttl.as_secs().div_ceil(60));
            let dedup_key = format!("login:{challenge_id}");
            store::enqueue_sms(&self.db, &dedup_key, &sms).await?;
            self.outbox.notify();
            self.settle_dev_sms(&dedup_key).await;
            tracing::info!(mobile = %mobile.masked(), "login code queued");
        } else {
            tracing::info!(mobile = %mobile.masked(), "login requested without a match");
        }
        Ok(pb::StartLoginResponse {
            challenge_id,
            expires_in: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
        })
    }

    /// R3: wrong, unknown and expired codes all get `invalid_code`; the fifth wrong try
    /// burns the challenge. R4: the first login creates the account.
    #[tracing::instrument(skip_all)]
    async fn verify_login_inner(
        &self,
        request: pb::VerifyLoginRequest,
    ) -> Result<pb::VerifyLoginResponse> {
        let challenge_id = request.challenge_id.trim();
        if uuid::Uuid::parse_str(challenge_id).is_err() {
            return Err(IdentityError::InvalidCode);
        }
        let store = self.shared.store.as_ref();
        let key = challenge_key(challenge_id);
        let tries = tries_key(challenge_id);
        let Some(value) = store.get(&key).await? else {
            return Err(IdentityError::InvalidCode);
        };
        let Ok(challenge) = serde_json::from_str::<Challenge>(&value) else {
            store.delete(&key).await?;
            return Err(IdentityError::InvalidCode);
        };
        let ttl = self.settings.code_ttl();
        if challenge.is_expired(self.now(), ttl) {
            store.delete(&key).await?;
            store.delete(&tries).await?;
            return Err(IdentityError::InvalidCode);
        }
        let max_attempts = u64::from(self.settings.login.max_attempts.max(1));
        let attempt = store.incr(&tries, ttl).await?;
        if attempt > max_attempts
            || !challenge.matches(&tavana_kit::ids::normalize_digits(&request.code))
        {
            if attempt >= max_attempts {
                store.delete(&key).await?;
                tracing::info!("login challenge burnt after too many wrong codes");
            }
            return Err(IdentityError::InvalidCode);
        }
        // Two right answers at once: only the one that takes the challenge logs in.
        if store.take(&key).await?.is_none() {
            return Err(IdentityError::InvalidCode);
        }
        store.delete(&tries).await?;
        let (refresh_token, refresh) = self.new_refresh();
        let app_url = self.settings.app_download_url().to_owned();
        let opened = store::open_session(
            &self.db,
            &challenge.employee_id,
            &refresh,
            self.now(),
            |employee| SmsMessage::welcome(&employee.mobile, &employee.full_name, &app_url),
        )
        .await?
        .ok_or(IdentityError::InvalidCode)?;
        self.outbox.notify();
        self.settle_dev_sms(&format!("welcome:{}", opened.employee.id))
            .await;
        Ok(pb::VerifyLoginResponse {
            tokens: Some(self.token_pair(&opened, refresh_token)?),
        })
    }

    #[tracing::instrument(skip_all)]
    async fn refresh_session_inner(
        &self,
        request: pb::RefreshSessionRequest,
    ) -> Result<pb::RefreshSessionResponse> {
        if request.refresh_token.trim().is_empty() {
            return Err(IdentityError::RefreshTokenInvalid);
        }
        let presented = hash_refresh_token(&request.refresh_token);
        let (refresh_token, next) = self.new_refresh();
        match store::rotate_refresh_token(&self.db, &presented, &next, self.now()).await? {
            Rotation::Rotated(opened) => Ok(pb::RefreshSessionResponse {
                tokens: Some(self.token_pair(&opened, refresh_token)?),
            }),
            Rotation::Reused(session_id) => {
                self.revoke_access_of_sessions(&[session_id]).await;
                Err(IdentityError::RefreshTokenReused)
            }
            Rotation::Invalid => Err(IdentityError::RefreshTokenInvalid),
        }
    }

    #[tracing::instrument(skip_all)]
    async fn logout_inner(
        &self,
        caller: Caller,
        request: pb::LogoutRequest,
    ) -> Result<pb::LogoutResponse> {
        let employee_id = require_user(&caller)?;
        let session_id = request.session_id.trim();
        if session_id.is_empty() {
            return Err(field_error(
                "session_id",
                "required",
                "The session id is required.",
                "شناسهٔ نشست لازم است.",
            ));
        }
        if !store::revoke_session(&self.db, session_id, employee_id, self.now()).await? {
            return Err(IdentityError::SessionNotFound);
        }
        self.revoke_access_of_sessions(&[session_id.to_owned()])
            .await;
        Ok(pb::LogoutResponse {})
    }

    fn signing_keys(&self) -> pb::GetSigningKeysResponse {
        pb::GetSigningKeysResponse {
            keys: self
                .signer
                .public_keys()
                .iter()
                .map(|key| pb::SigningKey {
                    kid: key.kid.clone(),
                    algorithm: ALGORITHM_NAME.to_owned(),
                    public_key_pem: key.pem.clone(),
                })
                .collect(),
        }
    }

    #[tracing::instrument(skip_all)]
    async fn get_me_inner(&self, caller: Caller) -> Result<pb::GetMeResponse> {
        let employee_id = require_user(&caller)?;
        let employee = store::find_employee(&self.db, employee_id)
            .await?
            .ok_or(IdentityError::EmployeeNotFound)?;
        let mut view = store::employee_view(&self.db, employee).await?;
        view.has_account = true;
        Ok(pb::GetMeResponse {
            employee: Some(employee_to_pb(&view)),
        })
    }

    /// R6: services, support, the employee themself and staff of the employee's region;
    /// anyone else gets the same answer as for an unknown employee.
    #[tracing::instrument(skip_all)]
    async fn get_employee_inner(
        &self,
        caller: Caller,
        request: pb::GetEmployeeRequest,
    ) -> Result<pb::GetEmployeeResponse> {
        require_known(&caller)?;
        let employee = match request.key {
            Some(pb::get_employee_request::Key::EmployeeId(id)) => {
                store::find_employee(&self.db, id.trim()).await?
            }
            Some(pb::get_employee_request::Key::NationalId(text)) => {
                let national_id = parse_national_id("national_id", &text)
                    .map_err(|violation| IdentityError::InvalidFields(vec![violation]))?;
                store::find_employee_by_national_id(&self.db, national_id.as_str()).await?
            }
            None => {
                return Err(field_error(
                    "key",
                    "required",
                    "Give an employee id or a national ID.",
                    "شناسهٔ کارمند یا کد ملی را بدهید.",
                ));
            }
        };
        let employee = employee
            .filter(|employee| {
                access::may_read_employee(&caller, &employee.id, &employee.region_code)
            })
            .ok_or(IdentityError::EmployeeNotFound)?;
        let view = store::employee_view(&self.db, employee).await?;
        Ok(pb::GetEmployeeResponse {
            employee: Some(employee_to_pb(&view)),
        })
    }

    /// R1, R6: a region_admin writes employees of their own region only (old and new).
    #[tracing::instrument(skip_all)]
    async fn upsert_employee_inner(
        &self,
        caller: Caller,
        request: pb::UpsertEmployeeRequest,
    ) -> Result<pb::UpsertEmployeeResponse> {
        allow(&caller, access::may_import(&caller))?;
        let data = request.data.unwrap_or_default();
        let raw = RawEmployee {
            national_id: data.national_id,
            full_name: data.full_name,
            mobile: data.mobile,
            organization_id: data.organization_id,
            region_code: data.region_code,
            net_salary: data.net_salary.to_string(),
            service_start_date: data.service_start_date,
        };
        let now = self.now();
        let data =
            EmployeeData::parse(&raw, tehran_today(now)).map_err(IdentityError::InvalidFields)?;
        let (employee, created) = store::upsert_employee(
            &self.db,
            &data,
            |old_region| access::may_move_employee(&caller, old_region, &data.region_code),
            now,
        )
        .await?;
        let view = store::employee_view(&self.db, employee).await?;
        Ok(pb::UpsertEmployeeResponse {
            employee: Some(employee_to_pb(&view)),
            created,
        })
    }

    #[tracing::instrument(skip_all, fields(bytes = request.csv.len()))]
    async fn import_employees_inner(
        &self,
        caller: Caller,
        request: pb::ImportEmployeesRequest,
    ) -> Result<pb::ImportEmployeesResponse> {
        allow(&caller, access::may_import(&caller))?;
        let now = self.now();
        let report = store::import_employees(
            &self.db,
            &request.csv,
            tehran_today(now),
            |old_region, new_region| access::may_move_employee(&caller, old_region, new_region),
            now,
        )
        .await?;
        Ok(pb::ImportEmployeesResponse {
            created: report.created,
            updated: report.updated,
            rejected: report
                .rejected
                .into_iter()
                .map(|line| pb::RejectedLine {
                    line: line.line,
                    code: line.code,
                    message_en: line.message_en,
                    message_fa: line.message_fa,
                })
                .collect(),
        })
    }

    /// R5: support only; records the welfare unit and reference, revokes every session.
    #[tracing::instrument(skip_all)]
    async fn change_mobile_inner(
        &self,
        caller: Caller,
        request: pb::ChangeMobileRequest,
    ) -> Result<pb::ChangeMobileResponse> {
        allow(&caller, access::may_change_mobile(&caller))?;
        let national_id = parse_national_id("national_id", &request.national_id);
        let mobile = parse_mobile("new_mobile", &request.new_mobile);
        let unit = required_text("requested_by_unit", &request.requested_by_unit);
        let reference = required_text("reference", &request.reference);
        let (national_id, mobile, unit, reference) = match (national_id, mobile, unit, reference) {
            (Ok(a), Ok(b), Ok(c), Ok(d)) => (a, b, c, d),
            (a, b, c, d) => {
                let violations = [a.err(), b.err(), c.err(), d.err()].into_iter().flatten();
                return Err(IdentityError::InvalidFields(violations.collect()));
            }
        };
        let change = store::MobileChangeRequest {
            national_id: national_id.as_str().to_owned(),
            new_mobile: mobile.as_str().to_owned(),
            requested_by_unit: unit,
            reference,
            actor: caller.employee_id().unwrap_or_default().to_owned(),
        };
        let (employee, dedup_key, revoked_sessions) =
            store::change_mobile(&self.db, &change, self.now()).await?;
        self.revoke_access_of_sessions(&revoked_sessions).await;
        self.outbox.notify();
        self.settle_dev_sms(&dedup_key).await;
        let view = store::employee_view(&self.db, employee).await?;
        Ok(pb::ChangeMobileResponse {
            employee: Some(employee_to_pb(&view)),
        })
    }

    #[tracing::instrument(skip_all)]
    async fn add_organization_inner(
        &self,
        caller: Caller,
        request: pb::AddOrganizationRequest,
    ) -> Result<pb::AddOrganizationResponse> {
        allow(&caller, access::may_manage_organizations(&caller))?;
        let id = request.organization_id.trim();
        let valid_id = (1..=64).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        let mut violations = Vec::new();
        if !valid_id {
            violations.push(Violation::new(
                "organization_id",
                "organization_id_invalid",
                "The organization id must have 1 to 64 letters, digits, - or _.",
                "شناسهٔ سازمان باید ۱ تا ۶۴ حرف لاتین، رقم، - یا _ باشد.",
            ));
        }
        let name = required_text("name", &request.name)
            .map_err(|v| violations.push(v))
            .ok();
        let Some(name) = name.filter(|_| violations.is_empty()) else {
            return Err(IdentityError::InvalidFields(violations));
        };
        let organization =
            store::upsert_organization(&self.db, id, &name, request.contract_in_force, self.now())
                .await?;
        Ok(pb::AddOrganizationResponse {
            organization: Some(organization_to_pb(&organization)),
        })
    }

    #[tracing::instrument(skip_all)]
    async fn get_organization_inner(
        &self,
        caller: Caller,
        request: pb::GetOrganizationRequest,
    ) -> Result<pb::GetOrganizationResponse> {
        require_known(&caller)?;
        let organization = store::find_organization(&self.db, request.organization_id.trim())
            .await?
            .ok_or(IdentityError::OrganizationNotFound)?;
        Ok(pb::GetOrganizationResponse {
            organization: Some(organization_to_pb(&organization)),
        })
    }

    #[tracing::instrument(skip_all)]
    async fn set_organization_contract_inner(
        &self,
        caller: Caller,
        request: pb::SetOrganizationContractRequest,
    ) -> Result<pb::SetOrganizationContractResponse> {
        allow(&caller, access::may_manage_organizations(&caller))?;
        let organization = store::set_organization_contract(
            &self.db,
            request.organization_id.trim(),
            request.in_force,
            self.now(),
        )
        .await?
        .ok_or(IdentityError::OrganizationNotFound)?;
        Ok(pb::SetOrganizationContractResponse {
            organization: Some(organization_to_pb(&organization)),
        })
    }

    fn parse_grant(national_id: &str, role: i32) -> Result<(NationalId, Role)> {
        let national_id = parse_national_id("national_id", national_id);
        let role = role_from_pb(role).ok_or_else(|| {
            Violation::new(
                "role",
                "role_invalid",
                "The role is unknown.",
                "نقش ناشناخته است.",
            )
        });
        match (national_id, role) {
            (Ok(national_id), Ok(role)) => Ok((national_id, role)),
            (a, b) => Err(IdentityError::InvalidFields(
                [a.err(), b.err()].into_iter().flatten().collect(),
            )),
        }
    }

    #[tracing::instrument(skip_all)]
    async fn grant_role_inner(
        &self,
        caller: Caller,
        request: pb::GrantRoleRequest,
    ) -> Result<pb::GrantRoleResponse> {
        allow(&caller, access::may_manage_roles(&caller))?;
        let (national_id, role) = Self::parse_grant(&request.national_id, request.role)?;
        let grants = store::grant_role(
            &self.db,
            national_id.as_str(),
            role,
            request.region_code.as_deref(),
            self.now(),
        )
        .await?;
        Ok(pb::GrantRoleResponse {
            roles: grants_to_pb(&grants),
        })
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_role_inner(
        &self,
        caller: Caller,
        request: pb::RevokeRoleRequest,
    ) -> Result<pb::RevokeRoleResponse> {
        allow(&caller, access::may_manage_roles(&caller))?;
        let (national_id, role) = Self::parse_grant(&request.national_id, request.role)?;
        let grants = store::revoke_role(
            &self.db,
            national_id.as_str(),
            role,
            request.region_code.as_deref(),
        )
        .await?;
        // Tokens carry roles: the holder signs in again and gets the roles left.
        if let Some(employee) =
            store::find_employee_by_national_id(&self.db, national_id.as_str()).await?
        {
            let revoked =
                store::revoke_sessions_of(&self.db, &employee.id, "role_revoked", self.now())
                    .await?;
            self.revoke_access_of_sessions(&revoked).await;
        }
        Ok(pb::RevokeRoleResponse {
            roles: grants_to_pb(&grants),
        })
    }

    /// R28: another service asks for an SMS; the same dedup key queues it only once.
    async fn notify_employee_inner(
        &self,
        caller: Caller,
        request: pb::NotifyEmployeeRequest,
    ) -> Result<pb::NotifyEmployeeResponse> {
        self.notify_employees_inner(caller, vec![request], Notifications::One)
            .await?;
        Ok(pb::NotifyEmployeeResponse {})
    }

    /// R28: another service asks for SMS, each checked and queued as `NotifyEmployee`
    /// queues one; the same dedup key queues an SMS only once. The notifications are
    /// independent: the valid ones for known employees are queued even when others are
    /// refused, and then the call fails with `EmployeeNotFound` (worth a retry) before
    /// `InvalidFields` (never worth one). The employees are read and the SMS written a
    /// few statements at a time, whatever their number.
    #[tracing::instrument(skip_all, fields(notifications = notifications.len()))]
    async fn notify_employees_inner(
        &self,
        caller: Caller,
        notifications: Vec<pb::NotifyEmployeeRequest>,
        shape: Notifications,
    ) -> Result<()> {
        allow(&caller, caller.is_service())?;
        let mut violations = Vec::new();
        let mut valid = Vec::with_capacity(notifications.len());
        for (index, notification) in notifications.into_iter().enumerate() {
            match check_notification(&notification, |name| shape.field(index, name)) {
                Ok(template) => valid.push((notification, template)),
                Err(refused) => violations.extend(refused),
            }
        }

        let mut employee_ids: Vec<&str> = valid
            .iter()
            .map(|(notification, _)| notification.employee_id.trim())
            .collect();
        employee_ids.sort_unstable();
        employee_ids.dedup();
        let mobiles: HashMap<String, String> = store::find_employees(&self.db, &employee_ids)
            .await?
            .into_iter()
            .map(|employee| (employee.id, employee.mobile))
            .collect();
        let mut unknown = 0usize;
        let mut keys = HashSet::new();
        let mut queued = Vec::with_capacity(valid.len());
        for (notification, template) in &valid {
            let Some(mobile) = mobiles.get(notification.employee_id.trim()) else {
                unknown += 1;
                continue;
            };
            let dedup_key = format!("notify:{}", notification.dedup_key.trim());
            // The first of a key in the call wins, as the first of two calls would.
            if !keys.insert(dedup_key.clone()) {
                continue;
            }
            let params: BTreeMap<String, String> = notification
                .params
                .iter()
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect();
            let sms = SmsMessage::notification(
                mobile,
                *template,
                &params,
                self.settings.app_download_url(),
            );
            queued.push((dedup_key, sms));
        }
        let dedup_keys: Vec<String> = queued.iter().map(|(key, _)| key.clone()).collect();
        store::enqueue_sms_many(&self.db, queued).await?;
        if !dedup_keys.is_empty() {
            self.outbox.notify();
            self.settle_dev_sms_all(&dedup_keys).await;
        }

        if unknown > 0 {
            tracing::warn!(
                unknown,
                queued = dedup_keys.len(),
                "notifications for unknown employees"
            );
            return Err(IdentityError::EmployeeNotFound);
        }
        if !violations.is_empty() {
            return Err(IdentityError::InvalidFields(violations));
        }
        Ok(())
    }

    #[tracing::instrument(skip_all)]
    async fn list_dev_sms_inner(
        &self,
        request: pb::ListDevSmsRequest,
    ) -> Result<pb::ListDevSmsResponse> {
        if self.settings.sms_provider() != SmsProviderKind::Dev {
            return Err(IdentityError::DevSmsUnavailable);
        }
        let mobile = parse_mobile("mobile", &request.mobile)
            .map_err(|violation| IdentityError::InvalidFields(vec![violation]))?;
        let items = store::list_dev_sms(&self.db, mobile.as_str())
            .await?
            .into_iter()
            .map(|sms| pb::DevSms {
                text: sms.text,
                template: sms.template,
                code: sms.code,
                sent_at: Some(timestamp(sms.sent_at)),
            })
            .collect();
        Ok(pb::ListDevSmsResponse { items })
    }
}

fn answer<T>(result: Result<T>) -> std::result::Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl IdentityService for IdentityRpc {
    async fn start_login(
        &self,
        request: Request<pb::StartLoginRequest>,
    ) -> std::result::Result<Response<pb::StartLoginResponse>, Status> {
        answer(self.start_login_inner(request.into_inner()).await)
    }

    async fn verify_login(
        &self,
        request: Request<pb::VerifyLoginRequest>,
    ) -> std::result::Result<Response<pb::VerifyLoginResponse>, Status> {
        answer(self.verify_login_inner(request.into_inner()).await)
    }

    async fn refresh_session(
        &self,
        request: Request<pb::RefreshSessionRequest>,
    ) -> std::result::Result<Response<pb::RefreshSessionResponse>, Status> {
        answer(self.refresh_session_inner(request.into_inner()).await)
    }

    async fn logout(
        &self,
        request: Request<pb::LogoutRequest>,
    ) -> std::result::Result<Response<pb::LogoutResponse>, Status> {
        let caller = tavana_kit::caller::caller(&request);
        answer(self.logout_inner(caller, request.into_inner()).await)
    }

    async fn get_signing_keys(
        &self,
        _request: Request<pb::GetSigningKeysRequest>,
    ) -> std::result::Result<Response<pb::GetSigningKeysResponse>, Status> {
        Ok(Response::new(self.signing_keys()))
    }

    async fn get_me(
        &self,
        request: Request<pb::GetMeRequest>,
    ) -> std::result::Result<Response<pb::GetMeResponse>, Status> {
        let caller = tavana_kit::caller::caller(&request);
        answer(self.get_me_inner(caller).await)
    }

    async fn get_employee(
        &self,
        request: Request<pb::GetEmployeeRequest>,
    ) -> std::result::Result<Response<pb::GetEmployeeResponse>, Status> {
        let caller = tavana_kit::caller::caller(&request);
        answer(self.get_employee_inner(caller, request.into_inner()).await)
    }

    async fn upsert_employee(
        &self,
        request: Request<pb::UpsertEmployeeRequest>,
    ) -> std::result::Result<Response<pb::UpsertEmployeeResponse>, Status> {
        let caller = tavana_kit::caller::caller(&request);
        answer(
            self.upsert_employee_inner(caller, request.into_inner())
                .await,
        )
    }

    async fn import_employees(
        &self,
        request: Request<pb::ImportEmployeesRequest>,
    ) -> std::result::Result<Response<pb::ImportEmployeesResponse>, Status> {
        let caller = tavana_kit::caller::caller(&request);
        answer(
            self.import_employees_inner(caller, request.into_inner())
                .await,
        )
    }

    async fn change_mobile(
        &self,
        request: Request<pb::ChangeMobileRequest>,
    ) -> std::result::Result<Response<pb::ChangeMobileResponse>, Status> {
        let caller = tavana_kit::caller::caller(&request);
        answer(self.change_mobile_inner(caller, request.into_inner()).await)
    }

    async fn add_organization(
        &self,
        request: Request<pb::AddOrganizationRequest>,
    ) -> std::result::Result<Response<pb::AddOrganizationResponse>, Status> {
        let caller = tavana_kit::caller::caller(&request);
        answer(
            self.add_organization_inner(caller, request.into_inner())
                .await,
        )
    }

    async fn get_organization(
        &self,
        request: Request<pb::GetOrganizationRequest>,
    ) -> std::result::Result<Response<pb::GetOrganizationResponse>, Status> {
        let caller = tavana_kit::caller::caller(&request);
        answer(
            self.get_organization_inner(caller, request.into_inner())
                .await,
        )
    }

    async fn set_organization_contract(
        &self,
        request: Request<pb::SetOrganizationContractRequest>,
    ) -> std::result::Result<Response<pb::SetOrganizationContractResponse>, Status> {
        let caller = tavana_kit::caller::caller(&request);
        answer(
            self.set_organization_contract_inner(caller, request.into_inner())
                .await,
        )
    }

    async fn grant_role(
        &self,
        request: Request<pb::GrantRoleRequest>,
    ) -> std::result::Result<Response<pb::GrantRoleResponse>, Status> {
        let caller = tavana_kit::caller::caller(&request);
        answer(self.grant_role_inner(caller, request.into_inner()).await)
    }

    async fn revoke_role(
        &self,
        request: Request<pb::RevokeRoleRequest>,
    ) -> std::result::Result<Response<pb::RevokeRoleResponse>, Status> {
        let caller = tavana_kit::caller::caller(&request);
        answer(self.revoke_role_inner(caller, request.into_inner()).await)
    }

    async fn notify_employee(
        &self,
        request: Request<pb::NotifyEmployeeRequest>,
    ) -> std::result::Result<Response<pb::NotifyEmployeeResponse>, Status> {
        let caller = tavana_kit::caller::caller(&request);
        answer(
            self.notify_employee_inner(caller, request.into_inner())
                .await,
        )
    }

    async fn notify_employees(
        &self,
        request: Request<pb::NotifyEmployeesRequest>,
    ) -> std::result::Result<Response<pb::NotifyEmployeesResponse>, Status> {
        let caller = tavana_kit::caller::caller(&request);
        let notifications = request.into_inner().notifications;
        answer(
            self.notify_employees_inner(caller, notifications, Notifications::Many)
                .await
                .map(|()| pb::NotifyEmployeesResponse {}),
        )
    }

    async fn list_dev_sms(
        &self,
        request: Request<pb::ListDevSmsRequest>,
    ) -> std::result::Result<Response<pb::ListDevSmsResponse>, Status> {
        answer(self.list_dev_sms_inner(request.into_inner()).await)
    }
}
