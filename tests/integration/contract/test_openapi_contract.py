"""Schemathesis against every service's own /openapi.json, over a real
socket, with every check: what the document allows is accepted, what it
forbids is refused, and every answer (status, headers, body) is one the
document lists. A failure here is the document or the code telling a lie.
"""

from __future__ import annotations

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig

pytestmark = pytest.mark.slow


def _config(url: str, access_token: str, ops_token: str) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "base-url": url,
            # Each security scheme gets its real credential.
            "auth": {"openapi": {"bearer": {"bearer": access_token}, "operator": {"bearer": ops_token}}},
            "checks": {"enabled": True},
            "generation": {
                "max-examples": 8,
                "deterministic": True,
                "mode": "all",
                # JSON Schema cannot say "valid Unicode" or "no NUL": a lone
                # surrogate (which I-JSON, RFC 7493, forbids) and NUL (which
                # PostgreSQL text cannot hold) are refused with 400 in every
                # string, as tests/unit/goshop_common/test_strict_strings.py and
                # tests/integration/goshop_users/test_undecodable_input.py prove; they are
                # not what a schema-valid request may contain.
                "codec": "utf-8",
                "allow-x00": False,
            },
            "seed": 9,
            "operations": [
                {
                    # The one exclusion from the default checks. The IETF
                    # idempotency-key draft answers a key reused with another
                    # body with 422: a well-formed request refused for what an
                    # earlier one did, not for its shape. The document says so
                    # (the Idempotency-Key header's description, the 422), but
                    # no schema keyword can say "unique per body", so the
                    # generator reuses a key across bodies; 409, which it
                    # takes, means "still in flight" here.
                    "include-path-regex": "^/v1/(orders|checkout)$",
                    "include-method": "POST",
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]
                        }
                    },
                }
            ],
        }
    )


def run(url: str, access_token: str, ops_token: str) -> tuple[int, int, list[str]]:
    """Every phase of a Schemathesis run (examples, coverage, fuzzing,
    stateful), as the CLI would do it: (operations, test cases, failures)."""
    from schemathesis.engine import Status, events, from_schema

    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", config=_config(url, access_token, ops_token))
    failures: list[str] = []
    labels: set[str] = set()
    cases = 0
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            labels.add(event.label)
            cases += len(event.recorder.cases)
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        failure = check.failure_info.failure
                        failures.append(
                            f"{event.label} [{check.name}] {failure.title}: {failure.message}\n"
                            f"    {check.failure_info.code_sample}"
                        )
        elif isinstance(event, events.NonFatalError | events.FatalError):
            failures.append(f"{getattr(event, 'label', '')} error: {event.info.format()}")
    return len(labels), cases, sorted(set(failures))


def _assert_keeps_contract(url, access_token, ops_token):
    operations, cases, failures = run(url, access_token, ops_token)
    print(f"{url}: {operations} operations, {cases} cases, {len(failures)} failures")
    assert operations > 0
    assert cases > 0
    assert not failures, "\n".join(failures)


def test_users_api_keeps_its_contract(upstream_urls, access_token, ops_token):
    _assert_keeps_contract(upstream_urls["users"], access_token, ops_token)


def test_orders_api_keeps_its_contract(upstream_urls, access_token, ops_token):
    _assert_keeps_contract(upstream_urls["orders"], access_token, ops_token)


def test_payments_api_keeps_its_contract(upstream_urls, access_token, ops_token):
    _assert_keeps_contract(upstream_urls["payments"], access_token, ops_token)


def test_ops_api_keeps_its_contract(upstream_urls, access_token, ops_token):
    _assert_keeps_contract(upstream_urls["ops"], access_token, ops_token)


def test_gateway_keeps_the_contract_of_every_route(gateway_url, access_token, ops_token):
    _assert_keeps_contract(gateway_url, access_token, ops_token)
