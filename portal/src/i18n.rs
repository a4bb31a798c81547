//! The two languages of the portal: Persian first, English on request.

/// The language a page is written in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Lang {
    /// Persian, right to left; the default.
    #[default]
    Fa,
    /// English, left to right.
    En,
}

impl Lang {
    /// Parses a `?lang=` value; anything but `en` and `fa` is ignored.
    pub fn parse(text: &str) -> Option<Lang> {
        match text.trim().to_ascii_lowercase().as_str() {
            "fa" => Some(Lang::Fa),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// Returns the `lang` attribute value.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Fa => "fa",
            Lang::En => "en",
        }
    }

    /// Returns the `dir` attribute value.
    pub fn dir(self) -> &'static str {
        match self {
            Lang::Fa => "rtl",
            Lang::En => "ltr",
        }
    }

    /// Picks the Persian or the English text.
    pub fn pick<'a>(self, fa: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Fa => fa,
            Lang::En => en,
        }
    }
}

/// Returns the label of a credit request status.
pub fn request_status(status: &str, lang: Lang) -> String {
    let (fa, en) = match status {
        "pending_guarantor" => ("در انتظار تأیید ضامن", "Waiting for the guarantor"),
        "guarantor_rejected" => ("رد شده توسط ضامن", "Rejected by the guarantor"),
        "pending_finance" => ("در انتظار تأیید مالی منطقه", "Waiting for regional finance"),
        "finance_rejected" => ("رد شده توسط مالی منطقه", "Rejected by regional finance"),
        "approved" => ("تأیید شده", "Approved"),
        "cancelled" => ("لغو شده", "Cancelled"),
        other => return other.to_owned(),
    };
    lang.pick(fa, en).to_owned()
}

/// Returns the label of a merchant proposal's or a merchant's status.
pub fn proposal_status(status: &str, lang: Lang) -> String {
    let (fa, en) = match status {
        "pending" => ("در انتظار بررسی", "Pending review"),
        "approved" => ("تأیید شده", "Approved"),
        "rejected" => ("رد شده", "Rejected"),
        "contracted" => ("طرف قرارداد", "Contracted"),
        "suspended" => ("تعلیق شده", "Suspended"),
        other => return other.to_owned(),
    };
    lang.pick(fa, en).to_owned()
}

/// Returns the label of a role.
pub fn role_name(role: &str, lang: Lang) -> String {
    let (fa, en) = match role {
        "employee" => ("کارمند", "Employee"),
        "region_admin" => ("کارگزینی منطقه", "Region HR admin"),
        "region_finance" => ("مالی منطقه", "Region finance"),
        "region_welfare_manager" => ("مدیر رفاه منطقه", "Region welfare manager"),
        "support" => ("پشتیبانی", "Support"),
        "contracts" => ("قراردادها", "Contracts"),
        "merchant" => ("پذیرنده", "Merchant"),
        other => return other.to_owned(),
    };
    lang.pick(fa, en).to_owned()
}

/// Returns the label of a merchant kind.
pub fn merchant_kind(kind: &str, lang: Lang) -> String {
    let (fa, en) = match kind {
        "online" => ("فروشگاه اینترنتی", "Online shop"),
        "in_person" => ("فروشگاه حضوری", "In-person shop"),
        other => return other.to_owned(),
    };
    lang.pick(fa, en).to_owned()
}

/// Returns the label of an unmatched remittance line's code.
pub fn remittance_code(code: &str, lang: Lang) -> String {
    let (fa, en) = match code {
        "national_id_invalid" => ("کد ملی نامعتبر", "Invalid national ID"),
        "amount_not_positive" => ("مبلغ باید مثبت باشد", "Amount must be positive"),
        "amount_invalid" => ("مبلغ نامعتبر", "Invalid amount"),
        "line_malformed" => ("سطر نادرست", "Malformed line"),
        "unknown_employee" => ("کارمند ناشناخته", "Unknown employee"),
        "nothing_due" => ("بدهی سررسیدی ندارد", "Nothing due"),
        "amount_short" => ("مبلغ کمتر از بدهی", "Amount short of what is due"),
        "amount_over" => ("مبلغ بیشتر از بدهی", "Amount over what is due"),
        other => return other.to_owned(),
    };
    lang.pick(fa, en).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_languages_are_accepted() {
        assert_eq!(Lang::parse("EN"), Some(Lang::En));
        assert_eq!(Lang::parse("fa"), Some(Lang::Fa));
        assert_eq!(Lang::parse("de"), None);
    }

    #[test]
    fn unknown_statuses_are_shown_as_sent() {
        assert_eq!(request_status("approved", Lang::Fa), "تأیید شده");
        assert_eq!(request_status("on_the_moon", Lang::Fa), "on_the_moon");
    }
}
