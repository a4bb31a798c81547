//! R21: cards, PINs and card purchases by merchants.

use tavana_kit::caller::attach;
use tavana_proto::credit::v1 as pb;

use crate::helpers::*;

async fn card(app: &TestApp) -> pb::Card {
    app.client
        .clone()
        .get_card(attach(pb::GetCardRequest {}, &employee("E1")))
        .await
        .unwrap()
        .into_inner()
        .card
        .unwrap()
}

async fn change_pin(app: &TestApp, current: &str, new: &str) -> Result<(), tonic::Status> {
    app.client
        .clone()
        .change_pin(attach(
            pb::ChangePinRequest {
                current_pin: current.into(),
                new_pin: new.into(),
            },
            &employee("E1"),
        ))
        .await
        .map(|_| ())
}

async fn card_purchase(
    app: &TestApp,
    customer_number: &str,
    pin: &str,
    key: &str,
) -> Result<pb::CreateMerchantPurchaseResponse, tonic::Status> {
    app.client
        .clone()
        .create_merchant_purchase(attach(
            pb::CreateMerchantPurchaseRequest {
                customer_number: customer_number.into(),
                pin: pin.into(),
                kind: pb::PurchaseKind::Credit as i32,
                amount: 100,
                months: 0,
                idempotency_key: key.into(),
            },
            &merchant_caller(SHOP),
        ))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn r21_card_has_a_luhn_customer_number_and_must_change_its_pin() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;

    let card = card(&app).await;

    assert_eq!(card.customer_number.len(), 16);
    assert!(tavana_credit::domain::card::CustomerNumber::parse(&card.customer_number).is_ok());
    assert!(card.masked_pan.starts_with("6037-99**-****-"));
    assert!(card.masked_pan.ends_with(&card.customer_number[12..]));
    assert!(card.pin_must_change);
    assert!(!card.locked);
}

#[tokio::test]
async fn r21_card_purchase_needs_a_changed_pin() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    let number = card(&app).await.customer_number;

    let before = card_purchase(&app, &number, NATIONAL_ID, "k1").await;
    change_pin(&app, NATIONAL_ID, "4815162342").await.unwrap();
    let after = card_purchase(&app, &number, "4815162342", "k2")
        .await
        .unwrap();
    let replay = card_purchase(&app, &number, "4815162342", "k2")
        .await
        .unwrap();

    assert_eq!(problem(before).code, "pin_must_change");
    assert!(!card(&app).await.pin_must_change);
    assert_eq!(after.purchase.as_ref().unwrap().merchant_id, SHOP);
    assert!(replay.replayed);
    assert_eq!(app.room("E1").await, (900, 2_900));
}

#[tokio::test]
async fn r21_new_pin_rules_are_checked() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;

    let national = change_pin(&app, NATIONAL_ID, NATIONAL_ID).await;
    let short = change_pin(&app, NATIONAL_ID, "12345").await;
    let same = change_pin(&app, NATIONAL_ID, "7777777777").await;

    assert_eq!(problem(national).code, "pin_equals_national_id");
    assert_eq!(problem(short).code, "pin_format_invalid");
    assert_eq!(problem(same).code, "pin_too_simple");
}

#[tokio::test]
async fn r21_five_wrong_pins_lock_the_card_until_support_unlocks_it() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    change_pin(&app, NATIONAL_ID, "4815162342").await.unwrap();
    let number = card(&app).await.customer_number;

    let mut problems = Vec::new();
    for attempt in 0..5 {
        problems.push(problem(
            card_purchase(&app, &number, "1111111112", &format!("w{attempt}")).await,
        ));
    }
    let locked = card(&app).await.locked;
    let with_right_pin = card_purchase(&app, &number, "4815162342", "r1").await;
    let unlock = app
        .client
        .clone()
        .unlock_card(attach(
            pb::UnlockCardRequest {
                customer_number: number.clone(),
            },
            &support(),
        ))
        .await;
    let after_unlock = card_purchase(&app, &number, "4815162342", "r2").await;

    assert!(problems.iter().all(|p| p.code == "card_rejected"));
    assert!(
        problems
            .iter()
            .all(|p| !p.extra.contains_key("attempts_left"))
    );
    assert!(locked);
    assert_eq!(problem(with_right_pin).code, "card_rejected");
    assert!(unlock.is_ok());
    assert!(after_unlock.is_ok());
}

#[tokio::test]
async fn r21_the_card_holder_is_told_how_many_pins_are_left() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;

    let mut problems = Vec::new();
    for _ in 0..5 {
        problems.push(problem(change_pin(&app, "1111111112", "4815162342").await));
    }

    assert_eq!(problems[0].code, "pin_invalid");
    assert_eq!(problems[0].extra["attempts_left"], 4);
    assert_eq!(problems[3].extra["attempts_left"], 1);
    assert_eq!(problems[4].code, "card_locked");
}

#[tokio::test]
async fn r21_unknown_card_and_wrong_pin_get_one_answer() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    change_pin(&app, NATIONAL_ID, "4815162342").await.unwrap();
    let number = card(&app).await.customer_number;
    let unknown = tavana_credit::domain::card::CustomerNumber::from_body(1)
        .as_str()
        .to_owned();

    let wrong_pin = card_purchase(&app, &number, "1111111112", "k1").await;
    let unknown_card = card_purchase(&app, &unknown, "1111111112", "k2").await;

    let (wrong_pin, unknown_card) = (wrong_pin.unwrap_err(), unknown_card.unwrap_err());
    assert_eq!(wrong_pin.code(), unknown_card.code());
    assert_eq!(wrong_pin.message(), unknown_card.message());
    let (wrong_pin, unknown_card) = (
        tavana_kit::error::Problem::from_status(&wrong_pin),
        tavana_kit::error::Problem::from_status(&unknown_card),
    );
    assert_eq!(wrong_pin.code, "card_rejected");
    assert_eq!(wrong_pin.kind, unknown_card.kind);
    assert_eq!(wrong_pin.code, unknown_card.code);
    assert_eq!(wrong_pin.message_fa, unknown_card.message_fa);
    assert_eq!(wrong_pin.extra, unknown_card.extra);
    assert_eq!(wrong_pin.violations.len(), unknown_card.violations.len());
}

#[tokio::test]
async fn r21_parallel_wrong_pins_get_at_most_five_checks_and_lock_the_card() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    change_pin(&app, NATIONAL_ID, "4815162342").await.unwrap();
    let number = card(&app).await.customer_number;

    let guesses = (0..20).map(|n| {
        let (app, number) = (&app, number.clone());
        async move {
            card_purchase(
                app,
                &number,
                &format!("{:010}", 1_000 + n),
                &format!("g{n}"),
            )
            .await
        }
    });
    let answers = futures::future::join_all(guesses).await;

    assert!(
        answers
            .into_iter()
            .all(|answer| problem(answer).code == "card_rejected")
    );
    let stored = app.store.card_by_number(&number).await.unwrap().unwrap();
    assert!(stored.locked);
    assert_eq!(stored.failed_attempts, 5, "only 5 guesses were checked");
}

#[tokio::test]
async fn r21_only_support_unlocks_and_unknown_cards_are_not_found() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    let number = card(&app).await.customer_number;
    let unlock = |number: String, caller| {
        let mut client = app.client.clone();
        async move {
            client
                .unlock_card(attach(
                    pb::UnlockCardRequest {
                        customer_number: number,
                    },
                    &caller,
                ))
                .await
        }
    };
    let unknown = tavana_credit::domain::card::CustomerNumber::from_body(1)
        .as_str()
        .to_owned();

    let as_employee = unlock(number, employee("E1")).await;
    let missing = unlock(unknown.clone(), support()).await;
    let missing_purchase = card_purchase(&app, &unknown, "4815162342", "k").await;

    assert_eq!(problem(as_employee).code, "permission_denied");
    assert_eq!(problem(missing).code, "card_not_found");
    assert_eq!(problem(missing_purchase).code, "card_rejected");
}

#[tokio::test]
async fn r32_a_card_unlock_leaves_one_audit_entry() {
    let app = spawn_service().await;
    app.open_facility("E1", 1_000, 3).await;
    let number = card(&app).await.customer_number;
    let mut request = attach(
        pb::UnlockCardRequest {
            customer_number: number.clone(),
        },
        &support(),
    );
    request
        .metadata_mut()
        .insert("x-request-id", "req-unlock".parse().unwrap());

    app.client.clone().unlock_card(request).await.unwrap();

    let (entries, _) = tavana_kit::audit::list(
        app.store.db(),
        &tavana_kit::audit::AuditQuery {
            page_size: 10,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].action, "card.unlock");
    assert_eq!(entries[0].subject, number);
    assert_eq!(entries[0].request_id, "req-unlock");
    assert_eq!(entries[0].actor.roles, ["support"]);
}
