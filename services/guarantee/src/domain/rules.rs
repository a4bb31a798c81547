//! R7 and R8: what a credit request and its guarantor must satisfy.
//!
//! Every failed rule is reported, each with its own code (R8), so the functions here
//! return the whole list instead of stopping at the first failure. R32: a refusal says
//! which of the guarantor's rules failed and nothing more, no figure of theirs (salary,
//! service length, guarantee count), and the guarantor's rules are checked only once
//! the applicant's own fields are valid.

use chrono::NaiveDate;
use tavana_kit::jalali::service_length;
use tavana_kit::money::Rial;

/// The most guarantees one person may hold that are pending or active (S4, R8).
pub const GUARANTEE_LIMIT: u32 = 3;

/// Service of this many whole months (28 years 11 months) or more disqualifies a
/// guarantor (S18, R8).
const SERVICE_LIMIT_MONTHS: u32 = 28 * 12 + 11;

/// The HR data of an employee as identity holds it now (R1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmployeeProfile {
    /// Identity's employee id.
    pub employee_id: String,
    /// The ten-digit national ID.
    pub national_id: String,
    /// The full name.
    pub full_name: String,
    /// The employer organization.
    pub organization_id: String,
    /// The region («منطقه») the employee works in.
    pub region_code: String,
    /// The net monthly salary.
    pub net_salary: Rial,
    /// The first day of service (Gregorian).
    pub service_start: NaiveDate,
}

/// What the applicant asks for (R7, S11).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilingInput {
    /// The monthly credit `M`.
    pub monthly_credit: Rial,
    /// The instalment ceiling `N`.
    pub instalment_months: u32,
    /// The policy maximum of `N` (config, default 36).
    pub max_instalments: u32,
}

/// One failed rule of R7 or R8.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleFailure {
    /// No employee has the guarantor's national ID (R8).
    GuarantorNotFound,
    /// The applicant named themselves (R8: the guarantor is another employee).
    GuarantorIsApplicant,
    /// The guarantor works in another region (S1, S15, S18).
    GuarantorOtherRegion,
    /// The guarantor has served 28 years 11 months or more (S18).
    GuarantorServiceTooLong,
    /// The guarantor's net salary is lower than the applicant's (S18; equal is allowed).
    GuarantorSalaryTooLow,
    /// The guarantor already holds 3 pending or active guarantees (S4).
    GuarantorLimitReached,
    /// `M` is zero or negative (R7).
    MonthlyCreditNotPositive,
    /// `M` is above a quarter of the applicant's net salary (S10, R7).
    MonthlyCreditAboveQuarter {
        /// The largest allowed `M`: floor(net salary / 4).
        max: Rial,
    },
    /// `N` is outside 1..=max (R7).
    InstalmentMonthsOutOfRange {
        /// The policy maximum.
        max: u32,
    },
}

impl RuleFailure {
    /// Returns the stable snake_case code of the failed rule.
    pub fn code(&self) -> &'static str {
        match self {
            RuleFailure::GuarantorNotFound => "guarantor_not_found",
            RuleFailure::GuarantorIsApplicant => "guarantor_is_applicant",
            RuleFailure::GuarantorOtherRegion => "guarantor_other_region",
            RuleFailure::GuarantorServiceTooLong => "guarantor_service_too_long",
            RuleFailure::GuarantorSalaryTooLow => "guarantor_salary_too_low",
            RuleFailure::GuarantorLimitReached => "guarantor_limit_reached",
            RuleFailure::MonthlyCreditNotPositive => "monthly_credit_not_positive",
            RuleFailure::MonthlyCreditAboveQuarter { .. } => "monthly_credit_above_quarter",
            RuleFailure::InstalmentMonthsOutOfRange { .. } => "instalment_months_out_of_range",
        }
    }

    /// Returns the request field the rule is about.
    pub fn field(&self) -> &'static str {
        match self {
            RuleFailure::MonthlyCreditNotPositive
            | RuleFailure::MonthlyCreditAboveQuarter { .. } => "monthly_credit",
            RuleFailure::InstalmentMonthsOutOfRange { .. } => "instalment_months",
            _ => "guarantor_national_id",
        }
    }

    /// Returns the message in English.
    pub fn message_en(&self) -> String {
        match self {
            RuleFailure::GuarantorNotFound => {
                "No employee with this national ID was found to act as guarantor.".to_owned()
            }
            RuleFailure::GuarantorIsApplicant => {
                "You cannot be your own guarantor; please name a colleague.".to_owned()
            }
            RuleFailure::GuarantorOtherRegion => {
                "The guarantor must work in the same region as you.".to_owned()
            }
            RuleFailure::GuarantorServiceTooLong => {
                "The guarantor's service must be less than 28 years and 11 months.".to_owned()
            }
            RuleFailure::GuarantorSalaryTooLow => {
                "The guarantor's net salary must be equal to or above yours.".to_owned()
            }
            RuleFailure::GuarantorLimitReached => {
                "The guarantor cannot take on another guarantee; one person may guarantee at most 3 colleagues."
                    .to_owned()
            }
            RuleFailure::MonthlyCreditNotPositive => {
                "The monthly credit must be more than zero.".to_owned()
            }
            RuleFailure::MonthlyCreditAboveQuarter { max } => format!(
                "The monthly credit may be at most a quarter of your net salary: {max} rial."
            ),
            RuleFailure::InstalmentMonthsOutOfRange { max } => {
                format!("The number of instalments must be between 1 and {max}.")
            }
        }
    }

    /// Returns the message in Persian.
    pub fn message_fa(&self) -> String {
        match self {
            RuleFailure::GuarantorNotFound => {
                "کارمندی با این کد ملی برای ضمانت یافت نشد.".to_owned()
            }
            RuleFailure::GuarantorIsApplicant => {
                "شما نمی‌توانید ضامن خودتان باشید؛ لطفاً یکی از همکاران را معرفی کنید.".to_owned()
            }
            RuleFailure::GuarantorOtherRegion => {
                "ضامن باید در همان منطقه‌ای که شما خدمت می‌کنید شاغل باشد.".to_owned()
            }
            RuleFailure::GuarantorServiceTooLong => {
                "سابقهٔ خدمت ضامن باید کمتر از ۲۸ سال و ۱۱ ماه باشد.".to_owned()
            }
            RuleFailure::GuarantorSalaryTooLow => {
                "حقوق خالص ضامن باید برابر یا بیشتر از حقوق خالص شما باشد.".to_owned()
            }
            RuleFailure::GuarantorLimitReached => {
                "ضامن نمی‌تواند ضمانت دیگری بپذیرد؛ هر نفر حداکثر ضامن ۳ نفر می‌تواند باشد."
                    .to_owned()
            }
            RuleFailure::MonthlyCreditNotPositive => {
                "اعتبار ماهانه باید بیشتر از صفر باشد.".to_owned()
            }
            RuleFailure::MonthlyCreditAboveQuarter { max } => format!(
                "اعتبار ماهانه حداکثر می‌تواند یک‌چهارم حقوق خالص شما، یعنی {max} ریال، باشد."
            ),
            RuleFailure::InstalmentMonthsOutOfRange { max } => {
                format!("تعداد اقساط باید بین ۱ و {max} باشد.")
            }
        }
    }
}

/// Returns floor(net salary / 4), the largest monthly credit an employee may ask for (S10).
pub fn quarter_of(net_salary: Rial) -> Rial {
    Rial(net_salary.as_i64().max(0) / 4)
}

/// Checks R8 for `guarantor` as the guarantor of `applicant` on the date `on` (the
/// filing date, Tehran), given how many guarantees the guarantor holds besides this
/// request. Returns every failed rule.
pub fn check_guarantor(
    applicant: &EmployeeProfile,
    guarantor: Option<&EmployeeProfile>,
    guarantees_held: u32,
    on: NaiveDate,
) -> Vec<RuleFailure> {
    let Some(guarantor) = guarantor else {
        return vec![RuleFailure::GuarantorNotFound];
    };
    if guarantor.employee_id == applicant.employee_id
        || guarantor.national_id == applicant.national_id
    {
        // The other guarantor rules say nothing useful about oneself.
        return vec![RuleFailure::GuarantorIsApplicant];
    }
    let mut failures = Vec::new();
    if guarantor.region_code != applicant.region_code {
        failures.push(RuleFailure::GuarantorOtherRegion);
    }
    let (years, months, _days) = service_length(guarantor.service_start, on);
    if years * 12 + months >= SERVICE_LIMIT_MONTHS {
        failures.push(RuleFailure::GuarantorServiceTooLong);
    }
    if guarantor.net_salary < applicant.net_salary {
        failures.push(RuleFailure::GuarantorSalaryTooLow);
    }
    if guarantees_held >= GUARANTEE_LIMIT {
        failures.push(RuleFailure::GuarantorLimitReached);
    }
    failures
}

/// Checks R7 for the amounts of a request by `applicant`.
pub fn check_amounts(applicant: &EmployeeProfile, input: FilingInput) -> Vec<RuleFailure> {
    let mut failures = Vec::new();
    let max = quarter_of(applicant.net_salary);
    if !input.monthly_credit.is_positive() {
        failures.push(RuleFailure::MonthlyCreditNotPositive);
    } else if input.monthly_credit > max {
        failures.push(RuleFailure::MonthlyCreditAboveQuarter { max });
    }
    if !(1..=input.max_instalments).contains(&input.instalment_months) {
        failures.push(RuleFailure::InstalmentMonthsOutOfRange {
            max: input.max_instalments,
        });
    }
    failures
}

/// Checks R7 and R8 for a new request filed on `on` (Tehran date): every failed rule.
/// The guarantor's rules are checked only when the applicant's own fields pass (R32):
/// a request refused for its amounts says nothing about the person it names.
pub fn check_filing(
    applicant: &EmployeeProfile,
    guarantor: Option<&EmployeeProfile>,
    guarantees_held: u32,
    input: FilingInput,
    on: NaiveDate,
) -> Vec<RuleFailure> {
    let failures = check_amounts(applicant, input);
    if !failures.is_empty() {
        return failures;
    }
    check_guarantor(applicant, guarantor, guarantees_held, on)
}

#[cfg(test)]
mod tests {
    use tavana_kit::jalali::JalaliDate;

    use super::*;

    fn jalali(year: i32, month: u32, day: u32) -> NaiveDate {
        JalaliDate::new(year, month, day).unwrap().to_gregorian()
    }

    fn employee(id: &str, national_id: &str, salary: i64) -> EmployeeProfile {
        EmployeeProfile {
            employee_id: id.to_owned(),
            national_id: national_id.to_owned(),
            full_name: format!("Employee {id}"),
            organization_id: "ORG1".to_owned(),
            region_code: "R01".to_owned(),
            net_salary: Rial(salary),
            service_start: jalali(1390, 1, 1),
        }
    }

    fn input(monthly_credit: i64, months: u32) -> FilingInput {
        FilingInput {
            monthly_credit: Rial(monthly_credit),
            instalment_months: months,
            max_instalments: 36,
        }
    }

    fn codes(failures: &[RuleFailure]) -> Vec<&'static str> {
        failures.iter().map(RuleFailure::code).collect()
    }

    const FILED_ON: (i32, u32, u32) = (1405, 9, 15);

    fn filed_on() -> NaiveDate {
        jalali(FILED_ON.0, FILED_ON.1, FILED_ON.2)
    }

    #[test]
    fn r7_r8_valid_request_passes() {
        let applicant = employee("A", "0000000001", 100_000_000);
        let guarantor = employee("G", "0000000002", 100_000_000);
        let failures = check_filing(
            &applicant,
            Some(&guarantor),
            2,
            input(25_000_000, 36),
            filed_on(),
        );
        assert_eq!(failures, []);
    }

    #[test]
    fn r8_service_of_28y10m29d_is_allowed_and_28y11m0d_refused() {
        let applicant = employee("A", "0000000001", 100);
        let mut guarantor = employee("G", "0000000002", 100);
        // Started 1376-10-16: on 1405-09-15 that is 28 years, 10 months and 29 days.
        guarantor.service_start = jalali(1376, 10, 16);
        assert_eq!(
            service_length(guarantor.service_start, filed_on()),
            (28, 10, 29)
        );
        assert_eq!(
            check_guarantor(&applicant, Some(&guarantor), 0, filed_on()),
            []
        );

        guarantor.service_start = jalali(1376, 10, 15);
        assert_eq!(
            service_length(guarantor.service_start, filed_on()),
            (28, 11, 0)
        );
        assert_eq!(
            codes(&check_guarantor(
                &applicant,
                Some(&guarantor),
                0,
                filed_on()
            )),
            ["guarantor_service_too_long"]
        );
    }

    #[test]
    fn r8_equal_salary_is_allowed_and_one_rial_less_refused() {
        let applicant = employee("A", "0000000001", 50_000_000);
        let guarantor = employee("G", "0000000002", 50_000_000);
        assert_eq!(
            check_guarantor(&applicant, Some(&guarantor), 0, filed_on()),
            []
        );

        let poorer = employee("G", "0000000002", 49_999_999);
        assert_eq!(
            codes(&check_guarantor(&applicant, Some(&poorer), 0, filed_on())),
            ["guarantor_salary_too_low"]
        );
    }

    #[test]
    fn r8_guarantor_with_two_guarantees_is_allowed_and_three_refused() {
        let applicant = employee("A", "0000000001", 100);
        let guarantor = employee("G", "0000000002", 100);
        assert_eq!(
            check_guarantor(&applicant, Some(&guarantor), 2, filed_on()),
            []
        );
        assert_eq!(
            codes(&check_guarantor(
                &applicant,
                Some(&guarantor),
                3,
                filed_on()
            )),
            ["guarantor_limit_reached"]
        );
    }

    #[test]
    fn r8_other_region_missing_and_self_are_refused() {
        let applicant = employee("A", "0000000001", 100);
        let mut guarantor = employee("G", "0000000002", 100);
        guarantor.region_code = "R02".to_owned();
        assert_eq!(
            codes(&check_guarantor(
                &applicant,
                Some(&guarantor),
                0,
                filed_on()
            )),
            ["guarantor_other_region"]
        );
        assert_eq!(
            codes(&check_guarantor(&applicant, None, 0, filed_on())),
            ["guarantor_not_found"]
        );
        assert_eq!(
            codes(&check_guarantor(
                &applicant,
                Some(&applicant),
                0,
                filed_on()
            )),
            ["guarantor_is_applicant"]
        );
    }

    #[test]
    fn r7_monthly_credit_boundaries() {
        let applicant = employee("A", "0000000001", 10_000_003);
        let guarantor = employee("G", "0000000002", 10_000_003);
        let check = |m| {
            codes(&check_filing(
                &applicant,
                Some(&guarantor),
                0,
                input(m, 12),
                filed_on(),
            ))
        };
        assert_eq!(check(2_500_000), Vec::<&str>::new());
        assert_eq!(check(2_500_001), ["monthly_credit_above_quarter"]);
        assert_eq!(check(1), Vec::<&str>::new());
        assert_eq!(check(0), ["monthly_credit_not_positive"]);
        assert_eq!(check(-5), ["monthly_credit_not_positive"]);
    }

    #[test]
    fn r7_instalment_months_boundaries() {
        let applicant = employee("A", "0000000001", 100);
        let guarantor = employee("G", "0000000002", 100);
        let check = |n| {
            codes(&check_filing(
                &applicant,
                Some(&guarantor),
                0,
                input(25, n),
                filed_on(),
            ))
        };
        assert_eq!(check(1), Vec::<&str>::new());
        assert_eq!(check(36), Vec::<&str>::new());
        assert_eq!(check(37), ["instalment_months_out_of_range"]);
        assert_eq!(check(0), ["instalment_months_out_of_range"]);
    }

    fn failing_guarantor() -> EmployeeProfile {
        let mut guarantor = employee("G", "0000000002", 99);
        guarantor.region_code = "R09".to_owned();
        guarantor.service_start = jalali(1370, 1, 1);
        guarantor
    }

    #[test]
    fn r8_every_failed_rule_is_reported() {
        let applicant = employee("A", "0000000001", 100);
        let failures = check_filing(
            &applicant,
            Some(&failing_guarantor()),
            3,
            input(25, 36),
            filed_on(),
        );
        assert_eq!(
            codes(&failures),
            [
                "guarantor_other_region",
                "guarantor_service_too_long",
                "guarantor_salary_too_low",
                "guarantor_limit_reached",
            ]
        );
    }

    #[test]
    fn r32_invalid_amounts_report_no_guarantor_rule() {
        let applicant = employee("A", "0000000001", 100);
        for guarantor in [Some(failing_guarantor()), None] {
            let failures =
                check_filing(&applicant, guarantor.as_ref(), 3, input(26, 40), filed_on());
            assert_eq!(
                codes(&failures),
                [
                    "monthly_credit_above_quarter",
                    "instalment_months_out_of_range",
                ]
            );
        }
    }

    #[test]
    fn r32_guarantor_refusals_carry_no_figure_of_the_guarantor() {
        let applicant = employee("A", "0000000001", 100);
        let failures = check_guarantor(&applicant, Some(&failing_guarantor()), 3, filed_on());
        assert_eq!(failures.len(), 4);
        for failure in &failures {
            for message in [failure.message_en(), failure.message_fa()] {
                // The only figures left are the rule's own limits (28 years 11 months, 3).
                let figures: String = message
                    .replace("28", "")
                    .replace("11", "")
                    .replace("۲۸", "")
                    .replace("۱۱", "")
                    .replace(['3', '۳'], "");
                assert!(
                    !figures
                        .chars()
                        .any(|c| c.is_ascii_digit() || ('۰'..='۹').contains(&c)),
                    "{message}"
                );
            }
        }
    }

    #[test]
    fn r8_mutual_guarantees_are_allowed() {
        // S15: A guarantees G and G guarantees A; each check is independent.
        let a = employee("A", "0000000001", 100);
        let g = employee("G", "0000000002", 100);
        assert_eq!(check_guarantor(&a, Some(&g), 1, filed_on()), []);
        assert_eq!(check_guarantor(&g, Some(&a), 1, filed_on()), []);
    }
}
