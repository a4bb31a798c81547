//! Proposals, duplicates, decisions, roles and regions (R25, R26).

use tavana_kit::caller::{Caller, Role, RoleGrant, attach};
use tavana_kit::error::ErrorKind;
use tavana_proto::merchant_directory::v1::*;
use tonic::Code;

use crate::helpers::*;

#[tokio::test]
async fn r26_proposal_takes_the_proposers_region() {
    let app = spawn_service().await;

    let proposal = app
        .propose(&manager("R07"), in_person("نان سنگک بربری", "کرج"))
        .await
        .unwrap();

    assert_eq!(proposal.region_code, "R07");
    assert_eq!(proposal.status, ProposalStatus::Pending as i32);
    assert_eq!(proposal.proposed_by, "manager-R07");
    let data = proposal.data.unwrap();
    assert_eq!(data.contact_phone, "02166400000");
    assert_eq!(data.categories, ["پوشاک"]);
}

#[tokio::test]
async fn r25_invalid_merchant_is_refused_with_field_violations() {
    let app = spawn_service().await;
    let mut data = in_person("", "");
    data.address = None;
    data.supports_credit = false;

    let status = app.propose(&manager("R01"), data).await.unwrap_err();

    assert_eq!(status.code(), Code::InvalidArgument);
    let problem = problem(&status);
    let fields: Vec<(&str, &str)> = problem
        .violations
        .iter()
        .map(|v| (v.field.as_str(), v.code.as_str()))
        .collect();
    assert_eq!(
        fields,
        [
            ("name", "name_required"),
            ("city", "city_required"),
            ("address", "address_required"),
            ("supports_credit", "purchase_kind_required"),
        ]
    );
    assert!(problem.violations.iter().all(|v| !v.message_fa.is_empty()));
}

#[tokio::test]
async fn r25_online_merchant_without_website_is_refused() {
    let app = spawn_service().await;
    let mut data = online("DigiKala", "");
    data.website = None;

    let status = app.propose(&manager("R01"), data).await.unwrap_err();

    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(problem(&status).violations[0].code, "website_required");
}

#[tokio::test]
async fn r25_website_is_stored_normalised_and_credentials_or_other_schemes_are_refused() {
    let app = spawn_service().await;

    let stored = app
        .propose(&manager("R01"), online("Shop One", "Shop.Example.IR/Sale"))
        .await
        .unwrap();
    let with_credentials = app
        .propose(
            &manager("R01"),
            online("Shop Two", "https://admin:secret@two.example.ir"),
        )
        .await
        .unwrap_err();
    let script = app
        .propose(&manager("R01"), online("Shop Three", "javascript:alert(1)"))
        .await
        .unwrap_err();

    assert_eq!(
        stored.data.unwrap().website.as_deref(),
        Some("https://shop.example.ir/Sale")
    );
    for refused in [with_credentials, script] {
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert_eq!(problem(&refused).violations[0].code, "website_invalid");
    }
}

#[tokio::test]
async fn r26_same_name_and_city_in_another_spelling_is_a_duplicate_of_a_pending_proposal() {
    let app = spawn_service().await;
    let first = app
        .propose(&manager("R01"), in_person("کتاب‌فروشی ققنوس", "تهران"))
        .await
        .unwrap();

    // Arabic kaf, a space instead of the ZWNJ, extra spaces, another manager.
    let status = app
        .propose(
            &manager("R02"),
            in_person("  كتاب فروشی   ققنوس ", " تهران"),
        )
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::Aborted);
    let problem = problem(&status);
    assert_eq!(problem.kind, ErrorKind::Conflict);
    assert_eq!(problem.code, "merchant_duplicate");
    assert_eq!(
        problem
            .extra
            .get("existing_proposal_id")
            .and_then(|v| v.as_str()),
        Some(first.proposal_id.as_str())
    );
}

#[tokio::test]
async fn r26_duplicate_of_an_existing_merchant_names_the_merchant() {
    let app = spawn_service().await;
    let (merchant_id, _) = app
        .add_merchant(in_person("کتاب‌فروشی ققنوس", "تهران"))
        .await;

    let status = app
        .propose(&manager("R01"), in_person("كتاب‌فروشي ققنوس", "تهران"))
        .await
        .unwrap_err();

    let problem = problem(&status);
    assert_eq!(problem.code, "merchant_duplicate");
    assert_eq!(
        problem
            .extra
            .get("existing_merchant_id")
            .and_then(|v| v.as_str()),
        Some(merchant_id.as_str())
    );
}

#[tokio::test]
async fn r26_same_name_in_another_city_is_not_a_duplicate() {
    let app = spawn_service().await;
    app.add_merchant(in_person("کتاب‌فروشی ققنوس", "تهران"))
        .await;

    let proposal = app
        .propose(&manager("R01"), in_person("کتاب‌فروشی ققنوس", "اصفهان"))
        .await;

    assert!(proposal.is_ok(), "{proposal:?}");
}

#[tokio::test]
async fn r26_same_website_host_is_a_duplicate_whatever_the_scheme_and_www() {
    let app = spawn_service().await;
    let (merchant_id, _) = app
        .add_merchant(online("DigiKala", "https://www.digikala.com/"))
        .await;

    let status = app
        .propose(
            &manager("R03"),
            online("دیجی‌کالا", "http://DigiKala.com/landing"),
        )
        .await
        .unwrap_err();

    let problem = problem(&status);
    assert_eq!(problem.code, "merchant_duplicate");
    assert_eq!(
        problem
            .extra
            .get("existing_merchant_id")
            .and_then(|v| v.as_str()),
        Some(merchant_id.as_str())
    );
    let other_site = app
        .propose(
            &manager("R03"),
            online("دیجی‌استایل", "https://digistyle.com"),
        )
        .await;
    assert!(other_site.is_ok(), "{other_site:?}");
}

#[tokio::test]
async fn r26_a_rejected_proposal_does_not_block_a_new_one() {
    let app = spawn_service().await;
    let first = app
        .propose(&manager("R01"), online("Snapp Market", "snappmarket.com"))
        .await
        .unwrap();
    app.decide(&contracts(), &first.proposal_id, false, Some("مدارک ناقص"))
        .await
        .unwrap();

    let second = app
        .propose(&manager("R01"), online("Snapp Market", "snappmarket.com"))
        .await;

    assert!(second.is_ok(), "{second:?}");
}

#[tokio::test]
async fn r26_concurrent_proposals_of_one_store_make_one_proposal() {
    let app = spawn_service().await;
    let attempts = (0..6).map(|i| {
        let app_client = app.client.clone();
        async move {
            app_client
                .clone()
                .propose_merchant(attach(
                    ProposeMerchantRequest {
                        data: Some(in_person("نانوایی برکت", "شیراز")),
                        ..Default::default()
                    },
                    &manager(&format!("R0{i}")),
                ))
                .await
        }
    });

    let results = futures::future::join_all(attempts).await;

    let created = results.iter().filter(|result| result.is_ok()).count();
    assert_eq!(created, 1, "{results:?}");
    for result in results.iter().filter_map(|result| result.as_ref().err()) {
        assert_eq!(problem(result).code, "merchant_duplicate");
    }
}

#[tokio::test]
async fn r26_welfare_manager_cannot_approve() {
    let app = spawn_service().await;
    let proposal = app
        .propose(&manager("R01"), online("DigiKala", "digikala.com"))
        .await
        .unwrap();

    let status = app
        .decide(&manager("R01"), &proposal.proposal_id, true, None)
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn r26_contracts_cannot_propose_unless_also_a_welfare_manager() {
    let app = spawn_service().await;

    let status = app
        .propose(&contracts(), online("DigiKala", "digikala.com"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    let both = Caller::User {
        employee_id: "contracts-and-manager".into(),
        national_id: "0012345679".into(),
        grants: vec![
            RoleGrant::global(Role::Contracts),
            RoleGrant::regional(Role::RegionWelfareManager, "R05"),
        ],
    };
    let proposal = app
        .propose(&both, online("DigiKala", "digikala.com"))
        .await
        .unwrap();
    assert_eq!(proposal.region_code, "R05");
}

#[tokio::test]
async fn r26_manager_of_several_regions_must_have_one_region_to_propose() {
    let app = spawn_service().await;
    let two_regions = Caller::User {
        employee_id: "manager-2".into(),
        national_id: "0012345679".into(),
        grants: vec![
            RoleGrant::regional(Role::RegionWelfareManager, "R01"),
            RoleGrant::regional(Role::RegionWelfareManager, "R02"),
        ],
    };

    let status = app
        .propose(&two_regions, online("DigiKala", "digikala.com"))
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(problem(&status).code, "region_required");
}

fn manager_of_r01_and_r02() -> Caller {
    Caller::User {
        employee_id: "manager-2".into(),
        national_id: "0012345679".into(),
        grants: vec![
            RoleGrant::regional(Role::RegionWelfareManager, "R01"),
            RoleGrant::regional(Role::RegionWelfareManager, "R02"),
        ],
    }
}

#[tokio::test]
async fn r26_manager_of_several_regions_proposes_in_the_region_named() {
    let app = spawn_service().await;

    let proposal = app
        .propose_in(
            &manager_of_r01_and_r02(),
            "R02",
            online("DigiKala", "digikala.com"),
        )
        .await
        .unwrap();

    assert_eq!(proposal.region_code, "R02");
}

#[tokio::test]
async fn r26_a_region_named_that_is_not_the_proposers_is_refused() {
    let app = spawn_service().await;

    let status = app
        .propose_in(
            &manager_of_r01_and_r02(),
            "R03",
            online("DigiKala", "digikala.com"),
        )
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(problem(&status).code, "region_not_yours");
}

#[tokio::test]
async fn r26_others_cannot_propose() {
    let app = spawn_service().await;
    let finance = Caller::User {
        employee_id: "finance".into(),
        national_id: "0012345679".into(),
        grants: vec![RoleGrant::regional(Role::RegionFinance, "R01")],
    };
    for (caller, code) in [
        (employee(), Code::PermissionDenied),
        (finance, Code::PermissionDenied),
        (Caller::Anonymous, Code::Unauthenticated),
        (credit_service(), Code::PermissionDenied),
    ] {
        let status = app
            .propose(&caller, online("DigiKala", "digikala.com"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), code, "{caller:?}");
    }
}

async fn list_proposals(
    app: &TestApp,
    caller: &Caller,
    status: ProposalStatus,
) -> Result<Vec<Proposal>, tonic::Status> {
    app.client
        .clone()
        .list_proposals(attach(
            ListProposalsRequest {
                status: status as i32,
                page_size: 100,
                page_token: String::new(),
            },
            caller,
        ))
        .await
        .map(|response| response.into_inner().items)
}

#[tokio::test]
async fn r26_welfare_manager_lists_own_region_and_contracts_lists_all() {
    let app = spawn_service().await;
    let r01 = app
        .propose(&manager("R01"), online("DigiKala", "digikala.com"))
        .await
        .unwrap();
    let r02 = app
        .propose(&manager("R02"), in_person("نانوایی برکت", "شیراز"))
        .await
        .unwrap();

    let own = list_proposals(&app, &manager("R01"), ProposalStatus::Unspecified)
        .await
        .unwrap();
    let all = list_proposals(&app, &contracts(), ProposalStatus::Unspecified)
        .await
        .unwrap();

    assert_eq!(
        own.iter()
            .map(|p| p.proposal_id.as_str())
            .collect::<Vec<_>>(),
        [r01.proposal_id.as_str()]
    );
    let mut all_ids: Vec<_> = all.iter().map(|p| p.proposal_id.clone()).collect();
    all_ids.sort();
    let mut expected = vec![r01.proposal_id.clone(), r02.proposal_id.clone()];
    expected.sort();
    assert_eq!(all_ids, expected);

    let other_region = app
        .client
        .clone()
        .get_proposal(attach(
            GetProposalRequest {
                proposal_id: r01.proposal_id.clone(),
            },
            &manager("R02"),
        ))
        .await
        .unwrap_err();
    assert_eq!(other_region.code(), Code::NotFound);

    for (caller, code) in [
        (employee(), Code::PermissionDenied),
        (Caller::Anonymous, Code::Unauthenticated),
    ] {
        let status = list_proposals(&app, &caller, ProposalStatus::Unspecified)
            .await
            .unwrap_err();
        assert_eq!(status.code(), code);
    }
}

#[tokio::test]
async fn r26_proposals_filter_by_status_and_page() {
    let app = spawn_service().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let proposal = app
            .propose(&manager("R01"), in_person(&format!("فروشگاه {i}"), "تهران"))
            .await
            .unwrap();
        ids.push(proposal.proposal_id);
    }
    app.decide(&contracts(), &ids[0], false, Some("تکراری"))
        .await
        .unwrap();

    let pending = list_proposals(&app, &contracts(), ProposalStatus::Pending)
        .await
        .unwrap();
    let rejected = list_proposals(&app, &manager("R01"), ProposalStatus::Rejected)
        .await
        .unwrap();
    assert_eq!(pending.len(), 4);
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].reason.as_deref(), Some("تکراری"));

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .client
            .clone()
            .list_proposals(attach(
                ListProposalsRequest {
                    status: ProposalStatus::Unspecified as i32,
                    page_size: 2,
                    page_token: token.clone(),
                },
                &contracts(),
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.into_iter().map(|p| p.proposal_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ids);
}

#[tokio::test]
async fn r26_approval_creates_a_contracted_merchant_and_a_key_once() {
    let app = spawn_service().await;
    let proposal = app
        .propose(
            &manager("R04"),
            online("DigiKala", "https://www.digikala.com"),
        )
        .await
        .unwrap();

    let decided = app
        .decide(
            &contracts(),
            &proposal.proposal_id,
            true,
            Some("قرارداد امضا شد"),
        )
        .await
        .unwrap();

    let merchant_id = decided.merchant_id.clone().unwrap();
    assert!(decided.api_key.as_deref().unwrap().starts_with("tvk_"));
    let decided_proposal = decided.proposal.unwrap();
    assert_eq!(decided_proposal.status, ProposalStatus::Approved as i32);
    assert_eq!(
        decided_proposal.merchant_id.as_deref(),
        Some(merchant_id.as_str())
    );
    assert!(decided_proposal.decided_at.is_some());

    let merchant = app
        .client
        .clone()
        .get_merchant(attach(
            GetMerchantRequest {
                merchant_id: merchant_id.clone(),
                directory: false,
            },
            &Caller::Anonymous,
        ))
        .await
        .unwrap()
        .into_inner()
        .merchant
        .unwrap();
    assert_eq!(merchant.status, MerchantStatus::Contracted as i32);
    assert_eq!(merchant.region_code, "R04");
    assert_eq!(merchant.data.unwrap().name, "DigiKala");

    let again = app
        .decide(&contracts(), &proposal.proposal_id, true, None)
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::Aborted);
    let problem = problem(&again);
    assert_eq!(problem.code, "proposal_already_decided");
    assert!(problem.extra.get("api_key").is_none());
}

#[tokio::test]
async fn r26_rejection_needs_a_reason_and_is_final() {
    let app = spawn_service().await;
    let proposal = app
        .propose(&manager("R01"), online("DigiKala", "digikala.com"))
        .await
        .unwrap();

    let without_reason = app
        .decide(&contracts(), &proposal.proposal_id, false, None)
        .await
        .unwrap_err();
    assert_eq!(without_reason.code(), Code::InvalidArgument);
    assert_eq!(
        problem(&without_reason).violations[0].code,
        "reason_required"
    );

    let rejected = app
        .decide(
            &contracts(),
            &proposal.proposal_id,
            false,
            Some("خارج از سیاست قرارداد"),
        )
        .await
        .unwrap();
    assert_eq!(rejected.merchant_id, None);
    assert_eq!(rejected.api_key, None);
    assert_eq!(
        rejected.proposal.unwrap().status,
        ProposalStatus::Rejected as i32
    );

    let approve_after = app
        .decide(&contracts(), &proposal.proposal_id, true, None)
        .await
        .unwrap_err();
    assert_eq!(problem(&approve_after).code, "proposal_already_decided");

    let unknown = app
        .decide(&contracts(), "no-such-proposal", true, None)
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}

#[tokio::test]
async fn r26_concurrent_approvals_create_one_merchant() {
    let app = spawn_service().await;
    let proposal = app
        .propose(&manager("R01"), online("DigiKala", "digikala.com"))
        .await
        .unwrap();

    let contracts = contracts();
    let attempts = (0..6).map(|_| app.decide(&contracts, &proposal.proposal_id, true, None));
    let results = futures::future::join_all(attempts).await;

    let approved: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(approved.len(), 1, "{results:?}");
    for status in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(problem(status).code, "proposal_already_decided");
    }
    let listed = app.names_for("digikala").await;
    assert_eq!(listed, ["DigiKala"]);
}

#[tokio::test]
async fn r26_approving_a_store_that_became_a_merchant_meanwhile_is_a_duplicate() {
    let app = spawn_service().await;
    let proposal = app
        .propose(&manager("R01"), online("DigiKala", "digikala.com"))
        .await
        .unwrap();
    // The same store became a merchant by another path meanwhile (a row written
    // directly, as a concurrent approval would have).
    insert_merchant_row(&app, "m-existing", "DigiKala", "digikala.com").await;

    let status = app
        .decide(&contracts(), &proposal.proposal_id, true, None)
        .await
        .unwrap_err();

    let problem = problem(&status);
    assert_eq!(problem.code, "merchant_duplicate");
    assert_eq!(
        problem
            .extra
            .get("existing_merchant_id")
            .and_then(|v| v.as_str()),
        Some("m-existing")
    );
    // The failed approval left the proposal pending.
    let pending = list_proposals(&app, &contracts(), ProposalStatus::Pending)
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
}

#[tokio::test]
async fn r32_a_decision_and_a_suspension_each_leave_one_audit_entry() {
    let app = spawn_service().await;
    let (merchant_id, _) = app.add_merchant(in_person("نان سنگک بربری", "کرج")).await;
    let rejected = app
        .propose(&manager("R01"), in_person("کتاب‌فروشی", "کرج"))
        .await
        .unwrap();
    app.decide(
        &contracts(),
        &rejected.proposal_id,
        false,
        Some("خارج از سیاست"),
    )
    .await
    .unwrap();

    app.suspend(&merchant_id).await;
    app.suspend(&merchant_id).await;

    let (entries, _) = tavana_kit::audit::list(
        &app.db.db,
        &tavana_kit::audit::AuditQuery {
            page_size: 10,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let actions: Vec<(&str, &str)> = entries
        .iter()
        .rev()
        .map(|entry| (entry.action.as_str(), entry.subject.as_str()))
        .collect();
    let approved_subject = entries.last().unwrap().subject.clone();
    assert_eq!(
        actions,
        [
            ("merchant_proposal.decision", approved_subject.as_str()),
            ("merchant_proposal.decision", rejected.proposal_id.as_str()),
            ("merchant.suspend", merchant_id.as_str()),
        ]
    );
    assert_eq!(entries.last().unwrap().details["merchant_id"], merchant_id);
    assert!(
        entries
            .iter()
            .all(|entry| entry.actor.roles.contains(&"contracts".to_owned()))
    );
}
