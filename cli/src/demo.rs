//! `tavana up --demo`: a small data set to try the whole flow by hand. Every
//! record is documented in README.md ("Demo data"); loading twice changes
//! nothing.

use std::path::Path;

use anyhow::Context;
use tavana_kit::caller::{Caller, Role, RoleGrant};
use tavana_proto::merchant_directory::v1::merchant_directory_service_client::MerchantDirectoryServiceClient;
use tavana_proto::merchant_directory::v1::{
    DecideProposalRequest, MerchantData, MerchantKind, ProposeMerchantRequest,
};

use crate::admin::Admin;
use crate::suite::{Suite, SuiteSettings};

/// The demo's region.
pub const REGION: &str = "R01";

/// HR data of the demo employees (same columns as the HR import).
pub const EMPLOYEES_CSV: &str = "\
national_id,full_name,mobile,organization_id,region_code,net_salary,service_start_date
0010000011,علی رضایی,09120000001,ORG-01,R01,200000000,2012-09-23
0010000021,مریم احمدی,09120000002,ORG-01,R01,240000000,2005-09-23
0010000038,حسن کریمی,09120000003,ORG-01,R01,260000000,2001-09-23
0010000046,زهرا موسوی,09120000004,ORG-01,R01,250000000,2003-09-23
0010000054,رضا حسینی,09120000005,ORG-01,R01,230000000,2008-09-23
0010000062,فاطمه نوری,09120000006,ORG-01,R01,220000000,2010-09-23
0010000070,محمد صادقی,09120000007,ORG-01,R01,270000000,2000-09-23
0010000089,سارا جعفری,09120000008,ORG-02,R06,210000000,2011-09-23
";

/// Staff roles of the demo: national ID, role, region.
pub const STAFF: [(&str, Role, Option<&str>); 5] = [
    ("0010000038", Role::RegionFinance, Some(REGION)),
    ("0010000046", Role::RegionAdmin, Some(REGION)),
    ("0010000054", Role::RegionWelfareManager, Some(REGION)),
    ("0010000062", Role::Support, None),
    ("0010000070", Role::Contracts, None),
];

/// Loads the demo data into a running suite.
pub async fn load(suite: &Suite, settings: &SuiteSettings, data_dir: &Path) -> anyhow::Result<()> {
    let admin = Admin::open(settings, data_dir).await?;
    admin
        .add_organization("ORG-01", "اداره آموزش و پرورش منطقه ۱ تهران", true)
        .await?;
    admin
        .add_organization("ORG-02", "اداره آموزش و پرورش منطقه ۶ تهران", true)
        .await?;
    let report = admin.import_employees(EMPLOYEES_CSV.as_bytes()).await?;
    anyhow::ensure!(
        report.rejected.is_empty(),
        "demo employees rejected: {:?}",
        report.rejected
    );
    for (national_id, role, region) in STAFF {
        admin.grant_role(national_id, role.as_str(), region).await?;
    }
    let url = suite
        .service_url("merchant-directory")
        .context("merchant-directory runs")?;
    // The demo speaks as the gateway would for the staff who propose and approve.
    let signer = suite.keyring.signer(tavana_kit::trust::GATEWAY)?;
    let channel =
        tavana_kit::grpc::Dialer::new(signer, std::time::Duration::from_secs(10)).channel(&url)?;
    let mut merchants = MerchantDirectoryServiceClient::new(channel);
    for merchant in demo_merchants() {
        add_merchant(&mut merchants, merchant).await?;
    }
    Ok(())
}

fn demo_merchants() -> Vec<MerchantData> {
    vec![
        MerchantData {
            name: "کتاب‌فروشی ایران".into(),
            kind: MerchantKind::Online as i32,
            website: Some("https://ketab-iran.example".into()),
            categories: vec!["books".into()],
            supports_credit: true,
            supports_instalment: true,
            contact_phone: "02188000001".into(),
            ..Default::default()
        },
        MerchantData {
            name: "فروشگاه لوازم خانگی پارس".into(),
            kind: MerchantKind::InPerson as i32,
            city: Some("تهران".into()),
            province: Some("تهران".into()),
            address: Some("خیابان انقلاب، پلاک ۱۰".into()),
            categories: vec!["home_appliances".into()],
            supports_credit: false,
            supports_instalment: true,
            contact_phone: "02188000002".into(),
            ..Default::default()
        },
    ]
}

async fn add_merchant(
    merchants: &mut MerchantDirectoryServiceClient<tavana_kit::grpc::Channel>,
    data: MerchantData,
) -> anyhow::Result<()> {
    let name = data.name.clone();
    let manager = Caller::User {
        employee_id: "demo-welfare-manager".into(),
        national_id: "0010000054".into(),
        grants: vec![
            RoleGrant::global(Role::Employee),
            RoleGrant::regional(Role::RegionWelfareManager, REGION),
        ],
    };
    let proposed = merchants
        .propose_merchant(tavana_kit::caller::attach(
            ProposeMerchantRequest {
                data: Some(data),
                ..Default::default()
            },
            &manager,
        ))
        .await;
    let proposal = match proposed {
        Ok(response) => response.into_inner().proposal.context("a proposal")?,
        // Already loaded: the directory refuses the duplicate.
        Err(status) if status.code() == tonic::Code::Aborted => return Ok(()),
        Err(status) => return Err(status).with_context(|| format!("cannot propose {name}")),
    };
    let contracts = Caller::User {
        employee_id: "demo-contracts".into(),
        national_id: "0010000070".into(),
        grants: vec![
            RoleGrant::global(Role::Employee),
            RoleGrant::global(Role::Contracts),
        ],
    };
    let decided = merchants
        .decide_proposal(tavana_kit::caller::attach(
            DecideProposalRequest {
                proposal_id: proposal.proposal_id,
                approve: true,
                reason: Some("demo".into()),
            },
            &contracts,
        ))
        .await
        .with_context(|| format!("cannot approve {name}"))?
        .into_inner();
    println!(
        "  demo merchant {name}: id {} api key {}",
        decided.merchant_id.unwrap_or_default(),
        decided.api_key.unwrap_or_default()
    );
    Ok(())
}
