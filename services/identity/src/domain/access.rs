//! Who may do what (R1, R5, R6).

use tavana_kit::caller::{Caller, Role};

/// Returns true when the caller may write HR data of an employee in `region` (R1, R6):
/// a service, support, or a `region_admin` of exactly that region.
pub fn may_write_employee(caller: &Caller, region: &str) -> bool {
    caller.is_service()
        || caller.has_role(Role::Support)
        || caller.has_regional_role(Role::RegionAdmin, region)
}

/// Returns true when the caller may write an employee moved from `old_region` (if any)
/// to `new_region`: both regions must be the caller's (R6).
pub fn may_move_employee(caller: &Caller, old_region: Option<&str>, new_region: &str) -> bool {
    may_write_employee(caller, new_region)
        && old_region.is_none_or(|region| may_write_employee(caller, region))
}

/// Returns true when the caller may read an employee of `region`: a service, support, the
/// employee themself, or a regional role of that region (R6).
pub fn may_read_employee(caller: &Caller, employee_id: &str, region: &str) -> bool {
    caller.is_service()
        || caller.has_role(Role::Support)
        || caller.employee_id() == Some(employee_id)
        || [
            Role::RegionAdmin,
            Role::RegionFinance,
            Role::RegionWelfareManager,
        ]
        .into_iter()
        .any(|role| caller.has_regional_role(role, region))
}

/// Returns true when the caller may import HR data at all (each line is then checked
/// against its region).
pub fn may_import(caller: &Caller) -> bool {
    caller.is_service() || caller.has_role(Role::Support) || caller.has_role(Role::RegionAdmin)
}

/// Returns true when the caller may change a mobile number (R5): support only.
pub fn may_change_mobile(caller: &Caller) -> bool {
    caller.has_role(Role::Support)
}

/// Returns true when the caller may manage organizations and their contracts.
pub fn may_manage_organizations(caller: &Caller) -> bool {
    caller.is_service() || caller.has_role(Role::Contracts)
}

/// Returns true when the caller may grant and revoke roles: support, or the `cli` service.
pub fn may_manage_roles(caller: &Caller) -> bool {
    caller.has_role(Role::Support) || caller.service_name() == Some("cli")
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

    #[test]
    fn r6_region_admin_writes_only_their_region() {
        let admin = user(vec![RoleGrant::regional(Role::RegionAdmin, "R01")]);
        assert!(may_write_employee(&admin, "R01"));
        assert!(!may_write_employee(&admin, "R02"));
        assert!(may_move_employee(&admin, Some("R01"), "R01"));
        assert!(!may_move_employee(&admin, Some("R02"), "R01"));
        assert!(!may_move_employee(&admin, Some("R01"), "R02"));
        assert!(may_move_employee(&admin, None, "R01"));
    }

    #[test]
    fn r1_employees_cannot_write_hr_data() {
        let employee = user(vec![RoleGrant::global(Role::Employee)]);
        assert!(!may_write_employee(&employee, "R01"));
        assert!(!may_import(&employee));
        assert!(!may_write_employee(&Caller::Anonymous, "R01"));
        let finance = user(vec![RoleGrant::regional(Role::RegionFinance, "R01")]);
        assert!(!may_write_employee(&finance, "R01"));
    }

    #[test]
    fn support_and_services_write_any_region() {
        let support = user(vec![RoleGrant::global(Role::Support)]);
        assert!(may_move_employee(&support, Some("R01"), "R02"));
        assert!(may_move_employee(
            &Caller::service("cli"),
            Some("R01"),
            "R02"
        ));
    }

    #[test]
    fn r5_only_support_changes_mobiles() {
        assert!(may_change_mobile(&user(vec![RoleGrant::global(
            Role::Support
        )])));
        assert!(!may_change_mobile(&user(vec![RoleGrant::regional(
            Role::RegionAdmin,
            "R01"
        )])));
        assert!(!may_change_mobile(&Caller::service("credit")));
    }

    #[test]
    fn r6_reads_are_limited_to_self_region_staff_support_and_services() {
        let employee = user(vec![RoleGrant::global(Role::Employee)]);
        assert!(may_read_employee(&employee, "E1", "R09"));
        assert!(!may_read_employee(&employee, "E2", "R01"));
        let finance = user(vec![RoleGrant::regional(Role::RegionFinance, "R01")]);
        assert!(may_read_employee(&finance, "E2", "R01"));
        assert!(!may_read_employee(&finance, "E2", "R02"));
        assert!(may_read_employee(&Caller::service("credit"), "E2", "R02"));
    }

    #[test]
    fn roles_are_managed_by_support_or_the_cli() {
        assert!(may_manage_roles(&user(vec![RoleGrant::global(
            Role::Support
        )])));
        assert!(may_manage_roles(&Caller::service("cli")));
        assert!(!may_manage_roles(&Caller::service("credit")));
        assert!(!may_manage_roles(&user(vec![RoleGrant::global(
            Role::Contracts
        )])));
    }
}
