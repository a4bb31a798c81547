"""Schemathesis hooks of `.ci/schemathesis` (loaded through SCHEMATHESIS_HOOKS).

The gateway refuses a few schema-valid values for reasons no JSON Schema can
state; each route documents the 400 or 422 it answers with (docs/API.md):

- a national ID's check digit (R2): `^[0-9]{10}$` lets through nine IDs in ten
  that fail it (`national_id_invalid`);
- an opaque `page_token`: only a `next_page_token` the service issued is one
  (`page_token_invalid`);
- a CSV body's header and lines (`text/csv` has no schema), and the query
  parameters only a CSV body needs;
- a few rules across two fields (a credit purchase's months, a role's region,
  an unmatched line's resolution), which the generated document does not state;
- a card's Luhn digit, a PIN "too simple" (R21);
- a domain rule refused (422, API.md "Errors"): an amount above the free
  credit, a request already decided, ...

`.ci/schemathesis.toml` therefore lets `positive_data_acceptance` take 400 and
422, and the check below takes back the 400s: a schema-valid request answered
400 fails unless the problem's code, and every violation's code, is one of
BUSINESS_RULE_CODES. Every other check of `--checks all` is left as it is.
"""

import schemathesis

# 400 codes for a rule that a schema cannot express (see the module comment).
BUSINESS_RULE_CODES = frozenset(
    {
        # R2's check digit.
        "national_id_invalid",
        # The Luhn digit of a card's customer number (R21).
        "customer_number_invalid",
        # R21: a PIN of one repeated digit or a run, or the holder's national ID.
        "pin_too_simple",
        "pin_equals_national_id",
        # R14: a credit purchase is repaid in one month; `months` depends on `kind`,
        # which the generated document does not state (no if/then per kind).
        "credit_months_invalid",
        # A date against the (dev) clock: a service start date not in the future.
        "service_start_date_in_future",
        # R23: a resolution returns the money or names whom and which period it pays,
        # not both; a rule across fields the generated document does not state.
        "resolution_ambiguous",
        # R6: a regional role names its region, a national one none.
        "region_required",
        "region_not_allowed",
        # `POST /v1/remittances` with `text/csv` needs these query parameters, JSON does
        # not: OpenAPI cannot tie a parameter to the body's media type.
        "organization_id_missing",
        "period_missing",
        "bank_reference_missing",
        # Only a `next_page_token` the service issued.
        "page_token_invalid",
        # The header and lines of a `text/csv` body.
        "csv_header_invalid",
        # A NUL (U+0000) in any text of the body or the URL: no text column stores
        # one, and the document does not put a pattern on every string to say so.
        "text_has_nul",
    }
)


def _codes(body):
    violations = body.get("violations") or []
    codes = {violation.get("code") for violation in violations}
    if not codes:
        codes = {body.get("code")}
    return codes


@schemathesis.check
def positive_data_refused_only_by_business_rules(ctx, response, case):
    """A schema-valid request answered 400 names only rules a schema cannot express."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 400:
        return None
    try:
        body = response.json()
    except Exception:  # noqa: BLE001 - a 400 without a problem body is a failure
        body = {}
    if not isinstance(body, dict):
        body = {}
    codes = _codes(body)
    unexpected = sorted(str(code) for code in codes - BUSINESS_RULE_CODES)
    if unexpected:
        raise AssertionError(
            "Schema-valid request refused with 400 for a reason the schema could state: "
            + ", ".join(unexpected)
        )
    return None
