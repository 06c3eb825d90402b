"""Helpers of the security suite: the API routes read from the URL router, two tenants with real objects, and
whole-database snapshots and scans to prove that a refused request changed nothing.

Nothing here is a test; the tests are the `test_*.py` files beside it.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.apps import apps
from django.db import models, transaction
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

API_PREFIX = "/api/v1/"
PROBLEM = "application/problem+json"
_PARAM_RE = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>\w+)>")

# --- the API as the router sees it ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """One URL pattern under /api/v1/, e.g. `/api/v1/customers/<str:external_id>/topups`."""

    template: str
    name: str | None
    pattern: URLPattern

    @property
    def params(self) -> list[str]:
        return [m.group("name") for m in _PARAM_RE.finditer(self.template)]

    @property
    def param_slots(self) -> list[tuple[str, str]]:
        """(the literal segment before the parameter, the parameter): ("customers", "external_id")."""
        slots = []
        for match in _PARAM_RE.finditer(self.template):
            before = self.template[: match.start()].rstrip("/").rsplit("/", 1)[-1]
            slots.append((before, match.group("name")))
        return slots

    @property
    def view_class(self) -> type | None:
        return getattr(self.pattern.callback, "cls", None) or getattr(self.pattern.callback, "view_class", None)

    @property
    def methods(self) -> list[str]:
        """Every HTTP method the view answers (HEAD where GET is, OPTIONS as every DRF view has it)."""
        cls = self.view_class
        if cls is None:  # a plain function view: it has no declared methods, so try them all
            return ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
        methods = [m.upper() for m in cls.http_method_names if hasattr(cls, m)]
        if "GET" in methods and "HEAD" not in methods:
            methods.append("HEAD")
        return methods

    @property
    def write_methods(self) -> list[str]:
        return [m for m in self.methods if m in ("POST", "PUT", "PATCH")]

    def path_for(self, ids: dict[tuple[str, str], str]) -> str:
        """The concrete path, each parameter taken from `ids` by its slot."""
        out, last = [], 0
        for match, slot in zip(_PARAM_RE.finditer(self.template), self.param_slots, strict=True):
            out.append(self.template[last: match.start()])
            out.append(ids[slot])
            last = match.end()
        out.append(self.template[last:])
        return "".join(out)

    def __str__(self) -> str:
        return self.template


def api_routes() -> list[Route]:
    """Every URL pattern under /api/v1/, read from the router (so a new endpoint is here the moment it exists)."""
    routes: list[Route] = []

    def walk(patterns: list, prefix: str) -> None:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, prefix + str(entry.pattern))
            elif isinstance(entry, URLPattern):
                template = prefix + str(entry.pattern)
                if template.startswith(API_PREFIX):
                    routes.append(Route(template=template, name=entry.name, pattern=entry))

    walk(get_resolver().url_patterns, "/")
    return sorted(routes, key=lambda r: r.template)


# --- the object map: which kind of object each path parameter names ------------------------------------------------

# (literal segment before the parameter, parameter) -> the kind of object it names. A route with a parameter that is
# not here fails `test_every_path_parameter_is_in_the_object_map`: add its kind here and to `Tenant.ids`.
OBJECT_MAP: dict[tuple[str, str], str] = {
    ("customers", "external_id"): "customer",
    ("agencies", "external_id"): "agency",
    ("topups", "topup_id"): "topup",
    ("charges", "charge_id"): "charge",
    ("holds", "hold_id"): "hold",
    ("refunds", "refund_id"): "refund",
}


def nonexistent_ids() -> dict[tuple[str, str], str]:
    """Ids of the right shape that name nothing (for the same-answer-as-missing comparison)."""
    out = {}
    for slot, kind in OBJECT_MAP.items():
        out[slot] = f"nobody:{kind}-404" if slot[1] == "external_id" else str(uuid.uuid4())
    return out


# --- two tenants with real objects ---------------------------------------------------------------------------------


def company(external_id: str, name: str) -> dict[str, Any]:
    return {"external_id": external_id, "kind": "company", "name": name, "email": "billing@example.com",
            "legal": {"inn": "7701234567", "legal_address": "Moscow, Tverskaya 1", "kpp": "770101001",
                      "long_name": "Limited Liability Company", "postal_address": "Moscow, Tverskaya 1",
                      "postcode": "101000"}}


def agency_body(external_id: str, name: str) -> dict[str, Any]:
    return {"external_id": external_id, "name": name,
            "legal": {"inn": "7709876543", "legal_address": "Moscow, Arbat 5", "kpp": "770101001",
                      "long_name": "Limited Liability Company", "postal_address": "Moscow, Arbat 5",
                      "postcode": "101000"}}


def post(client: APIClient, path: str, body: Any = None, key: str | None = None, **extra: Any):
    return client.post(path, body if body is not None else {}, format="json",
                       HTTP_IDEMPOTENCY_KEY=key or str(uuid.uuid4()), **extra)


def call(client: APIClient, method: str, path: str, body: Any = None, **extra: Any):
    """One request; bodies as JSON with a fresh Idempotency-Key on writes (so the key check never answers first)."""
    method = method.upper()
    if method in ("POST", "PUT", "PATCH"):
        return getattr(client, method.lower())(path, body if body is not None else {}, format="json",
                                               HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()), **extra)
    if method == "DELETE":
        return client.delete(path, **extra)
    return client.generic(method, path, **extra)


@dataclass
class Tenant:
    """One consumer service with one of each kind of object, made through the API as a consumer would."""

    service: Any
    api: APIClient
    token: str
    customer: Any
    agency: Any
    topup: Any
    charge: Any
    hold: Any
    refund: Any
    secrets: list[str] = field(default_factory=list)

    @property
    def ids(self) -> dict[tuple[str, str], str]:
        return {
            ("customers", "external_id"): self.customer.external_id,
            ("agencies", "external_id"): self.agency.external_id,
            ("topups", "topup_id"): str(self.topup.pk),
            ("charges", "charge_id"): str(self.charge.pk),
            ("holds", "hold_id"): str(self.hold.pk),
            ("refunds", "refund_id"): str(self.refund.pk),
        }

    def identifiers(self) -> list[str]:
        """Strings that identify this tenant's objects; none may ever appear in another tenant's response."""
        from wallets.models import LedgerTransaction

        public_ids = LedgerTransaction.objects.filter(service=self.service).values_list("public_id", flat=True)
        return [*self.ids.values(), self.customer.name, self.agency.name, *(str(p) for p in public_ids),
                *self.secrets]


def make_tenant(*, slug: str, balance_service_id: int, run_outbox: Any, prefix: str) -> Tenant:
    """A service with a registered customer (active in the emulator), an agency, money, a top-up, a charge with a
    refund, and an open hold."""
    from disbalance.services import service_create, service_token_issue
    from payments.models import Charge, Hold, Refund, TopUp
    from payments.services import product_create
    from wallets.services import wallet_credit_topup

    service = service_create(slug=slug, name=slug.title(), balance_service_id=balance_service_id).service
    token = service_token_issue(service=service).raw_token
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    product_create(service=service, code="placement", name="Placement", kind="placement",
                   balance_product_id=503162)
    product_create(service=service, code="boost", name="Boost", kind="vas", balance_product_id=503163)

    customer_name, agency_name = f"{prefix.title()} Secret Motors", f"{prefix.title()} Secret Agency"
    assert client.post("/api/v1/customers", company(f"{prefix}:dealer-1", customer_name),
                       format="json").status_code == 201
    assert client.post("/api/v1/agencies", agency_body(f"{prefix}:agency-1", agency_name),
                       format="json").status_code == 201
    run_outbox()
    from agencies.models import Agency
    from customers.models import Customer

    customer = Customer.objects.get(service=service, external_id=f"{prefix}:dealer-1")
    assert customer.status == "active", customer.status_reason
    agency = Agency.objects.get(service=service, external_id=f"{prefix}:agency-1")
    with transaction.atomic():
        wallet_credit_topup(customer=customer, payer_agency=None, amount=Decimal("1000.00"))

    base = f"/api/v1/customers/{customer.external_id}"
    topup = post(client, f"{base}/topups", {"amount": "500.00"})
    assert topup.status_code == 201, topup.content
    charge = post(client, f"{base}/charges", {"product": "placement", "amount": "100.00"})
    assert charge.status_code == 201, charge.content
    refund = post(client, f"/api/v1/charges/{charge.json()['id']}/refunds", {"amount": "10.00", "reason": "test"})
    assert refund.status_code == 201, refund.content
    hold = post(client, f"{base}/holds", {"product": "boost", "amount": "50.00"})
    assert hold.status_code == 201, hold.content
    run_outbox()
    return Tenant(
        service=service, api=client, token=token, customer=customer, agency=agency,
        topup=TopUp.objects.get(pk=topup.json()["id"]), charge=Charge.objects.get(pk=charge.json()["id"]),
        hold=Hold.objects.get(pk=hold.json()["id"]), refund=Refund.objects.get(pk=refund.json()["id"]),
        secrets=[customer_name, agency_name],
    )


# --- the whole database, to prove nothing changed -------------------------------------------------------------------

# Rows a refused request may legitimately write: the caller's own idempotency record (its answer is kept for replays)
# and a token's last-use time.
VOLATILE_FIELDS: dict[str, set[str]] = {"disbalance.servicetoken": {"last_used_at"}}


def project_models() -> list[type[models.Model]]:
    """Every concrete model of the project's apps and of the contrib apps that hold audit rows."""
    from django.conf import settings

    base = str(settings.BASE_DIR)
    out = []
    for config in apps.get_app_configs():
        ours = config.path.startswith(base) and ".venv" not in config.path
        if ours or config.label in ("admin", "auth", "sessions"):
            out.extend(m for m in config.get_models() if not m._meta.proxy)
    return out


def db_snapshot(*, skip: tuple[str, ...] = ()) -> dict[str, list[dict]]:
    """Every row of every project model (volatile fields removed), ordered by primary key."""
    snapshot = {}
    for model in project_models():
        label = model._meta.label_lower
        if label in skip:
            continue
        drop = VOLATILE_FIELDS.get(label, set())
        rows = [{k: v for k, v in row.items() if k not in drop} for row in model.objects.order_by("pk").values()]
        snapshot[label] = rows
    return snapshot


def snapshot_diff(before: dict[str, list[dict]], after: dict[str, list[dict]]) -> dict[str, dict[str, list]]:
    """{model: {"created": [...], "changed": [(old, new)], "deleted": [...]}} for models that differ."""
    out: dict[str, dict[str, list]] = {}
    for label in after:
        old = {row["id"] if "id" in row else repr(row): row for row in before.get(label, [])}
        new = {row["id"] if "id" in row else repr(row): row for row in after[label]}
        created = [new[k] for k in new if k not in old]
        deleted = [old[k] for k in old if k not in new]
        changed = [(old[k], new[k]) for k in new if k in old and old[k] != new[k]]
        if created or deleted or changed:
            out[label] = {"created": created, "changed": changed, "deleted": deleted}
    return out


def text_values(*, skip: tuple[str, ...] = ()) -> list[tuple[str, str, str]]:
    """(model, field, text) for every text-like value stored anywhere (char, text, JSON, UUID columns)."""
    out = []
    for model in project_models():
        label = model._meta.label_lower
        if label in skip:
            continue
        names = [f.attname for f in model._meta.concrete_fields
                 if isinstance(f, models.CharField | models.TextField | models.JSONField | models.UUIDField)]
        for row in model.objects.values(*names) if names else []:
            for name, value in row.items():
                if value not in (None, ""):
                    out.append((label, name, str(value)))
    return out


def problem(response, status: int, code: str | None = None) -> dict:
    """Assert an application/problem+json answer; returns its body (empty for HEAD)."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith(PROBLEM), response["Content-Type"]
    if not response.content:
        return {}
    body = response.json()
    assert body["status"] == status
    if code is not None:
        assert body["code"] == code, body
    return body
