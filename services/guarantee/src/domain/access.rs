//! Who may see and act on a credit request (R6, R10, S14).

use tavana_kit::caller::{Caller, Role};

/// The people a request concerns.
#[derive(Clone, Copy, Debug)]
pub struct Parties<'a> {
    /// The applicant's employee id.
    pub applicant_employee_id: &'a str,
    /// The guarantor's employee id.
    pub guarantor_employee_id: &'a str,
    /// The guarantor's national ID.
    pub guarantor_national_id: &'a str,
    /// The applicant's region at filing, whose finance office decides (S2).
    pub region_code: &'a str,
}

/// What a caller is to a request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Standing {
    /// The caller filed the request.
    pub applicant: bool,
    /// The caller is the named guarantor.
    pub guarantor: bool,
    /// The caller is `region_finance` of the request's region.
    pub region_finance: bool,
    /// The caller is another Tavana service.
    pub service: bool,
}

impl Standing {
    /// Returns true when the caller may know that the request exists (R11: the
    /// applicant, the guarantor and the region's finance office see it).
    pub fn may_see(self) -> bool {
        self.applicant || self.guarantor || self.region_finance || self.service
    }

    /// Returns true when the caller is a party to the request, its applicant or its
    /// guarantor, and so may not decide it as finance (R32, `conflict_of_interest`).
    pub fn is_party(self) -> bool {
        self.applicant || self.guarantor
    }
}

/// Returns what `caller` is to a request concerning `parties`.
pub fn standing(caller: &Caller, parties: Parties<'_>) -> Standing {
    match caller {
        Caller::User {
            employee_id,
            national_id,
            ..
        } => Standing {
            applicant: employee_id == parties.applicant_employee_id,
            guarantor: employee_id == parties.guarantor_employee_id
                || (!national_id.is_empty() && national_id == parties.guarantor_national_id),
            region_finance: caller.has_regional_role(Role::RegionFinance, parties.region_code),
            service: false,
        },
        Caller::Service { .. } => Standing {
            service: true,
            ..Standing::default()
        },
        Caller::Anonymous | Caller::Merchant { .. } => Standing::default(),
    }
}

/// Why a caller may not act on a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denial {
    /// The caller may not know the request exists: answer "not found".
    Hidden,
    /// The caller knows of the request but may not do this: answer "permission_denied".
    Forbidden,
}

/// Returns the answer to a caller who may not act: hidden from strangers, forbidden to
/// those who may see the request, and to finance staff of other regions (who know
/// requests reach finance but are not theirs to decide).
pub fn denial(caller: &Caller, standing: Standing) -> Denial {
    if standing.may_see() || caller.has_role(Role::RegionFinance) {
        Denial::Forbidden
    } else {
        Denial::Hidden
    }
}

#[cfg(test)]
mod tests {
    use tavana_kit::caller::RoleGrant;

    use super::*;

    const PARTIES: Parties<'static> = Parties {
        applicant_employee_id: "A",
        guarantor_employee_id: "G",
        guarantor_national_id: "0000000002",
        region_code: "R01",
    };

    fn user(id: &str, national_id: &str, grants: Vec<RoleGrant>) -> Caller {
        Caller::User {
            employee_id: id.to_owned(),
            national_id: national_id.to_owned(),
            grants,
        }
    }

    #[test]
    fn r11_applicant_guarantor_and_region_finance_see_the_request() {
        let applicant = user("A", "0000000001", vec![]);
        let guarantor = user("X", "0000000002", vec![]);
        let finance = user(
            "F",
            "0000000003",
            vec![RoleGrant::regional(Role::RegionFinance, "R01")],
        );
        assert!(standing(&applicant, PARTIES).applicant);
        assert!(standing(&guarantor, PARTIES).guarantor);
        assert!(standing(&finance, PARTIES).region_finance);
    }

    #[test]
    fn r32_finance_officer_who_filed_or_guarantees_is_a_party() {
        let finance = |id: &str, national_id: &str| {
            user(
                id,
                national_id,
                vec![RoleGrant::regional(Role::RegionFinance, "R01")],
            )
        };
        assert!(standing(&finance("A", "0000000001"), PARTIES).is_party());
        assert!(standing(&finance("X", "0000000002"), PARTIES).is_party());
        assert!(!standing(&finance("F", "0000000003"), PARTIES).is_party());
    }

    #[test]
    fn r6_strangers_are_hidden_and_other_regions_forbidden() {
        let stranger = user("S", "0000000004", vec![RoleGrant::global(Role::Employee)]);
        let s = standing(&stranger, PARTIES);
        assert!(!s.may_see());
        assert_eq!(denial(&stranger, s), Denial::Hidden);

        let other_finance = user(
            "F",
            "0000000003",
            vec![RoleGrant::regional(Role::RegionFinance, "R02")],
        );
        let s = standing(&other_finance, PARTIES);
        assert!(!s.region_finance);
        assert_eq!(denial(&other_finance, s), Denial::Forbidden);

        let applicant = user("A", "0000000001", vec![]);
        assert_eq!(
            denial(&applicant, standing(&applicant, PARTIES)),
            Denial::Forbidden
        );
    }
}
