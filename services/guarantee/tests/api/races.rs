//! Concurrent filings: the guarantee limit (S4) and one open request per applicant (R9)
//! hold when requests arrive at the same instant.

use crate::{problem, spawn_app, violation_codes};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn r8_two_filings_against_a_guarantor_with_two_guarantees_admit_exactly_one() {
    let app = spawn_app().await;
    for _round in 0..5 {
        let guarantor = app.employee();
        for _ in 0..2 {
            let applicant = app.employee();
            app.file(&applicant, &guarantor.national_id, 1_000, 12)
                .await
                .unwrap();
        }
        let (first, second) = (app.employee(), app.employee());

        let (a, b) = tokio::join!(
            app.file(&first, &guarantor.national_id, 1_000, 12),
            app.file(&second, &guarantor.national_id, 1_000, 12),
        );

        let outcomes = [a, b];
        let accepted = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
        assert_eq!(accepted, 1, "exactly one filing succeeds");
        let refusal = outcomes
            .iter()
            .find_map(|outcome| outcome.as_ref().err())
            .unwrap();
        assert_eq!(violation_codes(refusal), ["guarantor_limit_reached"]);
        let accepted = outcomes
            .iter()
            .find_map(|outcome| outcome.as_ref().ok())
            .unwrap();
        assert_eq!(accepted.guarantor_active_guarantees, 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn r9_two_filings_of_one_applicant_at_once_admit_exactly_one() {
    let app = spawn_app().await;
    for _round in 0..5 {
        let applicant = app.employee();
        let (g1, g2) = (app.employee(), app.employee());

        let (a, b) = tokio::join!(
            app.file(&applicant, &g1.national_id, 1_000, 12),
            app.file(&applicant, &g2.national_id, 1_000, 12),
        );

        let outcomes = [a, b];
        assert_eq!(outcomes.iter().filter(|outcome| outcome.is_ok()).count(), 1);
        let refusal = outcomes
            .iter()
            .find_map(|outcome| outcome.as_ref().err())
            .unwrap();
        assert_eq!(problem(refusal).code, "open_request_exists");
    }
}
