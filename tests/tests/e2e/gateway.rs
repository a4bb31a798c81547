//! The gateway's own behaviour: health, OpenAPI, problem+json, request ids.

use serde_json::json;
use tavana_e2e::spawn_app;

#[tokio::test]
async fn health_and_readiness_answer_when_every_service_runs() {
    let app = spawn_app().await;

    let health = app.get("/healthz", None).await;
    // Readiness is a probe of the services behind the gateway, not the effect of a write:
    // it may answer 503 until the gateway's channels to them connect, so it is waited for.
    let ready = app
        .eventually(|| async {
            let ready = app.get("/readyz", None).await;
            (ready.status == 200).then_some(ready)
        })
        .await;

    assert_eq!(health.status, 200);
    assert_eq!(ready.body["status"], "ok");
}

#[tokio::test]
async fn openapi_document_lists_the_api_paths() {
    let app = spawn_app().await;

    let document = app.get("/openapi.json", None).await;

    assert_eq!(document.status, 200);
    assert!(
        document.body["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3.")
    );
    let paths = document.body["paths"].as_object().expect("paths");
    for path in [
        "/v1/auth/login-code",
        "/v1/me",
        "/v1/me/balance",
        "/v1/merchants",
        "/v1/remittances",
    ] {
        assert!(paths.contains_key(path), "{path} is documented");
    }
}

#[tokio::test]
async fn unknown_route_is_a_problem_json_404() {
    let app = spawn_app().await;

    let answer = app.get("/v1/nothing-here", None).await;

    assert_eq!(answer.status, 404);
    assert_eq!(answer.headers["content-type"], "application/problem+json");
    assert_eq!(answer.body["status"], 404);
    assert!(
        answer.body["message_fa"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
}

#[tokio::test]
async fn a_protected_route_without_token_is_401_problem_json() {
    let app = spawn_app().await;

    let answer = app.get("/v1/me", None).await;
    let forged = app.get("/v1/me", Some("not-a-jwt")).await;

    assert_eq!(answer.status, 401);
    assert_eq!(answer.code(), "unauthenticated");
    assert_eq!(forged.status, 401);
}

#[tokio::test]
async fn a_nul_character_in_a_body_text_or_in_the_url_is_a_400_before_any_service_sees_it() {
    let app = spawn_app().await;

    // PostgreSQL stores no NUL in a text column: without the edge's check, the split
    // topology answered 500 where SQLite stored the text.
    let in_body = app
        .post(
            "/v1/auth/login-code",
            None,
            json!({"national_id": "0010000011", "mobile": "0912\u{0}0000001"}),
        )
        .await;
    let in_member_name = app
        .post("/v1/auth/login-code", None, json!({"a\u{0}b": 1}))
        .await;
    let in_query = app.get("/v1/merchants?q=a%00b", None).await;
    let in_path = app.get("/v1/merchants/m%00x", None).await;

    for answer in [&in_body, &in_member_name, &in_query, &in_path] {
        assert_eq!(answer.status, 400, "{answer:?}");
        assert_eq!(answer.code(), "text_has_nul");
    }
    // A text without one goes on as before (the directory is public).
    let plain = app.get("/v1/merchants?q=a%20b", None).await;
    assert_eq!(plain.status, 200, "{plain:?}");
}

#[tokio::test]
async fn malformed_json_is_a_400_with_a_stable_code() {
    let app = spawn_app().await;

    let request = app
        .client
        .post(app.url("/v1/auth/login-code"))
        .header("content-type", "application/json")
        .body("{not json");
    let answer = app.send(request).await;

    assert_eq!(answer.status, 400);
    assert_eq!(answer.code(), "malformed_body");
}

#[tokio::test]
async fn every_answer_carries_a_request_id_and_honours_the_callers() {
    let app = spawn_app().await;

    let generated = app.get("/healthz", None).await;
    let request = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "req-123");
    let given = app.send(request).await;

    assert!(generated.headers.contains_key("x-request-id"));
    assert_eq!(given.headers["x-request-id"], "req-123");
}

#[tokio::test]
async fn dev_clock_moves_forward() {
    let app = spawn_app().await;
    let before = app.get("/v1/dev/clock", None).await;

    app.advance_clock(72 * 3600).await;
    let after = app.get("/v1/dev/clock", None).await;

    let parse = |answer: &tavana_e2e::Answer| {
        chrono::DateTime::parse_from_rfc3339(answer.body["now"].as_str().expect("now"))
            .expect("rfc 3339")
    };
    assert!((parse(&after) - parse(&before)).num_hours() >= 72);
    let invalid = app.post("/v1/dev/clock", None, json!({})).await;
    assert_eq!(invalid.status, 400);
}

#[tokio::test]
async fn a_bank_csv_larger_than_two_mebibytes_is_accepted() {
    let app = spawn_app().await;
    let world = tavana_e2e::world::seed(&app).await;
    // One line, padded past axum's 2 MiB extractor default with blank
    // lines, which the CSV reader skips: the size is what is under test.
    let mut csv = String::from("national_id,amount\n0010000011,1000\n");
    csv.push_str(&"\n".repeat(3 * 1024 * 1024));

    let request = app
        .client
        .post(app.url("/v1/remittances?organization_id=ORG-1&period=1405-01&bank_reference=BIG-1"))
        .bearer_auth(&world.support.token)
        .header("content-type", "text/csv")
        .body(csv);
    let answer = app.send(request).await;

    assert_eq!(
        answer.status,
        200,
        "{}",
        &answer.text[..answer.text.len().min(300)]
    );
    assert!(
        answer.body["unmatched"]
            .as_array()
            .is_some_and(|lines| !lines.is_empty())
    );
}

#[tokio::test]
async fn a_body_over_64_kib_is_refused_with_413_before_it_is_read() {
    let app = spawn_app().await;
    let padding = "x".repeat(65 * 1024);

    let request = app
        .client
        .post(app.url("/v1/auth/login-code"))
        .header("content-type", "application/json")
        .body(format!(
            "{{\"national_id\":\"0010000011\",\"mobile\":\"09120000001\",\"pad\":\"{padding}\"}}"
        ));
    let answer = app.send(request).await;

    assert_eq!(answer.status, 413);
    assert_eq!(answer.headers["content-type"], "application/problem+json");
    assert_eq!(answer.code(), "body_too_large");
    assert_eq!(answer.body["max_body_bytes"], 64 * 1024);
}

#[tokio::test]
async fn a_streamed_body_without_length_is_cut_at_the_limit() {
    let app = spawn_app().await;
    let chunks = futures::stream::iter((0..80).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024])));

    let request = app
        .client
        .post(app.url("/v1/auth/token"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks));
    let answer = app.send(request).await;

    assert_eq!(answer.status, 413);
    assert_eq!(answer.code(), "body_too_large");
}

#[tokio::test]
async fn the_openapi_document_declares_the_edge_statuses() {
    let app = spawn_app().await;

    let document = app.get("/openapi.json", None).await;

    let purchase = &document.body["paths"]["/v1/merchant/purchases"]["post"]["responses"];
    for status in ["400", "401", "413", "422", "429"] {
        assert!(purchase.get(status).is_some(), "{status} is declared");
    }
}
