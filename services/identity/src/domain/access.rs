//! Who may do what (R1, R5, R6).

use tavana_kit::caller::{Caller, Role};
use tavana_kit::error::Violation;
use tavana_kit::ids::RegionCode;

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

/// Returns true when `caller` would grant or revoke a role of their own, the holder of
/// `national_id` (R32: nobody changes their own roles).
pub fn is_own_role_change(caller: &Caller, national_id: &str) -> bool {
    caller.national_id() == Some(national_id)
}

/// A grant's region as HR stores it (`teh-19` is TEH-19); blank is none.
fn normalize_region(region: Option<&str>) -> Result<Option<String>, Vec<Violation>> {
    match region.filter(|region| !region.trim().is_empty()) {
        None => Ok(None),
        Some(region) => RegionCode::parse(region)
            .map(|region| Some(region.into_string()))
            .map_err(|error| vec![error.violation("region_code")]),
    }
}

/// Returns the region a grant of `role` is held for (R6): a regional role needs one, a
/// national role takes none; the region is normalized as HR stores it.
pub fn grant_region(role: Role, region: Option<&str>) -> Result<Option<String>, Vec<Violation>> {
    let region = normalize_region(region)?;
    match (role.is_regional(), region.as_deref()) {
        (true, None) => Err(vec![Violation::new(
            "region_code",
            "region_required",
            "This role is held for one region: give its region code.",
            "این نقش برای یک منطقه است: کد منطقه را بدهید.",
        )]),
        (false, Some(_)) => Err(vec![Violation::new(
            "region_code",
            "region_not_allowed",
            "This role is national: give no region code.",
            "این نقش کشوری است: کد منطقه ندهید.",
        )]),
        _ => Ok(region),
    }
}

/// Returns the region of a grant to revoke, normalized as HR stores it (R6).
pub fn revoke_region(region: Option<&str>) -> Result<Option<String>, Vec<Violation>> {
    normalize_region(region)
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
    fn r6_a_regional_role_needs_a_region_and_a_national_role_takes_none() {
        assert_eq!(
            grant_region(Role::RegionAdmin, None).unwrap_err()[0].code,
            "region_required"
        );
        assert_eq!(
            grant_region(Role::RegionAdmin, Some("  ")).unwrap_err()[0].code,
            "region_required"
        );
        assert_eq!(
            grant_region(Role::Support, Some("R02")).unwrap_err()[0].code,
            "region_not_allowed"
        );
        assert_eq!(grant_region(Role::Support, None), Ok(None));
    }

    #[test]
    fn r6_a_grant_region_is_stored_as_hr_writes_it() {
        assert_eq!(
            grant_region(Role::RegionFinance, Some("r02")),
            Ok(Some("R02".to_owned()))
        );
        assert_eq!(revoke_region(Some("r02")), Ok(Some("R02".to_owned())));
        assert_eq!(revoke_region(None), Ok(None));
    }

    #[test]
    fn r32_a_role_change_of_ones_own_national_id_is_refused() {
        let support = user(vec![RoleGrant::global(Role::Support)]);
        assert!(is_own_role_change(&support, "0012345679"));
        assert!(!is_own_role_change(&support, "0010000011"));
        assert!(!is_own_role_change(&Caller::service("cli"), "0012345679"));
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
