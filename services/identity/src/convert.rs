//! Conversions between identity's proto messages and its domain and store types.

use tavana_kit::caller::{RoleGrant, role_to_pb};
use tavana_proto::identity::v1 as pb;
use tavana_proto::timestamp;

use crate::domain::employee::{ImportReport, RawEmployee};
use crate::domain::sms::{Notification, SmsTemplate};
use crate::domain::tokens::{ACCESS_TOKEN_SECONDS, ALGORITHM_NAME, PublicKey, account_grants};
use crate::service::{EmployeeKey, LoginStarted, MobileChangeInput, Tokens};
use crate::store::EmployeeView;
use crate::store::entities::{dev_sms, organization};

/// Converts role grants.
pub fn grants_to_pb(grants: &[RoleGrant]) -> Vec<pb::RoleGrant> {
    grants
        .iter()
        .map(|grant| pb::RoleGrant {
            role: role_to_pb(grant.role) as i32,
            region_code: grant.region.clone(),
        })
        .collect()
}

/// Converts an employee with what is attached to them; an employee with an account
/// shows the implicit `employee` role too.
pub fn employee_to_pb(view: &EmployeeView) -> pb::Employee {
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

/// Converts an organization.
pub fn organization_to_pb(model: &organization::Model) -> pb::Organization {
    pb::Organization {
        organization_id: model.id.clone(),
        name: model.name.clone(),
        contract_in_force: model.contract_in_force,
    }
}

/// Converts a protobuf SMS template; `None` for unspecified or unknown values.
pub fn template_from_pb(value: i32) -> Option<SmsTemplate> {
    match pb::SmsTemplate::try_from(value).ok()? {
        pb::SmsTemplate::Unspecified => None,
        pb::SmsTemplate::LoginCode => Some(SmsTemplate::LoginCode),
        pb::SmsTemplate::Welcome => Some(SmsTemplate::Welcome),
        pb::SmsTemplate::RequestStatus => Some(SmsTemplate::RequestStatus),
        pb::SmsTemplate::GuaranteeRequested => Some(SmsTemplate::GuaranteeRequested),
        pb::SmsTemplate::PurchaseReceipt => Some(SmsTemplate::PurchaseReceipt),
        pb::SmsTemplate::Settlement => Some(SmsTemplate::Settlement),
        pb::SmsTemplate::MobileChanged => Some(SmsTemplate::MobileChanged),
        pb::SmsTemplate::Overdue => Some(SmsTemplate::Overdue),
        pb::SmsTemplate::OverdueGuarantor => Some(SmsTemplate::OverdueGuarantor),
    }
}

/// Converts a notification request into the unchecked domain notification (R28).
pub fn notification_from_pb(request: pb::NotifyEmployeeRequest) -> Notification {
    Notification {
        employee_id: request.employee_id,
        template: template_from_pb(request.template),
        dedup_key: request.dedup_key,
        params: request.params.into_iter().collect(),
    }
}

/// Converts HR data as sent into unparsed domain input.
pub fn raw_employee_from_pb(data: pb::EmployeeData) -> RawEmployee {
    RawEmployee {
        national_id: data.national_id,
        full_name: data.full_name,
        mobile: data.mobile,
        organization_id: data.organization_id,
        region_code: data.region_code,
        net_salary: data.net_salary.to_string(),
        service_start_date: data.service_start_date,
    }
}

/// Converts how a caller names an employee.
pub fn employee_key_from_pb(key: Option<pb::get_employee_request::Key>) -> Option<EmployeeKey> {
    match key? {
        pb::get_employee_request::Key::EmployeeId(id) => Some(EmployeeKey::EmployeeId(id)),
        pb::get_employee_request::Key::NationalId(text) => Some(EmployeeKey::NationalId(text)),
    }
}

/// Converts a mobile change request into unparsed domain input.
pub fn mobile_change_from_pb(request: pb::ChangeMobileRequest) -> MobileChangeInput {
    MobileChangeInput {
        national_id: request.national_id,
        new_mobile: request.new_mobile,
        requested_by_unit: request.requested_by_unit,
        reference: request.reference,
    }
}

/// Converts a started login. A TTL beyond `i64::MAX` seconds shows as `i64::MAX` (a
/// documented saturation; configuration never comes near it).
pub fn login_started_to_pb(started: LoginStarted) -> pb::StartLoginResponse {
    pb::StartLoginResponse {
        challenge_id: started.challenge_id,
        expires_in: i64::try_from(started.expires_in_seconds).unwrap_or(i64::MAX),
    }
}

/// Converts a session's tokens.
pub fn tokens_to_pb(tokens: Tokens) -> pb::TokenPair {
    pb::TokenPair {
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
        expires_in: ACCESS_TOKEN_SECONDS,
        roles: grants_to_pb(&tokens.grants),
    }
}

/// Converts the public keys of access tokens.
pub fn signing_keys_to_pb(keys: &[PublicKey]) -> pb::GetSigningKeysResponse {
    pb::GetSigningKeysResponse {
        keys: keys
            .iter()
            .map(|key| pb::SigningKey {
                kid: key.kid.clone(),
                algorithm: ALGORITHM_NAME.to_owned(),
                public_key_pem: key.pem.clone(),
            })
            .collect(),
    }
}

/// Converts an HR import's report.
pub fn import_report_to_pb(report: ImportReport) -> pb::ImportEmployeesResponse {
    pb::ImportEmployeesResponse {
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
    }
}

/// Converts an SMS the dev provider kept.
pub fn dev_sms_to_pb(sms: dev_sms::Model) -> pb::DevSms {
    pb::DevSms {
        text: sms.text,
        template: sms.template,
        code: sms.code,
        sent_at: Some(timestamp(sms.sent_at)),
    }
}
