//! SMS delivery (R28): NotifyEmployee(s), the dev inbox, and the HTTP provider's retries.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use tavana_identity::domain::login::LoginCodeKey;
use tavana_identity::domain::sms::SmsMessage;
use tavana_identity::sms::{HttpProvider, HttpProviderConfig, SmsProvider, SmsProviderKind};
use tavana_kit::caller::Caller;
use tavana_kit::error::ErrorKind;
use tavana_kit::outbox::DeliveryError;
use tavana_proto::identity::v1 as pb;

use crate::helpers::*;

fn notify_request(employee_id: &str, dedup_key: &str) -> pb::NotifyEmployeeRequest {
    pb::NotifyEmployeeRequest {
        employee_id: employee_id.into(),
        template: pb::SmsTemplate::PurchaseReceipt as i32,
        params: [("amount".to_owned(), "1500000".to_owned())].into(),
        dedup_key: dedup_key.into(),
    }
}

async fn employee_id(service: &TestService, n: u32) -> String {
    tavana_identity::store::find_employee_by_national_id(&service.db.db, &national_id(n))
        .await
        .unwrap()
        .unwrap()
        .id
}

#[tokio::test]
async fn r28_notify_employee_is_idempotent_by_dedup_key() {
    let service = spawn_service().await;
    service.add_employee(1, "R01").await;
    let id = employee_id(&service, 1).await;
    let credit = Caller::service("credit");

    for key in ["purchase:1", "purchase:1", "purchase:2"] {
        service
            .client
            .clone()
            .notify_employee(as_caller(notify_request(&id, key), &credit))
            .await
            .unwrap();
    }
    service.outbox_drained().await;

    let messages = service.sms_to(&mobile(1)).await;
    assert_eq!(messages.len(), 2);
    assert!(messages[0].text.contains("۱۵۰۰۰۰۰"));
    assert_eq!(messages[0].template, "purchase_receipt");
    assert!(messages[0].sent_at.is_some());
}

#[tokio::test]
async fn r28_only_services_notify() {
    let service = spawn_service().await;
    service.add_employee(1, "R01").await;
    let id = employee_id(&service, 1).await;
    let refused = service
        .client
        .clone()
        .notify_employee(as_caller(notify_request(&id, "k"), &support()))
        .await
        .unwrap_err();
    assert_eq!(problem(refused).kind, ErrorKind::PermissionDenied);
    let mut login_code = notify_request(&id, "k");
    login_code.template = pb::SmsTemplate::LoginCode as i32;
    let refused = service
        .client
        .clone()
        .notify_employee(as_caller(login_code, &Caller::service("credit")))
        .await
        .unwrap_err();
    assert_eq!(problem(refused).violations[0].code, "template_invalid");
    let unknown = service
        .client
        .clone()
        .notify_employee(as_caller(
            notify_request("nobody", "k"),
            &Caller::service("credit"),
        ))
        .await
        .unwrap_err();
    assert_eq!(problem(unknown).code, "employee_not_found");
}

/// Sends `notifications` in one NotifyEmployees call, as settlement does.
async fn notify_all(
    service: &TestService,
    notifications: Vec<pb::NotifyEmployeeRequest>,
) -> Result<(), tonic::Status> {
    service
        .client
        .clone()
        .notify_employees(as_caller(
            pb::NotifyEmployeesRequest { notifications },
            &Caller::service("settlement"),
        ))
        .await
        .map(|_| ())
}

#[tokio::test]
async fn r28_notify_employees_queues_each_sms_once_also_when_the_batch_is_redelivered() {
    let service = spawn_service().await;
    let mut ids = Vec::new();
    for n in 1..=3 {
        service.add_employee(n, "R01").await;
        ids.push(employee_id(&service, n).await);
    }
    let batch = vec![
        notify_request(&ids[0], "settlement:R1:1"),
        notify_request(&ids[1], "settlement:R1:2"),
        // The same key twice in one batch queues once, as two calls would.
        notify_request(&ids[1], "settlement:R1:2"),
        notify_request(&ids[2], "settlement:R1:3"),
        notify_request(&ids[0], "purchase:7"),
    ];

    notify_all(&service, batch.clone()).await.unwrap();
    service.outbox_drained().await;
    let first: Vec<usize> = sms_counts(&service).await;
    notify_all(&service, batch).await.unwrap();
    service.outbox_drained().await;
    let redelivered: Vec<usize> = sms_counts(&service).await;

    assert_eq!(first, [2, 1, 1]);
    assert_eq!(redelivered, first);
    let messages = service.sms_to(&mobile(3)).await;
    assert!(messages[0].text.contains("۱۵۰۰۰۰۰"));
    assert!(messages[0].sent_at.is_some());
}

/// How many SMS employees 1 to 3 got.
async fn sms_counts(service: &TestService) -> Vec<usize> {
    let mut counts = Vec::new();
    for n in 1..=3 {
        counts.push(service.sms_to(&mobile(n)).await.len());
    }
    counts
}

#[tokio::test]
async fn r28_notify_employees_refuses_invalid_notifications_and_queues_the_valid_ones() {
    let service = spawn_service().await;
    let mut ids = Vec::new();
    for n in 1..=3 {
        service.add_employee(n, "R01").await;
        ids.push(employee_id(&service, n).await);
    }
    let mut login_code = notify_request(&ids[1], "k2");
    login_code.template = pb::SmsTemplate::LoginCode as i32;
    let batch = vec![
        notify_request(&ids[0], "k1"),
        login_code,
        notify_request(&ids[2], "  "),
    ];

    let refused = notify_all(&service, batch).await.unwrap_err();
    service.outbox_drained().await;

    let refused = problem(refused);
    assert_eq!(refused.kind, ErrorKind::InvalidArgument);
    let fields: Vec<(&str, &str)> = refused
        .violations
        .iter()
        .map(|v| (v.field.as_str(), v.code.as_str()))
        .collect();
    assert_eq!(
        fields,
        [
            ("notifications[1].template", "template_invalid"),
            ("notifications[2].dedup_key", "required"),
        ]
    );
    assert_eq!(sms_counts(&service).await, [1, 0, 0]);
}

#[tokio::test]
async fn r28_notify_employees_queues_the_known_employees_and_asks_to_retry_an_unknown_one() {
    let service = spawn_service().await;
    service.add_employee(1, "R01").await;
    let id = employee_id(&service, 1).await;
    let mut login_code = notify_request(&id, "k3");
    login_code.template = pb::SmsTemplate::LoginCode as i32;
    let batch = vec![
        notify_request("nobody", "k1"),
        notify_request(&id, "k2"),
        login_code,
    ];

    let unknown = notify_all(&service, batch).await.unwrap_err();
    service.outbox_drained().await;

    // NOT_FOUND (retried by the sender) wins over the invalid notification.
    assert_eq!(problem(unknown).code, "employee_not_found");
    assert_eq!(service.sms_to(&mobile(1)).await.len(), 1);
}

#[tokio::test]
async fn r28_only_services_notify_in_batches() {
    let service = spawn_service().await;
    service.add_employee(1, "R01").await;
    let id = employee_id(&service, 1).await;

    let refused = service
        .client
        .clone()
        .notify_employees(as_caller(
            pb::NotifyEmployeesRequest {
                notifications: vec![notify_request(&id, "k")],
            },
            &support(),
        ))
        .await
        .unwrap_err();

    assert_eq!(problem(refused).kind, ErrorKind::PermissionDenied);
    assert!(service.sms_to(&mobile(1)).await.is_empty());
}

#[tokio::test]
async fn dev_sms_is_not_found_with_another_provider() {
    let service = spawn_with(|settings| settings.sms.provider = Some(SmsProviderKind::Log)).await;
    let refused = service
        .client
        .clone()
        .list_dev_sms(pb::ListDevSmsRequest { mobile: mobile(1) })
        .await
        .unwrap_err();
    let refused = problem(refused);
    assert_eq!(
        (refused.kind, refused.code.as_str()),
        (ErrorKind::NotFound, "not_found")
    );
}

#[tokio::test]
async fn dev_sms_lists_newest_first() {
    let service = spawn_service().await;
    service.add_employee(1, "R01").await;
    service.login(1).await;
    service.outbox_drained().await;
    let messages = service.sms_to("00989120000001").await;
    let templates: Vec<&str> = messages.iter().map(|m| m.template.as_str()).collect();
    assert_eq!(templates, ["welcome", "login_code"]);
    assert!(messages[0].code.is_none());
}

/// A fake SMS gateway: answers each call with the next status of `script` (then 200),
/// counting calls.
async fn fake_gateway(
    script: Vec<u16>,
) -> (
    String,
    Arc<AtomicUsize>,
    Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
) {
    #[derive(Clone)]
    struct Fake {
        calls: Arc<AtomicUsize>,
        script: Arc<Vec<u16>>,
        bodies: Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    }
    async fn answer(
        State(fake): State<Fake>,
        headers: axum::http::HeaderMap,
        Json(body): Json<serde_json::Value>,
    ) -> StatusCode {
        assert_eq!(headers["authorization"], "Bearer secret-key");
        let call = fake.calls.fetch_add(1, Ordering::SeqCst);
        fake.bodies.lock().unwrap().push(body);
        StatusCode::from_u16(fake.script.get(call).copied().unwrap_or(200)).unwrap()
    }
    let fake = Fake {
        calls: Arc::new(AtomicUsize::new(0)),
        script: Arc::new(script),
        bodies: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/api/otp", axum::routing::post(answer))
        .route("/api/send", axum::routing::post(answer))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}/api"), fake.calls, fake.bodies)
}

fn provider(base_url: String) -> HttpProvider {
    HttpProvider::new(HttpProviderConfig {
        base_url,
        api_key: "secret-key".into(),
        sender: "3000".into(),
        otp_template: "tavana-otp".into(),
        timeout: Duration::from_secs(5),
        max_retries: 3,
        retry_min_delay: Duration::from_millis(1),
    })
    .unwrap()
}

#[tokio::test]
async fn r28_http_provider_retries_5xx_then_succeeds() {
    let (url, calls, bodies) = fake_gateway(vec![503, 500]).await;
    let key = LoginCodeKey::derive_from(b"signing key");
    let sms = SmsMessage::login_code("09121234567", "challenge-1", 2).rendered(&key);

    provider(url).send(&sms).await.unwrap();

    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let body = bodies.lock().unwrap()[0].clone();
    assert_eq!(body["template"], "tavana-otp");
    assert_eq!(body["token"], key.code("challenge-1").as_str());
    assert_eq!(body["receptor"], "09121234567");
}

#[tokio::test]
async fn r28_http_provider_does_not_retry_4xx() {
    let (url, calls, _) = fake_gateway(vec![400]).await;
    let sms = SmsMessage::mobile_changed("09121234567");

    let failed = provider(url).send(&sms).await.unwrap_err();

    assert!(matches!(failed, DeliveryError::Permanent(_)), "{failed:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn r28_http_provider_gives_back_to_the_relay_after_its_retries() {
    let (url, calls, bodies) = fake_gateway(vec![502, 502, 502, 502, 502]).await;
    let sms = SmsMessage::mobile_changed("09121234567");

    let failed = provider(url).send(&sms).await.unwrap_err();

    assert!(matches!(failed, DeliveryError::Retry(_)), "{failed:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 4, "one try and three retries");
    assert_eq!(bodies.lock().unwrap()[0]["sender"], "3000");
}

#[tokio::test]
async fn r28_http_provider_retries_a_timeout() {
    // Nothing answers on this port: connection errors count like timeouts.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api", listener.local_addr().unwrap());
    drop(listener);
    let failed = provider(url)
        .send(&SmsMessage::mobile_changed("09121234567"))
        .await
        .unwrap_err();
    assert!(matches!(failed, DeliveryError::Retry(_)), "{failed:?}");
}

#[tokio::test]
async fn r28_relay_delivers_through_the_http_provider() {
    let (url, calls, bodies) = fake_gateway(vec![503]).await;
    let service = spawn_with(|settings| {
        settings.sms.provider = Some(SmsProviderKind::Http);
        settings.sms.base_url = url;
        settings.sms.api_key = Some("secret-key".into());
        settings.sms.retry_min_delay_ms = 1;
    })
    .await;
    service.add_employee(1, "R01").await;
    service
        .start_login(&national_id(1), &mobile(1))
        .await
        .unwrap();
    service.outbox_drained().await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(bodies.lock().unwrap()[1]["receptor"], mobile(1));
}

/// The outbox's large payloads (a remittance's or a close's batches) are compressed with
/// LZ4 on PostgreSQL, where the server has it (it does here).
#[tokio::test]
async fn outbox_payloads_compress_with_lz4_on_postgres() {
    let db = tavana_kit::testing::test_db::<tavana_identity_migration::Migrator>().await;
    let compression = tavana_kit::testing::outbox_payload_compression(&db.db).await;
    assert_eq!(compression, db.is_postgres().then_some("lz4"));
}
