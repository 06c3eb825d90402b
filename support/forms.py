"""The forms of the customer page's support actions: each asks for a reason."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms

from agencies.models import Agency, Contract
from balance_gateway.models import RegistrationStatus
from customers.models import Customer
from disbalance import admin_kit
from disbalance.money import format_amount
from payments.admin import payer_label
from support.customer_page import customer_payers


class ReasonForm(admin_kit.ReasonForm):
    """The core's reason form, about one customer."""

    def __init__(self, *args: Any, customer: Customer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.customer = customer


def _payer_choice(agency: Agency | None) -> str:
    return "self" if agency is None else str(agency.pk)


class PayersForm(ReasonForm):
    """A form choosing among the customer's payers (`customer_payers`)."""

    payer_fields: tuple[str, ...] = ()

    def __init__(self, *args: Any, customer: Customer, **kwargs: Any) -> None:
        super().__init__(*args, customer=customer, **kwargs)
        payers = customer_payers(customer)
        self.payers = {_payer_choice(agency): agency for agency, _ in payers}
        current = _payer_choice(customer.agency)
        choices = [(_payer_choice(agency), f"{payer_label(agency)} — {agency.name if agency else 'the customer itself'}"
                    f" · free {format_amount(free)}{' · current payer' if _payer_choice(agency) == current else ''}")
                   for agency, free in payers]
        for name in self.payer_fields:
            self.fields[name].choices = choices

    def payer(self, name: str) -> Agency | None:
        return self.payers[self.cleaned_data[name]]


NO_AGENCY = "none"


class ChangeAgencyForm(ReasonForm):
    agency = forms.ChoiceField(label="New payer",
                               help_text="An agency of the customer's service, or none (the customer pays itself).")
    field_order = ["agency", "reason"]

    def __init__(self, *args: Any, customer: Customer, **kwargs: Any) -> None:
        super().__init__(*args, customer=customer, **kwargs)
        agencies = list(Agency.objects.filter(service_id=customer.service_id).order_by("external_id"))
        with_contract = set(Contract.objects.filter(agency__service_id=customer.service_id, active=True)
                            .values_list("agency_id", flat=True))
        self.agencies = {str(agency.pk): agency for agency in agencies}

        def label(agency: Agency) -> str:
            notes = [note for note, shown in (
                ("current payer", agency.pk == customer.agency_id),
                ("not registered in Balance", agency.status != RegistrationStatus.ACTIVE),
                ("no active contract", agency.pk not in with_contract),
            ) if shown]
            suffix = f" ({', '.join(notes)})" if notes else ""
            return f"{agency.external_id} — {agency.name}{suffix}"

        self.fields["agency"].choices = [
            ("", "— choose the new payer —"),
            (NO_AGENCY, "No agency: the customer pays itself" + (" (current)" if customer.agency_id is None else "")),
            *((str(agency.pk), label(agency)) for agency in agencies),
        ]

    def clean_agency(self) -> Agency | None:
        value = self.cleaned_data["agency"]
        agency = None if value == NO_AGENCY else self.agencies[value]
        if (agency.pk if agency else None) == self.customer.agency_id:
            raise forms.ValidationError("That is already the customer's payer: choose another.")
        return agency


class AdjustWalletForm(PayersForm):
    payer = forms.ChoiceField(help_text="Whose wallet of this customer the correction goes to.")
    amount = forms.DecimalField(
        max_digits=18, decimal_places=2,
        help_text="Signed: 100.00 credits the wallet, -100.00 takes money off it (it may go below zero).",
    )
    field_order = ["payer", "amount", "reason"]
    payer_fields = ("payer",)

    def clean_amount(self) -> Decimal:
        amount = self.cleaned_data["amount"]
        if amount == 0:
            raise forms.ValidationError("Must not be zero.")
        return amount


class MoveMoneyForm(PayersForm):
    from_payer = forms.ChoiceField(label="From payer", help_text="Its free money only (never held money).")
    to_payer = forms.ChoiceField(label="To payer")
    amount = forms.DecimalField(max_digits=18, decimal_places=2, min_value=Decimal("0.01"))
    field_order = ["from_payer", "to_payer", "amount", "reason"]
    payer_fields = ("from_payer", "to_payer")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("from_payer") and data.get("from_payer") == data.get("to_payer"):
            self.add_error("to_payer", "Must differ from the payer the money comes from.")
        return data


class RetryOperationForm(ReasonForm):
    pass
