//! R14, R15, R16: purchases and every refusal with its code.

use tavana_kit::error::ErrorKind;
use tavana_proto::credit::v1::PurchaseKind;

use crate::helpers::*;

#[tokio::test]
async fn r15_credit_purchase_is_one_deduction_next_month() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;

    let answer = app
        .buy("E1", SHOP, PurchaseKind::Credit, 700, 0, "k")
        .await
        .unwrap();

    let purchase = answer.purchase.unwrap();
    assert!(!answer.replayed);
    assert_eq!(purchase.months, 1);
    assert_eq!(purchase.instalments.len(), 1);
    assert_eq!(purchase.instalments[0].period, "1405-03");
    assert_eq!(purchase.instalments[0].amount, 700);
    assert_eq!(purchase.merchant_name, format!("shop {SHOP}"));
    assert_eq!(app.room("E1").await, (300, 2_300));
}

#[tokio::test]
async fn r15_r16_instalments_larger_first_and_ceil_held_in_m() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 6).await;

    let answer = app
        .buy("E1", SHOP, PurchaseKind::Instalment, 1_001, 4, "k")
        .await
        .unwrap();

    let purchase = answer.purchase.unwrap();
    let amounts: Vec<i64> = purchase.instalments.iter().map(|i| i.amount).collect();
    let periods: Vec<&str> = purchase
        .instalments
        .iter()
        .map(|i| i.period.as_str())
        .collect();
    assert_eq!(amounts, vec![251, 250, 250, 250]);
    assert_eq!(periods, vec!["1405-03", "1405-04", "1405-05", "1405-06"]);
    assert_eq!(app.room("E1").await, (1_000 - 251, 6_000 - 1_001));
}

#[tokio::test]
async fn r16_insufficient_credit_says_what_would_fit() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 2).await;
    app.buy("E1", SHOP, PurchaseKind::Credit, 600, 0, "a")
        .await
        .unwrap();

    let monthly = app.buy("E1", SHOP, PurchaseKind::Credit, 401, 0, "b").await;
    let fits = app
        .buy("E1", SHOP, PurchaseKind::Instalment, 800, 2, "c")
        .await;
    let total = app
        .buy("E1", SHOP, PurchaseKind::Instalment, 2, 2, "d")
        .await;

    let problem_monthly = problem(monthly);
    assert_eq!(problem_monthly.code, "insufficient_credit");
    assert_eq!(problem_monthly.kind, ErrorKind::RuleRefused);
    assert_eq!(problem_monthly.extra["available_monthly"], 400);
    assert_eq!(problem_monthly.extra["available_total"], 1_400);
    assert!(fits.is_ok());
    // M has 0 left (600 + 400), P has 600: 2 over 2 would hold 1 in M.
    let problem_total = problem(total);
    assert_eq!(problem_total.code, "insufficient_credit");
    assert_eq!(problem_total.extra["available_monthly"], 0);
    assert_eq!(problem_total.extra["available_total"], 600);
}

#[tokio::test]
async fn r14_refusals_have_their_codes() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    let code = |result: Result<_, tonic::Status>| {
        let problem = problem::<tavana_proto::credit::v1::CreatePurchaseResponse>(result);
        (problem.kind, problem.code)
    };
    let refused = ErrorKind::RuleRefused;
    let invalid = ErrorKind::InvalidArgument;

    assert_eq!(
        code(
            app.buy("nobody", SHOP, PurchaseKind::Credit, 1, 0, "k")
                .await
        ),
        (ErrorKind::NotFound, "no_facility".into())
    );
    assert_eq!(
        code(
            app.buy("E1", "unknown", PurchaseKind::Credit, 1, 0, "k1")
                .await
        ),
        (refused, "merchant_not_contracted".into())
    );
    assert_eq!(
        code(
            app.buy("E1", SUSPENDED_SHOP, PurchaseKind::Credit, 1, 0, "k2")
                .await
        ),
        (refused, "merchant_not_contracted".into())
    );
    assert_eq!(
        code(
            app.buy("E1", CREDIT_SHOP, PurchaseKind::Instalment, 3, 3, "k3")
                .await
        ),
        (refused, "merchant_kind_not_supported".into())
    );
    assert_eq!(
        code(
            app.buy("E1", SHOP, PurchaseKind::Instalment, 4, 4, "k4")
                .await
        ),
        (refused, "instalment_months_out_of_range".into())
    );
    assert_eq!(
        code(
            app.buy("E1", SHOP, PurchaseKind::Instalment, 4, 0, "k5")
                .await
        ),
        (refused, "instalment_months_out_of_range".into())
    );
    assert_eq!(
        code(app.buy("E1", SHOP, PurchaseKind::Credit, 4, 2, "k6").await),
        (invalid, "credit_months_invalid".into())
    );
    assert_eq!(
        code(app.buy("E1", SHOP, PurchaseKind::Credit, 0, 0, "k7").await),
        (invalid, "amount_not_positive".into())
    );
    assert_eq!(
        code(app.buy("E1", SHOP, PurchaseKind::Credit, -5, 0, "k8").await),
        (invalid, "amount_not_positive".into())
    );
    assert_eq!(
        code(
            app.buy("E1", SHOP, PurchaseKind::Unspecified, 5, 0, "k9")
                .await
        ),
        (invalid, "kind_missing".into())
    );
    assert_eq!(
        code(app.buy("E1", SHOP, PurchaseKind::Credit, 5, 0, "").await),
        (invalid, "idempotency_key_missing".into())
    );
    app.peers
        .0
        .lock()
        .unwrap()
        .organizations
        .insert(ORG.into(), false);
    assert_eq!(
        code(app.buy("E1", SHOP, PurchaseKind::Credit, 5, 0, "k10").await),
        (refused, "organization_contract_not_in_force".into())
    );
    app.peers
        .0
        .lock()
        .unwrap()
        .organizations
        .insert(ORG.into(), true);
    let facility = app.store.facility_of_employee("E1").await.unwrap().unwrap();
    app.store.set_suspended(&facility.id, true).await.unwrap();
    assert_eq!(
        code(app.buy("E1", SHOP, PurchaseKind::Credit, 5, 0, "k11").await),
        (refused, "facility_suspended".into())
    );
}

#[tokio::test]
async fn r14_only_employees_buy_from_the_app() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;

    let result = app
        .client
        .clone()
        .create_purchase(tavana_kit::caller::attach(
            tavana_proto::credit::v1::CreatePurchaseRequest {
                merchant_id: SHOP.into(),
                kind: PurchaseKind::Credit as i32,
                amount: 1,
                months: 0,
                idempotency_key: "k".into(),
            },
            &merchant_caller(SHOP),
        ))
        .await;

    assert_eq!(problem(result).code, "permission_denied");
}

#[tokio::test]
async fn purchases_are_listed_newest_first_with_paging() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    for index in 0..3 {
        app.buy(
            "E1",
            SHOP,
            PurchaseKind::Credit,
            10 + index,
            0,
            &format!("k{index}"),
        )
        .await
        .unwrap();
        app.advance(chrono::Duration::seconds(1));
    }
    let list = |token: String| {
        let mut client = app.client.clone();
        async move {
            client
                .list_purchases(tavana_kit::caller::attach(
                    tavana_proto::credit::v1::ListPurchasesRequest {
                        page_size: 2,
                        page_token: token,
                    },
                    &employee("E1"),
                ))
                .await
        }
    };

    let first = list(String::new()).await.unwrap().into_inner();
    let second = list(first.next_page_token.clone())
        .await
        .unwrap()
        .into_inner();

    let amounts: Vec<i64> = first
        .items
        .iter()
        .chain(&second.items)
        .map(|p| p.amount)
        .collect();
    assert_eq!(amounts, vec![12, 11, 10]);
    assert!(second.next_page_token.is_empty());
}

#[tokio::test]
async fn r15_two_rial_over_three_months_is_refused_as_amount_below_months() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;

    let refused = app
        .buy("E1", SHOP, PurchaseKind::Instalment, 2, 3, "k1")
        .await;
    let one_a_month = app
        .buy("E1", SHOP, PurchaseKind::Instalment, 3, 3, "k2")
        .await
        .unwrap();

    let refused = problem(refused);
    assert_eq!(refused.code, "amount_below_months");
    assert_eq!(refused.kind, tavana_kit::error::ErrorKind::RuleRefused);
    let amounts: Vec<i64> = one_a_month
        .purchase
        .unwrap()
        .instalments
        .iter()
        .map(|i| i.amount)
        .collect();
    assert_eq!(amounts, [1, 1, 1]);
}

/// Pages a purchase writes on SQLite (its WAL frames, one per page per commit): the
/// purchase, its holds' counters, its two outbox messages with their delivery recorded,
/// and its idempotency record (R19). A budget, so that a change that makes every
/// purchase write more pages is seen; a refusal, a replay and a balance read write none.
#[tokio::test]
async fn r16_r19_a_purchase_writes_a_budget_of_pages_and_a_read_or_refusal_none() {
    const PURCHASES: u64 = 20;
    const PAGES_PER_PURCHASE: u64 = 14;
    let app = spawn_service().await;
    app.open_facility("E1", 1_000_000, 12).await;
    // The first purchase makes the counters' rows a later one updates.
    app.buy("E1", SHOP, PurchaseKind::Instalment, 1_200, 3, "warm")
        .await
        .unwrap();
    let Some(pages) = tavana_kit::testing::PagesWritten::start(app.db()).await else {
        return; // PostgreSQL: its WAL is the server's, shared with other tests.
    };

    for n in 0..PURCHASES {
        app.buy(
            "E1",
            SHOP,
            PurchaseKind::Instalment,
            1_001,
            3,
            &format!("k{n}"),
        )
        .await
        .unwrap();
    }
    let written = pages.count();
    println!("{written} pages for {PURCHASES} purchases");
    assert!(
        written <= PURCHASES * PAGES_PER_PURCHASE,
        "{written} pages for {PURCHASES} purchases, over {PAGES_PER_PURCHASE} each"
    );

    let before = pages.count();
    app.balance("E1").await.unwrap();
    let replay = app
        .buy("E1", SHOP, PurchaseKind::Instalment, 1_001, 3, "k0")
        .await
        .unwrap();
    assert!(replay.replayed);
    let refusal = problem(
        app.buy("E1", SHOP, PurchaseKind::Credit, 2_000_000, 0, "too-much")
            .await,
    );
    assert_eq!(refusal.code, "insufficient_credit");
    assert_eq!(
        pages.count(),
        before,
        "a read, a replay or a refusal wrote a page"
    );
}
