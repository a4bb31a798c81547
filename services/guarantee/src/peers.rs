//! Calls to the services the guarantee service depends on: identity's HR data.

use chrono::NaiveDate;
use tavana_kit::caller::{Caller, attach};
use tavana_kit::grpc::Channel;
use tavana_kit::money::Rial;
use tavana_proto::identity::v1::get_employee_request::Key;
use tavana_proto::identity::v1::identity_service_client::IdentityServiceClient;
use tavana_proto::identity::v1::{Employee, GetEmployeeRequest};

use crate::domain::EmployeeProfile;
use crate::error::GuaranteeError;

/// The name this service calls its peers with.
pub const SERVICE_NAME: &str = "guarantee";

/// Reads employees' current HR data from identity (R1, R8, R10).
#[derive(Clone)]
pub struct Identity {
    client: IdentityServiceClient<Channel>,
}

impl Identity {
    /// Wraps a channel to identity.
    pub fn new(channel: Channel) -> Identity {
        Identity {
            client: IdentityServiceClient::new(channel),
        }
    }

    /// Returns the employee with this employee id, or `None` when identity has none.
    pub async fn by_employee_id(
        &self,
        employee_id: &str,
    ) -> Result<Option<EmployeeProfile>, GuaranteeError> {
        self.get(Key::EmployeeId(employee_id.to_owned())).await
    }

    /// Returns the employee with this national ID, or `None` when identity has none.
    pub async fn by_national_id(
        &self,
        national_id: &str,
    ) -> Result<Option<EmployeeProfile>, GuaranteeError> {
        self.get(Key::NationalId(national_id.to_owned())).await
    }

    async fn get(&self, key: Key) -> Result<Option<EmployeeProfile>, GuaranteeError> {
        let request = attach(
            GetEmployeeRequest { key: Some(key) },
            &Caller::service(SERVICE_NAME),
        );
        match self.client.clone().get_employee(request).await {
            Ok(response) => match response.into_inner().employee {
                Some(employee) => profile_of(employee).map(Some),
                None => Ok(None),
            },
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => Err(GuaranteeError::Unavailable(format!(
                "identity GetEmployee failed: {status}"
            ))),
        }
    }
}

/// Converts identity's employee into the profile the rules read.
fn profile_of(employee: Employee) -> Result<EmployeeProfile, GuaranteeError> {
    let service_start = NaiveDate::parse_from_str(&employee.service_start_date, "%Y-%m-%d")
        .map_err(|error| {
            GuaranteeError::Internal(
                anyhow::Error::new(error).context("identity sent an invalid service_start_date"),
            )
        })?;
    Ok(EmployeeProfile {
        employee_id: employee.employee_id,
        national_id: employee.national_id,
        full_name: employee.full_name,
        organization_id: employee.organization_id,
        region_code: employee.region_code,
        net_salary: Rial(employee.net_salary),
        service_start,
    })
}
