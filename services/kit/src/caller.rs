//! The caller's identity, carried in gRPC metadata from the gateway and between services.
//!
//! Inside the mesh the pods talk over mTLS, so the metadata is trusted; the gateway strips
//! these keys from anything a client sends and writes them from the verified token.

use std::fmt;

use serde::{Deserialize, Serialize};
use tonic::metadata::{MetadataMap, MetadataValue};

/// The metadata key holding the caller kind: `user`, `merchant` or `service`.
pub const KIND_KEY: &str = "x-tavana-caller-kind";
/// The metadata key holding the employee, merchant or service id.
pub const ID_KEY: &str = "x-tavana-caller-id";
/// The metadata key holding a user's national ID.
pub const NATIONAL_ID_KEY: &str = "x-tavana-national-id";
/// The metadata key holding a user's roles: `role` or `role@REGION`, comma separated.
pub const ROLES_KEY: &str = "x-tavana-roles";

/// A role a user may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// An employee who may request credit and guarantee colleagues.
    Employee,
    /// A region's administrator.
    RegionAdmin,
    /// A region's finance office, which gives the final approval.
    RegionFinance,
    /// A region's welfare manager, who introduces local merchants.
    RegionWelfareManager,
    /// Tavana support staff.
    Support,
    /// The contracts department.
    Contracts,
    /// A merchant's staff user.
    Merchant,
}

impl Role {
    /// Every role, in declaration order.
    pub const ALL: [Role; 7] = [
        Role::Employee,
        Role::RegionAdmin,
        Role::RegionFinance,
        Role::RegionWelfareManager,
        Role::Support,
        Role::Contracts,
        Role::Merchant,
    ];

    /// Returns the snake_case name of the role.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Employee => "employee",
            Role::RegionAdmin => "region_admin",
            Role::RegionFinance => "region_finance",
            Role::RegionWelfareManager => "region_welfare_manager",
            Role::Support => "support",
            Role::Contracts => "contracts",
            Role::Merchant => "merchant",
        }
    }

    /// Parses the snake_case name of a role.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == name)
    }

    /// Returns true for roles held for one region.
    pub fn is_regional(self) -> bool {
        matches!(
            self,
            Role::RegionAdmin | Role::RegionFinance | Role::RegionWelfareManager
        )
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role held by a user, for one region when the role is regional.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RoleGrant {
    /// The role.
    pub role: Role,
    /// The region code (e.g. `R01`) of a regional role.
    pub region: Option<String>,
}

impl RoleGrant {
    /// Creates a grant without a region.
    pub fn global(role: Role) -> RoleGrant {
        RoleGrant { role, region: None }
    }

    /// Creates a grant for one region.
    pub fn regional(role: Role, region: impl Into<String>) -> RoleGrant {
        RoleGrant {
            role,
            region: Some(region.into()),
        }
    }

    /// Parses `role` or `role@REGION`.
    pub fn parse(text: &str) -> Option<RoleGrant> {
        let text = text.trim();
        match text.split_once('@') {
            Some((role, region)) if !region.is_empty() => Some(RoleGrant {
                role: Role::parse(role)?,
                region: Some(region.to_owned()),
            }),
            Some(_) => None,
            None => Some(RoleGrant::global(Role::parse(text)?)),
        }
    }
}

impl fmt::Display for RoleGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.region {
            Some(region) => write!(f, "{}@{}", self.role, region),
            None => write!(f, "{}", self.role),
        }
    }
}

/// Who is making a call.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Caller {
    /// No identity was given.
    #[default]
    Anonymous,
    /// A signed-in user.
    User {
        /// The employee id.
        employee_id: String,
        /// The user's national ID.
        national_id: String,
        /// The roles held.
        grants: Vec<RoleGrant>,
    },
    /// A merchant's backend, authenticated by API key at the gateway.
    Merchant {
        /// The merchant id.
        merchant_id: String,
    },
    /// Another Tavana service.
    Service {
        /// The calling service's name, e.g. `credit`.
        name: String,
    },
}

fn read(metadata: &MetadataMap, key: &str) -> Option<String> {
    let value = metadata.get(key)?.to_str().ok()?.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

fn write(metadata: &mut MetadataMap, key: &'static str, value: &str) {
    match MetadataValue::try_from(value) {
        Ok(value) => {
            metadata.insert(key, value);
        }
        Err(_) => tracing::warn!(key, "caller metadata value is not ascii, left out"),
    }
}

impl Caller {
    /// Creates a service caller.
    pub fn service(name: impl Into<String>) -> Caller {
        Caller::Service { name: name.into() }
    }

    /// Reads the caller from gRPC metadata; anything incomplete or unknown is anonymous.
    pub fn from_metadata(metadata: &MetadataMap) -> Caller {
        let Some(kind) = read(metadata, KIND_KEY) else {
            return Caller::Anonymous;
        };
        let Some(id) = read(metadata, ID_KEY) else {
            return Caller::Anonymous;
        };
        match kind.as_str() {
            "user" => Caller::User {
                employee_id: id,
                national_id: read(metadata, NATIONAL_ID_KEY).unwrap_or_default(),
                grants: read(metadata, ROLES_KEY)
                    .map(|roles| {
                        roles
                            .split(',')
                            .filter(|part| !part.trim().is_empty())
                            .filter_map(RoleGrant::parse)
                            .collect()
                    })
                    .unwrap_or_default(),
            },
            "merchant" => Caller::Merchant { merchant_id: id },
            "service" => Caller::Service { name: id },
            _ => Caller::Anonymous,
        }
    }

    /// Writes the caller into gRPC metadata, replacing any caller already there.
    pub fn write_metadata(&self, metadata: &mut MetadataMap) {
        for key in [KIND_KEY, ID_KEY, NATIONAL_ID_KEY, ROLES_KEY] {
            metadata.remove(key);
        }
        match self {
            Caller::Anonymous => {}
            Caller::User {
                employee_id,
                national_id,
                grants,
            } => {
                write(metadata, KIND_KEY, "user");
                write(metadata, ID_KEY, employee_id);
                if !national_id.is_empty() {
                    write(metadata, NATIONAL_ID_KEY, national_id);
                }
                if !grants.is_empty() {
                    let roles: Vec<String> = grants.iter().map(ToString::to_string).collect();
                    write(metadata, ROLES_KEY, &roles.join(","));
                }
            }
            Caller::Merchant { merchant_id } => {
                write(metadata, KIND_KEY, "merchant");
                write(metadata, ID_KEY, merchant_id);
            }
            Caller::Service { name } => {
                write(metadata, KIND_KEY, "service");
                write(metadata, ID_KEY, name);
            }
        }
    }

    /// Returns true when the caller holds `role` (for any region).
    pub fn has_role(&self, role: Role) -> bool {
        self.grants().iter().any(|grant| grant.role == role)
    }

    /// Returns true only when the caller holds `role` for exactly `region`.
    pub fn has_regional_role(&self, role: Role, region: &str) -> bool {
        self.grants()
            .iter()
            .any(|grant| grant.role == role && grant.region.as_deref() == Some(region))
    }

    /// Returns the regions for which the caller holds `role`.
    pub fn regions_of(&self, role: Role) -> Vec<&str> {
        self.grants()
            .iter()
            .filter(|grant| grant.role == role)
            .filter_map(|grant| grant.region.as_deref())
            .collect()
    }

    /// Returns the employee id of a user caller.
    pub fn employee_id(&self) -> Option<&str> {
        match self {
            Caller::User { employee_id, .. } => Some(employee_id),
            _ => None,
        }
    }

    /// Returns the national ID of a user caller.
    pub fn national_id(&self) -> Option<&str> {
        match self {
            Caller::User { national_id, .. } if !national_id.is_empty() => Some(national_id),
            _ => None,
        }
    }

    /// Returns the merchant id of a merchant caller.
    pub fn merchant_id(&self) -> Option<&str> {
        match self {
            Caller::Merchant { merchant_id } => Some(merchant_id),
            _ => None,
        }
    }

    /// Returns the name of a service caller.
    pub fn service_name(&self) -> Option<&str> {
        match self {
            Caller::Service { name } => Some(name),
            _ => None,
        }
    }

    /// Returns true for another Tavana service.
    pub fn is_service(&self) -> bool {
        matches!(self, Caller::Service { .. })
    }

    /// Returns the role grants of a user caller (empty for everyone else).
    pub fn grants(&self) -> &[RoleGrant] {
        match self {
            Caller::User { grants, .. } => grants,
            _ => &[],
        }
    }

    /// The employee id of a signed-in user; anyone else is refused.
    pub fn require_user(&self) -> Result<&str, Refusal> {
        match self {
            Caller::User { employee_id, .. } => Ok(employee_id),
            Caller::Anonymous => Err(Refusal::Unauthenticated),
            _ => Err(Refusal::PermissionDenied),
        }
    }

    /// The merchant id of a merchant's backend; anyone else is refused.
    pub fn require_merchant(&self) -> Result<&str, Refusal> {
        match self {
            Caller::Merchant { merchant_id } => Ok(merchant_id),
            Caller::Anonymous => Err(Refusal::Unauthenticated),
            _ => Err(Refusal::PermissionDenied),
        }
    }

    /// The name of a calling service, when it is one of `names` (any service when
    /// `names` is empty); anyone else is refused.
    pub fn require_service(&self, names: &[&str]) -> Result<&str, Refusal> {
        match self {
            Caller::Service { name } if names.is_empty() || names.contains(&name.as_str()) => {
                Ok(name)
            }
            Caller::Anonymous => Err(Refusal::Unauthenticated),
            _ => Err(Refusal::PermissionDenied),
        }
    }

    /// Accepts a user holding any of `roles` (in any region); anyone else is refused.
    pub fn require_any_role(&self, roles: &[Role]) -> Result<(), Refusal> {
        match self {
            Caller::Anonymous => Err(Refusal::Unauthenticated),
            _ if roles.iter().any(|role| self.has_role(*role)) => Ok(()),
            _ => Err(Refusal::PermissionDenied),
        }
    }
}

/// Converts a kit role to its protobuf value.
pub fn role_to_pb(role: Role) -> tavana_proto::identity::v1::Role {
    match role {
        Role::Employee => tavana_proto::identity::v1::Role::Employee,
        Role::RegionAdmin => tavana_proto::identity::v1::Role::RegionAdmin,
        Role::RegionFinance => tavana_proto::identity::v1::Role::RegionFinance,
        Role::RegionWelfareManager => tavana_proto::identity::v1::Role::RegionWelfareManager,
        Role::Support => tavana_proto::identity::v1::Role::Support,
        Role::Contracts => tavana_proto::identity::v1::Role::Contracts,
        Role::Merchant => tavana_proto::identity::v1::Role::Merchant,
    }
}

/// Converts a protobuf role to the kit's; `None` for unspecified or unknown values.
pub fn role_from_pb(value: i32) -> Option<Role> {
    match tavana_proto::identity::v1::Role::try_from(value).ok()? {
        tavana_proto::identity::v1::Role::Unspecified => None,
        tavana_proto::identity::v1::Role::Employee => Some(Role::Employee),
        tavana_proto::identity::v1::Role::RegionAdmin => Some(Role::RegionAdmin),
        tavana_proto::identity::v1::Role::RegionFinance => Some(Role::RegionFinance),
        tavana_proto::identity::v1::Role::RegionWelfareManager => Some(Role::RegionWelfareManager),
        tavana_proto::identity::v1::Role::Support => Some(Role::Support),
        tavana_proto::identity::v1::Role::Contracts => Some(Role::Contracts),
        tavana_proto::identity::v1::Role::Merchant => Some(Role::Merchant),
    }
}

/// Why a caller may not do something: each service's error enum converts it into its own
/// `Unauthenticated` and `PermissionDenied` variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No verified caller.
    Unauthenticated,
    /// A verified caller that may not do this.
    PermissionDenied,
}

/// Wraps a message in a request that carries `caller` and the current span's W3C trace
/// context (an outbox delivery's span continues the trace that enqueued it) in its
/// metadata.
pub fn attach<T>(message: T, caller: &Caller) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    caller.write_metadata(request.metadata_mut());
    crate::grpc::inject_trace_context(request.metadata_mut());
    request
}

/// Reads the caller of a request.
pub fn caller<T>(request: &tonic::Request<T>) -> Caller {
    Caller::from_metadata(request.metadata())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finance_user() -> Caller {
        Caller::User {
            employee_id: "E100".into(),
            national_id: "0012345679".into(),
            grants: vec![
                RoleGrant::global(Role::Employee),
                RoleGrant::regional(Role::RegionFinance, "R01"),
                RoleGrant::regional(Role::RegionFinance, "R07"),
            ],
        }
    }

    #[test]
    fn each_requirement_refuses_the_anonymous_as_unauthenticated_and_others_as_denied() {
        let user = finance_user();
        let merchant = Caller::Merchant {
            merchant_id: "M1".into(),
        };
        let credit = Caller::service("credit");

        assert_eq!(user.require_user(), Ok("E100"));
        assert_eq!(merchant.require_merchant(), Ok("M1"));
        assert_eq!(credit.require_service(&[]), Ok("credit"));
        assert_eq!(
            credit.require_service(&["credit", "guarantee"]),
            Ok("credit")
        );
        assert_eq!(
            user.require_any_role(&[Role::Support, Role::RegionFinance]),
            Ok(())
        );

        for require in [
            |c: &Caller| c.require_user().map(drop),
            |c: &Caller| c.require_merchant().map(drop),
            |c: &Caller| c.require_service(&[]).map(drop),
            |c: &Caller| c.require_any_role(&[Role::Support]),
        ] {
            assert_eq!(require(&Caller::Anonymous), Err(Refusal::Unauthenticated));
        }
        assert_eq!(merchant.require_user(), Err(Refusal::PermissionDenied));
        assert_eq!(user.require_merchant(), Err(Refusal::PermissionDenied));
        assert_eq!(user.require_service(&[]), Err(Refusal::PermissionDenied));
        assert_eq!(
            credit.require_service(&["settlement"]),
            Err(Refusal::PermissionDenied)
        );
        assert_eq!(
            user.require_any_role(&[Role::Support]),
            Err(Refusal::PermissionDenied)
        );
        assert_eq!(
            credit.require_any_role(&[Role::Support]),
            Err(Refusal::PermissionDenied)
        );
    }

    #[test]
    fn user_round_trips_through_metadata() {
        let caller = finance_user();
        let request = attach((), &caller);

        assert_eq!(
            request.metadata().get(ROLES_KEY).unwrap().to_str().unwrap(),
            "employee,region_finance@R01,region_finance@R07"
        );
        assert_eq!(super::caller(&request), caller);
    }

    #[test]
    fn merchant_and_service_round_trip_through_metadata() {
        for caller in [
            Caller::Merchant {
                merchant_id: "M1".into(),
            },
            Caller::service("credit"),
            Caller::Anonymous,
        ] {
            let request = attach((), &caller);
            assert_eq!(super::caller(&request), caller);
        }
    }

    #[test]
    fn writing_replaces_a_previous_caller() {
        let mut metadata = MetadataMap::new();
        finance_user().write_metadata(&mut metadata);

        Caller::service("guarantee").write_metadata(&mut metadata);

        assert!(metadata.get(ROLES_KEY).is_none());
        assert_eq!(
            Caller::from_metadata(&metadata),
            Caller::service("guarantee")
        );
    }

    #[test]
    fn regional_role_holds_only_for_its_region() {
        let caller = finance_user();
        assert!(caller.has_role(Role::RegionFinance));
        assert!(caller.has_regional_role(Role::RegionFinance, "R01"));
        assert!(!caller.has_regional_role(Role::RegionFinance, "R02"));
        assert!(!caller.has_regional_role(Role::Employee, "R01"));
        assert!(!caller.has_role(Role::Support));
        assert_eq!(caller.regions_of(Role::RegionFinance), ["R01", "R07"]);
        assert_eq!(caller.employee_id(), Some("E100"));
    }

    #[test]
    fn unknown_roles_and_kinds_are_ignored() {
        let mut metadata = MetadataMap::new();
        metadata.insert(KIND_KEY, "user".parse().unwrap());
        metadata.insert(ID_KEY, "E1".parse().unwrap());
        metadata.insert(
            ROLES_KEY,
            "employee, superuser,region_admin@,support".parse().unwrap(),
        );
        assert_eq!(
            Caller::from_metadata(&metadata).grants(),
            [
                RoleGrant::global(Role::Employee),
                RoleGrant::global(Role::Support)
            ]
        );

        metadata.insert(KIND_KEY, "root".parse().unwrap());
        assert_eq!(Caller::from_metadata(&metadata), Caller::Anonymous);
        assert_eq!(
            Caller::from_metadata(&MetadataMap::new()),
            Caller::Anonymous
        );
    }

    #[test]
    fn role_names_parse_back() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("admin"), None);
        assert!(Role::RegionWelfareManager.is_regional());
        assert!(!Role::Support.is_regional());
    }
}
