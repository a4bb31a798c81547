//! API keys, suspension and the lookups other services make (R26).

use sea_orm::EntityTrait;
use tavana_kit::caller::{Caller, attach};
use tavana_merchant_directory::store::merchant;
use tavana_proto::merchant_directory::v1::*;
use tonic::Code;

use crate::helpers::*;

async fn authenticate(
    app: &TestApp,
    caller: &Caller,
    api_key: &str,
) -> Result<AuthenticateMerchantResponse, tonic::Status> {
    app.client
        .clone()
        .authenticate_merchant(attach(
            AuthenticateMerchantRequest {
                api_key: api_key.into(),
            },
            caller,
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn get_merchant(
    app: &TestApp,
    caller: &Caller,
    merchant_id: &str,
) -> Result<Merchant, tonic::Status> {
    get_merchant_in(app, caller, merchant_id, false).await
}

/// As the public directory's page asks (`directory`), or as a peer does.
async fn get_merchant_in(
    app: &TestApp,
    caller: &Caller,
    merchant_id: &str,
    directory: bool,
) -> Result<Merchant, tonic::Status> {
    app.client
        .clone()
        .get_merchant(attach(
            GetMerchantRequest {
                merchant_id: merchant_id.into(),
                directory,
            },
            caller,
        ))
        .await
        .map(|response| response.into_inner().merchant.unwrap())
}

#[tokio::test]
async fn r26_merchant_authenticates_with_its_key_and_only_the_hash_is_stored() {
    let app = spawn_service().await;
    let (merchant_id, api_key) = app.add_merchant(online("DigiKala", "digikala.com")).await;

    let authenticated = authenticate(&app, &Caller::service("gateway"), &api_key)
        .await
        .unwrap();

    assert_eq!(authenticated.merchant_id, merchant_id);
    assert_eq!(authenticated.status, MerchantStatus::Contracted as i32);
    let row = merchant::Entity::find_by_id(merchant_id)
        .one(&app.db.db)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(row.api_key_hash, api_key);
    assert!(!row.api_key_hash.contains(&api_key[4..]));
    assert_eq!(
        row.api_key_hash,
        tavana_merchant_directory::domain::api_key::hash_api_key(&api_key)
    );
}

#[tokio::test]
async fn r26_wrong_keys_do_not_authenticate() {
    let app = spawn_service().await;
    let (_, api_key) = app.add_merchant(online("DigiKala", "digikala.com")).await;
    let mut altered = api_key.clone();
    altered.pop();
    altered.push(if api_key.ends_with('A') { 'B' } else { 'A' });

    for key in [altered.as_str(), "", "tvk_", "Bearer whatever"] {
        let status = authenticate(&app, &Caller::service("gateway"), key)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{key:?}");
        assert_eq!(problem(&status).code, "merchant_key_invalid");
    }
}

#[tokio::test]
async fn authenticate_merchant_is_for_services_only() {
    let app = spawn_service().await;
    let (_, api_key) = app.add_merchant(online("DigiKala", "digikala.com")).await;

    let anonymous = authenticate(&app, &Caller::Anonymous, &api_key)
        .await
        .unwrap_err();
    let user = authenticate(&app, &contracts(), &api_key)
        .await
        .unwrap_err();

    assert_eq!(anonymous.code(), Code::Unauthenticated);
    assert_eq!(user.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn r26_rotating_the_key_invalidates_the_old_one() {
    let app = spawn_service().await;
    let (merchant_id, old_key) = app.add_merchant(online("DigiKala", "digikala.com")).await;

    let by_manager = app
        .client
        .clone()
        .rotate_merchant_key(attach(
            RotateMerchantKeyRequest {
                merchant_id: merchant_id.clone(),
            },
            &manager("R01"),
        ))
        .await
        .unwrap_err();
    assert_eq!(by_manager.code(), Code::PermissionDenied);

    let new_key = app
        .client
        .clone()
        .rotate_merchant_key(attach(
            RotateMerchantKeyRequest {
                merchant_id: merchant_id.clone(),
            },
            &contracts(),
        ))
        .await
        .unwrap()
        .into_inner()
        .api_key;

    assert_ne!(new_key, old_key);
    let gateway = Caller::service("gateway");
    assert_eq!(
        authenticate(&app, &gateway, &old_key)
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    assert_eq!(
        authenticate(&app, &gateway, &new_key)
            .await
            .unwrap()
            .merchant_id,
        merchant_id
    );

    let unknown = app
        .client
        .clone()
        .rotate_merchant_key(attach(
            RotateMerchantKeyRequest {
                merchant_id: "no-such-merchant".into(),
            },
            &contracts(),
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}

#[tokio::test]
async fn r26_suspended_merchant_is_hidden_from_the_public_but_seen_by_credit() {
    let app = spawn_service().await;
    let (merchant_id, api_key) = app.add_merchant(online("DigiKala", "digikala.com")).await;

    let suspended = app.suspend(&merchant_id).await;

    assert_eq!(suspended.status, MerchantStatus::Suspended as i32);
    let for_credit = get_merchant(&app, &credit_service(), &merchant_id)
        .await
        .unwrap();
    assert_eq!(for_credit.status, MerchantStatus::Suspended as i32);
    for caller in [Caller::Anonymous, employee()] {
        let status = get_merchant(&app, &caller, &merchant_id).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
    }
    // Contracts staff see it as staff, but the public directory's page hides it from
    // everyone, staff included (R27: the rule is the directory's, not the gateway's).
    let for_staff = get_merchant(&app, &contracts(), &merchant_id)
        .await
        .unwrap();
    assert_eq!(for_staff.status, MerchantStatus::Suspended as i32);
    for caller in [Caller::Anonymous, employee(), contracts(), credit_service()] {
        let status = get_merchant_in(&app, &caller, &merchant_id, true)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(problem(&status).code, "merchant_not_found");
    }
    let (listed, _) = app.add_merchant(online("Bamilo", "bamilo.com")).await;
    let shown = get_merchant_in(&app, &contracts(), &listed, true)
        .await
        .unwrap();
    assert_eq!(shown.status, MerchantStatus::Contracted as i32);
    let authenticated = authenticate(&app, &Caller::service("gateway"), &api_key)
        .await
        .unwrap();
    assert_eq!(authenticated.status, MerchantStatus::Suspended as i32);
    assert!(app.names_for("digikala").await.is_empty());

    // Suspending again changes nothing and still answers with the merchant.
    let again = app.suspend(&merchant_id).await;
    assert_eq!(again.status, MerchantStatus::Suspended as i32);
}

#[tokio::test]
async fn r26_only_contracts_suspends() {
    let app = spawn_service().await;
    let (merchant_id, _) = app.add_merchant(online("DigiKala", "digikala.com")).await;

    for (caller, code) in [
        (manager("R01"), Code::PermissionDenied),
        (employee(), Code::PermissionDenied),
        (Caller::Anonymous, Code::Unauthenticated),
    ] {
        let status = app
            .client
            .clone()
            .suspend_merchant(attach(
                SuspendMerchantRequest {
                    merchant_id: merchant_id.clone(),
                    reason: None,
                },
                &caller,
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), code);
    }
    let unknown = app
        .client
        .clone()
        .suspend_merchant(attach(
            SuspendMerchantRequest {
                merchant_id: "no-such-merchant".into(),
                reason: None,
            },
            &contracts(),
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}

#[tokio::test]
async fn unknown_merchant_is_not_found_for_everyone() {
    let app = spawn_service().await;
    for caller in [Caller::Anonymous, credit_service()] {
        let status = get_merchant(&app, &caller, "no-such-merchant")
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(problem(&status).code, "merchant_not_found");
    }
}
