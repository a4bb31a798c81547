//! Gateway routes of the identity service: login by SMS code, tokens, the signed-in
//! employee, HR data, mobile changes, organization contracts, staff roles and the dev SMS
//! inbox (API.md, R1-R6, R28).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tavana_kit::caller::{Role, RoleGrant, role_from_pb, role_to_pb};
use tavana_kit::error::{ErrorKind, Problem, Violation};
use tavana_proto::identity::v1 as pb;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::{Public, User};
use crate::error::ApiError;
use crate::extract::ApiJson;

/// Returns the routes of the identity service.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(request_login_code))
        .routes(routes!(exchange_code))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(get_me))
        .routes(routes!(put_employee))
        .routes(routes!(import_employees))
        .routes(routes!(change_mobile))
        .routes(routes!(set_contract))
        .routes(routes!(grant_role, revoke_role))
        .routes(routes!(dev_sms))
}

/// National ID and mobile of someone logging in (R3).
#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginCodeBody {
    /// Ten digits (8 or 9 are left-padded); Persian digits accepted.
    #[schema(pattern = r"^[0-9]{8,10}$")]
    pub national_id: String,
    /// `09…`, `+989…`, `00989…`; Persian digits accepted.
    #[schema(pattern = r"^(\+98|0098|98|0)?9[0-9]{9}$")]
    pub mobile: String,
}

/// A login challenge: the same answer whether or not the pair matched (R3).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LoginChallenge {
    /// The challenge's id (a UUID), to send with the code to `POST /v1/auth/token`.
    pub challenge_id: String,
    /// Seconds the code is valid (120).
    pub expires_in: i64,
}

/// A challenge and the code the SMS carried.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenBody {
    /// The `challenge_id` that `POST /v1/auth/login-code` answered.
    #[schema(pattern = r"\S")]
    pub challenge_id: String,
    /// Six digits.
    #[schema(pattern = r"^[0-9]{6}$")]
    pub code: String,
}

/// A refresh token to exchange.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshBody {
    /// The latest `refresh_token` of the session; one already used revokes the session.
    pub refresh_token: String,
}

/// A session's tokens.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenPairView {
    /// A JWT valid for `expires_in` seconds.
    pub access_token: String,
    /// Opaque; rotated on every use, a reused one revokes the session.
    pub refresh_token: String,
    /// Seconds the access token is valid (900, 15 minutes on the real clock).
    pub expires_in: i64,
    /// `employee`, and staff roles as `role` or `role@REGION`.
    pub roles: Vec<String>,
}

/// An employee's profile (R1).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EmployeeView {
    /// The employee's id in Tavana, as in the parties of a credit request.
    pub employee_id: String,
    /// The 10-digit national ID (R2).
    pub national_id: String,
    /// The full name, as HR recorded it (R1).
    pub full_name: String,
    /// The mobile in its canonical form `09xxxxxxxxx` (R2); once the employee has an
    /// account, only support changes it (R5).
    pub mobile: String,
    /// The employer organization's id, e.g. `ORG-01`.
    pub organization_id: String,
    /// The region (district) code, e.g. `TEH-19`, whose staff serve the employee (R6).
    pub region_code: String,
    /// Net salary in rial.
    pub net_salary: i64,
    /// Gregorian `YYYY-MM-DD`.
    pub service_start_date: String,
    /// `employee`, and staff roles as `role` or `role@REGION`.
    pub roles: Vec<String>,
    /// Whether the employee has logged in at least once (R4).
    pub has_account: bool,
}

/// HR data written by a region's admin (R1).
#[derive(Debug, Deserialize, ToSchema)]
pub struct EmployeeBody {
    /// The employee's full name.
    #[schema(pattern = r"\S")]
    pub full_name: String,
    /// Changes only while the employee has no account (R5).
    #[schema(pattern = r"^(\+98|0098|98|0)?9[0-9]{9}$")]
    pub mobile: String,
    /// The employer organization's id, e.g. `ORG-01` (any case); it must exist
    /// (`organization_unknown`).
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,64}$")]
    pub organization_id: String,
    /// The employee's region code, e.g. `TEH-19` (any case); a `region_admin` writes only
    /// their own region (R1, R6).
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,64}$")]
    pub region_code: String,
    /// Net salary in rial, above zero.
    #[schema(minimum = 1)]
    pub net_salary: i64,
    /// Gregorian `YYYY-MM-DD`, from 1900 (an earlier year is a Jalali date by mistake).
    #[schema(format = Date, pattern = r"^(19|[2-9][0-9])[0-9]{2}-")]
    pub service_start_date: String,
}

/// The written employee.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UpsertedEmployee {
    /// The employee as written, its fields inline.
    #[serde(flatten)]
    pub employee: EmployeeView,
    /// True when the employee was new.
    pub created: bool,
}

/// One CSV line that was not imported.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RejectedLineView {
    /// The line's number in the file; the header is line 1.
    pub line: u32,
    /// Why, as a stable snake_case code, e.g. `national_id_invalid`.
    pub code: String,
    /// Why, in English.
    pub message_en: String,
    /// Why, in Persian.
    pub message_fa: String,
}

/// The outcome of an HR import.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImportReportView {
    /// Employees the file added.
    pub created: u32,
    /// Existing employees the file updated.
    pub updated: u32,
    /// The lines not imported, each with why; empty when every line was.
    pub rejected: Vec<RejectedLineView>,
}

/// A mobile change asked by a welfare unit (R5).
#[derive(Debug, Deserialize, ToSchema)]
pub struct MobileChangeBody {
    /// The employee's national ID (8 or 9 digits are left-padded, R2).
    #[schema(pattern = r"^[0-9]{8,10}$")]
    pub national_id: String,
    /// The new mobile: `09…`, `+989…`, `00989…`; Persian digits accepted.
    #[schema(pattern = r"^(\+98|0098|98|0)?9[0-9]{9}$")]
    pub new_mobile: String,
    /// The welfare unit that asked.
    #[schema(pattern = r"\S")]
    pub requested_by_unit: String,
    /// The unit's letter or ticket reference.
    #[schema(pattern = r"\S")]
    pub reference: String,
}

/// Whether an organization's contract is in force (S22).
#[derive(Debug, Deserialize, ToSchema)]
pub struct ContractBody {
    /// True puts the contract in force. While it is not, its employees cannot buy (R14)
    /// and fully settled instalment purchases keep their room held (R18).
    pub in_force: bool,
}

/// An organization.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OrganizationView {
    /// The organization's id, e.g. `ORG-01`.
    pub organization_id: String,
    /// The organization's name.
    pub name: String,
    /// Whether its contract with Tavana is now in force (S22).
    pub contract_in_force: bool,
}

/// A staff role to grant or revoke (R6).
#[derive(Debug, Deserialize, ToSchema)]
pub struct RoleBody {
    /// The national ID of the employee who gets or loses the role; never the caller's
    /// own (R32).
    #[schema(pattern = r"^[0-9]{8,10}$")]
    pub national_id: String,
    /// `region_admin`, `region_finance`, `region_welfare_manager`, `support`, `contracts`.
    #[schema(value_type = crate::schema::GrantableRole)]
    pub role: String,
    /// Required for the regional roles, absent for the national ones.
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,64}$")]
    pub region_code: Option<String>,
}

/// An employee's staff roles after a grant or revoke.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RolesView {
    /// The national ID as the request gave it.
    pub national_id: String,
    /// Every role the employee now holds, as `role` or `role@REGION`.
    pub roles: Vec<String>,
}

/// A message the dev SMS provider kept.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DevSmsView {
    /// The message's Persian text, as sent.
    pub text: String,
    /// Which message it is (R28), e.g. `login_code`, `welcome`, `request_status`,
    /// `purchase_receipt`, `overdue`.
    pub template: String,
    /// The six-digit login code; only on `login_code` messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// When the dev provider sent it (RFC 3339, UTC).
    pub sent_at: Option<DateTime<Utc>>,
}

/// Messages sent to one mobile, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DevSmsList {
    /// The messages, newest first.
    pub items: Vec<DevSmsView>,
}

fn role_names(grants: &[pb::RoleGrant]) -> Vec<String> {
    grants
        .iter()
        .filter_map(|grant| {
            Some(
                RoleGrant {
                    role: role_from_pb(grant.role)?,
                    region: grant.region_code.clone(),
                }
                .to_string(),
            )
        })
        .collect()
}

fn token_view(tokens: Option<pb::TokenPair>) -> Result<Json<TokenPairView>, ApiError> {
    let tokens = tokens.ok_or_else(|| ApiError::internal("identity answered without tokens"))?;
    Ok(Json(TokenPairView {
        roles: role_names(&tokens.roles),
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
        expires_in: tokens.expires_in,
    }))
}

fn employee_view(employee: Option<pb::Employee>) -> Result<EmployeeView, ApiError> {
    let employee =
        employee.ok_or_else(|| ApiError::internal("identity answered without an employee"))?;
    Ok(EmployeeView {
        roles: role_names(&employee.roles),
        employee_id: employee.employee_id,
        national_id: employee.national_id,
        full_name: employee.full_name,
        mobile: employee.mobile,
        organization_id: employee.organization_id,
        region_code: employee.region_code,
        net_salary: employee.net_salary,
        service_start_date: employee.service_start_date,
        has_account: employee.has_account,
    })
}

/// Sends a login code by SMS when national ID and mobile match; answers the same either
/// way (R3). At most 1 code a minute and 5 an hour per mobile (429 with `Retry-After`).
#[utoipa::path(post, path = "/v1/auth/login-code", tag = "auth",
    request_body = LoginCodeBody,
    responses(
        (status = 202, body = LoginChallenge),
        (status = 400, description = "national_id_invalid, mobile_invalid"),
        (status = 429, description = "too_many_codes, with Retry-After"),
    ))]
#[tracing::instrument(skip_all)]
async fn request_login_code(
    State(state): State<AppState>,
    caller: Public,
    ApiJson(body): ApiJson<LoginCodeBody>,
) -> Result<(StatusCode, Json<LoginChallenge>), ApiError> {
    let response = state
        .identity
        .clone()
        .start_login(caller.request(pb::StartLoginRequest {
            national_id: body.national_id,
            mobile: body.mobile,
        }))
        .await?
        .into_inner();
    Ok((
        StatusCode::ACCEPTED,
        Json(LoginChallenge {
            challenge_id: response.challenge_id,
            expires_in: response.expires_in,
        }),
    ))
}

/// Exchanges a challenge and its code for tokens; the first login creates the account
/// (R4). Wrong, unknown and expired codes all answer 401 `invalid_code` (R3).
#[utoipa::path(post, path = "/v1/auth/token", tag = "auth",
    request_body = TokenBody,
    responses((status = 200, body = TokenPairView), (status = 401, description = "invalid_code")))]
#[tracing::instrument(skip_all)]
async fn exchange_code(
    State(state): State<AppState>,
    caller: Public,
    ApiJson(body): ApiJson<TokenBody>,
) -> Result<Json<TokenPairView>, ApiError> {
    let response = state
        .identity
        .clone()
        .verify_login(caller.request(pb::VerifyLoginRequest {
            challenge_id: body.challenge_id,
            code: body.code,
        }))
        .await?
        .into_inner();
    token_view(response.tokens)
}

/// Rotates a refresh token; a reused one revokes the whole session (401
/// `refresh_token_reused`).
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth",
    request_body = RefreshBody,
    responses((status = 200, body = TokenPairView), (status = 401, description = "refresh_token_invalid, refresh_token_reused")))]
#[tracing::instrument(skip_all)]
async fn refresh(
    State(state): State<AppState>,
    caller: Public,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Result<Json<TokenPairView>, ApiError> {
    let response = state
        .identity
        .clone()
        .refresh_session(caller.request(pb::RefreshSessionRequest {
            refresh_token: body.refresh_token,
        }))
        .await?
        .into_inner();
    token_view(response.tokens)
}

/// Ends the session of the access token.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth",
    responses((status = 204), (status = 401)), security(("bearer" = [])))]
#[tracing::instrument(skip_all)]
async fn logout(State(state): State<AppState>, user: User) -> Result<StatusCode, ApiError> {
    let session_id = user.session_id.clone();
    state
        .identity
        .clone()
        .logout(user.request(pb::LogoutRequest { session_id }))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Returns the signed-in employee's profile and roles.
#[utoipa::path(get, path = "/v1/me", tag = "employee",
    responses((status = 200, body = EmployeeView), (status = 401)), security(("bearer" = [])))]
#[tracing::instrument(skip_all)]
async fn get_me(State(state): State<AppState>, user: User) -> Result<Json<EmployeeView>, ApiError> {
    let response = state
        .identity
        .clone()
        .get_me(user.request(pb::GetMeRequest {}))
        .await?
        .into_inner();
    Ok(Json(employee_view(response.employee)?))
}

/// Creates or updates an employee's HR data (R1): `region_admin` of that region (old and
/// new), or support. The mobile changes here only while the employee has no account (R5).
#[utoipa::path(put, path = "/v1/employees/{national_id}", tag = "staff",
    params(("national_id" = String, Path, pattern = r"^[0-9]{8,10}$", description = "the employee's national ID")),
    request_body = EmployeeBody,
    responses(
        (status = 200, body = UpsertedEmployee),
        (status = 400), (status = 401), (status = 403),
        (status = 422, description = "organization_unknown, mobile_change_requires_support"),
    ), security(("bearer" = [])))]
#[tracing::instrument(skip_all)]
async fn put_employee(
    State(state): State<AppState>,
    user: User,
    Path(national_id): Path<String>,
    ApiJson(body): ApiJson<EmployeeBody>,
) -> Result<Json<UpsertedEmployee>, ApiError> {
    let response = state
        .identity
        .clone()
        .upsert_employee(user.request(pb::UpsertEmployeeRequest {
            data: Some(pb::EmployeeData {
                national_id,
                full_name: body.full_name,
                mobile: body.mobile,
                organization_id: body.organization_id,
                region_code: body.region_code,
                net_salary: body.net_salary,
                service_start_date: body.service_start_date,
            }),
        }))
        .await?
        .into_inner();
    Ok(Json(UpsertedEmployee {
        employee: employee_view(response.employee)?,
        created: response.created,
    }))
}

/// Imports an HR CSV (`text/csv`, header
/// `national_id,full_name,mobile,organization_id,region_code,net_salary,service_start_date`);
/// a bad line rejects only itself (R1).
#[utoipa::path(post, path = "/v1/employees/import", tag = "staff",
    request_body(content = String, content_type = "text/csv"),
    responses((status = 200, body = ImportReportView), (status = 400, description = "csv_header_invalid"), (status = 401), (status = 403)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(bytes = body.len()))]
async fn import_employees(
    State(state): State<AppState>,
    user: User,
    body: Bytes,
) -> Result<Json<ImportReportView>, ApiError> {
    let response = state
        .identity
        .clone()
        .import_employees(user.request(pb::ImportEmployeesRequest { csv: body.to_vec() }))
        .await?
        .into_inner();
    Ok(Json(ImportReportView {
        created: response.created,
        updated: response.updated,
        rejected: response
            .rejected
            .into_iter()
            .map(|line| RejectedLineView {
                line: line.line,
                code: line.code,
                message_en: line.message_en,
                message_fa: line.message_fa,
            })
            .collect(),
    }))
}

/// Changes an employee's mobile at a welfare unit's request (R5, support only); every
/// session of the employee is revoked.
#[utoipa::path(post, path = "/v1/support/mobile-changes", tag = "staff",
    request_body = MobileChangeBody,
    responses((status = 200, body = EmployeeView), (status = 400), (status = 401), (status = 403), (status = 404)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all)]
async fn change_mobile(
    State(state): State<AppState>,
    user: User,
    ApiJson(body): ApiJson<MobileChangeBody>,
) -> Result<Json<EmployeeView>, ApiError> {
    let response = state
        .identity
        .clone()
        .change_mobile(user.request(pb::ChangeMobileRequest {
            national_id: body.national_id,
            new_mobile: body.new_mobile,
            requested_by_unit: body.requested_by_unit,
            reference: body.reference,
        }))
        .await?
        .into_inner();
    Ok(Json(employee_view(response.employee)?))
}

/// Sets whether an organization's contract is in force (contracts).
#[utoipa::path(put, path = "/v1/organizations/{id}/contract", tag = "staff",
    params(("id" = String, Path, description = "the organization id")),
    request_body = ContractBody,
    responses((status = 200, body = OrganizationView), (status = 401), (status = 403), (status = 404)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all)]
async fn set_contract(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ContractBody>,
) -> Result<Json<OrganizationView>, ApiError> {
    let organization = state
        .identity
        .clone()
        .set_organization_contract(user.request(pb::SetOrganizationContractRequest {
            organization_id: id,
            in_force: body.in_force,
        }))
        .await?
        .into_inner()
        .organization
        .ok_or_else(|| ApiError::internal("identity answered without an organization"))?;
    Ok(Json(OrganizationView {
        organization_id: organization.organization_id,
        name: organization.name,
        contract_in_force: organization.contract_in_force,
    }))
}

fn parse_role(name: &str) -> Result<pb::Role, ApiError> {
    Role::parse(name.trim()).map(role_to_pb).ok_or_else(|| {
        ApiError(Problem::invalid([Violation::new(
            "role",
            "role_invalid",
            "The role is unknown.",
            "نقش ناشناخته است.",
        )]))
    })
}

fn region(region_code: Option<String>) -> Option<String> {
    region_code.filter(|region| !region.trim().is_empty())
}

/// Grants a staff role (support).
#[utoipa::path(post, path = "/v1/admin/roles", tag = "staff",
    request_body = RoleBody,
    responses((status = 200, body = RolesView), (status = 400), (status = 401), (status = 403), (status = 404)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all)]
async fn grant_role(
    State(state): State<AppState>,
    user: User,
    ApiJson(body): ApiJson<RoleBody>,
) -> Result<Json<RolesView>, ApiError> {
    let role = parse_role(&body.role)?;
    let response = state
        .identity
        .clone()
        .grant_role(user.request(pb::GrantRoleRequest {
            national_id: body.national_id.clone(),
            role: role as i32,
            region_code: region(body.region_code),
        }))
        .await?
        .into_inner();
    Ok(Json(RolesView {
        national_id: body.national_id,
        roles: role_names(&response.roles),
    }))
}

/// Revokes a staff role (support).
#[utoipa::path(delete, path = "/v1/admin/roles", tag = "staff",
    request_body = RoleBody,
    responses((status = 200, body = RolesView), (status = 400), (status = 401), (status = 403), (status = 404)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all)]
async fn revoke_role(
    State(state): State<AppState>,
    user: User,
    ApiJson(body): ApiJson<RoleBody>,
) -> Result<Json<RolesView>, ApiError> {
    let role = parse_role(&body.role)?;
    let response = state
        .identity
        .clone()
        .revoke_role(user.request(pb::RevokeRoleRequest {
            national_id: body.national_id.clone(),
            role: role as i32,
            region_code: region(body.region_code),
        }))
        .await?
        .into_inner();
    Ok(Json(RolesView {
        national_id: body.national_id,
        roles: role_names(&response.roles),
    }))
}

/// Lists the messages the dev SMS provider kept for a mobile, newest first; only under
/// `--dev` and with the dev provider (404 otherwise).
#[utoipa::path(get, path = "/v1/dev/sms/{mobile}", tag = "dev",
    params(("mobile" = String, Path, pattern = r"^(\+98|0098|98|0)?9[0-9]{9}$", description = "the mobile, in any accepted form")),
    responses((status = 200, body = DevSmsList), (status = 404, description = "not in dev mode")))]
#[tracing::instrument(skip_all)]
async fn dev_sms(
    State(state): State<AppState>,
    caller: Public,
    Path(mobile): Path<String>,
) -> Result<Json<DevSmsList>, ApiError> {
    if !state.settings.dev {
        return Err(ApiError::not_found());
    }
    let response = state
        .identity
        .clone()
        .list_dev_sms(caller.request(pb::ListDevSmsRequest { mobile }))
        .await
        .map_err(|status| {
            let error = ApiError::from(status);
            if error.0.kind == ErrorKind::NotFound {
                ApiError::not_found()
            } else {
                error
            }
        })?
        .into_inner();
    Ok(Json(DevSmsList {
        items: response
            .items
            .into_iter()
            .map(|sms| DevSmsView {
                text: sms.text,
                template: sms.template,
                code: sms.code,
                sent_at: tavana_proto::datetime(sms.sent_at),
            })
            .collect(),
    }))
}
