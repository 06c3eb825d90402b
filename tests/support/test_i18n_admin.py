"""Every label the admin takes from the models is Russian in the Russian console, and every admin page renders with
none of the usual English words left in it.

test_i18n.py checks that every *marked* string is translated; these tests catch what was never marked: a model or
field `verbose_name` Django derived from the code's name, a choice label derived from its value, a `help_text`, an
action's description or a message left as plain English."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.admin.options import InlineModelAdmin
from django.db import models
from django.test import Client
from django.urls import NoReverseMatch, reverse
from django.utils import translation

from disbalance.models import WebhookEvent
from disbalance.services import service_token_issue
from overdrafts.services import customer_block
from payments.services import charge_create, hold_create, refund_create, topup_create
from tests.support.test_console import credit, mismatch

# The apps whose models are this project's (Django's own auth and admin come translated with Django).
OUR_APPS = {"agencies", "balance_gateway", "customers", "disbalance", "overdrafts", "payments", "reconciliation",
            "support", "wallets"}

# Labels that are the same in both languages, each with the reason. Nothing else may stay as it is in English.
SAME_IN_BOTH = {
    "ID": "the usual abbreviation, Django's own AutoField label (Django's Russian catalog keeps it too)",
    "ServiceOrderID": "Balance's own field name, what support reads in Balance's interface",
    "Tid": "Balance's transaction id of a notification, named as in Balance's protocol",
    "URL": "a universal abbreviation",
    "RUB": "a currency code",
}


def _registered() -> list[tuple[type[models.Model], admin.ModelAdmin]]:
    return [(model, model_admin) for model, model_admin in admin.site._registry.items()
            if model._meta.app_label in OUR_APPS]


def _models_shown() -> set[type[models.Model]]:
    """The registered models and the models of their inlines: every model whose labels the console shows."""
    shown = set()
    for model, model_admin in _registered():
        shown.add(model)
        shown.update(inline.model for inline in model_admin.inlines if issubclass(inline, InlineModelAdmin))
    return shown


def _labels(model: type[models.Model]) -> list[tuple[str, object]]:
    """(where, lazy label) of everything the admin shows about a model: its names, its fields' names and help
    texts, and the labels of their choices."""
    labels = [(f"{model.__name__} verbose_name", model._meta.verbose_name),
              (f"{model.__name__} verbose_name_plural", model._meta.verbose_name_plural)]
    for field in [*model._meta.fields, *model._meta.many_to_many]:
        where = f"{model.__name__}.{field.name}"
        labels.append((f"{where} verbose_name", field.verbose_name))
        if field.help_text:
            labels.append((f"{where} help_text", field.help_text))
        for value, label in field.flatchoices:
            if value not in ("", None):
                labels.append((f"{where} choice {value!r}", label))
    return labels


def test_every_label_of_every_model_in_the_console_is_translated(db):
    shown = _models_shown()
    assert len(shown) >= 20, sorted(model.__name__ for model in shown)  # the walk found the console's models
    untranslated, checked = [], 0
    for model in sorted(shown, key=lambda m: m.__name__):
        for where, label in _labels(model):
            with translation.override("en"):
                english = str(label)
            with translation.override("ru"):
                russian = str(label)
            checked += 1
            if russian == english and english not in SAME_IN_BOTH:
                untranslated.append(f"{where}: {english!r}")
    assert checked > 400
    assert not untranslated, "English in the Russian console (mark with gettext_lazy, translate in django.po):\n" \
        + "\n".join(untranslated)


def test_every_action_description_and_column_title_is_translated(db):
    untranslated = []
    for model, model_admin in _registered():
        for name, (_function, _name, description) in model_admin.get_actions(_superuser_request()).items():
            with translation.override("en"):
                english = str(description) % {"verbose_name_plural": "x"}
            with translation.override("ru"):
                russian = str(description) % {"verbose_name_plural": "x"}
            if russian == english:
                untranslated.append(f"{model.__name__} action {name}: {english!r}")
        for column in model_admin.list_display:
            attribute = getattr(model_admin, column, None) if isinstance(column, str) else column
            description = getattr(attribute, "short_description", None)
            if description is None:
                continue  # a model field: its verbose_name is checked above
            with translation.override("en"):
                english = str(description)
            with translation.override("ru"):
                russian = str(description)
            if russian == english and english not in SAME_IN_BOTH:
                untranslated.append(f"{model.__name__} column {column}: {english!r}")
    assert not untranslated, "\n".join(untranslated)


def _superuser_request():
    from django.contrib.auth.models import User
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    request.user = User(is_superuser=True, is_staff=True, is_active=True)
    return request


# --- the pages ----------------------------------------------------------------------------------------------------

# Words of the English console that must not be seen on a Russian page (whole words, as the English admin writes
# them). The sample's own data (names, descriptions written by services) is taken out of the page first: it is
# stored text, not a label (see `data_texts`).
ENGLISH_WORDS = ("Customer", "Customers", "Wallet", "Amount", "Status", "Created", "Reason", "Agency", "Payer",
                 "Kind", "Type", "Description", "Attempts", "Outcome", "Method", "Expires", "Updated", "Severity",
                 "Summary", "Refund", "Refresh", "Resolve", "Release", "Retry", "Block", "Unblock", "Issue", "Revoke",
                 "Re-send", "Sync", "Top-up", "Top-ups", "Charges", "Holds", "Mismatches", "Product", "Products",
                 "Service", "Token", "Limit", "Override", "Debt", "Overdraft", "Statement", "Balance order",
                 "Balance orders", "Ledger", "Account", "Accounts", "Entries", "Active", "Pending", "Failed",
                 "Succeeded", "Open", "Resolved", "Delivered", "Registering", "Company", "Individual", "Prepaid",
                 "Postpaid", "Placement", "Critical", "Warning", "Transfer", "Adjustment", "Capture", "Queued",
                 "Read", "Could not", "Nothing")


def visible_text(html: str) -> str:
    html = re.sub(r"<(script|style|template)\b.*?</\1>", " ", html, flags=re.S | re.I)
    html = re.sub(r"<!--.*?-->", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def data_texts() -> list[str]:
    """Stored text of the sample that may hold these words: product names, legal names, ledger descriptions."""
    from agencies.models import Agency
    from customers.models import Customer
    from payments.models import Product
    from wallets.models import LedgerTransaction

    texts = [*Product.objects.values_list("name", flat=True),
             *LedgerTransaction.objects.exclude(description="").values_list("description", flat=True)]
    for party in (*Agency.objects.all(), *Customer.objects.all()):
        texts += [party.name, party.long_name]
    return sorted({text for text in texts if text}, key=len, reverse=True)


def english_left(html: str) -> list[str]:
    text = visible_text(html)
    for data in data_texts():
        text = text.replace(data, " ")
    return [word for word in ENGLISH_WORDS if re.search(rf"(?<![\w:.-]){re.escape(word)}(?![\w-])", text)]


@pytest.fixture
def sample(service, customer, agency_a, products, django_user_model):
    """One row or more of every model the console lists: a customer with money in, a charge, a refund, a hold, a
    top-up (and its Balance order and outbox operation), a block, a mismatch, a token, webhook events."""
    staff = django_user_model.objects.create_superuser("i18n-admin", "i18n@example.com", "pw-i18n-admin-1")
    credit(customer, agency_a, "1500.00")
    charge = charge_create(customer=customer, product=products["placement"], amount=Decimal("300.00"))
    refund_create(charge=charge, amount=Decimal("100.00"), reason="duplicate")
    hold_create(customer=customer, product=products["boost"], amount=Decimal("50.00"))
    topup_create(customer=customer, amount=Decimal("700.00"))
    customer_block(customer=customer, reason="test block", by=staff)
    mismatch(customer)
    service_token_issue(service=service, label="i18n")
    assert WebhookEvent.objects.exists()
    return staff


def sample_customer():
    from customers.models import Customer

    return Customer.objects.get(external_id="dealer:20101")


def test_every_admin_page_renders_in_russian(sample):
    client = Client()  # no Accept-Language: the console's default, Russian
    client.force_login(sample)
    seen_lists, seen_forms, english = 0, set(), {}
    for model, _model_admin in _registered():
        opts = model._meta
        try:
            changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        except NoReverseMatch:
            continue
        response = client.get(changelist)
        assert response.status_code == 200, (changelist, response.status_code)
        assert response["Content-Language"] == "ru"
        seen_lists += 1
        if words := english_left(response.content.decode()):
            english[changelist] = words
        obj = model._default_manager.order_by("pk").first()
        if obj is None:
            continue
        page = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
        response = client.get(page)
        assert response.status_code == 200, (page, response.status_code)
        seen_forms.add(model.__name__)
        if words := english_left(response.content.decode()):
            english[page] = words
    assert seen_lists == len(_registered())
    # The support screens of a customer: its dashboard, timeline, statement and action forms.
    customer = sample_customer()
    pages = [reverse("support-dashboard"), reverse("admin:index")] + [
        reverse(f"admin:customers_customer_{view}", args=[customer.pk])
        for view in ("timeline", "statement", "change_agency", "adjust_wallet", "move_money", "refund", "payment_link",
                     "resend_webhooks")]
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200, (page, response.status_code)
        if words := english_left(response.content.decode()):
            english[page] = words
    # The sample reaches the pages that matter to support (a missing one means the sample lost it).
    assert {"Customer", "Agency", "Charge", "Refund", "Hold", "TopUp", "BalanceOrder", "Mismatch", "Block",
            "LedgerTransaction", "LedgerEntry", "Account", "OutboxOperation", "WebhookEvent", "ServiceToken",
            "ConsumerService", "Product"} <= seen_forms, seen_forms
    assert not english, "English words on Russian pages:\n" + "\n".join(f"{url}: {words}"
                                                                       for url, words in english.items())


def test_the_same_pages_stay_english_for_an_english_user(sample):
    client = Client(headers={"Accept-Language": "en"})
    client.force_login(sample)
    html = client.get(reverse("admin:payments_charge_changelist")).content.decode()
    text = visible_text(html)
    assert "Amount" in text and "Status" in text and "Сумма" not in text
    html = client.get(reverse("admin:reconciliation_mismatch_changelist")).content.decode()
    assert "Fix (re-sync with Balance)" in html and "Critical" in visible_text(html)


def test_a_findings_fixed_labels_and_note_read_in_russian(sample):
    """Findings are stored in English; their fixed row labels and notes (marked in the checks) are shown translated
    on the mismatch's page and the customer's page."""
    customer = sample_customer()
    found = mismatch(customer, n=7, kind="order_ownership")
    found.details = {"rows": [["money on the order (consume_amount)", "100.00", "90.00"]],
                     "note": "Re-sending the order to Balance restores billing's values.", "fix": "resend"}
    found.save(update_fields=["details"])
    client = Client()
    client.force_login(sample)
    for url in (reverse("admin:reconciliation_mismatch_change", args=[found.pk]),
                reverse("admin:customers_customer_change", args=[customer.pk])):
        text = visible_text(client.get(url).content.decode())
        assert "деньги на заказе (consume_amount)" in text, url
        assert "Повторная отправка заказа в Баланс восстановит значения биллинга." in text, url
        assert "money on the order" not in text and "restores billing's values" not in text, url


def test_the_names_of_money_rows_in_titles_and_links_are_russian(sample):
    """A row's name (the admin's page title, breadcrumbs and links) says what it is in the user's language."""
    from overdrafts.models import Block
    from payments.models import Hold, TopUp

    hold, topup, block = Hold.objects.get(), TopUp.objects.get(), Block.objects.get()
    with translation.override("ru"):
        assert (str(hold), str(topup)) == ("холд 50.00, Заблокировано", "пополнение 700.00, Ожидает")
        assert str(block) == f"блокировка клиента {block.customer_id}: Ручная"
    with translation.override("en"):
        assert (str(hold), str(topup)) == ("hold 50.00 Held", "top-up 700.00 Pending")
