"""Schema-driven fuzzing: schemathesis generates requests for every operation of `/api/schema/` (drf-spectacular)
and sends them in-process to the WSGI application with a valid service token; no answer may be a server error,
and every answer must conform to the schema (documented status code, content type and body schema).

Each operation is fuzzed in four passes (`PASSES`): valid and invalid data with generated ids (mostly ids that
name nothing, of every shape), and valid and invalid data against the tenant's real objects (so validation, money
and state paths run). Examples are derandomized (a fixed seed per test), so a CI failure replays exactly. A 4xx
must be problem+json with a `code`, as the API promises. The statistics are printed (`pytest -s`) and kept in the test's
user properties.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hsettings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.security.support import make_tenant

MAX_EXAMPLES = 15  # per operation and pass: ~25 operations x 4 passes stay well under 90 s on 2 cores
# Not only "no server errors": every answer's status code, content type and body must be the ones the schema
# documents for that operation (the contract a generated client relies on).
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
PASSES = (
    ("positive, generated ids", GenerationMode.POSITIVE, False),
    ("positive, real ids", GenerationMode.POSITIVE, True),
    ("negative, generated ids", GenerationMode.NEGATIVE, False),
    ("negative, real ids", GenerationMode.NEGATIVE, True),
)


@pytest.fixture
def no_throttle(settings):
    from rest_framework.settings import api_settings
    from rest_framework.throttling import SimpleRateThrottle

    def apply(rate: str) -> None:
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"service": rate}}
        api_settings.reload()
        SimpleRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES

    original = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["service"]
    apply("1000000/min")
    yield
    apply(original)


def _problem_shaped(response) -> bool:
    content_type = (response.headers.get("content-type") or [""])[0]  # lowercase keys, list values
    if not content_type.startswith("application/problem+json"):
        return False
    try:
        body = json.loads(response.content or b"{}")
    except ValueError:
        return False
    return isinstance(body, dict) and bool(body.get("code")) and body.get("status") == response.status_code


def _repaired(body: dict) -> dict:
    """Make the cross-field rules the schema cannot state hold, so more valid cases reach the services."""
    body = dict(body)
    if "product" in body:
        body["product"] = "placement"
    if body.get("kind") in ("company", "individual") and isinstance(body.get("legal", {}), dict):
        body["legal"] = {**body.get("legal", {}), "inn": "7701234567", "legal_address": "Moscow", "kpp": "770101001",
                         "long_name": "LLC", "postal_address": "Moscow", "postcode": "101000", "lname": "Petrov",
                         "fname": "Ivan"}
        body.pop("agency", None)
    return body


def _fuzzer(strategy, op: str, statuses: dict[str, Counter], not_problem: list, *, real: bool):
    """One Hypothesis test over the operation's cases: call, count, and check for server errors. With `real`, a
    generated body is `_repaired`, so charges, holds and registrations get past the catalog and legal-details checks
    and the money and Balance paths run."""

    @hsettings(max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
               phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case) -> None:
        started = time.perf_counter()
        if real and isinstance(case.body, dict):
            case.body = _repaired(case.body)
        response = case.call()
        statuses[op][response.status_code] += 1
        statuses[op]["seconds"] += time.perf_counter() - started
        if 400 <= response.status_code < 500 and not _problem_shaped(response):
            not_problem.append((op, response.status_code, case.formatted_path))
        case.validate_response(response, checks=CHECKS)

    return run


@pytest.mark.django_db(transaction=True)
def test_schema_fuzz_finds_no_server_errors_and_every_answer_conforms(balance, run_outbox, no_throttle, request):
    from disbalance.wsgi import application

    tenant = make_tenant(slug="alpha", balance_service_id=7, run_outbox=run_outbox, prefix="alpha")
    real_ids = {"external_id": tenant.customer.external_id, "topup_id": str(tenant.topup.pk),
                "charge_id": str(tenant.charge.pk), "hold_id": str(tenant.hold.pk),
                "refund_id": str(tenant.refund.pk)}
    agency_routes = ("/agencies/{external_id}",)
    auth = {"Authorization": f"Bearer {tenant.token}"}

    schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20, [op.label for op in operations]

    statuses: dict[str, Counter] = defaultdict(Counter)
    not_problem: list[tuple[str, int, str]] = []
    failures: list[tuple[str, str, str]] = []
    unsatisfiable: list[tuple[str, str]] = []
    started = time.perf_counter()

    for operation in operations:
        names = {p.name for p in operation.path_parameters}
        for label, mode, use_real in PASSES:
            fixed = None
            if use_real and names:
                ids = dict(real_ids)
                if any(operation.path.startswith(prefix.split("{")[0]) for prefix in agency_routes):
                    ids["external_id"] = tenant.agency.external_id
                fixed = {name: ids[name] for name in names if name in ids}
            strategy = operation.as_strategy(generation_mode=mode, headers=auth, path_parameters=fixed)

            run = _fuzzer(strategy, operation.label, statuses, not_problem, real=use_real and mode is
                          GenerationMode.POSITIVE)
            try:
                run()
            except Unsatisfiable:  # nothing to vary (e.g. negative data for a GET whose only input is fixed)
                unsatisfiable.append((operation.label, label))
            except (Exception, BaseExceptionGroup) as exc:  # collect every operation's failure, report them together
                failures.append((operation.label, label, str(exc)[:3000]))

    elapsed = time.perf_counter() - started
    total = sum(n for c in statuses.values() for code, n in c.items() if code != "seconds")
    server_errors = sum(n for c in statuses.values() for code, n in c.items() if code != "seconds" and code >= 500)
    summary = [f"schemathesis {schemathesis.SCHEMATHESIS_VERSION}: "
               f"{len(operations)} operations, {total} requests in {elapsed:.1f}s, {server_errors} server errors"]
    nothing = ", ".join(sorted({u[0] for u in unsatisfiable}))
    summary.append(f"  passes with nothing to generate: {len(unsatisfiable)} ({nothing})")
    for op in sorted(statuses):
        counts = {code: n for code, n in statuses[op].items() if code != "seconds"}
        summary.append(f"  {op}: " + ", ".join(f"{code}x{n}" for code, n in sorted(counts.items()))
                       + f" ({statuses[op]['seconds']:.1f}s)")
    print("\n".join(summary))
    request.node.user_properties.append(("fuzz_summary", "\n".join(summary)))

    assert not failures, "\n\n".join(f"{op} [{label}]\n{text}" for op, label, text in failures)
    assert total >= len(operations) * 3
    assert not not_problem, f"4xx answers that are not problem+json with a code: {not_problem[:20]}"
