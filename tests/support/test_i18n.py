"""The console in Russian: every custom string is marked and translated (makemessages into a temporary copy finds
no untranslated or fuzzy message and the committed .mo is up to date), pages render in Russian by default,
English is kept per user or by the browser, and the API stays English with stable codes."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from support.models import ConsolePreference
from tests.support.conftest import make_staff

ROOT = Path(settings.BASE_DIR)
CATALOG = Path("locale/ru/LC_MESSAGES/django.po")
# Where the console's strings live: everything makemessages reads except what is not the product.
SOURCES = ["agencies", "balance_gateway", "customers", "disbalance", "overdrafts", "payments", "reconciliation",
           "support", "templates", "wallets", "locale", "manage.py"]

needs_gettext = pytest.mark.skipif(shutil.which("msgfmt") is None,
                                   reason="GNU gettext is not installed (.ci/run installs it)")


def _entries(po: str) -> list[tuple[list[str], str, str]]:
    """(flags, msgid, msgstr) of each message of a .po file (the header left out)."""
    entries = []
    for block in po.split("\n\n"):
        lines = block.strip().splitlines()
        flags = [flag.strip() for line in lines if line.startswith("#,") for flag in line[2:].split(",")]
        text = "\n".join(line for line in lines if not line.startswith("#"))
        match = re.search(r'msgid ((?:".*"\s*)+)msgstr ((?:".*"\s*)+)', text)
        if match:
            msgid, msgstr = ("".join(re.findall(r'"(.*)"', group)) for group in match.groups())
            if msgid:
                entries.append((flags, msgid, msgstr))
    return entries


@needs_gettext
def test_every_marked_string_is_translated_and_the_compiled_catalog_is_current(tmp_path):
    copy = tmp_path / "project"
    copy.mkdir()
    for name in SOURCES:
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, copy / name)
    # makemessages into the copy (never into the work tree): it merges the new strings into the copied catalog.
    subprocess.run([sys.executable, "manage.py", "makemessages", "-l", "ru", "--no-obsolete", "--no-location"],
                   cwd=copy, check=True, capture_output=True)
    entries = _entries((copy / CATALOG).read_text(encoding="utf-8"))
    assert len(entries) > 250
    untranslated = [msgid for _, msgid, msgstr in entries if not msgstr]
    fuzzy = [msgid for flags, msgid, _ in entries if "fuzzy" in flags]
    assert not untranslated, f"untranslated (run `make messages`, translate in {CATALOG}): {untranslated}"
    assert not fuzzy, f"fuzzy (check the translation, drop the flag): {fuzzy}"
    # The committed .mo is the compiled committed .po.
    compiled = tmp_path / "django.mo"
    subprocess.run(["msgfmt", "--check", "-o", str(compiled), str(ROOT / CATALOG)], check=True)
    assert compiled.read_bytes() == (ROOT / CATALOG).with_suffix(".mo").read_bytes(), "run `make messages`"


@pytest.fixture
def russian_client(groups):
    client = Client()  # no Accept-Language: the console's default
    client.force_login(make_staff("ru-support", "support"))
    return client


def test_the_console_is_russian_by_default(russian_client, customer):
    page = russian_client.get(reverse("admin:customers_customer_change", args=[customer.pk]))
    html = page.content.decode()
    assert page["Content-Language"] == "ru"
    assert '<html lang="ru"' in html
    for text in ("Открытые расхождения с Балансом", "Кошелёк (RUB)", "История агентств", "Хронология",  # noqa: RUF001
                 "Акт сверки", "Найти клиента"):
        assert text in html, text
    for english in ("Open mismatches with Balance", "Agency history", "Latest top-ups", "Find customer"):
        assert english not in html, english
    dashboard = russian_client.get(reverse("support-dashboard")).content.decode()
    assert "Требует внимания" in dashboard and "Needs attention" not in dashboard


def test_money_and_dates_are_formatted_the_russian_way(russian_client, customer):
    from tests.support.test_console import credit

    credit(customer, customer.agency, "1500.00")
    page = russian_client.get(reverse("admin:customers_customer_timeline", args=[customer.pk]))
    html = page.content.decode()
    assert "1\xa0500,00\xa0₽" in html
    assert re.search(r"\d{2}\.\d{2}\.\d{4} \d{1,2}:\d{2}", html)  # SHORT_DATETIME_FORMAT of Russian


def test_a_user_switches_to_english_and_it_is_kept(russian_client, customer):
    page_url = reverse("admin:customers_customer_change", args=[customer.pk])
    response = russian_client.post(reverse("support-language"), {"language": "en", "next": page_url})
    assert response.status_code == 302 and response["Location"] == page_url
    assert ConsolePreference.objects.get(user__username="ru-support").language == "en"
    html = russian_client.get(page_url).content.decode()
    assert "Open mismatches with Balance" in html and "Открытые расхождения" not in html
    # A new session (another browser) of the same user: the stored preference wins over the browser's language.
    other = Client(headers={"Accept-Language": "ru"})
    other.force_login(ConsolePreference.objects.get(user__username="ru-support").user)
    assert "Open mismatches with Balance" in other.get(page_url).content.decode()
    # And back.
    russian_client.post(reverse("support-language"), {"language": "ru", "next": page_url})
    assert "Открытые расхождения с Балансом" in russian_client.get(page_url).content.decode()  # noqa: RUF001


def test_the_browser_language_applies_without_a_stored_choice(groups, customer):
    client = Client(headers={"Accept-Language": "en-US,en;q=0.9"})
    client.force_login(make_staff("en-support", "support"))
    html = client.get(reverse("admin:customers_customer_change", args=[customer.pk])).content.decode()
    assert "Open mismatches with Balance" in html


def test_the_switch_refuses_foreign_redirects_and_unknown_languages(russian_client):
    response = russian_client.post(reverse("support-language"), {"language": "xx", "next": "https://evil.example/"})
    assert response.status_code == 302 and response["Location"] == reverse("admin:index")
    assert not ConsolePreference.objects.exists()


@pytest.mark.parametrize("language", ["ru", "ru-RU,ru;q=0.9"])
def test_the_api_stays_english_with_stable_codes(api, language):
    from rest_framework.test import APIClient

    not_found = api.get("/api/v1/customers/nobody", HTTP_ACCEPT_LANGUAGE=language)
    assert not_found.status_code == 404 and not_found.json()["code"] == "not_found"
    assert not_found.json()["detail"].isascii()
    unauthorized = APIClient().get("/api/v1/customers/nobody", HTTP_ACCEPT_LANGUAGE=language)
    body = unauthorized.json()
    assert unauthorized.status_code == 401 and body["code"] == "unauthorized"
    assert body["detail"].isascii() and body["title"].isascii(), body
    invalid = api.post("/api/v1/customers", {"external_id": ""}, format="json", HTTP_ACCEPT_LANGUAGE=language)
    assert invalid.status_code == 400 and invalid.json()["code"] == "validation_error"
    assert str(invalid.json()).isascii(), invalid.json()


def test_setup_groups_grants_the_new_actions(groups):
    call_command("setup_groups", verbosity=0)
    support, billing = make_staff("s1", "support"), make_staff("b1", "billing-admin")
    for perm in ("customers.create_payment_link", "customers.resend_webhooks"):
        assert support.has_perm(perm) and billing.has_perm(perm)
    assert billing.has_perm("customers.refund_charge") and not support.has_perm("customers.refund_charge")
