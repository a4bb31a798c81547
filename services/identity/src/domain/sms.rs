//! The SMS texts (R28), in Persian, and the outbox message that carries one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tavana_kit::error::{Violation, codes};

use super::login::LoginCodeKey;

/// Where the login code goes in a queued login SMS.
pub const CODE_PLACEHOLDER: &str = "{code}";

/// Which text an SMS carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmsTemplate {
    /// A one-time login code (R3).
    LoginCode,
    /// The welcome message with the app download link (R4).
    Welcome,
    /// A status change of one's credit request.
    RequestStatus,
    /// A colleague named you as guarantor.
    GuaranteeRequested,
    /// A purchase receipt.
    PurchaseReceipt,
    /// An instalment settled.
    Settlement,
    /// The mobile number was changed by support (R5).
    MobileChanged,
    /// An instalment became overdue when its period was closed (R29).
    Overdue,
    /// An instalment of a colleague one guarantees became overdue (R29).
    OverdueGuarantor,
}

impl SmsTemplate {
    /// Returns the snake_case name of the template.
    pub fn as_str(self) -> &'static str {
        match self {
            SmsTemplate::LoginCode => "login_code",
            SmsTemplate::Welcome => "welcome",
            SmsTemplate::RequestStatus => "request_status",
            SmsTemplate::GuaranteeRequested => "guarantee_requested",
            SmsTemplate::PurchaseReceipt => "purchase_receipt",
            SmsTemplate::Settlement => "settlement",
            SmsTemplate::MobileChanged => "mobile_changed",
            SmsTemplate::Overdue => "overdue",
            SmsTemplate::OverdueGuarantor => "overdue_guarantor",
        }
    }
}

/// One SMS as stored in the outbox: the text is rendered when it is queued.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmsMessage {
    /// The canonical mobile number `09…`.
    pub mobile: String,
    /// Which message it is (R28).
    pub template: SmsTemplate,
    /// The Persian text.
    pub text: String,
    /// The login code, for template-based OTP providers (login codes only); never in
    /// the outbox, only in the message rendered at send time.
    pub code: Option<String>,
    /// The login challenge whose code the relay derives at send time (login codes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge_id: Option<String>,
}

impl std::fmt::Debug for SmsMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsMessage")
            .field("template", &self.template)
            .finish_non_exhaustive()
    }
}

impl SmsMessage {
    /// The login code SMS (R3) as queued: the text keeps a [`CODE_PLACEHOLDER`] and the
    /// code itself is derived from the challenge id only when the SMS is sent.
    pub fn login_code(mobile: &str, challenge_id: &str, lifetime_minutes: u64) -> SmsMessage {
        SmsMessage {
            mobile: mobile.to_owned(),
            template: SmsTemplate::LoginCode,
            text: format!(
                "کد ورود شما به توانا: {CODE_PLACEHOLDER}\nاین کد تا {} دقیقه معتبر است؛ آن را به هیچ‌کس ندهید.",
                persian_digits(&lifetime_minutes.to_string())
            ),
            code: None,
            challenge_id: Some(challenge_id.to_owned()),
        }
    }

    /// Returns the message as sent: a queued login code gets its code, derived with `key`.
    pub fn rendered(mut self, key: &LoginCodeKey) -> SmsMessage {
        if let Some(challenge_id) = self.challenge_id.take() {
            let code = key.code(&challenge_id);
            self.text = self.text.replace(CODE_PLACEHOLDER, code.as_str());
            self.code = Some(code.as_str().to_owned());
        }
        self
    }

    /// The welcome SMS with the app download link (R4, S6).
    pub fn welcome(mobile: &str, full_name: &str, app_download_url: &str) -> SmsMessage {
        SmsMessage {
            mobile: mobile.to_owned(),
            template: SmsTemplate::Welcome,
            text: format!(
                "{full_name} عزیز، حساب کارت اعتباری رفاهی توانای شما ساخته شد.\nبرنامهٔ توانا و آموزش‌ها را از این نشانی دریافت کنید: {app_download_url}"
            ),
            code: None,
            challenge_id: None,
        }
    }

    /// The SMS to the new number after support changed it (R5).
    pub fn mobile_changed(mobile: &str) -> SmsMessage {
        SmsMessage {
            mobile: mobile.to_owned(),
            template: SmsTemplate::MobileChanged,
            text: "شمارهٔ همراه شما در توانا به درخواست واحد رفاه به این شماره تغییر کرد. از این پس با همین شماره وارد شوید."
                .to_owned(),
            code: None,
            challenge_id: None,
        }
    }

    /// A notification another service asked for, rendered from its parameters.
    pub fn notification(
        mobile: &str,
        template: SmsTemplate,
        params: &BTreeMap<String, String>,
        app_download_url: &str,
    ) -> SmsMessage {
        let param = |name: &str| params.get(name).map(String::as_str).unwrap_or("").trim();
        let text = match template {
            SmsTemplate::LoginCode | SmsTemplate::MobileChanged => {
                // Never sent on behalf of another service: these come from identity itself.
                String::new()
            }
            SmsTemplate::Welcome => {
                return SmsMessage::welcome(mobile, param("full_name"), app_download_url);
            }
            SmsTemplate::RequestStatus => match param("message_fa") {
                "" => {
                    "وضعیت درخواست اعتبار توانای شما تغییر کرد. برای دیدن جزئیات وارد برنامه شوید."
                        .to_owned()
                }
                message => format!("درخواست اعتبار توانا: {message}"),
            },
            SmsTemplate::GuaranteeRequested => format!(
                "{} شما را به‌عنوان ضامن در توانا معرفی کرده است. برای تأیید یا رد، در درگاه به بخش «تأیید یا رد ضمانت» بروید.",
                match param("applicant_name") {
                    "" => "همکارتان",
                    name => name,
                }
            ),
            SmsTemplate::PurchaseReceipt => format!(
                "خرید شما به مبلغ {} ریال{} با کارت توانا ثبت شد.",
                persian_digits(param("amount")),
                match param("merchant_name") {
                    "" => String::new(),
                    name => format!(" از {name}"),
                }
            ),
            SmsTemplate::Settlement => format!(
                "قسط دورهٔ {} به مبلغ {} ریال تسویه شد. سپاس از همراهی شما با توانا.",
                persian_digits(param("period")),
                persian_digits(param("amount"))
            ),
            SmsTemplate::Overdue => format!(
                "قسط دورهٔ {} شما به مبلغ {} ریال پرداخت نشد و معوق است. تا تسویهٔ آن، خرید با کارت توانا ممکن نیست.",
                persian_digits(param("period")),
                persian_digits(param("amount"))
            ),
            SmsTemplate::OverdueGuarantor => format!(
                "قسط دورهٔ {} {} که ضمانت او را کرده‌اید، به مبلغ {} ریال معوق است.",
                persian_digits(param("period")),
                match param("full_name") {
                    "" => "همکارتان",
                    name => name,
                },
                persian_digits(param("amount"))
            ),
        };
        SmsMessage {
            mobile: mobile.to_owned(),
            template,
            text,
            code: None,
            challenge_id: None,
        }
    }

    /// Returns the message with the mobile number and code hidden, for logs.
    pub fn masked_mobile(&self) -> String {
        tavana_kit::ids::Mobile::parse(&self.mobile)
            .map(|mobile| mobile.masked())
            .unwrap_or_else(|_| "***".to_owned())
    }
}

/// Writes ASCII digits as Persian digits.
pub fn persian_digits(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '0'..='9' => char::from_u32(0x06F0 + (c as u32 - '0' as u32)).unwrap_or(c),
            other => other,
        })
        .collect()
}

/// A notification another service asks for (R28), before it is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// The employee to text.
    pub employee_id: String,
    /// The template asked for; `None` when unspecified or unknown.
    pub template: Option<SmsTemplate>,
    /// The key that queues the SMS only once.
    pub dedup_key: String,
    /// The template's parameters.
    pub params: BTreeMap<String, String>,
}

/// Whether notifications came one by one (`NotifyEmployee`) or in a batch
/// (`NotifyEmployees`): it names their fields in violations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotificationShape {
    /// One notification: its fields are named plainly.
    One,
    /// A batch: fields are named `notifications[i].name`.
    Many,
}

impl NotificationShape {
    /// Returns the name of field `name` of the notification at `index`.
    pub fn field(self, index: usize, name: &str) -> String {
        match self {
            NotificationShape::One => name.to_owned(),
            NotificationShape::Many => format!("notifications[{index}].{name}"),
        }
    }
}

/// Returns the template a notification asks for, or the violations that refuse it (R28):
/// identity's own templates (login codes, mobile changes) cannot be requested, and a dedup
/// key of at most 200 bytes is required. `field` names a field of the notification.
pub fn check_notification(
    notification: &Notification,
    field: impl Fn(&str) -> String,
) -> Result<SmsTemplate, Vec<Violation>> {
    let template = notification.template.filter(|template| {
        !matches!(
            template,
            SmsTemplate::LoginCode | SmsTemplate::MobileChanged
        )
    });
    let mut violations = Vec::new();
    if template.is_none() {
        violations.push(Violation::new(
            field("template"),
            "template_invalid",
            "This template cannot be sent on request.",
            "این الگوی پیامک را نمی‌توان درخواست کرد.",
        ));
    }
    let dedup_key = notification.dedup_key.trim();
    if dedup_key.is_empty() || dedup_key.len() > 200 {
        violations.push(Violation::new(
            field("dedup_key"),
            codes::REQUIRED,
            "The dedup key is required (at most 200 characters).",
            "کلید یکتایی لازم است (حداکثر ۲۰۰ نویسه).",
        ));
    }
    match template {
        Some(template) if violations.is_empty() => Ok(template),
        _ => Err(violations),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(template: Option<SmsTemplate>, dedup_key: &str) -> Notification {
        Notification {
            employee_id: "E1".into(),
            template,
            dedup_key: dedup_key.into(),
            params: BTreeMap::new(),
        }
    }

    #[test]
    fn r28_identitys_own_templates_cannot_be_requested() {
        for template in [SmsTemplate::LoginCode, SmsTemplate::MobileChanged] {
            let refused =
                check_notification(&notification(Some(template), "k"), str::to_owned).unwrap_err();
            assert_eq!(refused[0].code, "template_invalid");
        }
    }

    #[test]
    fn r28_a_notification_needs_a_dedup_key_and_names_its_fields_in_a_batch() {
        let refused = check_notification(&notification(Some(SmsTemplate::Welcome), " "), |name| {
            NotificationShape::Many.field(2, name)
        })
        .unwrap_err();

        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].field, "notifications[2].dedup_key");
        assert_eq!(refused[0].code, "required");
    }

    #[test]
    fn r28_a_valid_notification_gives_its_template() {
        assert_eq!(
            check_notification(
                &notification(Some(SmsTemplate::Overdue), "k"),
                str::to_owned
            ),
            Ok(SmsTemplate::Overdue)
        );
    }

    #[test]
    fn r3_login_code_is_queued_without_the_code_and_rendered_at_send_time() {
        let key = LoginCodeKey::derive_from(b"signing key");
        let code = key.code("challenge-1").as_str().to_owned();

        let queued = SmsMessage::login_code("09121234567", "challenge-1", 2);
        let payload = String::from_utf8(serde_json::to_vec(&queued).unwrap()).unwrap();
        let sent = queued.rendered(&key);

        assert!(!payload.contains(&code), "the outbox payload holds no code");
        assert!(sent.text.contains(&code));
        assert!(sent.text.contains("۲ دقیقه"));
        assert!(!sent.text.contains(CODE_PLACEHOLDER));
        assert_eq!(sent.code.as_deref(), Some(code.as_str()));
        assert!(!format!("{sent:?}").contains(&code));
    }

    #[test]
    fn r4_welcome_sms_has_the_download_link() {
        let sms = SmsMessage::welcome("09121234567", "علی رضایی", "https://app.example/get");
        assert!(sms.text.contains("https://app.example/get"));
        assert!(sms.text.contains("علی رضایی"));
        assert_eq!(sms.template.as_str(), "welcome");
    }

    #[test]
    fn notifications_render_their_params() {
        let params = BTreeMap::from([
            ("amount".to_owned(), "1500000".to_owned()),
            ("merchant_name".to_owned(), "کتاب‌فروشی ایران".to_owned()),
        ]);
        let sms =
            SmsMessage::notification("09121234567", SmsTemplate::PurchaseReceipt, &params, "");
        assert!(sms.text.contains("۱۵۰۰۰۰۰"));
        assert!(sms.text.contains("کتاب‌فروشی ایران"));
    }

    #[test]
    fn payload_round_trips_through_json() {
        let sms = SmsMessage::login_code("09121234567", "challenge-1", 2);
        let json = serde_json::to_vec(&sms).unwrap();
        assert_eq!(serde_json::from_slice::<SmsMessage>(&json).unwrap(), sms);
    }
}
