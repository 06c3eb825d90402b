"""The checks' registry: a check added in a module outside the app is run, recorded, reported, shown in the
console and fixed through the one dispatcher; a second registration of a kind is refused."""

from __future__ import annotations

import importlib
import sys

import pytest
from django.urls import reverse

from reconciliation.actions import mismatch_fix
from reconciliation.models import Mismatch
from reconciliation.registry import CHECKS, STAGE_CUSTOMERS, Check, checks_for, register
from reconciliation.run import reconcile
from tests.factories import CustomerFactory

FIXTURE_MODULE = "tests.reconciliation.fixture_check"


@pytest.fixture
def fixture_check():
    """Import the fixture module (which registers its check); afterwards the registry is as it was."""
    saved = dict(CHECKS)
    if FIXTURE_MODULE in sys.modules:
        module = importlib.reload(sys.modules[FIXTURE_MODULE])
    else:
        module = importlib.import_module(FIXTURE_MODULE)
    yield module
    CHECKS.clear()
    CHECKS.update(saved)


@pytest.mark.django_db(transaction=True)
def test_a_check_from_another_module_is_run_recorded_reported_shown_and_fixed(fixture_check, balance, service,
                                                                                admin_client):
    flagged = CustomerFactory(service=service, external_id="dealer:77", name="Motors (flagged)",
                              balance_client_id=9_900_001)
    plain = CustomerFactory(service=service, external_id="dealer:78", name="Motors", balance_client_id=9_900_002)
    assert CHECKS[fixture_check.KIND].label == fixture_check.LABEL
    assert fixture_check.KIND in [check.kind for check in checks_for(STAGE_CUSTOMERS)]

    report = reconcile(service=service, autofix=True)

    mismatch = Mismatch.objects.get(kind=fixture_check.KIND)
    assert mismatch.customer == flagged and mismatch.status == Mismatch.Status.OPEN
    assert not Mismatch.objects.filter(kind=fixture_check.KIND, customer=plain).exists()
    assert mismatch.fix_attempts == 0  # not declared safe for autofix
    assert (fixture_check.KIND, 1, 1, 0, 0, 0) in report.rows()
    assert mismatch.get_kind_display() == fixture_check.LABEL

    page = admin_client.get(reverse("admin:customers_customer_change", args=[flagged.pk]))
    assert page.status_code == 200
    assert fixture_check.LABEL in page.content.decode()
    assert [row["kind"] for row in page.context["open_mismatches"]].count(fixture_check.LABEL) == 1
    assert all(row["fixable"] for row in page.context["open_mismatches"] if row["kind"] == fixture_check.LABEL)
    dashboard = admin_client.get("/admin/dashboard/")
    assert fixture_check.LABEL in dashboard.content.decode()

    result = mismatch_fix(mismatch=mismatch, user=None, recheck=False)
    assert (result.ok, result.note) == (True, "test fix ran (support)")

    # The name is no longer flagged: the next run closes the mismatch as no longer seen.
    type(flagged).objects.filter(pk=flagged.pk).update(name="Motors")
    reconcile(service=service, autofix=False)
    mismatch.refresh_from_db()
    assert mismatch.status == Mismatch.Status.RESOLVED and mismatch.resolution.startswith("system: no longer seen")


def test_a_second_registration_of_a_kind_is_refused(fixture_check):
    with pytest.raises(RuntimeError, match="registered twice"):
        register(Check(kind=fixture_check.KIND, label="another", stages=(STAGE_CUSTOMERS,),
                       compare=lambda run, batch, checks: None))
    with pytest.raises(RuntimeError, match="registered twice"):
        register(Check(kind="money_in", label="money in again", stages=(STAGE_CUSTOMERS,),
                       compare=lambda run, batch, checks: None))


def test_a_check_names_known_stages():
    with pytest.raises(ValueError, match="stages"):
        Check(kind="x", label="x", stages=("orders",), compare=lambda run, batch, checks: None)
