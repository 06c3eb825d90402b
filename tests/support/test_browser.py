"""The support console in a real browser (Playwright driving Debian's chromium against `live_server`): a support
user finds a customer by external id from the dashboard, opens its open mismatch, fixes it and sees it resolved;
and cannot edit ledger rows or tokens.

Skipped where no chromium is installed (`.ci/run` installs it). Never runs `playwright install`. Set
SUPPORT_SCREENSHOTS=/some/dir to keep screenshots of the pages it visits.
"""

from __future__ import annotations

import os
import shutil
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connections, transaction

from disbalance.services import service_token_issue
from reconciliation.models import Mismatch
from tests.support.conftest import PASSWORD
from wallets.models import LedgerTransaction
from wallets.services import wallet_credit_topup

CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM, reason="Debian chromium not installed (apt-get install chromium); "
                                            ".ci/run installs it"),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def browser(monkeypatch):
    sync_api = pytest.importorskip("playwright.sync_api")
    # Playwright's sync API runs an event loop in this thread; the test's own database work is synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
            # While Playwright's loop runs, Django keeps this thread's connections apart (asgiref's Local sees a
            # running loop): close the ones the test opened, or PostgreSQL cannot drop the test database.
            connections.close_all()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(20_000)
    page = context.new_page()
    yield page
    context.close()


def shot(page, name: str) -> None:
    folder = os.environ.get("SUPPORT_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def log_in(page, username: str) -> None:
    page.goto("/admin/login/?next=/admin/dashboard/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/dashboard/")


def test_support_finds_a_customer_fixes_its_mismatch_and_cannot_edit_ledger_or_tokens(
        page, support_user, mismatched, service):
    customer, _order, mismatch = mismatched
    with transaction.atomic():
        wallet_credit_topup(customer=customer, payer_agency=None, amount=Decimal("100.00"), reference_kind="test",
                            reference_id="browser-pay")
    token = service_token_issue(service=service, label="main").token

    log_in(page, "support")
    assert page.locator("#dashboard-mismatches").inner_text().count("1") >= 1
    shot(page, "dashboard")

    # Find the customer by its external id: one exact match opens its page.
    page.fill("#dashboard-q", customer.external_id)
    page.click("text=Find customer")
    page.wait_for_url(f"**/admin/customers/customer/{customer.pk}/change/")
    mismatches = page.locator("#customer-mismatches")
    assert mismatch.summary in mismatches.inner_text()
    assert "Critical" in mismatches.inner_text()  # the severity label
    shot(page, "customer")

    # Open the mismatch: its page in the queue says what differs.
    mismatches.get_by_role("link", name="Open").click()
    page.wait_for_url(f"**/admin/reconciliation/mismatch/{mismatch.pk}/change/")
    content = page.locator("#content").inner_text().lower()
    assert "productid" in content and "status:\nopen" in content
    page.go_back()
    page.wait_for_url(f"**/admin/customers/customer/{customer.pk}/change/")

    # Fix it: the order is re-sent to Balance and checked again at once.
    page.locator("#customer-mismatches button.fix-mismatch").click()
    page.wait_for_url(f"**/admin/customers/customer/{customer.pk}/change/*")
    assert "resolved" in page.locator("ul.messagelist").inner_text()
    assert "No open mismatch" in page.locator("#customer-mismatches").inner_text()
    shot(page, "customer-fixed")
    mismatch.refresh_from_db()
    assert mismatch.status == Mismatch.Status.RESOLVED and mismatch.last_fix_by == support_user

    page.goto(f"/admin/reconciliation/mismatch/{mismatch.pk}/change/")
    content = page.locator("#content").inner_text().lower()
    assert "status:\nresolved" in content and "after the fix by support" in content

    # Ledger rows: view only, and a submitted form is refused.
    ledger_tx = LedgerTransaction.objects.get(reference_id="browser-pay")
    page.goto(f"/admin/wallets/ledgertransaction/{ledger_tx.pk}/change/")
    assert page.locator("input[name=_save]").count() == 0
    with page.expect_navigation() as navigation:
        page.evaluate("document.querySelector('#ledgertransaction_form').submit()")
    assert navigation.value.status == 403
    assert page.goto("/admin/wallets/ledgertransaction/add/").status == 403

    # Tokens: view only, no "revoke" action, no add.
    page.goto("/admin/disbalance/servicetoken/")
    assert page.locator("select[name=action] option[value=revoke]").count() == 0
    page.goto(f"/admin/disbalance/servicetoken/{token.pk}/change/")
    assert page.locator("input[name=_save]").count() == 0
    with page.expect_navigation() as navigation:
        page.evaluate("document.querySelector('#servicetoken_form').submit()")
    assert navigation.value.status == 403
    assert page.goto("/admin/disbalance/servicetoken/add/").status == 403
    token.refresh_from_db()
    assert token.revoked_at is None
    assert LedgerTransaction.objects.count() == 1
