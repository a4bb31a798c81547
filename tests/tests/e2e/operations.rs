//! Split mode only: what an operator sees. Every process serves Prometheus
//! `/metrics`; calls to a replicated service are balanced per request; one
//! client `traceparent` yields one trace across every hop (OTLP).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use serde_json::json;
use tavana_e2e::world::{Merchant, World, approved_merchant, open_facility, seed};
use tavana_e2e::{TestApp, mobile, national_id, spawn_app, split_mode};

/// Sums the samples of `name` whose labels include every pair of `labels`.
fn metric(page: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((series_name, rest)) => (series_name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            (series_name == name
                && labels
                    .iter()
                    .all(|(key, value)| series_labels.contains(&format!("{key}=\"{value}\""))))
            .then(|| value.parse::<f64>().ok())
            .flatten()
        })
        .sum()
}

async fn scrape(app: &TestApp, url: &str) -> String {
    let response = app.client.get(url).send().await.expect("/metrics answers");
    assert_eq!(response.status(), 200, "{url}");
    response.text().await.expect("a metrics page")
}

/// Scrapes every process; returns (process, page).
async fn scrape_all(app: &TestApp) -> Vec<(String, String)> {
    let topology = app.split().expect("split topology");
    let mut pages = Vec::new();
    for (process, url) in &topology.metrics_urls {
        pages.push((process.clone(), scrape(app, url).await));
    }
    pages
}

/// The seed's people, the applicant's open facility (R12) and an approved merchant.
async fn buyer_and_merchant(app: &TestApp, merchant: &str) -> (World, Merchant) {
    let world = seed(app).await;
    let merchant = approved_merchant(app, &world, merchant).await;
    open_facility(
        app,
        &world,
        &world.applicant,
        &world.guarantor,
        5_000_000,
        6,
    )
    .await;
    (world, merchant)
}

#[tokio::test]
async fn every_process_counts_the_purchase_and_shows_its_outbox_drained_and_replicas_share_load() {
    if !split_mode() {
        eprintln!("runs only against the split topology (TAVANA_E2E_TOPOLOGY=split)");
        return;
    }
    // Arrange: an employee with an open facility (R12) and a merchant.
    let app = spawn_app().await;
    let (world, merchant) = buyer_and_merchant(&app, "Metric Books").await;

    // Act: one purchase (R14), then reads that credit's two replicas share.
    let bought = app
        .post_idempotent(
            "/v1/me/purchases",
            world.applicant.auth(),
            "metrics-1",
            json!({ "merchant_id": merchant.id, "kind": "credit", "amount": 1 }),
        )
        .await;
    assert_eq!(bought.status, 201, "{bought:?}");
    for _ in 0..40 {
        let balance = app.get("/v1/me/balance", world.applicant.auth()).await;
        assert_eq!(balance.status, 200);
    }

    // Assert: every process answers /metrics; the purchase is counted once
    // by credit and by the gateway's route; credit's outbox message (the
    // schedule for settlement) is delivered, so no outbox has a backlog.
    let topology = app.split().expect("split topology");
    let processes: BTreeSet<&str> = topology
        .metrics_urls
        .iter()
        .map(|(process, _)| process.as_str())
        .collect();
    for process in [
        "identity-0",
        "guarantee-0",
        "credit-0",
        "credit-1",
        "settlement-0",
        "settlement-1",
        "merchant-directory-0",
        "gateway",
    ] {
        assert!(processes.contains(process), "{process} has no /metrics");
    }
    let pages = scrape_all(&app).await;
    let total = |name: &str, labels: &[(&str, &str)]| -> f64 {
        pages
            .iter()
            .map(|(_, page)| metric(page, name, labels))
            .sum()
    };
    assert_eq!(
        total("tavana_purchases_total", &[("outcome", "accepted")]),
        1.0
    );
    assert_eq!(
        total(
            "tavana_http_requests_total",
            &[
                ("route", "/v1/me/purchases"),
                ("method", "POST"),
                ("status", "201")
            ]
        ),
        1.0
    );
    assert!(total("tavana_login_codes_total", &[("outcome", "sent")]) >= 1.0);
    assert!(total("tavana_db_pool_connections", &[("service", "credit")]) >= 1.0);
    let purchase_method = "/tavana.credit.v1.CreditService/CreatePurchase";
    assert_eq!(
        total(
            "tavana_grpc_server_requests_total",
            &[("method", purchase_method), ("code", "Ok")]
        ),
        1.0
    );
    // Read your writes: every message between services (guarantee's
    // OpenFacility and notices, credit's schedule for settlement) was
    // delivered before the call that wrote it answered, and the samplers read
    // the outbox tables at this scrape: no backlog, nothing failed. Only
    // identity's `sms.send` is left out: it goes to the SMS provider, not to
    // a service, and identity's NotifyEmployee answers once the SMS is queued
    // (its relay sends it), so that topic may still hold a message here.
    let between_services = |name: &str| -> f64 {
        pages
            .iter()
            .flat_map(|(_, page)| page.lines())
            .filter(|line| !line.contains(r#"topic="sms.send""#))
            .map(|line| metric(line, name, &[]))
            .sum()
    };
    assert_eq!(between_services("tavana_outbox_pending_messages"), 0.0);
    assert_eq!(between_services("tavana_outbox_failed_messages"), 0.0);
    // The samplers ran on every service's database at that scrape.
    for service in ["identity", "guarantee", "credit", "settlement"] {
        assert!(
            total("tavana_db_pool_connections", &[("service", service)]) >= 1.0,
            "{service}'s database is sampled"
        );
    }
    // Per-request balancing: both credit replicas served balance reads.
    let balance_method = "/tavana.credit.v1.CreditService/GetBalance";
    for replica in ["credit-0", "credit-1"] {
        let (_, page) = pages
            .iter()
            .find(|(process, _)| process == replica)
            .expect("the replica's page");
        let served = metric(
            page,
            "tavana_grpc_server_requests_total",
            &[("method", balance_method)],
        );
        assert!(served > 0.0, "{replica} took none of the 40 reads");
    }
}

/// A small OTLP/gRPC trace receiver: keeps every span with its resource's
/// `service.name`.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

#[derive(Clone, Debug)]
struct ReceivedSpan {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
}

/// True when `span` is `ancestor` or lies under it (through its parents).
fn descends_from(spans: &[ReceivedSpan], span: &ReceivedSpan, ancestor: &ReceivedSpan) -> bool {
    let mut current = Some(span);
    while let Some(at) = current {
        if at.span_id == ancestor.span_id {
            return true;
        }
        current = spans
            .iter()
            .find(|parent| !at.parent_span_id.is_empty() && parent.span_id == at.parent_span_id);
    }
    false
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().expect("spans");
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|resource| resource.attributes.iter())
                .find(|attribute| attribute.key == "service.name")
                .and_then(
                    |attribute| match attribute.value.as_ref()?.value.as_ref()? {
                        AnyValue::StringValue(name) => Some(name.clone()),
                        _ => None,
                    },
                )
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push(ReceivedSpan {
                        service: service.clone(),
                        name: span.name.clone(),
                        trace_id: hex::encode(&span.trace_id),
                        span_id: hex::encode(&span.span_id),
                        parent_span_id: hex::encode(&span.parent_span_id),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tokio::test]
async fn one_client_traceparent_yields_one_trace_across_gateway_guarantee_and_identity() {
    if !split_mode() {
        eprintln!("runs only against the split topology (TAVANA_E2E_TOPOLOGY=split)");
        return;
    }
    // Arrange: an OTLP receiver, the split topology exporting to it, the
    // applicant and guarantor of one region (R9).
    let (receiver, app) = traced_app().await;
    let world = seed(&app).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";

    // Act: file a credit request (R8) with the client's traceparent; filing
    // enqueues two SMS notices to identity (the guarantor's and the
    // applicant's, R28), delivered at once by guarantee's outbox. Then stop
    // the three processes as Kubernetes would (SIGTERM): a graceful shutdown
    // flushes the batch exporter, so every span they made has reached the
    // receiver once they have exited.
    let filed = app
        .send(
            app.client
                .post(app.url("/v1/me/credit-requests"))
                .bearer_auth(&world.applicant.token)
                .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
                .json(&json!({
                    "guarantor_national_id": world.guarantor.national_id,
                    "monthly_credit": 1_000_000,
                    "instalment_months": 6,
                })),
        )
        .await;
    assert_eq!(filed.status, 201, "{filed:?}");
    let topology = app.split().expect("split topology");
    topology
        .stop_all(&["gateway", "guarantee-0", "identity-0"])
        .await
        .expect("a graceful stop");

    // Assert: one trace, the client's. The gateway's span holds guarantee's
    // FileCreditRequest, which holds identity's GetEmployee (the peer call)
    // and the outbox's two deliveries; each delivery (sender side, guarantee)
    // holds identity's NotifyEmployee (receiver side). Each span names its
    // service.
    let spans = spans_of(&receiver, trace_id);
    let filing = handled_under_the_gateway(&spans, "guarantee", "/FileCreditRequest");
    let lookups = named(&spans, "identity", "/GetEmployee");
    assert!(!lookups.is_empty(), "{spans:#?}");
    for lookup in &lookups {
        assert!(descends_from(&spans, lookup, filing), "{spans:#?}");
    }
    let deliveries = named(&spans, "guarantee", "outbox identity.notify_employee");
    assert_eq!(deliveries.len(), 2, "{spans:#?}");
    let notices = named(&spans, "identity", "/NotifyEmployee");
    assert_eq!(notices.len(), 2, "{spans:#?}");
    for delivery in &deliveries {
        assert!(descends_from(&spans, delivery, filing), "{spans:#?}");
        let received: Vec<_> = notices
            .iter()
            .filter(|notice| descends_from(&spans, notice, delivery))
            .collect();
        assert_eq!(received.len(), 1, "{delivery:?} in {spans:#?}");
    }
}

/// Starts an OTLP receiver and a split topology that exports its traces to it.
async fn traced_app() -> (Receiver, TestApp) {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    (receiver, tavana_e2e::spawn_traced_app(&endpoint).await)
}

/// The spans of `trace_id` the receiver has.
fn spans_of(receiver: &Receiver, trace_id: &str) -> Vec<ReceivedSpan> {
    receiver
        .spans
        .lock()
        .expect("spans")
        .iter()
        .filter(|span| span.trace_id == trace_id)
        .cloned()
        .collect()
}

/// The spans of `service` whose name contains `name`.
fn named<'a>(spans: &'a [ReceivedSpan], service: &str, name: &str) -> Vec<&'a ReceivedSpan> {
    spans
        .iter()
        .filter(|span| span.service == service && span.name.contains(name))
        .collect()
}

/// The one span of `service` whose name contains `name`.
fn only<'a>(spans: &'a [ReceivedSpan], service: &str, name: &str) -> &'a ReceivedSpan {
    let found = named(spans, service, name);
    assert_eq!(found.len(), 1, "one {service} span {name} in {spans:#?}");
    found[0]
}

/// The one span of `service` named `rpc`, under the gateway's one span (the
/// client's request).
fn handled_under_the_gateway<'a>(
    spans: &'a [ReceivedSpan],
    service: &str,
    rpc: &str,
) -> &'a ReceivedSpan {
    let gateway = only(spans, "gateway", "http");
    let handled = only(spans, service, rpc);
    assert!(descends_from(spans, handled, gateway), "{spans:#?}");
    handled
}

#[tokio::test]
async fn a_delivery_the_relay_retries_later_resumes_the_trace_of_the_request_that_wrote_it() {
    if !split_mode() {
        eprintln!("runs only against the split topology (TAVANA_E2E_TOPOLOGY=split)");
        return;
    }
    // Arrange: an employee with an open facility (R12), a merchant, and
    // settlement down (both replicas stopped).
    let (receiver, app) = traced_app().await;
    let (world, merchant) = buyer_and_merchant(&app, "Traced Books").await;
    let topology = app.split().expect("split topology");
    topology
        .stop_all(&["settlement-0", "settlement-1"])
        .await
        .expect("a graceful stop");
    let trace_id = "0af7651916cd43dd8448eb211c80319c";

    // Act: a purchase (R14) with the client's traceparent answers although
    // its schedule cannot reach settlement (read your writes falls back to
    // the relay); settlement comes back and credit's relay delivers the
    // schedule from the outbox row, whose traceparent column is all that
    // links the retry to the request.
    let bought = app
        .send(
            app.client
                .post(app.url("/v1/me/purchases"))
                .bearer_auth(&world.applicant.token)
                .header("idempotency-key", "traced-1")
                .header("traceparent", format!("00-{trace_id}-b7ad6b7169203331-01"))
                .json(&json!({ "merchant_id": merchant.id, "kind": "credit", "amount": 1 })),
        )
        .await;
    assert_eq!(bought.status, 201, "{bought:?}");
    for process in ["settlement-0", "settlement-1"] {
        topology.start_again(process).expect("settlement starts");
    }
    // The relay retries with a backoff: this waits for it, not for a
    // promise the contract makes at once.
    let credit_pages: Vec<&str> = topology
        .metrics_urls
        .iter()
        .filter(|(process, _)| process.starts_with("credit-"))
        .map(|(_, url)| url.as_str())
        .collect();
    app.eventually_within(60, || async {
        let mut pending = 0.0;
        for url in &credit_pages {
            pending += metric(
                &scrape(&app, url).await,
                "tavana_outbox_pending_messages",
                &[("topic", "settlement.record_schedule")],
            );
        }
        (pending == 0.0).then_some(())
    })
    .await;
    // Stopping flushes each process's trace exporter (graceful shutdown).
    topology
        .stop_all(&[
            "gateway",
            "credit-0",
            "credit-1",
            "settlement-0",
            "settlement-1",
        ])
        .await
        .expect("a graceful stop");

    // Assert: settlement's RecordSchedule lies under a delivery span of
    // credit's outbox, under credit's CreatePurchase, under the gateway's
    // span: the client's one trace.
    let spans = spans_of(&receiver, trace_id);
    let purchase = handled_under_the_gateway(&spans, "credit", "/CreatePurchase");
    let recorded = only(&spans, "settlement", "/RecordSchedule");
    let deliveries = named(&spans, "credit", "outbox settlement.record_schedule");
    let delivered_by: Vec<_> = deliveries
        .iter()
        .filter(|delivery| descends_from(&spans, recorded, delivery))
        .collect();
    assert_eq!(delivered_by.len(), 1, "{spans:#?}");
    assert!(
        descends_from(&spans, delivered_by[0], purchase),
        "{spans:#?}"
    );
    // The first try (at once, settlement down) failed in the same trace.
    assert!(deliveries.len() >= 2, "{spans:#?}");
}

/// The session id (`sid`) of an access token.
fn session_of(access_token: &str) -> String {
    use base64::Engine as _;
    let payload = access_token.split('.').nth(1).expect("a JWT");
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64url claims"),
    )
    .expect("JSON claims");
    claims["sid"].as_str().expect("sid").to_owned()
}

#[tokio::test]
async fn r5_a_revoked_session_stays_revoked_when_the_shared_store_loses_its_keys() {
    // Arrange: a signed-in employee who logs out.
    let app = spawn_app().await;
    let world = seed(&app).await;
    let token = world.applicant.token.clone();
    let logout = app.post("/v1/auth/logout", Some(&token), json!({})).await;
    assert_eq!(logout.status, 204, "{logout:?}");
    assert_eq!(app.get("/v1/me", Some(&token)).await.status, 401);

    // Act: Redis restarts empty (the revocation key is gone).
    let store = app.store().await;
    let sid = session_of(&token);
    store
        .delete(&format!("revoked:session:{sid}"))
        .await
        .expect("the key is deleted");
    let after = app.get("/v1/me", Some(&token)).await;

    // Assert: identity's sessions table still says revoked, and the cache
    // has the answer again.
    assert_eq!(after.status, 401, "{after:?}");
    assert_eq!(
        tavana_kit::revocation::cached(store.as_ref(), &sid)
            .await
            .unwrap(),
        Some(true)
    );
}

#[tokio::test]
async fn r5_an_active_session_is_checked_with_identity_once_and_then_cached() {
    let app = spawn_app().await;
    let world = seed(&app).await;
    let token = world.applicant.token.clone();
    let store = app.store().await;
    let sid = session_of(&token);
    store
        .delete(&format!("revoked:session:{sid}"))
        .await
        .unwrap();

    let me = app.get("/v1/me", Some(&token)).await;

    assert_eq!(me.status, 200, "{me:?}");
    assert_eq!(
        tavana_kit::revocation::cached(store.as_ref(), &sid)
            .await
            .unwrap(),
        Some(false)
    );
}

#[tokio::test]
async fn r5_a_revocation_in_the_shared_store_refuses_a_token_verified_lately_at_once() {
    // Arrange: a token the gateway has verified, whose session it remembers as active.
    let app = spawn_app().await;
    let world = seed(&app).await;
    let token = world.applicant.token.clone();
    let before = app.get("/v1/me", Some(&token)).await;
    assert_eq!(before.status, 200, "{before:?}");

    // Act: the session is revoked in the shared store only (identity's table still says
    // active), as identity records a revocation for every gateway replica.
    let store = app.store().await;
    tavana_kit::revocation::revoke_session(store.as_ref(), &session_of(&token))
        .await
        .unwrap();
    let after = app.get("/v1/me", Some(&token)).await;

    // Assert: the gateway read the revocation with the request, not a remembered answer.
    assert_eq!(after.status, 401, "{after:?}");
}

#[tokio::test]
async fn r26_a_manager_of_two_regions_proposes_in_the_region_named_and_only_in_own_regions() {
    // Arrange: a manager of R01 and R02, granted both before the first login so that the
    // token carries both (login codes are rate limited on the real clock, R3).
    let app = spawn_app().await;
    seed(&app).await;
    app.upsert_employee(
        &national_id(60),
        "مدیر دو منطقه",
        &mobile(60),
        tavana_e2e::world::ORGANIZATION,
        tavana_e2e::world::REGION,
        250_000_000,
        "2010-09-23",
    )
    .await;
    for region in [tavana_e2e::world::REGION, "R02"] {
        app.grant_role(&national_id(60), "region_welfare_manager", Some(region))
            .await;
    }
    let manager = app.login(&national_id(60), &mobile(60)).await;
    let body = |name: &str, region: Option<&str>| {
        let mut body = json!({
            "name": name,
            "kind": "online",
            "website": format!("https://{}.example", name.to_lowercase()),
            "categories": ["books"],
            "supports_credit": true,
            "supports_instalment": false,
            "contact_phone": "02188000000",
        });
        if let Some(region) = region {
            body["region_code"] = json!(region);
        }
        body
    };

    // Act
    let named = app
        .post(
            "/v1/merchant-proposals",
            Some(&manager),
            body("Named", Some("R02")),
        )
        .await;
    let unnamed = app
        .post(
            "/v1/merchant-proposals",
            Some(&manager),
            body("Unnamed", None),
        )
        .await;
    let foreign = app
        .post(
            "/v1/merchant-proposals",
            Some(&manager),
            body("Foreign", Some("R09")),
        )
        .await;

    // Assert
    assert_eq!(named.status, 201, "{named:?}");
    assert_eq!(named.body["region_code"], "R02");
    assert_eq!(unnamed.status, 422, "{unnamed:?}");
    assert_eq!(unnamed.code(), "region_required");
    assert_eq!(foreign.status, 403, "{foreign:?}");
    assert_eq!(foreign.code(), "region_not_yours");
}

/// A browser without JavaScript: keeps the portal cookie, follows nothing.
struct Browser {
    client: reqwest::Client,
    cookie: Mutex<String>,
}

impl Browser {
    fn new() -> Browser {
        Browser {
            client: tavana_kit::http::client_builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookie: Mutex::new(String::new()),
        }
    }

    fn keep_cookie(&self, response: &reqwest::Response) {
        for value in response.headers().get_all(reqwest::header::SET_COOKIE) {
            let value = value.to_str().unwrap();
            if let Some(pair) = value.split(';').next()
                && pair.starts_with("tavana_portal=")
            {
                *self.cookie.lock().unwrap() = pair.to_owned();
            }
        }
    }

    async fn get(&self, base: &str, path: &str) -> (u16, String) {
        let cookie = self.cookie.lock().unwrap().clone();
        let response = self
            .client
            .get(format!("{base}{path}"))
            .header(reqwest::header::COOKIE, cookie)
            .send()
            .await
            .unwrap();
        self.keep_cookie(&response);
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    async fn post(&self, base: &str, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let cookie = self.cookie.lock().unwrap().clone();
        let response = self
            .client
            .post(format!("{base}{path}"))
            .header(reqwest::header::COOKIE, cookie)
            .form(form)
            .send()
            .await
            .unwrap();
        self.keep_cookie(&response);
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .map(|value| value.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, location)
    }
}

fn csrf_of(page: &str) -> String {
    let start = page
        .find(r#"name="csrf" value=""#)
        .expect("a form with a CSRF token")
        + r#"name="csrf" value=""#.len();
    page[start..]
        .split('"')
        .next()
        .expect("the token")
        .to_owned()
}

/// Serves a portal replica beside the suite's API, its sessions in `store`.
async fn portal_replica(
    app: &TestApp,
    store: std::sync::Arc<dyn tavana_kit::store::KvStore>,
) -> String {
    let mut settings = tavana_portal::PortalSettings::new(app.base_url.clone());
    settings.secure_cookie = false;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, tavana_portal::router(settings, store)).into_future());
    base
}

#[tokio::test]
async fn the_portal_walk_passes_with_every_request_on_the_other_of_two_replicas() {
    // Arrange: two portal replicas sharing the suite's store, an employee.
    let app = spawn_app().await;
    seed(&app).await;
    let store = app.store().await;
    let replicas = [
        portal_replica(&app, store.clone()).await,
        portal_replica(&app, store).await,
    ];
    let (a, b) = (replicas[0].as_str(), replicas[1].as_str());
    // An employee who has not logged in yet: login codes are rate limited on the real
    // clock (R3), so the seed's people cannot ask for another within the minute.
    app.upsert_employee(
        &national_id(61),
        "کارمند ۶۱",
        &mobile(61),
        tavana_e2e::world::ORGANIZATION,
        tavana_e2e::world::REGION,
        200_000_000,
        "2010-09-23",
    )
    .await;
    let person = tavana_e2e::world::Person {
        national_id: national_id(61),
        mobile: mobile(61),
        net_salary: 200_000_000,
        token: String::new(),
    };
    let person = &person;
    let browser = Browser::new();

    // Act and assert: each step on the other replica than the last.
    let (status, page) = browser.get(a, "/portal/login").await;
    assert_eq!(status, 200);
    let (status, location) = browser
        .post(
            b,
            "/portal/login",
            &[
                ("csrf", &csrf_of(&page)),
                ("national_id", &person.national_id),
                ("mobile", &person.mobile),
            ],
        )
        .await;
    assert_eq!((status, location.as_str()), (303, "/portal/login/code"));
    let (status, page) = browser.get(a, "/portal/login/code").await;
    assert_eq!(status, 200, "the challenge lives on in the other replica");
    let code = app.last_sms_code(&person.mobile).await.expect("a code");
    let (status, _) = browser
        .post(
            b,
            "/portal/login/code",
            &[("csrf", &csrf_of(&page)), ("code", &code)],
        )
        .await;
    assert_eq!(status, 303);
    let (status, page) = browser.get(a, "/portal/profile").await;
    assert_eq!(status, 200, "signed in on the other replica");
    let (status, balance) = browser.get(b, "/portal/balance").await;
    assert_eq!(status, 200, "{balance}");
    let (status, location) = browser
        .post(a, "/portal/logout", &[("csrf", &csrf_of(&page))])
        .await;
    assert_eq!(status, 303, "{location}");
    let (status, _) = browser.get(b, "/portal/profile").await;
    assert_eq!(status, 303, "signed out on every replica");
}
