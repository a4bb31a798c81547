//! Proposals by regional welfare managers and the contracts department's decision (R26).

use tavana_kit::caller::{Caller, Role};
use tavana_kit::error::Violation;

use crate::error::MerchantError;

/// The longest decision reason accepted, in characters.
pub const MAX_REASON_CHARS: usize = 1000;

/// Where a proposal stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProposalStatus {
    /// Waiting for the contracts department.
    Pending,
    /// Approved: the merchant exists.
    Approved,
    /// Rejected with a reason.
    Rejected,
}

impl ProposalStatus {
    /// Returns the stored snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProposalStatus::Pending => "pending",
            ProposalStatus::Approved => "approved",
            ProposalStatus::Rejected => "rejected",
        }
    }

    /// Parses the stored name.
    pub fn parse(text: &str) -> Option<ProposalStatus> {
        match text {
            "pending" => Some(ProposalStatus::Pending),
            "approved" => Some(ProposalStatus::Approved),
            "rejected" => Some(ProposalStatus::Rejected),
            _ => None,
        }
    }
}

/// Returns the region a welfare manager proposes for (R26): always one of their own.
///
/// A manager of one region proposes for it; a manager of several names one of them. A
/// region that is not the caller's is refused, whatever else they hold; anyone without
/// the welfare manager role (contracts included) may not propose at all.
pub fn proposal_region(caller: &Caller, requested: Option<&str>) -> Result<String, MerchantError> {
    let mut regions = caller.regions_of(Role::RegionWelfareManager);
    regions.sort_unstable();
    regions.dedup();
    if regions.is_empty() {
        return Err(match caller {
            Caller::Anonymous => MerchantError::Unauthenticated,
            _ => MerchantError::PermissionDenied,
        });
    }
    match requested.map(str::trim).filter(|region| !region.is_empty()) {
        Some(region) if regions.contains(&region) => Ok(region.to_owned()),
        Some(_) => Err(MerchantError::RegionNotYours),
        None if regions.len() == 1 => Ok(regions[0].to_owned()),
        None => Err(MerchantError::RegionRequired),
    }
}

/// Which proposals a caller may see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProposalScope {
    /// Every region (contracts).
    All,
    /// Only these regions (welfare managers).
    Regions(Vec<String>),
}

impl ProposalScope {
    /// Returns the caller's scope: contracts sees all, a welfare manager their regions.
    pub fn of(caller: &Caller) -> Result<ProposalScope, MerchantError> {
        if caller.has_role(Role::Contracts) {
            return Ok(ProposalScope::All);
        }
        let regions: Vec<String> = caller
            .regions_of(Role::RegionWelfareManager)
            .into_iter()
            .map(str::to_owned)
            .collect();
        if !regions.is_empty() {
            return Ok(ProposalScope::Regions(regions));
        }
        Err(match caller {
            Caller::Anonymous => MerchantError::Unauthenticated,
            _ => MerchantError::PermissionDenied,
        })
    }

    /// Returns true when a proposal of `region` is visible.
    pub fn allows(&self, region: &str) -> bool {
        match self {
            ProposalScope::All => true,
            ProposalScope::Regions(regions) => regions.iter().any(|r| r == region),
        }
    }
}

/// Only the contracts department approves, rejects, suspends and rotates keys (R26).
pub fn require_contracts(caller: &Caller) -> Result<(), MerchantError> {
    match caller {
        Caller::Anonymous => Err(MerchantError::Unauthenticated),
        _ if caller.has_role(Role::Contracts) => Ok(()),
        _ => Err(MerchantError::PermissionDenied),
    }
}

/// A checked decision on a proposal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Approve or reject.
    pub approve: bool,
    /// Why; required for a rejection, so the proposer learns it.
    pub reason: Option<String>,
}

impl Decision {
    /// Checks a decision: a rejection needs a reason; reasons are bounded.
    pub fn parse(approve: bool, reason: Option<&str>) -> Result<Decision, MerchantError> {
        let reason = reason
            .map(str::trim)
            .filter(|reason| !reason.is_empty())
            .map(str::to_owned);
        if !approve && reason.is_none() {
            return Err(MerchantError::Invalid(vec![Violation::new(
                "reason",
                "reason_required",
                "A rejection needs a reason.",
                "رد پیشنهاد باید دلیل داشته باشد.",
            )]));
        }
        if reason
            .as_ref()
            .is_some_and(|reason| reason.chars().count() > MAX_REASON_CHARS)
        {
            return Err(MerchantError::Invalid(vec![Violation::new(
                "reason",
                "too_long",
                format!("At most {MAX_REASON_CHARS} characters."),
                format!("حداکثر {MAX_REASON_CHARS} نویسه مجاز است."),
            )]));
        }
        Ok(Decision { approve, reason })
    }
}

#[cfg(test)]
mod tests {
    use tavana_kit::caller::RoleGrant;

    use super::*;

    fn user(grants: Vec<RoleGrant>) -> Caller {
        Caller::User {
            employee_id: "E1".into(),
            national_id: "0012345679".into(),
            grants,
        }
    }

    fn manager_of(regions: &[&str]) -> Caller {
        let mut grants = vec![RoleGrant::global(Role::Employee)];
        grants.extend(
            regions
                .iter()
                .map(|region| RoleGrant::regional(Role::RegionWelfareManager, *region)),
        );
        user(grants)
    }

    #[test]
    fn r26_manager_of_one_region_proposes_for_it() {
        let caller = manager_of(&["R01"]);
        assert_eq!(proposal_region(&caller, None).unwrap(), "R01");
        assert_eq!(proposal_region(&caller, Some("R01")).unwrap(), "R01");
    }

    #[test]
    fn r26_manager_cannot_propose_for_another_region() {
        let caller = manager_of(&["R01"]);
        assert!(matches!(
            proposal_region(&caller, Some("R02")),
            Err(MerchantError::RegionNotYours)
        ));
    }

    #[test]
    fn r26_manager_of_several_regions_names_one_of_them() {
        let caller = manager_of(&["R01", "R07"]);
        assert!(matches!(
            proposal_region(&caller, None),
            Err(MerchantError::RegionRequired)
        ));
        assert_eq!(proposal_region(&caller, Some("R07")).unwrap(), "R07");
    }

    #[test]
    fn r26_contracts_cannot_propose_unless_also_a_manager() {
        let contracts = user(vec![RoleGrant::global(Role::Contracts)]);
        assert!(matches!(
            proposal_region(&contracts, None),
            Err(MerchantError::PermissionDenied)
        ));
        let both = user(vec![
            RoleGrant::global(Role::Contracts),
            RoleGrant::regional(Role::RegionWelfareManager, "R03"),
        ]);
        assert_eq!(proposal_region(&both, None).unwrap(), "R03");
        let other_regional = user(vec![RoleGrant::regional(Role::RegionFinance, "R01")]);
        assert!(matches!(
            proposal_region(&other_regional, Some("R01")),
            Err(MerchantError::PermissionDenied)
        ));
        assert!(matches!(
            proposal_region(&Caller::Anonymous, None),
            Err(MerchantError::Unauthenticated)
        ));
    }

    #[test]
    fn r26_welfare_manager_sees_own_regions_and_contracts_sees_all() {
        let scope = ProposalScope::of(&manager_of(&["R01"])).unwrap();
        assert!(scope.allows("R01"));
        assert!(!scope.allows("R02"));
        let contracts = user(vec![RoleGrant::global(Role::Contracts)]);
        assert_eq!(ProposalScope::of(&contracts).unwrap(), ProposalScope::All);
        let support = user(vec![RoleGrant::global(Role::Support)]);
        assert!(matches!(
            ProposalScope::of(&support),
            Err(MerchantError::PermissionDenied)
        ));
    }

    #[test]
    fn r26_welfare_manager_cannot_decide() {
        assert!(matches!(
            require_contracts(&manager_of(&["R01"])),
            Err(MerchantError::PermissionDenied)
        ));
        assert!(require_contracts(&user(vec![RoleGrant::global(Role::Contracts)])).is_ok());
        assert!(matches!(
            require_contracts(&Caller::service("credit")),
            Err(MerchantError::PermissionDenied)
        ));
    }

    #[test]
    fn r26_rejection_needs_a_reason() {
        assert!(matches!(
            Decision::parse(false, Some("  ")),
            Err(MerchantError::Invalid(_))
        ));
        assert_eq!(
            Decision::parse(false, Some(" دور از دسترس "))
                .unwrap()
                .reason
                .as_deref(),
            Some("دور از دسترس")
        );
        assert_eq!(Decision::parse(true, None).unwrap().reason, None);
    }
}
