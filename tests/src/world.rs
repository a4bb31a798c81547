//! A small world for end-to-end tests: one organization in region R01 with
//! an applicant, a guarantor and the staff of every role, logged in; and
//! helpers for the flows most tests start from (an approved merchant, an
//! open facility), all through the HTTP API as a client would.

use serde_json::{Value, json};

use crate::{TestApp, mobile, national_id};

/// The test region.
pub const REGION: &str = "R01";
/// Another region, for the forbidden paths.
pub const OTHER_REGION: &str = "R02";
/// The test organization (contract in force).
pub const ORGANIZATION: &str = "ORG-1";

/// A person with an account, logged in.
#[derive(Clone, Debug)]
pub struct Person {
    pub national_id: String,
    pub mobile: String,
    pub net_salary: i64,
    pub token: String,
}

impl Person {
    /// Returns the access token, for `app.get(path, person.auth())`.
    pub fn auth(&self) -> Option<&str> {
        Some(&self.token)
    }
}

/// Everyone a flow needs.
#[derive(Clone, Debug)]
pub struct World {
    pub applicant: Person,
    pub guarantor: Person,
    pub colleague: Person,
    pub finance: Person,
    pub other_finance: Person,
    pub region_admin: Person,
    pub welfare_manager: Person,
    pub support: Person,
    pub contracts: Person,
}

/// A contracted merchant and its API key.
#[derive(Clone, Debug)]
pub struct Merchant {
    pub id: String,
    pub api_key: String,
}

struct Seed {
    n: u32,
    salary: i64,
    region: &'static str,
    role: Option<(&'static str, Option<&'static str>)>,
}

/// Creates the organization, the people and their roles, and logs each in.
pub async fn seed(app: &TestApp) -> World {
    app.add_organization(ORGANIZATION, "اداره آموزش و پرورش منطقه ۱", true)
        .await;
    let seeds = [
        // applicant, guarantor, colleague
        Seed {
            n: 1,
            salary: 200_000_000,
            region: REGION,
            role: None,
        },
        Seed {
            n: 2,
            salary: 240_000_000,
            region: REGION,
            role: None,
        },
        Seed {
            n: 3,
            salary: 180_000_000,
            region: REGION,
            role: None,
        },
        Seed {
            n: 11,
            salary: 250_000_000,
            region: REGION,
            role: Some(("region_finance", Some(REGION))),
        },
        Seed {
            n: 12,
            salary: 250_000_000,
            region: OTHER_REGION,
            role: Some(("region_finance", Some(OTHER_REGION))),
        },
        Seed {
            n: 13,
            salary: 250_000_000,
            region: REGION,
            role: Some(("region_admin", Some(REGION))),
        },
        Seed {
            n: 14,
            salary: 250_000_000,
            region: REGION,
            role: Some(("region_welfare_manager", Some(REGION))),
        },
        Seed {
            n: 15,
            salary: 250_000_000,
            region: REGION,
            role: Some(("support", None)),
        },
        Seed {
            n: 16,
            salary: 250_000_000,
            region: REGION,
            role: Some(("contracts", None)),
        },
    ];
    let mut csv = String::from(
        "national_id,full_name,mobile,organization_id,region_code,net_salary,service_start_date\n",
    );
    for seed in &seeds {
        csv.push_str(&format!(
            "{},کارمند {},{},{},{},{},2010-09-23\n",
            national_id(seed.n),
            seed.n,
            mobile(seed.n),
            ORGANIZATION,
            seed.region,
            seed.salary
        ));
    }
    let report = app.import_employees(&csv).await;
    assert_eq!(
        report["rejected"].as_array().map(Vec::len),
        Some(0),
        "the world imports: {report}"
    );
    let mut people = Vec::new();
    for seed in &seeds {
        if let Some((role, region)) = seed.role {
            app.grant_role(&national_id(seed.n), role, region).await;
        }
        let token = app.login(&national_id(seed.n), &mobile(seed.n)).await;
        people.push(Person {
            national_id: national_id(seed.n),
            mobile: mobile(seed.n),
            net_salary: seed.salary,
            token,
        });
    }
    let mut people = people.into_iter();
    let mut next = || people.next().expect("a seeded person");
    World {
        applicant: next(),
        guarantor: next(),
        colleague: next(),
        finance: next(),
        other_finance: next(),
        region_admin: next(),
        welfare_manager: next(),
        support: next(),
        contracts: next(),
    }
}

/// Adds and logs in one more employee of the test organization.
pub async fn employee(app: &TestApp, n: u32, net_salary: i64, region: &str) -> Person {
    app.upsert_employee(
        &national_id(n),
        &format!("کارمند {n}"),
        &mobile(n),
        ORGANIZATION,
        region,
        net_salary,
        "2010-09-23",
    )
    .await;
    let token = app.login(&national_id(n), &mobile(n)).await;
    Person {
        national_id: national_id(n),
        mobile: mobile(n),
        net_salary,
        token,
    }
}

/// Proposes a merchant (welfare manager) and approves it (contracts).
pub async fn approved_merchant(app: &TestApp, world: &World, name: &str) -> Merchant {
    let host: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_lowercase();
    let proposal = app
        .post(
            "/v1/merchant-proposals",
            world.welfare_manager.auth(),
            json!({
                "name": name,
                "kind": "online",
                "website": format!("https://{host}.example"),
                "categories": ["books"],
                "supports_credit": true,
                "supports_instalment": true,
                "contact_phone": "02188000000",
            }),
        )
        .await;
    assert_eq!(proposal.status, 201, "proposal: {proposal:?}");
    let id = proposal.body["id"].as_str().expect("proposal id");
    let decision = app
        .post(
            &format!("/v1/merchant-proposals/{id}/decision"),
            world.contracts.auth(),
            json!({ "approve": true }),
        )
        .await;
    assert_eq!(decision.status, 200, "decision: {decision:?}");
    Merchant {
        id: decision.body["merchant_id"]
            .as_str()
            .expect("merchant_id")
            .to_owned(),
        api_key: decision.body["api_key"]
            .as_str()
            .expect("api_key")
            .to_owned(),
    }
}

/// Files a request for `applicant` guaranteed by `guarantor`, has both
/// approvals given, and moves the clock past the 72 hours (R12); returns
/// the approved request.
pub async fn open_facility(
    app: &TestApp,
    world: &World,
    applicant: &Person,
    guarantor: &Person,
    monthly_credit: i64,
    instalment_months: u32,
) -> Value {
    let filed = app
        .post(
            "/v1/me/credit-requests",
            applicant.auth(),
            json!({
                "guarantor_national_id": guarantor.national_id,
                "monthly_credit": monthly_credit,
                "instalment_months": instalment_months,
            }),
        )
        .await;
    assert_eq!(filed.status, 201, "filed: {filed:?}");
    let id = filed.body["id"].as_str().expect("request id").to_owned();
    let guaranteed = app
        .post(
            &format!("/v1/credit-requests/{id}/guarantor-decision"),
            guarantor.auth(),
            json!({ "approve": true }),
        )
        .await;
    assert_eq!(guaranteed.status, 200, "guarantor: {guaranteed:?}");
    let approved = app
        .post(
            &format!("/v1/credit-requests/{id}/finance-decision"),
            world.finance.auth(),
            json!({ "approve": true }),
        )
        .await;
    assert_eq!(approved.status, 200, "finance: {approved:?}");
    assert_eq!(approved.body["status"], "approved");
    // Read your writes: guarantee's outbox opened the facility before the answer.
    let balance = app.get("/v1/me/balance", applicant.auth()).await;
    assert_eq!(
        balance.status, 200,
        "balance right after approval: {balance:?}"
    );
    app.advance_clock(72 * 3600 + 60).await;
    approved.body
}
