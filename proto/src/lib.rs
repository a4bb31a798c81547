//! Generated protobuf and gRPC code of every Tavana service, and the encoded
//! file descriptor set that the services serve through gRPC reflection.

/// The encoded `FileDescriptorSet` of every Tavana proto.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tavana_descriptor.bin"));

pub mod identity {
    pub mod v1 {
        tonic::include_proto!("tavana.identity.v1");
    }
}

pub mod guarantee {
    pub mod v1 {
        tonic::include_proto!("tavana.guarantee.v1");
    }
}

pub mod credit {
    pub mod v1 {
        tonic::include_proto!("tavana.credit.v1");
    }
}

pub mod settlement {
    pub mod v1 {
        tonic::include_proto!("tavana.settlement.v1");
    }
}

pub mod merchant_directory {
    pub mod v1 {
        tonic::include_proto!("tavana.merchant_directory.v1");
    }
}
