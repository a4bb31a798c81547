//! Trust between services (ARCHITECTURE.md): every method of the proto, taken from the
//! descriptor so that a new one cannot be forgotten, refuses unverified callers with
//! UNAUTHENTICATED and principals off its allow-list with PERMISSION_DENIED.

use crate::helpers::spawn_service;

#[tokio::test]
async fn every_method_refuses_unverified_callers_and_principals_off_its_allow_list() {
    // Arrange
    let app = spawn_service().await;

    // Act and assert: no credential, forged plain metadata, an unknown key, a wrong
    // audience and an expired assertion; then a valid one from a principal not allowed.
    tavana_kit::testing::assert_every_method_guarded(
        &app.url,
        tavana_proto::FILE_DESCRIPTOR_SET,
        &tavana_credit::POLICY,
    )
    .await;
}
