//! The portal's pages, one module per audience.

mod arrears;
mod auth;
mod employee;
mod merchants;
mod staff;
mod support;

use axum::Router;
use axum::routing::{get, post};
use serde::Deserialize;

use crate::Portal;
use crate::format::ascii_digits;

/// Returns every page route.
pub fn routes() -> Router<Portal> {
    Router::new()
        .route("/portal", get(employee::home))
        .route("/portal/", get(employee::home))
        .route("/portal/login", get(auth::login_form).post(auth::ask_code))
        .route(
            "/portal/login/code",
            get(auth::code_form).post(auth::sign_in),
        )
        .route("/portal/logout", post(auth::sign_out))
        .route("/portal/profile", get(employee::profile))
        .route(
            "/portal/requests",
            get(employee::requests).post(employee::file_request),
        )
        .route("/portal/requests/{id}", get(employee::request_detail))
        .route(
            "/portal/requests/{id}/cancel",
            post(employee::cancel_request),
        )
        .route("/portal/balance", get(employee::balance))
        .route("/portal/balance/close", post(employee::close_facility))
        .route("/portal/instalments", get(employee::instalments))
        .route("/portal/apps", get(employee::apps))
        .route("/portal/guarantees", get(staff::guarantees))
        .route(
            "/portal/guarantees/{id}/decision",
            post(staff::guarantor_decision),
        )
        .route("/portal/finance", get(staff::finance))
        .route(
            "/portal/finance/{id}/decision",
            post(staff::finance_decision),
        )
        .route(
            "/portal/proposals",
            get(staff::proposals).post(staff::propose),
        )
        .route("/portal/contracts", get(staff::contracts))
        .route(
            "/portal/contracts/{id}/decision",
            post(staff::proposal_decision),
        )
        .route(
            "/portal/contracts/merchants/{id}/suspend",
            post(staff::suspend_merchant),
        )
        .route("/portal/support", get(support::support))
        .route("/portal/support/mobile", post(support::change_mobile))
        .route(
            "/portal/support/remittances",
            post(support::record_remittance),
        )
        .route("/portal/support/deductions", get(support::deductions))
        .route("/portal/support/periods/close", post(arrears::close_period))
        .route("/portal/support/unmatched", get(arrears::unmatched))
        .route(
            "/portal/support/unmatched/{id}/resolve",
            post(arrears::resolve),
        )
        .route("/portal/overdue", get(arrears::overdue))
        .route("/portal/support/audit", get(support::audit))
        .route("/portal/merchants", get(merchants::directory))
}

/// A form that carries only its CSRF token.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CsrfForm {
    /// The synchronizer token.
    pub csrf: String,
}

/// An approve-or-reject form.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DecisionForm {
    /// The synchronizer token.
    pub csrf: String,
    /// `approve` or `reject`: the button pressed.
    pub decision: String,
    /// Why (required by the API for some rejections).
    pub reason: String,
}

impl DecisionForm {
    /// The API's body: `{approve, reason?}`.
    pub fn body(&self) -> serde_json::Value {
        let reason = self.reason.trim();
        serde_json::json!({
            "approve": self.decision == "approve",
            "reason": (!reason.is_empty()).then_some(reason),
        })
    }
}

/// Percent-encodes one path segment.
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Reads a whole number typed with Latin, Persian or Arabic digits and
/// optional thousands separators.
pub fn parse_number(text: &str) -> Option<i64> {
    let cleaned: String = ascii_digits(text)
        .chars()
        .filter(|character| !matches!(character, ',' | '\u{066C}' | ' ' | '_'))
        .collect();
    cleaned.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_read_in_any_digits_with_separators() {
        assert_eq!(parse_number("۱٬۲۵۰٬۰۰۰"), Some(1_250_000));
        assert_eq!(parse_number("1,250,000"), Some(1_250_000));
        assert_eq!(parse_number("12a"), None);
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(segment("ORG-01"), "ORG-01");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }
}
