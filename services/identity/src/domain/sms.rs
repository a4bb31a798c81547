//! The SMS texts (R28), in Persian, and the outbox message that carries one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The outbox topic of an SMS to send.
pub const SMS_TOPIC: &str = "sms.send";

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
        }
    }
}

/// One SMS as stored in the outbox: the text is rendered when it is queued.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmsMessage {
    /// The canonical mobile number `09…`.
    pub mobile: String,
    pub template: SmsTemplate,
    /// The Persian text.
    pub text: String,
    /// The login code, for template-based OTP providers (login codes only).
    pub code: Option<String>,
}

impl std::fmt::Debug for SmsMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsMessage")
            .field("template", &self.template)
            .finish_non_exhaustive()
    }
}

impl SmsMessage {
    /// The login code SMS (R3).
    pub fn login_code(mobile: &str, code: &str, lifetime_minutes: u64) -> SmsMessage {
        SmsMessage {
            mobile: mobile.to_owned(),
            template: SmsTemplate::LoginCode,
            text: format!(
                "کد ورود شما به توانا: {code}\nاین کد تا {} دقیقه معتبر است؛ آن را به هیچ‌کس ندهید.",
                persian_digits(&lifetime_minutes.to_string())
            ),
            code: Some(code.to_owned()),
        }
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
        };
        SmsMessage {
            mobile: mobile.to_owned(),
            template,
            text,
            code: None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_code_sms_is_persian_and_carries_the_code() {
        let sms = SmsMessage::login_code("09121234567", "042137", 2);
        assert!(sms.text.contains("042137"));
        assert!(sms.text.contains("۲ دقیقه"));
        assert_eq!(sms.code.as_deref(), Some("042137"));
        assert!(!format!("{sms:?}").contains("042137"));
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
        let sms = SmsMessage::login_code("09121234567", "123456", 2);
        let json = serde_json::to_vec(&sms).unwrap();
        assert_eq!(serde_json::from_slice::<SmsMessage>(&json).unwrap(), sms);
    }
}
