//! What a merchant is (R25): its kind, what it supports, where it is, its categories.

use tavana_kit::caller::{Caller, Role};
use tavana_kit::error::Violation;
use tavana_kit::ids::normalize_digits;

use super::normalize::{normalize_text, parse_website};

/// The longest name, city, province or category accepted, in characters.
pub const MAX_TEXT_CHARS: usize = 200;
/// The longest address accepted, in characters.
pub const MAX_ADDRESS_CHARS: usize = 500;
/// The most categories one merchant may have.
pub const MAX_CATEGORIES: usize = 20;
/// Separates categories in the stored column; never part of a category.
pub const CATEGORY_DELIMITER: char = '|';

/// Online store or a shop one walks into (R25).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MerchantKind {
    /// Sells through a website; needs one.
    Online,
    /// A physical shop; needs a city, a province and an address.
    InPerson,
}

impl MerchantKind {
    /// Returns the stored snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            MerchantKind::Online => "online",
            MerchantKind::InPerson => "in_person",
        }
    }

    /// Parses the stored name.
    pub fn parse(text: &str) -> Option<MerchantKind> {
        match text {
            "online" => Some(MerchantKind::Online),
            "in_person" => Some(MerchantKind::InPerson),
            _ => None,
        }
    }
}

/// A merchant's contract status (R26).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MerchantStatus {
    /// Listed and may sell.
    Contracted,
    /// Hidden from listings; credit refuses its purchases.
    Suspended,
}

impl MerchantStatus {
    /// Returns the stored snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            MerchantStatus::Contracted => "contracted",
            MerchantStatus::Suspended => "suspended",
        }
    }

    /// Parses the stored name.
    pub fn parse(text: &str) -> Option<MerchantStatus> {
        match text {
            "contracted" => Some(MerchantStatus::Contracted),
            "suspended" => Some(MerchantStatus::Suspended),
            _ => None,
        }
    }
}

/// Returns true when `caller` may see a merchant whose stored status is `status` (R26):
/// a contracted merchant is public; a suspended one is seen only by other services
/// (credit must see the status to refuse purchases) and by the contracts department.
pub fn visible_to(caller: &Caller, status: &str) -> bool {
    is_listed(status) || caller.is_service() || caller.has_role(Role::Contracts)
}

/// Whether the public directory shows a merchant of `status`, whoever asks: contracted
/// ones only (R26, R27).
pub fn is_listed(status: &str) -> bool {
    status == MerchantStatus::Contracted.as_str()
}

/// A purchase kind a merchant supports (R14, R25).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PurchaseKind {
    /// One deduction from the next salary.
    Credit,
    /// Monthly instalments.
    Instalment,
}

/// The description of a merchant as a proposer typed it, unchecked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MerchantInput {
    /// The store's name.
    pub name: String,
    /// `None` when the kind was not given.
    pub kind: Option<MerchantKind>,
    /// The website (online).
    pub website: Option<String>,
    /// The city (in person).
    pub city: Option<String>,
    /// The province (in person).
    pub province: Option<String>,
    /// The street address (in person).
    pub address: Option<String>,
    /// Categories, e.g. «کتاب», «پوشاک».
    pub categories: Vec<String>,
    /// Whether it sells on one-month credit.
    pub supports_credit: bool,
    /// Whether it sells in instalments.
    pub supports_instalment: bool,
    /// A phone number of the store.
    pub contact_phone: String,
}

/// A merchant description that satisfies R25, with the normalized forms that search and
/// duplicate detection compare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MerchantDraft {
    /// The name as typed, trimmed.
    pub name: String,
    /// The normalized name.
    pub name_normalized: String,
    /// Online or in person.
    pub kind: MerchantKind,
    /// The website in normal form (R25).
    pub website: Option<String>,
    /// The website's host without `www.`.
    pub website_host: Option<String>,
    /// The city as typed, trimmed.
    pub city: Option<String>,
    /// The normalized city, empty when there is none.
    pub city_normalized: String,
    /// The province as typed, trimmed.
    pub province: Option<String>,
    /// The normalized province, empty when there is none.
    pub province_normalized: String,
    /// The address, trimmed.
    pub address: Option<String>,
    /// Normalized, de-duplicated, sorted categories.
    pub categories: Vec<String>,
    /// Whether it sells on one-month credit.
    pub supports_credit: bool,
    /// Whether it sells in instalments.
    pub supports_instalment: bool,
    /// The phone number, with ASCII digits.
    pub contact_phone: String,
}

fn present(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .map(str::to_owned)
}

fn violation(field: &str, code: &str, en: &str, fa: &str) -> Violation {
    Violation::new(field, code, en, fa)
}

fn check_length(violations: &mut Vec<Violation>, field: &str, value: &Option<String>, max: usize) {
    if value.as_ref().is_some_and(|v| v.chars().count() > max) {
        violations.push(violation(
            field,
            "too_long",
            &format!("At most {max} characters."),
            &format!("حداکثر {max} نویسه مجاز است."),
        ));
    }
}

impl MerchantDraft {
    /// Checks R25 and normalizes; every invalid field is reported, not just the first.
    pub fn parse(input: MerchantInput) -> Result<MerchantDraft, Vec<Violation>> {
        let mut violations = Vec::new();

        let name = input.name.trim().to_owned();
        let name_normalized = normalize_text(&name);
        if name_normalized.is_empty() {
            violations.push(violation(
                "name",
                "name_required",
                "The store's name is required.",
                "نام فروشگاه الزامی است.",
            ));
        }
        check_length(&mut violations, "name", &Some(name.clone()), MAX_TEXT_CHARS);

        let website = present(&input.website);
        let city = present(&input.city);
        let province = present(&input.province);
        let address = present(&input.address);
        check_length(&mut violations, "website", &website, MAX_TEXT_CHARS);
        check_length(&mut violations, "city", &city, MAX_TEXT_CHARS);
        check_length(&mut violations, "province", &province, MAX_TEXT_CHARS);
        check_length(&mut violations, "address", &address, MAX_ADDRESS_CHARS);

        let parsed_website = website.as_deref().and_then(parse_website);
        if website.is_some() && parsed_website.is_none() {
            violations.push(violation(
                "website",
                "website_invalid",
                "The website must be a web address such as https://shop.example.ir.",
                "وب‌سایت باید نشانی وب معتبری مانند https://shop.example.ir باشد.",
            ));
        }

        match input.kind {
            None => violations.push(violation(
                "kind",
                "kind_required",
                "The kind must be online or in_person.",
                "نوع فروشگاه باید برخط یا حضوری باشد.",
            )),
            Some(MerchantKind::Online) => {
                if website.is_none() {
                    violations.push(violation(
                        "website",
                        "website_required",
                        "An online store needs its website.",
                        "فروشگاه برخط باید وب‌سایت داشته باشد.",
                    ));
                }
            }
            Some(MerchantKind::InPerson) => {
                for (field, value, en, fa) in [
                    (
                        "city",
                        &city,
                        "An in-person store needs its city.",
                        "فروشگاه حضوری باید شهر داشته باشد.",
                    ),
                    (
                        "province",
                        &province,
                        "An in-person store needs its province.",
                        "فروشگاه حضوری باید استان داشته باشد.",
                    ),
                    (
                        "address",
                        &address,
                        "An in-person store needs its address.",
                        "فروشگاه حضوری باید نشانی داشته باشد.",
                    ),
                ] {
                    if value.is_none() {
                        violations.push(violation(field, &format!("{field}_required"), en, fa));
                    }
                }
            }
        }

        let mut categories: Vec<String> = Vec::new();
        for (index, category) in input.categories.iter().enumerate() {
            let normalized = normalize_text(category);
            if normalized.is_empty()
                || normalized.contains(CATEGORY_DELIMITER)
                || normalized.chars().count() > MAX_TEXT_CHARS
            {
                violations.push(violation(
                    &format!("categories[{index}]"),
                    "category_invalid",
                    "A category must be a non-empty name without '|'.",
                    "دسته باید نامی غیرخالی و بدون «|» باشد.",
                ));
            } else if !categories.contains(&normalized) {
                categories.push(normalized);
            }
        }
        categories.sort();
        if input.categories.is_empty() {
            violations.push(violation(
                "categories",
                "categories_required",
                "At least one category is required.",
                "دست‌کم یک دسته الزامی است.",
            ));
        } else if categories.len() > MAX_CATEGORIES {
            violations.push(violation(
                "categories",
                "too_many_categories",
                &format!("At most {MAX_CATEGORIES} categories."),
                &format!("حداکثر {MAX_CATEGORIES} دسته مجاز است."),
            ));
        }

        if !input.supports_credit && !input.supports_instalment {
            violations.push(violation(
                "supports_credit",
                "purchase_kind_required",
                "The store must support credit, instalment purchases, or both.",
                "فروشگاه باید خرید اعتباری یا اقساطی یا هر دو را بپذیرد.",
            ));
        }

        let contact_phone = normalize_digits(input.contact_phone.trim());
        if contact_phone.is_empty() {
            violations.push(violation(
                "contact_phone",
                "contact_phone_required",
                "A contact phone number is required.",
                "شمارهٔ تماس الزامی است.",
            ));
        } else if contact_phone.chars().count() > 32
            || !contact_phone
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | ' ' | '(' | ')'))
        {
            violations.push(violation(
                "contact_phone",
                "contact_phone_invalid",
                "The contact phone may hold only digits, spaces, +, - and parentheses.",
                "شمارهٔ تماس فقط می‌تواند رقم، فاصله، +، - و پرانتز داشته باشد.",
            ));
        }

        let Some(kind) = input.kind else {
            return Err(violations);
        };
        if !violations.is_empty() {
            return Err(violations);
        }
        Ok(MerchantDraft {
            name,
            name_normalized,
            kind,
            website: parsed_website.as_ref().map(|website| website.url.clone()),
            website_host: parsed_website.map(|website| website.host),
            city_normalized: city.as_deref().map(normalize_text).unwrap_or_default(),
            city,
            province_normalized: province.as_deref().map(normalize_text).unwrap_or_default(),
            province,
            address,
            categories,
            supports_credit: input.supports_credit,
            supports_instalment: input.supports_instalment,
            contact_phone,
        })
    }
}

/// Joins categories into the stored column, `|a|b|` (empty list: `|`).
pub fn join_categories(categories: &[String]) -> String {
    let mut joined = String::from(CATEGORY_DELIMITER);
    for category in categories {
        joined.push_str(category);
        joined.push(CATEGORY_DELIMITER);
    }
    joined
}

/// Splits the stored categories column.
pub fn split_categories(stored: &str) -> Vec<String> {
    stored
        .split(CATEGORY_DELIMITER)
        .filter(|part| !part.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use tavana_kit::caller::RoleGrant;

    use super::*;

    #[test]
    fn r26_a_suspended_merchant_is_hidden_from_employees_and_the_public() {
        let employee = Caller::User {
            employee_id: "E1".into(),
            national_id: "0000000000".into(),
            grants: vec![RoleGrant::global(Role::Employee)],
        };
        let contracts = Caller::User {
            employee_id: "E2".into(),
            national_id: "0000000001".into(),
            grants: vec![RoleGrant::global(Role::Contracts)],
        };
        let suspended = MerchantStatus::Suspended.as_str();
        let contracted = MerchantStatus::Contracted.as_str();

        assert!(visible_to(&Caller::Anonymous, contracted));
        assert!(visible_to(&employee, contracted));
        assert!(!visible_to(&Caller::Anonymous, suspended));
        assert!(!visible_to(&employee, suspended));
        assert!(visible_to(&contracts, suspended));
    }

    fn online() -> MerchantInput {
        MerchantInput {
            name: "DigiKala".into(),
            kind: Some(MerchantKind::Online),
            website: Some("https://www.digikala.com".into()),
            categories: vec!["Electronics".into(), "كتاب".into()],
            supports_credit: true,
            supports_instalment: false,
            contact_phone: "۰۲۱-۶۱۹۳۰۰۰۰".into(),
            ..MerchantInput::default()
        }
    }

    fn in_person() -> MerchantInput {
        MerchantInput {
            name: "كتاب‌فروشی  ققنوس".into(),
            kind: Some(MerchantKind::InPerson),
            city: Some(" تهران ".into()),
            province: Some("تهران".into()),
            address: Some("خیابان انقلاب، پلاک ۱۲".into()),
            categories: vec!["کتاب".into()],
            supports_credit: false,
            supports_instalment: true,
            contact_phone: "02166400000".into(),
            ..MerchantInput::default()
        }
    }

    fn codes(result: Result<MerchantDraft, Vec<Violation>>) -> Vec<String> {
        result.unwrap_err().into_iter().map(|v| v.code).collect()
    }

    #[test]
    fn r25_online_merchant_is_normalized() {
        let draft = MerchantDraft::parse(online()).unwrap();
        assert_eq!(draft.name, "DigiKala");
        assert_eq!(draft.name_normalized, "digikala");
        assert_eq!(draft.website_host.as_deref(), Some("digikala.com"));
        assert_eq!(draft.categories, ["electronics", "کتاب"]);
        assert_eq!(draft.contact_phone, "021-61930000");
        assert_eq!(draft.city_normalized, "");
    }

    #[test]
    fn r25_in_person_merchant_is_normalized() {
        let draft = MerchantDraft::parse(in_person()).unwrap();
        assert_eq!(draft.name_normalized, "کتاب فروشی ققنوس");
        assert_eq!(draft.city.as_deref(), Some("تهران"));
        assert_eq!(draft.city_normalized, "تهران");
    }

    #[test]
    fn r25_online_merchant_needs_a_website() {
        let input = MerchantInput {
            website: None,
            ..online()
        };
        assert_eq!(codes(MerchantDraft::parse(input)), ["website_required"]);
    }

    #[test]
    fn r25_in_person_merchant_needs_city_province_and_address() {
        let input = MerchantInput {
            city: None,
            province: Some("  ".into()),
            address: None,
            ..in_person()
        };
        assert_eq!(
            codes(MerchantDraft::parse(input)),
            ["city_required", "province_required", "address_required"]
        );
    }

    #[test]
    fn r25_merchant_supports_at_least_one_purchase_kind() {
        let input = MerchantInput {
            supports_credit: false,
            supports_instalment: false,
            ..online()
        };
        assert_eq!(
            codes(MerchantDraft::parse(input)),
            ["purchase_kind_required"]
        );
    }

    #[test]
    fn r25_every_invalid_field_is_reported() {
        let input = MerchantInput {
            name: " \u{200C} ".into(),
            kind: None,
            website: Some("not a site".into()),
            categories: vec![],
            supports_credit: false,
            supports_instalment: false,
            contact_phone: String::new(),
            ..MerchantInput::default()
        };
        assert_eq!(
            codes(MerchantDraft::parse(input)),
            [
                "name_required",
                "website_invalid",
                "kind_required",
                "categories_required",
                "purchase_kind_required",
                "contact_phone_required",
            ]
        );
    }

    #[test]
    fn r25_category_with_the_delimiter_is_refused() {
        let input = MerchantInput {
            categories: vec!["کتاب|پوشاک".into(), " ".into()],
            ..online()
        };
        let violations = MerchantDraft::parse(input).unwrap_err();
        assert_eq!(violations[0].field, "categories[0]");
        assert_eq!(violations[1].field, "categories[1]");
    }

    #[test]
    fn categories_round_trip_through_the_stored_column() {
        let categories = vec!["electronics".to_owned(), "کتاب".to_owned()];
        let joined = join_categories(&categories);
        assert_eq!(joined, "|electronics|کتاب|");
        assert_eq!(split_categories(&joined), categories);
        assert!(split_categories(&join_categories(&[])).is_empty());
    }
}
