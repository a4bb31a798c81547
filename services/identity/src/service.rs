//! Identity's use cases: authorize the verified caller, parse the fields, run the rules of
//! `domain` and the store's queries, queue SMS through the outbox and deliver at once.
//!
//! Login codes live here with their whole lifecycle (R3): the per-mobile sliding limits
//! (`KvStore::admit`), the challenge kept in the shared store, its tries, and the single
//! taker of a right answer.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use serde_json::json;
use tavana_kit::Shared;
use tavana_kit::audit::{AuditEntry, record_in};
use tavana_kit::caller::{Caller, Role, RoleGrant};
use tavana_kit::clock::SecurityClock;
use tavana_kit::error::Violation;
use tavana_kit::ids::{NationalId, OrganizationId};
use tavana_kit::outbox::OutboxHandle;
use tavana_kit::revocation;

use crate::Settings;
use crate::domain::access;
use crate::domain::employee::{EmployeeData, ImportReport, RawEmployee, rejected_line};
use crate::domain::fields;
use crate::domain::hr_csv::parse_hr_csv;
use crate::domain::login::{CODES_PER_HOUR, CODES_PER_MINUTE, Challenge};
use crate::domain::sms::{Notification, NotificationShape, SmsMessage, check_notification};
use crate::domain::tehran_today;
use crate::domain::tokens::{
    PublicKey, TokenSigner, account_grants, hash_refresh_token, new_refresh_token,
};
use crate::error::IdentityError;
use crate::sms::SmsProviderKind;
use crate::store::entities::{dev_sms, organization};
use crate::store::{self, EmployeeView, NewRefreshToken, OpenedSession, Rotation};

type Result<T> = std::result::Result<T, IdentityError>;

/// Audit actions of identity's staff actions (R32); the subject is a national ID unless
/// said otherwise.
pub const AUDIT_EMPLOYEE_UPSERT: &str = "employee.upsert";
/// An HR import, one entry per file; its subject is [`AUDIT_EMPLOYEE_IMPORT_SUBJECT`].
pub const AUDIT_EMPLOYEE_IMPORT: &str = "employee.import";
/// The subject of HR import entries.
pub const AUDIT_EMPLOYEE_IMPORT_SUBJECT: &str = "employees";
/// A mobile change by support (R5).
pub const AUDIT_MOBILE_CHANGE: &str = "employee.mobile_change";
/// A role grant.
pub const AUDIT_ROLE_GRANT: &str = "role.grant";
/// A role revocation.
pub const AUDIT_ROLE_REVOKE: &str = "role.revoke";
/// An organization's contract set in or out of force; the subject is the organization id.
pub const AUDIT_ORGANIZATION_CONTRACT: &str = "organization.contract";

/// A login challenge handed out (R3): the same answer whether a code was sent or not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginStarted {
    /// The challenge to answer with the code.
    pub challenge_id: String,
    /// How long the code is valid.
    pub expires_in_seconds: u64,
}

/// The tokens of an opened or refreshed session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tokens {
    /// The signed access token (15 minutes).
    pub access_token: String,
    /// The refresh token, shown this once.
    pub refresh_token: String,
    /// The roles the access token carries.
    pub grants: Vec<RoleGrant>,
}

/// How a caller names the employee they ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EmployeeKey {
    /// Identity's employee id.
    EmployeeId(String),
    /// The national ID, as typed.
    NationalId(String),
}

/// What support types in to change a mobile number (R5), before parsing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MobileChangeInput {
    /// The employee's national ID.
    pub national_id: String,
    /// The new mobile number.
    pub new_mobile: String,
    /// The welfare unit that asked for the change.
    pub requested_by_unit: String,
    /// The unit's reference (letter number).
    pub reference: String,
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

/// Collects the violations of fields parsed together: every bad field is reported.
fn invalid(violations: impl IntoIterator<Item = Option<Violation>>) -> IdentityError {
    IdentityError::Invalid(violations.into_iter().flatten().collect())
}

fn challenge_key(challenge_id: &str) -> String {
    format!("identity:login:{challenge_id}")
}

fn tries_key(challenge_id: &str) -> String {
    format!("identity:login:{challenge_id}:tries")
}

/// Creates or updates one employee (R1) for `caller`: a `region_admin` writes employees
/// of their own region only, the old region and the new (R6). Audited in the same
/// transaction (R32). Returns the record and whether it is new.
///
/// A free function so that the admin command line runs the very same use case.
pub async fn upsert_employee(
    db: &DatabaseConnection,
    caller: &Caller,
    raw: &RawEmployee,
    now: DateTime<Utc>,
) -> Result<(store::entities::employee::Model, bool)> {
    allow(caller, access::may_import(caller))?;
    let data = EmployeeData::parse(raw, tehran_today(now)).map_err(IdentityError::Invalid)?;
    let audit = AuditEntry::new(
        caller,
        AUDIT_EMPLOYEE_UPSERT,
        data.national_id.as_str(),
        json!({
            "organization_id": data.organization_id,
            "region_code": data.region_code,
        }),
    );
    store::upsert_employee(
        db,
        &data,
        |old_region| access::may_move_employee(caller, old_region, &data.region_code),
        now,
        Some(audit),
    )
    .await
}

/// Imports an HR CSV (R1) for `caller`: each line is written on its own transaction, so a
/// bad line, or one of a region that is not the caller's (R6), rejects only itself. One
/// audit entry records the whole file (R32).
///
/// A free function so that the admin command line runs the very same use case.
pub async fn import_employees(
    db: &DatabaseConnection,
    caller: &Caller,
    csv: &[u8],
    now: DateTime<Utc>,
) -> Result<ImportReport> {
    allow(caller, access::may_import(caller))?;
    let lines = parse_hr_csv(csv, tehran_today(now))
        .map_err(|header| IdentityError::Invalid(vec![header]))?;
    let mut report = ImportReport::default();
    for line in lines {
        let data = match line.parsed {
            Ok(data) => data,
            Err(violations) => {
                report.rejected.push(rejected_line(line.line, &violations));
                continue;
            }
        };
        let outcome = store::upsert_employee(
            db,
            &data,
            |old_region| access::may_move_employee(caller, old_region, &data.region_code),
            now,
            None,
        )
        .await;
        match outcome {
            Ok((_, true)) => report.created += 1,
            Ok((_, false)) => report.updated += 1,
            Err(IdentityError::Internal(error)) => return Err(IdentityError::Internal(error)),
            Err(error) => {
                let problem = error.to_problem();
                report.rejected.push(crate::domain::employee::RejectedLine {
                    line: line.line,
                    code: problem.code,
                    message_en: problem.message_en,
                    message_fa: problem.message_fa,
                });
            }
        }
    }
    tracing::info!(
        created = report.created,
        updated = report.updated,
        rejected = report.rejected.len(),
        "hr import done"
    );
    // One entry for the whole import; its lines are written one transaction each.
    let audit = AuditEntry::new(
        caller,
        AUDIT_EMPLOYEE_IMPORT,
        AUDIT_EMPLOYEE_IMPORT_SUBJECT,
        json!({
            "bytes": csv.len(),
            "created": report.created,
            "updated": report.updated,
            "rejected": report.rejected.len(),
        }),
    );
    record_in(db, &audit).await?;
    Ok(report)
}

/// Grants a staff role (R6) to the holder of `national_id`, audited in the same
/// transaction as `caller` (R32): the region is checked by
/// [`access::grant_region`] before anything is written. Whoever calls it has authorized
/// the caller: the RPC by [`access::may_manage_roles`], the admin command line by working
/// straight on the database.
pub async fn record_grant(
    db: &DatabaseConnection,
    caller: &Caller,
    national_id: &NationalId,
    role: Role,
    region_code: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Vec<RoleGrant>> {
    let region = access::grant_region(role, region_code).map_err(IdentityError::Invalid)?;
    let txn = tavana_kit::db::begin_write(db).await?;
    let grants =
        store::grant_role(&*txn, national_id.as_str(), role, region.as_deref(), now).await?;
    let audit = AuditEntry::new(
        caller,
        AUDIT_ROLE_GRANT,
        national_id.as_str(),
        json!({ "role": role.as_str(), "region_code": region_code }),
    );
    record_in(&*txn, &audit).await?;
    txn.commit().await?;
    Ok(grants)
}

/// A role change as asked (R6): by a caller who may manage roles, of a valid national ID
/// and a known role, and never of the caller's own roles (R32).
fn role_change(
    caller: &Caller,
    national_id: &str,
    role: Option<Role>,
) -> Result<(NationalId, Role)> {
    allow(caller, access::may_manage_roles(caller))?;
    let national_id = fields::national_id("national_id", national_id);
    let role = role.ok_or_else(|| {
        Violation::new(
            "role",
            "role_invalid",
            "The role is unknown.",
            "نقش ناشناخته است.",
        )
    });
    let (national_id, role) = match (national_id, role) {
        (Ok(national_id), Ok(role)) => (national_id, role),
        (a, b) => return Err(invalid([a.err(), b.err()])),
    };
    if access::is_own_role_change(caller, national_id.as_str()) {
        return Err(IdentityError::OwnRole);
    }
    Ok((national_id, role))
}

/// Identity's use cases over its database, the shared store, the token signer and the
/// SMS outbox.
pub struct Identity {
    db: DatabaseConnection,
    shared: Shared,
    signer: TokenSigner,
    settings: Arc<Settings>,
    outbox: OutboxHandle,
    /// Token lifetimes, login codes and rate windows: never the business clock.
    security: SecurityClock,
}

impl Identity {
    /// Creates the use cases.
    pub fn new(
        db: DatabaseConnection,
        shared: Shared,
        signer: TokenSigner,
        settings: Settings,
        outbox: OutboxHandle,
        security: SecurityClock,
    ) -> Identity {
        Identity {
            db,
            shared,
            signer,
            settings: Arc::new(settings),
            outbox,
            security,
        }
    }

    /// Business time (the test clock): HR dates, organization contracts, grants.
    fn now(&self) -> DateTime<Utc> {
        self.shared.clock.now()
    }

    /// Security time (always the real clock in a running suite): tokens, sessions,
    /// login codes and their rate windows.
    fn security_now(&self) -> DateTime<Utc> {
        self.security.now()
    }

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

    fn tokens(&self, opened: &OpenedSession, refresh_token: String) -> Result<Tokens> {
        let grants = account_grants(&opened.grants);
        let access_token = self.signer.sign(
            &opened.employee.id,
            &opened.employee.national_id,
            &grants,
            &opened.session_id,
            self.security_now(),
        )?;
        Ok(Tokens {
            access_token,
            refresh_token,
            grants,
        })
    }

    fn new_refresh(&self) -> (String, NewRefreshToken) {
        let token = new_refresh_token();
        let days = i64::from(self.settings.jwt.refresh_token_days.max(1));
        let refresh = NewRefreshToken {
            token_hash: hash_refresh_token(&token),
            expires_at: self.security_now() + chrono::Duration::days(days),
        };
        (token, refresh)
    }

    /// Starts a login (R3): the answer is the same whether national ID and mobile match
    /// or not; the code is sent only on a match. The per-mobile sliding limits (1 a
    /// minute, 5 an hour) count every request, so that they reveal nothing either.
    #[tracing::instrument(skip_all)]
    pub async fn start_login(&self, national_id: &str, mobile: &str) -> Result<LoginStarted> {
        let national_id = fields::national_id("national_id", national_id);
        let mobile = fields::mobile("mobile", mobile);
        let (national_id, mobile) = match (national_id, mobile) {
            (Ok(national_id), Ok(mobile)) => (national_id, mobile),
            (national_id, mobile) => return Err(invalid([national_id.err(), mobile.err()])),
        };
        let now = self.security_now();
        let store = self.shared.store.as_ref();
        let key = format!("identity:sms:{}", mobile.as_str());
        if let Err(wait) = store
            .admit(&key, now, &[CODES_PER_MINUTE, CODES_PER_HOUR])
            .await?
        {
            tracing::info!(mobile = %mobile.masked(), "login codes rate limited");
            tavana_kit::metrics::record_login_code(Some("too_many_codes"));
            return Err(IdentityError::TooManyCodes {
                retry_after_seconds: u64::try_from(wait.as_millis().div_ceil(1000))
                    .unwrap_or(u64::MAX)
                    .max(1),
            });
        }
        let ttl = self.settings.code_ttl();
        let challenge_id = uuid::Uuid::new_v4().to_string();
        let employee =
            store::find_employee_for_login(&self.db, national_id.as_str(), mobile.as_str()).await?;
        if let Some(employee) = employee {
            let code = self.signer.login_code_key().code(&challenge_id);
            let challenge = Challenge::new(employee.id, &code, now);
            let value = serde_json::to_string(&challenge).map_err(anyhow::Error::from)?;
            store
                .set(&challenge_key(&challenge_id), &value, ttl)
                .await?;
            let sms =
                SmsMessage::login_code(mobile.as_str(), &challenge_id, ttl.as_secs().div_ceil(60));
            let dedup_key = format!("login:{challenge_id}");
            let enqueued = self
                .outbox
                .enqueue_alone(&self.db, store::sms_messages(vec![(dedup_key, sms)])?)
                .await?;
            // Delivered before the answer: a local client reads the dev inbox next.
            self.outbox.deliver_now(&enqueued).await;
            tracing::info!(mobile = %mobile.masked(), "login code queued");
            tavana_kit::metrics::record_login_code(None);
        } else {
            tracing::info!(mobile = %mobile.masked(), "login requested without a match");
            tavana_kit::metrics::record_login_code(Some("no_match"));
        }
        Ok(LoginStarted {
            challenge_id,
            expires_in_seconds: ttl.as_secs(),
        })
    }

    /// Answers a login challenge (R3): wrong, unknown and expired codes all get
    /// `invalid_code`; the last allowed wrong try burns the challenge; of two right
    /// answers at once only the one that takes the challenge logs in. R4: the first login
    /// creates the account and sends the welcome SMS.
    #[tracing::instrument(skip_all)]
    pub async fn verify_login(&self, challenge_id: &str, code: &str) -> Result<Tokens> {
        let challenge_id = challenge_id.trim();
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
        if challenge.is_expired(self.security_now(), ttl) {
            store.delete(&key).await?;
            store.delete(&tries).await?;
            return Err(IdentityError::InvalidCode);
        }
        let max_attempts = u64::from(self.settings.login.max_attempts.max(1));
        let attempt = store.incr(&tries, ttl).await?;
        if attempt > max_attempts || !challenge.matches(&tavana_kit::ids::normalize_digits(code)) {
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
            self.security_now(),
            |employee| SmsMessage::welcome(&employee.mobile, &employee.full_name, &app_url),
        )
        .await?
        .ok_or(IdentityError::InvalidCode)?;
        self.outbox.deliver_now(&opened.welcome).await;
        self.tokens(&opened, refresh_token)
    }

    /// Rotates a refresh token; presenting an already rotated one revokes the session
    /// family and its access tokens.
    #[tracing::instrument(skip_all)]
    pub async fn refresh_session(&self, refresh_token: &str) -> Result<Tokens> {
        if refresh_token.trim().is_empty() {
            return Err(IdentityError::RefreshTokenInvalid);
        }
        let presented = hash_refresh_token(refresh_token);
        let (refresh_token, next) = self.new_refresh();
        match store::rotate_refresh_token(&self.db, &presented, &next, self.security_now()).await? {
            Rotation::Rotated(opened) => self.tokens(&opened, refresh_token),
            Rotation::Reused(session_id) => {
                self.revoke_access_of_sessions(&[session_id]).await;
                Err(IdentityError::RefreshTokenReused)
            }
            Rotation::Invalid => Err(IdentityError::RefreshTokenInvalid),
        }
    }

    /// Answers from the sessions table, the durable record of revocations: the gateway
    /// asks when its cache (Redis) has no answer, e.g. after a Redis restart, so a revoked
    /// session stays revoked (R5).
    #[tracing::instrument(skip_all)]
    pub async fn check_session(&self, caller: &Caller, session_id: &str) -> Result<bool> {
        allow(caller, matches!(caller, Caller::Service { .. }))?;
        let session_id = session_id.trim();
        Ok(!session_id.is_empty() && store::session_is_active(&self.db, session_id).await?)
    }

    /// Ends one of the caller's own sessions and its access tokens.
    #[tracing::instrument(skip_all)]
    pub async fn logout(&self, caller: &Caller, session_id: &str) -> Result<()> {
        let employee_id = require_user(caller)?;
        let session_id = session_id.trim();
        if session_id.is_empty() {
            return Err(IdentityError::Invalid(vec![fields::missing(
                "session_id",
                "The session id is required.",
                "شناسهٔ نشست لازم است.",
            )]));
        }
        if !store::revoke_session(&self.db, session_id, employee_id, self.security_now()).await? {
            return Err(IdentityError::SessionNotFound);
        }
        self.revoke_access_of_sessions(&[session_id.to_owned()])
            .await;
        Ok(())
    }

    /// Returns every public key whose access tokens are still accepted.
    pub fn signing_keys(&self) -> &[PublicKey] {
        self.signer.public_keys()
    }

    /// Returns the signed-in employee's record, with their account.
    #[tracing::instrument(skip_all)]
    pub async fn get_me(&self, caller: &Caller) -> Result<EmployeeView> {
        let employee_id = require_user(caller)?;
        let employee = store::find_employee(&self.db, employee_id)
            .await?
            .ok_or(IdentityError::EmployeeNotFound)?;
        let mut view = store::employee_view(&self.db, employee).await?;
        view.has_account = true;
        Ok(view)
    }

    /// Returns an employee (R6): to services, support, the employee themself and staff of
    /// the employee's region; anyone else gets the same answer as for an unknown employee.
    #[tracing::instrument(skip_all)]
    pub async fn get_employee(
        &self,
        caller: &Caller,
        key: Option<EmployeeKey>,
    ) -> Result<EmployeeView> {
        require_known(caller)?;
        let employee = match key {
            Some(EmployeeKey::EmployeeId(id)) => store::find_employee(&self.db, id.trim()).await?,
            Some(EmployeeKey::NationalId(text)) => {
                let national_id = fields::national_id("national_id", &text)
                    .map_err(|violation| IdentityError::Invalid(vec![violation]))?;
                store::find_employee_by_national_id(&self.db, national_id.as_str()).await?
            }
            None => {
                return Err(IdentityError::Invalid(vec![fields::missing(
                    "key",
                    "Give an employee id or a national ID.",
                    "شناسهٔ کارمند یا کد ملی را بدهید.",
                )]));
            }
        };
        let employee = employee
            .filter(|employee| {
                access::may_read_employee(caller, &employee.id, &employee.region_code)
            })
            .ok_or(IdentityError::EmployeeNotFound)?;
        Ok(store::employee_view(&self.db, employee).await?)
    }

    /// Creates or updates one employee's HR data (R1, R6); see [`upsert_employee`].
    #[tracing::instrument(skip_all)]
    pub async fn upsert_employee(
        &self,
        caller: &Caller,
        raw: &RawEmployee,
    ) -> Result<(EmployeeView, bool)> {
        let (employee, created) = upsert_employee(&self.db, caller, raw, self.now()).await?;
        Ok((store::employee_view(&self.db, employee).await?, created))
    }

    /// Imports an HR CSV (R1, R6); see [`import_employees`].
    #[tracing::instrument(skip_all, fields(bytes = csv.len()))]
    pub async fn import_employees(&self, caller: &Caller, csv: &[u8]) -> Result<ImportReport> {
        import_employees(&self.db, caller, csv, self.now()).await
    }

    /// Changes an employee's mobile (R5): support only; records the welfare unit and
    /// reference, revokes every session and texts the new number.
    #[tracing::instrument(skip_all)]
    pub async fn change_mobile(
        &self,
        caller: &Caller,
        input: &MobileChangeInput,
    ) -> Result<EmployeeView> {
        allow(caller, access::may_change_mobile(caller))?;
        let national_id = fields::national_id("national_id", &input.national_id);
        let mobile = fields::mobile("new_mobile", &input.new_mobile);
        let unit = fields::required_text("requested_by_unit", &input.requested_by_unit);
        let reference = fields::required_text("reference", &input.reference);
        let (national_id, mobile, unit, reference) = match (national_id, mobile, unit, reference) {
            (Ok(a), Ok(b), Ok(c), Ok(d)) => (a, b, c, d),
            (a, b, c, d) => return Err(invalid([a.err(), b.err(), c.err(), d.err()])),
        };
        let change = store::MobileChangeRequest {
            national_id: national_id.as_str().to_owned(),
            new_mobile: mobile.as_str().to_owned(),
            requested_by_unit: unit,
            reference,
            actor: caller.employee_id().unwrap_or_default().to_owned(),
        };
        let audit = AuditEntry::new(
            caller,
            AUDIT_MOBILE_CHANGE,
            change.national_id.as_str(),
            json!({
                "requested_by_unit": change.requested_by_unit,
                "reference": change.reference,
            }),
        );
        let (employee, sms, revoked_sessions) =
            store::change_mobile(&self.db, &change, self.now(), &audit).await?;
        self.revoke_access_of_sessions(&revoked_sessions).await;
        self.outbox.deliver_now(&sms).await;
        Ok(store::employee_view(&self.db, employee).await?)
    }

    /// Creates an organization, or renames it and sets its contract flag.
    #[tracing::instrument(skip_all)]
    pub async fn add_organization(
        &self,
        caller: &Caller,
        organization_id: &str,
        name: &str,
        contract_in_force: bool,
    ) -> Result<organization::Model> {
        allow(caller, access::may_manage_organizations(caller))?;
        let mut violations = Vec::new();
        let id = OrganizationId::parse(organization_id)
            .map_err(|error| violations.push(error.violation("organization_id")))
            .ok();
        let name = fields::required_text("name", name)
            .map_err(|v| violations.push(v))
            .ok();
        let (Some(id), Some(name)) = (id, name.filter(|_| violations.is_empty())) else {
            return Err(IdentityError::Invalid(violations));
        };
        Ok(
            store::upsert_organization(&self.db, id.as_str(), &name, contract_in_force, self.now())
                .await?,
        )
    }

    /// Returns an organization to any known caller.
    #[tracing::instrument(skip_all)]
    pub async fn get_organization(
        &self,
        caller: &Caller,
        organization_id: &str,
    ) -> Result<organization::Model> {
        require_known(caller)?;
        let Ok(id) = OrganizationId::parse(organization_id) else {
            return Err(IdentityError::OrganizationNotFound);
        };
        store::find_organization(&self.db, id.as_str())
            .await?
            .ok_or(IdentityError::OrganizationNotFound)
    }

    /// Sets an organization's contract in or out of force, audited in the same
    /// transaction (R32).
    #[tracing::instrument(skip_all)]
    pub async fn set_organization_contract(
        &self,
        caller: &Caller,
        organization_id: &str,
        in_force: bool,
    ) -> Result<organization::Model> {
        allow(caller, access::may_manage_organizations(caller))?;
        let Ok(id) = OrganizationId::parse(organization_id) else {
            return Err(IdentityError::OrganizationNotFound);
        };
        let organization_id = id.as_str();
        let txn = tavana_kit::db::begin_write(&self.db).await?;
        let organization =
            store::set_organization_contract(&*txn, organization_id, in_force, self.now())
                .await?
                .ok_or(IdentityError::OrganizationNotFound)?;
        let audit = AuditEntry::new(
            caller,
            AUDIT_ORGANIZATION_CONTRACT,
            organization_id,
            json!({ "in_force": in_force }),
        );
        record_in(&*txn, &audit).await?;
        txn.commit().await?;
        Ok(organization)
    }

    /// Grants a staff role (R6), audited in the same transaction (R32); nobody grants a
    /// role of their own.
    #[tracing::instrument(skip_all)]
    pub async fn grant_role(
        &self,
        caller: &Caller,
        national_id: &str,
        role: Option<Role>,
        region_code: Option<&str>,
    ) -> Result<Vec<RoleGrant>> {
        let (national_id, role) = role_change(caller, national_id, role)?;
        record_grant(
            &self.db,
            caller,
            &national_id,
            role,
            region_code,
            self.now(),
        )
        .await
    }

    /// Revokes a staff role (R6), audited in the same transaction (R32); nobody revokes a
    /// role of their own. Tokens carry roles: the holder's sessions end, and they sign in
    /// again with the roles left.
    #[tracing::instrument(skip_all)]
    pub async fn revoke_role(
        &self,
        caller: &Caller,
        national_id: &str,
        role: Option<Role>,
        region_code: Option<&str>,
    ) -> Result<Vec<RoleGrant>> {
        let (national_id, role) = role_change(caller, national_id, role)?;
        let region = access::revoke_region(region_code).map_err(IdentityError::Invalid)?;
        let txn = tavana_kit::db::begin_write(&self.db).await?;
        let grants =
            store::revoke_role(&*txn, national_id.as_str(), role, region.as_deref()).await?;
        let audit = AuditEntry::new(
            caller,
            AUDIT_ROLE_REVOKE,
            national_id.as_str(),
            json!({ "role": role.as_str(), "region_code": region_code }),
        );
        record_in(&*txn, &audit).await?;
        txn.commit().await?;
        if let Some(employee) =
            store::find_employee_by_national_id(&self.db, national_id.as_str()).await?
        {
            let revoked = store::revoke_sessions_of(
                &self.db,
                &employee.id,
                "role_revoked",
                self.security_now(),
            )
            .await?;
            self.revoke_access_of_sessions(&revoked).await;
        }
        Ok(grants)
    }

    /// Queues SMS other services ask for (R28), each checked as `NotifyEmployee` checks
    /// one; the same dedup key queues an SMS only once. The notifications are
    /// independent: the valid ones for known employees are queued even when others are
    /// refused, and then the call fails with `EmployeeNotFound` (worth a retry) before
    /// `Invalid` (never worth one). The employees are read and the SMS written a few
    /// statements at a time, whatever their number.
    #[tracing::instrument(skip_all, fields(notifications = notifications.len()))]
    pub async fn notify_employees(
        &self,
        caller: &Caller,
        notifications: Vec<Notification>,
        shape: NotificationShape,
    ) -> Result<()> {
        allow(caller, caller.is_service())?;
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
            let sms = SmsMessage::notification(
                mobile,
                *template,
                &notification.params,
                self.settings.app_download_url(),
            );
            queued.push((dedup_key, sms));
        }
        let queued_count = queued.len();
        let enqueued = self
            .outbox
            .enqueue_alone(&self.db, store::sms_messages(queued)?)
            .await?;
        self.outbox.deliver_now(&enqueued).await;

        if unknown > 0 {
            tracing::warn!(
                unknown,
                queued = queued_count,
                "notifications for unknown employees"
            );
            return Err(IdentityError::EmployeeNotFound);
        }
        if !violations.is_empty() {
            return Err(IdentityError::Invalid(violations));
        }
        Ok(())
    }

    /// Returns what the dev provider kept for a mobile, newest first; only with the dev
    /// provider.
    #[tracing::instrument(skip_all)]
    pub async fn list_dev_sms(&self, mobile: &str) -> Result<Vec<dev_sms::Model>> {
        if self.settings.sms_provider() != SmsProviderKind::Dev {
            return Err(IdentityError::DevSmsUnavailable);
        }
        let mobile = fields::mobile("mobile", mobile)
            .map_err(|violation| IdentityError::Invalid(vec![violation]))?;
        Ok(store::list_dev_sms(&self.db, mobile.as_str()).await?)
    }
}
