//! The status flow of a credit request (R9).

use std::fmt;

/// The state of a credit request (R9):
/// `pending_guarantor` -> (`guarantor_rejected` | `pending_finance`) ->
/// (`finance_rejected` | `approved`); `cancelled` by the applicant while pending.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestStatus {
    /// Filed, waiting for the named guarantor (S2, S14).
    PendingGuarantor,
    /// The guarantor refused (S17: a new request may be filed).
    GuarantorRejected,
    /// The guarantor approved; waiting for the region's finance office (S2).
    PendingFinance,
    /// The region's finance office refused (S17).
    FinanceRejected,
    /// Approved: a facility is opened (R12).
    Approved,
    /// Cancelled by the applicant while pending (R9).
    Cancelled,
}

impl RequestStatus {
    /// Every status, in flow order.
    pub const ALL: [RequestStatus; 6] = [
        RequestStatus::PendingGuarantor,
        RequestStatus::GuarantorRejected,
        RequestStatus::PendingFinance,
        RequestStatus::FinanceRejected,
        RequestStatus::Approved,
        RequestStatus::Cancelled,
    ];

    /// The statuses in which a request is still waiting for a decision.
    pub const PENDING: [RequestStatus; 2] = [
        RequestStatus::PendingGuarantor,
        RequestStatus::PendingFinance,
    ];

    /// Returns the snake_case name stored in the database and shown over HTTP.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::PendingGuarantor => "pending_guarantor",
            RequestStatus::GuarantorRejected => "guarantor_rejected",
            RequestStatus::PendingFinance => "pending_finance",
            RequestStatus::FinanceRejected => "finance_rejected",
            RequestStatus::Approved => "approved",
            RequestStatus::Cancelled => "cancelled",
        }
    }

    /// Parses a snake_case status name.
    pub fn parse(name: &str) -> Option<RequestStatus> {
        RequestStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == name)
    }

    /// Returns true while the request waits for the guarantor or finance (R9: the
    /// applicant may cancel it).
    pub fn is_pending(self) -> bool {
        RequestStatus::PENDING.contains(&self)
    }

    /// Returns true when the request ended without a facility (S17: the applicant may
    /// file again).
    pub fn is_closed_without_facility(self) -> bool {
        matches!(
            self,
            RequestStatus::GuarantorRejected
                | RequestStatus::FinanceRejected
                | RequestStatus::Cancelled
        )
    }
}

impl fmt::Display for RequestStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule over a request's status and its guarantee's release flag, such as
/// [`holds_guarantee`]. The store turns it into its SQL condition with
/// [`statuses_where`], so the rule that counts rows is this function.
pub type StatusRule = fn(RequestStatus, bool) -> bool;

/// Returns true when a request in `status` holds one of its guarantor's guarantees (S4,
/// R8, R13): while pending, and once approved until the guarantee is released.
pub fn holds_guarantee(status: RequestStatus, released: bool) -> bool {
    status.is_pending() || (status == RequestStatus::Approved && !released)
}

/// Returns true when a request in `status` keeps its applicant from filing another (R9):
/// a pending request, or an approved one whose guarantee is not yet released.
pub fn blocks_new_request(status: RequestStatus, released: bool) -> bool {
    holds_guarantee(status, released)
}

/// Returns the statuses for which `rule` holds when the release flag is `released`, in
/// flow order: the store's SQL condition is this list, one per value of the flag.
pub fn statuses_where(rule: StatusRule, released: bool) -> Vec<RequestStatus> {
    RequestStatus::ALL
        .into_iter()
        .filter(|status| rule(*status, released))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for status in RequestStatus::ALL {
            assert_eq!(RequestStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(RequestStatus::parse("open"), None);
    }

    #[test]
    fn r13_released_approved_guarantee_stops_counting() {
        assert!(holds_guarantee(RequestStatus::PendingGuarantor, false));
        assert!(holds_guarantee(RequestStatus::PendingFinance, false));
        assert!(holds_guarantee(RequestStatus::Approved, false));
        assert!(!holds_guarantee(RequestStatus::Approved, true));
        assert!(!holds_guarantee(RequestStatus::GuarantorRejected, false));
        assert!(!holds_guarantee(RequestStatus::FinanceRejected, false));
        assert!(!holds_guarantee(RequestStatus::Cancelled, false));
    }

    #[test]
    fn r9_a_request_blocks_a_new_one_exactly_while_it_holds_a_guarantee() {
        for status in RequestStatus::ALL {
            for released in [false, true] {
                assert_eq!(
                    blocks_new_request(status, released),
                    holds_guarantee(status, released),
                    "{status} released={released}"
                );
            }
        }
    }

    #[test]
    fn r8_statuses_where_lists_exactly_the_statuses_the_rule_accepts() {
        assert_eq!(
            statuses_where(holds_guarantee, false),
            [
                RequestStatus::PendingGuarantor,
                RequestStatus::PendingFinance,
                RequestStatus::Approved
            ]
        );
        assert_eq!(
            statuses_where(holds_guarantee, true),
            RequestStatus::PENDING
        );
    }

    #[test]
    fn r9_only_pending_requests_may_be_cancelled() {
        assert!(RequestStatus::PendingGuarantor.is_pending());
        assert!(RequestStatus::PendingFinance.is_pending());
        assert!(!RequestStatus::Approved.is_pending());
        assert!(RequestStatus::Cancelled.is_closed_without_facility());
    }
}
