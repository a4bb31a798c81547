//! Who may see and decide (R6, R10, S14): strangers get "not found", people who know of
//! the request but may not act get "permission_denied".

use tonic::Code;

use crate::{problem, spawn_app};

#[tokio::test]
async fn r11_a_colleague_cannot_see_another_employees_request() {
    let app = spawn_app().await;
    let applicant = app.employee();
    let guarantor = app.employee();
    let colleague = app.employee();
    let request = app
        .file(&applicant, &guarantor.national_id, 1_000, 12)
        .await
        .unwrap();

    let status = app
        .get(&colleague.caller(), &request.request_id)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    // The guarantor and the region's finance office see it.
    app.get(&guarantor.caller(), &request.request_id)
        .await
        .unwrap();
    app.get(&app.finance("R01").caller(), &request.request_id)
        .await
        .unwrap();
    let other_finance = app
        .get(&app.finance("R02").caller(), &request.request_id)
        .await
        .unwrap_err();
    assert_eq!(other_finance.code(), Code::NotFound);
}

#[tokio::test]
async fn r10_only_the_named_guarantor_decides() {
    let app = spawn_app().await;
    let applicant = app.employee();
    let guarantor = app.employee();
    let colleague = app.employee();
    let request = app
        .file(&applicant, &guarantor.national_id, 1_000, 12)
        .await
        .unwrap();

    let stranger = app
        .guarantor_decides(&colleague.caller(), &request.request_id, true)
        .await
        .unwrap_err();
    assert_eq!(stranger.code(), Code::NotFound);
    let own = app
        .guarantor_decides(&applicant.caller(), &request.request_id, true)
        .await
        .unwrap_err();
    assert_eq!(own.code(), Code::PermissionDenied);
    let cancel = app
        .cancel(&guarantor.caller(), &request.request_id)
        .await
        .unwrap_err();
    assert_eq!(cancel.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn r10_only_finance_of_the_applicants_region_decides() {
    let app = spawn_app().await;
    let applicant = app.employee();
    let guarantor = app.employee();
    let request = app
        .file(&applicant, &guarantor.national_id, 1_000, 12)
        .await
        .unwrap();
    app.guarantor_decides(&guarantor.caller(), &request.request_id, true)
        .await
        .unwrap();

    let employee = app
        .finance_decides(&applicant.caller(), &request.request_id, true)
        .await
        .unwrap_err();
    assert_eq!(employee.code(), Code::PermissionDenied);
    assert_eq!(problem(&employee).code, "permission_denied");

    let other_region = app
        .finance_decides(&app.finance("R02").caller(), &request.request_id, true)
        .await
        .unwrap_err();
    assert_eq!(other_region.code(), Code::PermissionDenied);

    let unknown = app
        .finance_decides(&app.finance("R01").caller(), "no-such-request", true)
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}
