//! Refresh rotation, reuse detection, logout, and the mobile change that revokes
//! sessions (R5).

use tavana_kit::caller::Caller;
use tavana_kit::error::ErrorKind;
use tavana_proto::identity::v1 as pb;

use crate::helpers::*;

#[tokio::test]
async fn refresh_rotates_the_token() {
    let service = spawn_service().await;
    service.add_employee(1, "R01").await;
    let first = service.login(1).await;

    let second = service.refresh(&first.refresh_token).await.unwrap();

    assert_ne!(second.refresh_token, first.refresh_token);
    let before = claims(&service, &first.access_token).await;
    let after = claims(&service, &second.access_token).await;
    assert_eq!(before.sid, after.sid, "a refresh stays in its session");
    let third = service.refresh(&second.refresh_token).await.unwrap();
    assert_ne!(third.refresh_token, second.refresh_token);
}

#[tokio::test]
async fn a_reused_refresh_token_revokes_the_whole_family() {
    let service = spawn_service().await;
    service.add_employee(1, "R01").await;
    let first = service.login(1).await;
    let second = service.refresh(&first.refresh_token).await.unwrap();

    let reused = problem(service.refresh(&first.refresh_token).await.unwrap_err());

    assert_eq!(
        (reused.kind, reused.code.as_str()),
        (ErrorKind::Unauthenticated, "refresh_token_reused")
    );
    let newest = problem(service.refresh(&second.refresh_token).await.unwrap_err());
    assert_eq!(newest.code, "refresh_token_invalid");
}

#[tokio::test]
async fn concurrent_refreshes_of_one_token_let_only_one_win() {
    let service = spawn_service().await;
    service.add_employee(1, "R01").await;
    let first = service.login(1).await;

    let (a, b) = tokio::join!(
        service.refresh(&first.refresh_token),
        service.refresh(&first.refresh_token)
    );

    assert_eq!(
        a.is_ok() as u8 + b.is_ok() as u8,
        1,
        "exactly one exchange wins"
    );
}

#[tokio::test]
async fn unknown_and_expired_refresh_tokens_are_refused() {
    let service = spawn_service().await;
    service.add_employee(1, "R01").await;
    let tokens = service.login(1).await;

    let unknown = problem(service.refresh("nonsense").await.unwrap_err());
    assert_eq!(unknown.code, "refresh_token_invalid");
    service.advance(31 * 24 * 3600);
    let expired = problem(service.refresh(&tokens.refresh_token).await.unwrap_err());
    assert_eq!(expired.code, "refresh_token_invalid");
}

#[tokio::test]
async fn a_session_ends_at_its_absolute_lifetime_however_often_it_rotates() {
    let service = spawn_service().await;
    service.add_employee(1, "R01").await;
    let first = service.login(1).await;
    service.advance(20 * 24 * 3600);
    let second = service.refresh(&first.refresh_token).await.unwrap();

    service.advance(11 * 24 * 3600);
    let after_lifetime = service.refresh(&second.refresh_token).await;

    let refused = problem(after_lifetime.unwrap_err());
    assert_eq!(refused.code, "refresh_token_invalid", "30 days after login");
}

#[tokio::test]
async fn logout_revokes_only_the_callers_session() {
    let service = spawn_service().await;
    service.add_employee(1, "R01").await;
    service.add_employee(2, "R01").await;
    let mine = service.login(1).await;
    let theirs = service.login(2).await;
    let me = caller_of(&service, &mine.access_token).await;
    let their_sid = claims(&service, &theirs.access_token).await.sid;
    let my_sid = claims(&service, &mine.access_token).await.sid;

    let refused = service
        .client
        .clone()
        .logout(as_caller(
            pb::LogoutRequest {
                session_id: their_sid,
            },
            &me,
        ))
        .await
        .unwrap_err();
    assert_eq!(problem(refused).code, "session_not_found");
    service
        .client
        .clone()
        .logout(as_caller(pb::LogoutRequest { session_id: my_sid }, &me))
        .await
        .unwrap();

    assert_eq!(
        problem(service.refresh(&mine.refresh_token).await.unwrap_err()).code,
        "refresh_token_invalid"
    );
    service.refresh(&theirs.refresh_token).await.unwrap();
}

fn change_request(n: u32, new_mobile: &str) -> pb::ChangeMobileRequest {
    pb::ChangeMobileRequest {
        national_id: national_id(n),
        new_mobile: new_mobile.into(),
        requested_by_unit: "واحد رفاه منطقه ۱".into(),
        reference: "REF-1404-77".into(),
    }
}

#[tokio::test]
async fn r5_support_changes_the_mobile_records_it_and_revokes_every_session() {
    let service = spawn_service().await;
    service.add_employee(1, "R01").await;
    let phone = service.login(1).await;
    service.advance(60);
    let laptop = service.login(1).await;
    let new_mobile = mobile(500);

    let changed = service
        .client
        .clone()
        .change_mobile(as_caller(change_request(1, "+98 912 000 0500"), &support()))
        .await
        .unwrap()
        .into_inner()
        .employee
        .unwrap();

    assert_eq!(changed.mobile, new_mobile);
    for tokens in [&phone, &laptop] {
        let refused = problem(service.refresh(&tokens.refresh_token).await.unwrap_err());
        assert_eq!(refused.code, "refresh_token_invalid");
    }
    let changes = tavana_identity::store::mobile_changes_of(&service.db.db, &changed.employee_id)
        .await
        .unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].old_mobile, mobile(1));
    assert_eq!(changes[0].new_mobile, new_mobile);
    assert_eq!(changes[0].requested_by_unit, "واحد رفاه منطقه ۱");
    assert_eq!(changes[0].reference, "REF-1404-77");
    assert_eq!(changes[0].actor, "support-1");
    service.outbox_drained().await;
    let sms = service.sms_to(&new_mobile).await;
    assert_eq!(sms[0].template, "mobile_changed");
    // The old number no longer logs in; the new one does.
    service.advance(60);
    service
        .start_login(&national_id(1), &mobile(1))
        .await
        .unwrap();
    service.outbox_drained().await;
    assert!(
        service
            .sms_to(&mobile(1))
            .await
            .iter()
            .filter(|m| m.template == "login_code")
            .count()
            == 2
    );
    let challenge = service
        .start_login(&national_id(1), &new_mobile)
        .await
        .unwrap();
    let code = service.code_for(&new_mobile).await;
    service
        .verify(&challenge.challenge_id, &code)
        .await
        .unwrap();
}

#[tokio::test]
async fn r5_only_support_changes_a_mobile() {
    let service = spawn_service().await;
    service.add_employee(1, "R01").await;
    for caller in [region_admin("R01"), Caller::service("guarantee")] {
        let refused = service
            .client
            .clone()
            .change_mobile(as_caller(change_request(1, &mobile(9)), &caller))
            .await
            .unwrap_err();
        assert_eq!(problem(refused).kind, ErrorKind::PermissionDenied);
    }
    let anonymous = service
        .client
        .clone()
        .change_mobile(change_request(1, &mobile(9)))
        .await
        .unwrap_err();
    assert_eq!(problem(anonymous).kind, ErrorKind::Unauthenticated);
}

#[tokio::test]
async fn r5_mobile_change_needs_the_unit_and_reference() {
    let service = spawn_service().await;
    service.add_employee(1, "R01").await;
    let mut request = change_request(1, &mobile(9));
    request.requested_by_unit = " ".into();
    request.reference = String::new();
    let refused = problem(
        service
            .client
            .clone()
            .change_mobile(as_caller(request, &support()))
            .await
            .unwrap_err(),
    );
    let fields: Vec<&str> = refused
        .violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert_eq!(fields, ["requested_by_unit", "reference"]);
}

#[tokio::test]
async fn signing_keys_include_previous_keys_for_rotation() {
    let previous = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAT4sRQNDWLacK6PP/MRBTM+i1JAOg7ZdM+l37YVJU1f4=\n-----END PUBLIC KEY-----\n";
    let service = spawn_with(|settings| {
        settings.jwt.kid = "2026-01".into();
        settings.jwt.previous_public_keys = vec![tavana_identity::PreviousPublicKey {
            kid: "2025-12".into(),
            public_key_pem: previous.into(),
        }];
    })
    .await;
    service.add_employee(1, "R01").await;

    let keys = service
        .client
        .clone()
        .get_signing_keys(pb::GetSigningKeysRequest {})
        .await
        .unwrap()
        .into_inner()
        .keys;
    let kids: Vec<&str> = keys.iter().map(|k| k.kid.as_str()).collect();
    assert_eq!(kids, ["2026-01", "2025-12"]);
    let tokens = service.login(1).await;
    let header = jsonwebtoken::decode_header(&tokens.access_token).unwrap();
    assert_eq!(header.kid.as_deref(), Some("2026-01"));
}

#[tokio::test]
async fn serve_refuses_to_start_without_a_key_outside_dev() {
    let settings = tavana_identity::Settings::default();
    let error = settings.token_signer().unwrap_err().to_string();
    assert!(error.contains("no JWT signing key configured"), "{error}");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shared = tavana_kit::Shared {
        clock: tavana_kit::clock::SystemClock::shared(),
        store: std::sync::Arc::new(tavana_kit::store::MemoryStore::new()),
        keyring: tavana_kit::testing::test_keyring(),
        in_process: tavana_kit::grpc::InProcess::default(),
    };
    let served = tavana_identity::serve(settings, shared, listener, async {}).await;
    assert!(served.is_err());
}

#[tokio::test]
async fn a_configured_key_is_used_outside_dev() {
    let mut settings = tavana_identity::Settings::default();
    settings.jwt.private_key_pem = Some(
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIERVDooPm5ENx7jIsnar4utkIJ8Oza71B0B4DLmhNohx\n-----END PRIVATE KEY-----\n"
            .into(),
    );
    settings.jwt.kid = "prod-1".into();
    let signer = settings.token_signer().unwrap();
    assert_eq!(signer.kid(), "prod-1");
    assert!(
        signer.public_keys()[0]
            .pem
            .contains("MCowBQYDK2VwAyEAT4sRQNDWLacK6PP")
    );
}
