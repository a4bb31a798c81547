//! The status messages shown to the applicant after each transition (S3, R11).

use super::status::RequestStatus;

/// A status message in Persian and English.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusMessage {
    /// The message in Persian.
    pub fa: &'static str,
    /// The message in English.
    pub en: &'static str,
}

/// Returns the message the applicant sees once the request reaches `status`.
pub fn status_message(status: RequestStatus) -> StatusMessage {
    match status {
        RequestStatus::PendingGuarantor => StatusMessage {
            fa: "درخواست شما ثبت شد و در انتظار تأیید ضامن است.",
            en: "Your request has been filed and is awaiting your guarantor's approval.",
        },
        RequestStatus::GuarantorRejected => StatusMessage {
            fa: "ضامن معرفی‌شده درخواست شما را تأیید نکرد. می‌توانید درخواست تازه‌ای با ضامن دیگری ثبت کنید.",
            en: "Your guarantor did not approve your request. You may file a new request with another guarantor.",
        },
        RequestStatus::PendingFinance => StatusMessage {
            fa: "ضامن درخواست شما را تأیید کرد؛ درخواست در انتظار بررسی و تأیید امور مالی منطقه است.",
            en: "Your guarantor approved your request; it is now awaiting review by your region's finance office.",
        },
        RequestStatus::FinanceRejected => StatusMessage {
            fa: "امور مالی منطقه درخواست شما را تأیید نکرد. می‌توانید درخواست تازه‌ای ثبت کنید.",
            en: "Your region's finance office did not approve your request. You may file a new request.",
        },
        RequestStatus::Approved => StatusMessage {
            fa: "درخواست شما تأیید شد. اعتبار شما ۷۲ ساعت پس از این تأیید فعال می‌شود.",
            en: "Your request has been approved. Your credit becomes usable 72 hours after this approval.",
        },
        RequestStatus::Cancelled => StatusMessage {
            fa: "درخواست شما به درخواست خودتان لغو شد. هر زمان بخواهید می‌توانید درخواست تازه‌ای ثبت کنید.",
            en: "Your request was cancelled at your request. You may file a new request at any time.",
        },
    }
}

/// Returns the message sent to a guarantor named in a new request (R28, S14).
pub fn guarantee_requested_message(applicant_name: &str) -> (String, String) {
    (
        format!(
            "{applicant_name} شما را به‌عنوان ضامن معرفی کرده است. لطفاً در سامانه، بخش «تأیید یا رد ضمانت»، درخواست را بررسی کنید."
        ),
        format!(
            "{applicant_name} has named you as guarantor. Please review the request under \"approve or reject guarantee\" in the portal."
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r11_every_status_has_a_message_in_both_languages() {
        for status in RequestStatus::ALL {
            let message = status_message(status);
            assert!(!message.fa.is_empty() && !message.en.is_empty());
        }
    }
}
