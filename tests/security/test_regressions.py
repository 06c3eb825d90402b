"""Regression tests for what the security suite found, and hostile ids on every route (generated from the router).

- `GET /api/v1/topups/<not a UUID>` (and charges, holds, refunds, capture, release) was a 500: Django's UUID lookup
  raises `ValidationError`, which `payments.selectors._get` did not catch. Now 404 not_found.
- `/balance/notify` answered 500 to a NotifyOrder2 with a non-finite, malformed or out-of-range ConsumeQty, to a
  NotifyClient2 with a malformed overdraft (the applier's ValueError), and to a struct member nested 20,000 arrays
  deep (RecursionError): see `test_balance_notify.py` (`test_malformed_amounts_are_a_fault_not_a_500`,
  `test_malformed_client_notifications_are_a_fault`, `test_hostile_documents_are_refused_quickly_without_harm`).
- A NUL character in a path parameter was a 500 on PostgreSQL (psycopg refuses NUL in text parameters): now 404
  from `disbalance.middleware.PathGuardMiddleware` (`test_hostile_path_values_are_a_clean_4xx_on_every_route`).
- A hand-made cursor (`?cursor=` of base64 "p=abc") was a 500: the position went into the query unchecked. Now
  `404 Invalid cursor` (`test_hand_made_cursors_are_invalid_not_500`).
"""

from __future__ import annotations

import base64
import uuid

import pytest

from tests.security.support import OBJECT_MAP, api_routes, call, problem

pytestmark = pytest.mark.django_db

UNIVERSAL_BODY = {"amount": "10.00", "product": "placement", "reason": "x", "agency": None, "name": "x"}


@pytest.mark.parametrize("path", [
    "/api/v1/topups/pending", "/api/v1/topups/1", "/api/v1/charges/abc", "/api/v1/holds/" + "f" * 40,
    "/api/v1/holds/{12345678-1234-5678-1234-567812345678", "/api/v1/charges/abc/refunds",
    "/api/v1/holds/abc/capture", "/api/v1/holds/abc/release",
])
def test_an_operation_id_that_is_not_a_uuid_is_404(api, path):
    response = call(api, "POST" if path.rsplit("/", 1)[-1] in ("refunds", "capture", "release") else "GET", path,
                    {"amount": "1.00", "reason": "x"})
    problem(response, 404, "not_found")


# Path values of every awkward kind. Each must be a clean 4xx on every route and method: never a 5xx.
HOSTILE_VALUES = [
    "%00", "x%00y", "a" * 5000, "%C3%A9t%C3%A9", "..", "%2e%2e", "%ff%fe", "%20", "'%3B--", "%F0%9F%92%B8",
    "%E2%80%AE", "1e309", "-1", "0", str(uuid.UUID(int=0)), "%7Bexternal_id%7D", "%25", "%5C%5C",
]


@pytest.mark.parametrize("value", HOSTILE_VALUES, ids=lambda v: v[:20])
def test_hostile_path_values_are_a_clean_4xx_on_every_route(api, products, value):
    failures = []
    for route in api_routes():
        if not route.params:
            continue
        path = route.path_for(dict.fromkeys(OBJECT_MAP, value))
        for method in route.methods:
            response = call(api, method, path, UNIVERSAL_BODY)
            if method == "OPTIONS":  # describes the endpoint, names no object
                if response.status_code >= 500:
                    failures.append((method, path[:120], response.status_code))
                continue
            if not 400 <= response.status_code < 500:
                failures.append((method, path[:120], response.status_code))
            elif method != "HEAD" and response.status_code != 404 and \
                    not response["Content-Type"].startswith("application/problem+json"):
                failures.append((method, path[:120], response.status_code, response["Content-Type"]))
    assert not failures, failures


def _cursor(query: str) -> str:
    return base64.b64encode(query.encode()).decode()


# Hand-made cursors: positions that are not values of the ordering field (`id`, `created_at`), out of range, or
# with odd offsets. Each must be 404 "Invalid cursor" (or a page), never a 500.
CURSORS = [
    _cursor("p=abc"), _cursor("p=abc&r=1"), _cursor("o=5&p=abc"), _cursor("p=99999999999999999999999999"),
    _cursor("p=-99999999999999999999999999"), _cursor("p=2020-13-45"), _cursor("p=1e5"), _cursor("p=\x00"),
    _cursor("p=2020-01-01T00:00:00%2B00:00"), _cursor("o=999999999999999999999"), _cursor("o=-1"), _cursor("r=x"),
    "not base64!", "",
]


@pytest.mark.parametrize("cursor", CURSORS)
def test_hand_made_cursors_are_invalid_not_500(tenant, cursor):
    failures = []
    for route in api_routes():
        if "GET" not in route.methods:
            continue
        response = tenant.api.get(route.path_for(tenant.ids), {"cursor": cursor, "limit": "2"})
        if response.status_code == 404:
            problem(response, 404, "not_found")
        elif response.status_code != 200:
            failures.append((str(route), response.status_code, response.content[:200]))
    assert not failures, failures


def test_a_valid_cursor_still_pages(tenant):
    for n in range(3):
        assert tenant.api.post("/api/v1/customers", {"external_id": f"alpha:page-{n}", "kind": "individual",
                                                     "name": "P", "legal": {"lname": "P", "fname": "Q"}},
                               format="json").status_code == 201
    seen, url = [], "/api/v1/customers?limit=2"
    while url:
        page = tenant.api.get(url).json()
        seen += [c["external_id"] for c in page["results"]]
        url = page["next"]
    assert len(seen) == len(set(seen)) == 4
