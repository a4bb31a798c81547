//! Generated protobuf and gRPC code of every Tavana service, and the encoded
//! file descriptor set that the services serve through gRPC reflection.

/// The instant of a protobuf timestamp; `None` when it is absent or out of chrono's
/// range. A negative `nanos` (which a valid timestamp never has) counts as 0.
pub fn datetime(
    timestamp: Option<prost_types::Timestamp>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let timestamp = timestamp?;
    chrono::DateTime::from_timestamp(
        timestamp.seconds,
        u32::try_from(timestamp.nanos).unwrap_or(0),
    )
}

/// Converts an instant to a protobuf timestamp, exactly (the conversion every service
/// shares; through `SystemTime`, so no field is clamped).
pub fn timestamp<Tz: chrono::TimeZone>(at: chrono::DateTime<Tz>) -> prost_types::Timestamp {
    prost_types::Timestamp::from(std::time::SystemTime::from(at))
}

/// The encoded `FileDescriptorSet` of every Tavana proto.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tavana_descriptor.bin"));

/// Employees, organizations, accounts, roles, login and SMS.
pub mod identity {
    /// Version 1 of the API (generated).
    #[allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]
    pub mod v1 {
        tonic::include_proto!("tavana.identity.v1");
    }
}

/// Credit requests and their approvals.
pub mod guarantee {
    /// Version 1 of the API (generated).
    #[allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]
    pub mod v1 {
        tonic::include_proto!("tavana.guarantee.v1");
    }
}

/// Facilities, holds, purchases, refunds and cards.
pub mod credit {
    /// Version 1 of the API (generated).
    #[allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]
    pub mod v1 {
        tonic::include_proto!("tavana.credit.v1");
    }
}

/// Instalments, deduction lists, remittances and reconciliation.
pub mod settlement {
    /// Version 1 of the API (generated).
    #[allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]
    pub mod v1 {
        tonic::include_proto!("tavana.settlement.v1");
    }
}

/// Merchants, proposals, contracts and search.
pub mod merchant_directory {
    /// Version 1 of the API (generated).
    #[allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]
    pub mod v1 {
        tonic::include_proto!("tavana.merchant_directory.v1");
    }
}

/// The audit trail every service serves.
pub mod audit {
    /// Version 1 of the API (generated).
    #[allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]
    pub mod v1 {
        tonic::include_proto!("tavana.audit.v1");
    }
}
