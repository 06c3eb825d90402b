"""Proof by a real client: generate a typed Python client (openapi-python-client, offline, into a tmp dir) from
`manage.py spectacular` output and run the README walkthrough through it against a live server with the Balance
emulator. The client parses every answer with the models generated from the schema and raises on any status code
the schema does not document, so a schema that lies about an answer fails here."""

from __future__ import annotations

import importlib
import io
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.core.management import call_command

PACKAGE = "disbalance_client"


def generate_client(tmp_path: Path) -> Any:
    schema = tmp_path / "openapi.yaml"
    out = io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    schema.write_text(out.getvalue())
    config = tmp_path / "config.yaml"
    config.write_text(f"package_name_override: {PACKAGE}\npost_hooks: []\n")
    generator = Path(sys.executable).with_name("openapi-python-client")
    result = subprocess.run(
        [str(generator), "generate", "--path", str(schema), "--output-path", str(tmp_path / PACKAGE), "--meta",
         "none", "--config", str(config)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    sys.path.insert(0, str(tmp_path))
    for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
        del sys.modules[name]
    return importlib.import_module(PACKAGE)


def op(module: str) -> Any:
    """One generated operation module, e.g. `customers.customers_register`."""
    return importlib.import_module(f"{PACKAGE}.api.{module}")


def poll(call: Callable[[], Any], done: Callable[[Any], bool], *, timeout: float = 20.0,
         between: Callable[[], Any] | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = call()
        if done(value) or time.monotonic() > deadline:
            return value
        if between is not None:
            between()
        time.sleep(0.1)


@pytest.fixture
def generated(tmp_path):
    module = generate_client(tmp_path)
    yield module
    sys.path.remove(str(tmp_path))


@pytest.mark.django_db(transaction=True)
def test_readme_walkthrough_through_a_generated_client(generated, token, products, emulator, run_outbox,
                                                       balance_live, live_server):
    from agencies.models import Agency
    from agencies.services import agency_contracts_refresh

    models = importlib.import_module(f"{PACKAGE}.models")
    client = generated.AuthenticatedClient(base_url=f"{live_server.url}", token=token,
                                           raise_on_unexpected_status=True)

    # Register a customer: 201, then 200 for the same body.
    body = models.CustomerCreateRequest.from_dict({
        "external_id": "dealer:777", "kind": "company", "name": "Fast Cars LLC", "email": "cars@example.com",
        "legal": {"inn": "7712345678", "kpp": "771201001", "long_name": "Fast Cars Limited Liability Company",
                  "legal_address": "Moscow, Arbat 10", "postal_address": "Moscow, Arbat 10", "postcode": "119002"},
        "user_uids": [4001],
    })
    created = op("customers.customers_register").sync_detailed(client=client, body=body)
    assert created.status_code == 201 and isinstance(created.parsed, models.CustomerOutput)
    assert created.parsed.external_id == "dealer:777"
    assert op("customers.customers_register").sync_detailed(client=client, body=body).status_code == 200

    customer = poll(lambda: op("customers.customers_get").sync(client=client, external_id="dealer:777"),
                    lambda c: c.status == models.RegistrationStatusEnum.ACTIVE, between=run_outbox)
    assert customer.status == models.RegistrationStatusEnum.ACTIVE, customer.status_reason
    assert customer.balance.client_id is not None

    patched = op("customers.customers_update").sync(
        client=client, external_id="dealer:777",
        body=models.PatchedCustomerUpdateRequest.from_dict({"phone": "+7 495 000-00-00"}))
    assert patched.phone == "+7 495 000-00-00"

    page = op("customers.customers_list").sync(client=client, status=models.CustomersListStatus.ACTIVE, limit=20)
    assert isinstance(page, models.PaginatedCustomerOutputList)
    assert [c.external_id for c in page.results] == ["dealer:777"] and page.next_ is None

    # An agency, with a contract in Balance (in the README: the demo agency).
    agency_body = models.AgencyCreateRequest.from_dict({
        "external_id": "agency:9", "name": "Ad Agency LLC", "legal": {
            "inn": "7700000009", "kpp": "770001001", "long_name": "Ad Agency Limited Liability Company",
            "legal_address": "Moscow", "postal_address": "Moscow", "postcode": "101000"}})
    assert op("agencies.agencies_register").sync_detailed(client=client, body=agency_body).status_code == 201
    run_outbox()
    agency = Agency.objects.get(external_id="agency:9")
    emulator.create_contract(agency.balance_client_id, payment_type="prepaid", services=[7])
    agency_contracts_refresh(agency=agency)
    got_agency = op("agencies.agencies_get").sync(client=client, external_id="agency:9")
    assert [c.active for c in got_agency.contracts] == [True]
    assert op("agencies.agencies_list").sync(client=client).results[0].external_id == "agency:9"

    # Top up, pay on Balance's page, poll the top-up: the wallet is credited a moment after the payment.
    topup = op("customers.topups_create").sync(client=client, external_id="dealer:777", idempotency_key="topup-1",
                                               body=models.TopUpCreateRequest(amount="1500.00"))
    assert isinstance(topup, models.TopUp) and topup.amount == "1500.00"
    topup = poll(lambda: op("topups.topups_get").sync(client=client, topup_id=topup.id),
                 lambda t: t.payment_url is not None, between=run_outbox)
    assert topup.status == models.TopUpStatusEnum.AWAITING_PAYMENT, topup.status_reason
    assert httpx.post(topup.payment_url, timeout=10).status_code < 400
    topup = poll(lambda: op("topups.topups_get").sync(client=client, topup_id=topup.id),
                 lambda t: t.status == models.TopUpStatusEnum.SUCCEEDED)
    assert topup.status == models.TopUpStatusEnum.SUCCEEDED
    wallet = op("customers.wallet_get").sync(client=client, external_id="dealer:777")
    assert (wallet.currency, wallet.balance, wallet.available, wallet.payer) == ("RUB", "1500.00", "1500.00", None)
    topups = op("customers.topups_list").sync(client=client, external_id="dealer:777", limit=1)
    assert [t.id for t in topups.results] == [topup.id]

    # Spend: the catalog, a charge, a hold captured in part, a refund, the statement.
    assert {p.code for p in op("products.products_list").sync(client=client)} == {"placement", "boost"}
    charge = op("customers.charges_create").sync(
        client=client, external_id="dealer:777", idempotency_key="charge-1",
        body=models.ChargeCreateRequest(product="placement", amount="300.00"))
    assert isinstance(charge, models.Charge) and charge.status == "succeeded"
    replay = op("customers.charges_create").sync_detailed(
        client=client, external_id="dealer:777", idempotency_key="charge-1",
        body=models.ChargeCreateRequest(product="placement", amount="300.00"))
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.parsed.id == charge.id
    hold = op("customers.holds_create").sync(client=client, external_id="dealer:777", idempotency_key="hold-1",
                                             body=models.HoldCreateRequest(product="boost", amount="200.00"))
    assert hold.status == models.HoldStatusEnum.HELD
    captured = op("holds.holds_capture").sync(client=client, hold_id=hold.id, idempotency_key="capture-1",
                                              body=models.HoldCaptureRequest(amount="150.00"))
    assert (captured.status, captured.captured) == (models.HoldStatusEnum.CAPTURED, "150.00")
    again = op("holds.holds_release").sync(client=client, hold_id=hold.id, idempotency_key="release-1")
    assert isinstance(again, models.Problem) and again.code == "invalid_state"
    refund = op("charges.refunds_create").sync(client=client, charge_id=charge.id, idempotency_key="refund-1",
                                               body=models.RefundCreateRequest(amount="50.00", reason="bad photo"))
    assert isinstance(refund, models.Refund) and refund.amount == "50.00"
    wallet = op("customers.wallet_get").sync(client=client, external_id="dealer:777")
    assert (wallet.balance, wallet.held, wallet.available) == ("1100.00", "0.00", "1100.00")
    statement = op("customers.wallet_transactions").sync(client=client, external_id="dealer:777", limit=2)
    assert len(statement.results) == 2 and (statement.results[0].type_, statement.results[0].amount) == (
        models.TransactionTypeEnum.REFUND, "50.00")
    assert statement.next_ is not None
    rest = httpx.get(statement.next_, headers={"Authorization": f"Bearer {token}"}).json()
    assert models.PaginatedStatementRowList.from_dict(rest).results

    # Switch the payer to the agency, and the history.
    changed = op("customers.customers_change_agency").sync(
        client=client, external_id="dealer:777",
        body=models.AgencyChangeRequest(agency="agency:9", reason="signed with the agency"))
    assert changed.agency == "agency:9"
    history = op("customers.customers_agency_history").sync(client=client, external_id="dealer:777")
    assert history[0].agency == "agency:9" and history[0].until is None
    wallet = op("customers.wallet_get").sync(client=client, external_id="dealer:777")
    assert wallet.payer == "agency:9" and [(p.payer, p.balance) for p in wallet.other_payers] == [(None, "1100.00")]

    # Errors arrive as the generated Problem model.
    missing = op("customers.customers_get").sync(client=client, external_id="dealer:404")
    assert isinstance(missing, models.Problem) and (missing.status, missing.code) == (404, "not_found")
    too_much = op("customers.charges_create").sync(
        client=client, external_id="dealer:777", idempotency_key="charge-2",
        body=models.ChargeCreateRequest(product="placement", amount="10000000000000.00"))
    assert too_much.code == "validation_error"
    assert too_much.errors.additional_properties == {"amount": ["must not exceed 1000000000000.00"]}
