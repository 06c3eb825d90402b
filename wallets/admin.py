"""Support UI for the ledger: read-only for everyone, superusers included. Corrections are new transactions
(`wallet_adjust`, `wallet_transfer`) made through services, never edits here."""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from disbalance.admin_kit import ReadOnlyAdminMixin
from disbalance.money import format_amount
from wallets.models import Account, LedgerEntry, LedgerTransaction

STATEMENT_ROWS = 200


class LedgerReadOnly(ReadOnlyAdminMixin):
    """The ledger changes only through its services: read-only, and no bulk actions at all."""

    actions = None


class EntryInline(LedgerReadOnly, admin.TabularInline):
    model = LedgerEntry
    fk_name = "transaction"
    fields = ("account", "amount", "balance_after")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False


@admin.register(LedgerTransaction)
class LedgerTransactionAdmin(LedgerReadOnly, admin.ModelAdmin):
    list_display = ("public_id", "type", "customer", "payer_agency", "reference_kind", "reference_id", "created_by",
                    "created_at")
    list_filter = ("type", "service", "created_at")
    search_fields = ("public_id", "reference_id", "customer__external_id", "description", "reason")
    list_select_related = ("customer", "payer_agency", "created_by")
    date_hierarchy = "created_at"
    inlines = [EntryInline]
    show_full_result_count = False


@admin.register(LedgerEntry)
class LedgerEntryAdmin(LedgerReadOnly, admin.ModelAdmin):
    list_display = ("id", "transaction", "account", "amount", "balance_after")
    list_filter = ("account__kind", "transaction__type")
    search_fields = ("account__key", "transaction__public_id")
    list_select_related = ("transaction", "account")
    raw_id_fields = ("transaction", "account")
    show_full_result_count = False


@admin.register(Account)
class AccountAdmin(LedgerReadOnly, admin.ModelAdmin):
    list_display = ("key", "kind", "customer", "payer_agency", "product_code", "balance", "cached", "currency")
    list_filter = ("kind", "service", "cached")
    search_fields = ("key", "customer__external_id", "payer_agency__external_id", "product_code")
    list_select_related = ("customer", "payer_agency")
    readonly_fields = ("statement",)
    fields = ("key", "kind", "service", "customer", "payer_agency", "product_code", "currency", "balance", "cached",
              "created_at", "statement")

    @admin.display(description=format_lazy(_("Statement (latest {rows} entries)"), rows=STATEMENT_ROWS))
    def statement(self, obj: Account) -> str:
        entries = (
            LedgerEntry.objects.filter(account=obj).select_related("transaction").order_by("-id")[:STATEMENT_ROWS]
        )
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td><a href='{}'>{}</a></td><td>{}</td><td style='text-align:right'>{}</td>"
            "<td style='text-align:right'>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    entry.transaction.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                    reverse("admin:wallets_ledgertransaction_change", args=[entry.transaction_id]),
                    entry.transaction.public_id,
                    entry.transaction.get_type_display(),
                    format_amount(entry.amount),
                    "" if entry.balance_after is None else format_amount(entry.balance_after),
                    f"{entry.transaction.reference_kind} {entry.transaction.reference_id}".strip(),
                    entry.transaction.reason or entry.transaction.description,
                )
                for entry in entries
            ),
        )
        all_link = reverse("admin:wallets_ledgerentry_changelist") + f"?account__id__exact={obj.pk}"
        return format_html(
            "<table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th>"
            "<th>{}</th><th>{}</th></tr></thead><tbody>{}</tbody></table>"
            "<p><a href='{}'>{}</a></p>",
            _("when"), _("transaction"), _("type"), _("amount"), _("balance after"), _("reference"),
            _("reason / description"), rows, all_link, _("all entries of this account"),
        )
