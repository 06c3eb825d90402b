"""The support console in Russian in a real browser (Playwright driving Debian's chromium against `live_server`,
browser language ru-RU): a billing admin finds a customer by INN, reads its timeline, downloads last month's
reconciliation statement and checks its totals, and refunds a charge with a reason.

On failure the page's screenshot and HTML are kept in a folder named in the failure message ($SUPPORT_SCREENSHOTS,
or a new temporary folder). Skipped where no chromium is installed (`.ci/run` installs it).
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import transaction
from django.utils import timezone

from payments.models import Refund
from payments.services import charge_create
from tests.support.test_browser import CHROMIUM, browser, log_in  # noqa: F401 - the browser fixture
from tests.wallets.ledger_time import ledger_time
from wallets.services import wallet_credit_topup

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM, reason="Debian chromium not installed (apt-get install chromium); "
                                            ".ci/run installs it"),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def ru_page(browser, live_server):  # noqa: F811 - the imported fixture
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1400, "height": 1000},
                                  locale="ru-RU", accept_downloads=True)
    context.set_default_timeout(20_000)
    page = context.new_page()
    yield page
    context.close()


@contextmanager
def artifacts_on_failure(page, name: str) -> Iterator[None]:
    """Keep a screenshot and the HTML of the page where the test failed, and say where in the failure."""
    try:
        yield
    except Exception as exc:
        folder = Path(os.environ.get("SUPPORT_SCREENSHOTS") or tempfile.mkdtemp(prefix="console-browser-"))
        folder.mkdir(parents=True, exist_ok=True)
        try:
            page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
            (folder / f"{name}.html").write_text(page.content(), encoding="utf-8")
        except Exception as shot_error:
            (folder / f"{name}.txt").write_text(f"no screenshot: {shot_error}", encoding="utf-8")
        raise AssertionError(f"{exc}\n\nbrowser artifacts (screenshot, page) kept in {folder}") from exc


def last_month() -> tuple[datetime, datetime]:
    first_this = timezone.localdate().replace(day=1)
    last = first_this - timedelta(days=1)
    first = last.replace(day=1)
    return (datetime(first.year, first.month, first.day, tzinfo=UTC),
            datetime(last.year, last.month, last.day, tzinfo=UTC))


def test_support_in_russian_finds_by_inn_reads_the_timeline_downloads_the_statement_and_refunds(
        ru_page, billing_admin, mismatched, products):
    page = ru_page
    customer, _order, _mismatch = mismatched
    first, last = last_month()
    with ledger_time(first + timedelta(hours=10)), transaction.atomic():
        wallet_credit_topup(customer=customer, payer_agency=None, amount=Decimal("1500.00"), reference_kind="test",
                            reference_id="browser-ru-pay")
    with ledger_time(first + timedelta(days=1, hours=10)):
        charge = charge_create(customer=customer, product=products["placement"], amount=Decimal("400.00"),
                               description="Размещение объявления")

    with artifacts_on_failure(page, "russian-console"):
        log_in(page, "billing")
        assert page.locator("html").get_attribute("lang") == "ru"
        assert "Требует внимания" in page.locator("#content").inner_text()

        # Find the customer by INN: one exact match opens its page.
        page.fill("#dashboard-q", customer.inn)
        page.get_by_role("button", name="Найти клиента").or_(page.locator("input[value='Найти клиента']")).click()
        page.wait_for_url(f"**/admin/customers/customer/{customer.pk}/change/")
        assert "Открытые расхождения с Балансом" in page.locator("#content").inner_text()  # noqa: RUF001

        # The timeline of last month: the top-up and the charge with the balance after each.
        page.click("#customer-timeline-link")
        page.wait_for_url(f"**/admin/customers/customer/{customer.pk}/timeline/")
        page.select_option("#id_payer", "self")
        page.fill("#id_date_from", f"{first:%Y-%m-%d}")
        page.fill("#id_date_to", f"{last:%Y-%m-%d}")
        page.get_by_role("button", name="Показать").click()
        page.wait_for_url("**/timeline/?*")
        money_rows = page.locator("#timeline tr.timeline-money")
        assert money_rows.count() == 2
        assert "Пополнение" in money_rows.nth(0).inner_text() and "1\xa0500,00\xa0₽" in money_rows.nth(0).inner_text()
        assert "Списание: placement" in money_rows.nth(1).inner_text()
        assert "1\xa0100,00\xa0₽" in money_rows.nth(1).inner_text()

        # The statement of last month, on screen and as the CSV file.
        page.click("text=Акт сверки")
        page.wait_for_url(f"**/admin/customers/customer/{customer.pk}/statement/*")
        page.select_option("#id_payer", "self")
        page.fill("#id_date_from", f"{first:%Y-%m-%d}")
        page.fill("#id_date_to", f"{last:%Y-%m-%d}")
        page.get_by_role("button", name="Показать").click()
        page.wait_for_url("**/statement/?*")
        totals = page.locator("#statement-totals")
        assert "Сальдо на начало" in totals.inner_text()
        assert totals.locator("[data-total=money_in]").inner_text() == "1\xa0500,00\xa0₽"
        assert totals.locator("[data-total='spend:placement']").inner_text() == "400,00\xa0₽"
        assert totals.locator("[data-total=closing_balance]").inner_text() == "1\xa0100,00\xa0₽"
        with page.expect_download() as download:
            page.click("#statement-csv")
        content = Path(download.value.path()).read_text(encoding="utf-8")
        figures = {(row["section"], row["product"]): row["amount"] for row in csv.DictReader(io.StringIO(content))
                   if row["section"] != "line"}
        assert figures[("opening_balance", "")] == "0.00"
        assert figures[("money_in", "")] == "1500.00"
        assert figures[("spend", "placement")] == "400.00"
        assert figures[("closing_balance", "")] == "1100.00"

        # Refund part of the charge, with a reason.
        page.goto(f"/admin/customers/customer/{customer.pk}/change/")
        page.get_by_role("link", name="Вернуть списание…").click()
        page.wait_for_url(f"**/admin/customers/customer/{customer.pk}/refund/")
        page.select_option("#id_charge", str(charge.pk))
        page.fill("#id_amount", "150")
        page.fill("#id_reason", "Объявление не показывалось два дня")
        page.get_by_role("button", name="Возврат").or_(page.locator("input[value='Возврат']")).click()
        page.wait_for_url(f"**/admin/customers/customer/{customer.pk}/change/")
        assert "Возвращено 150,00\xa0₽" in page.locator("ul.messagelist").inner_text()

    refund = Refund.objects.get(charge=charge)
    assert (refund.amount, refund.reason) == (Decimal("150.00"), "Объявление не показывалось два дня")
