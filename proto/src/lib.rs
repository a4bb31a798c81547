//! Generated protobuf and gRPC code of every Tavana service.
