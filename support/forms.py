"""The forms of the customer page's support actions: each asks for a reason."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.utils import formats, timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from agencies.models import Agency, Contract
from balance_gateway.models import RegistrationStatus
from customers.models import Customer
from disbalance import admin_kit
from disbalance.money import format_amount, format_money
from overdrafts.services import LEDGER_ONLY, MIRRORS_BALANCE
from payments.admin import payer_label
from payments.models import Charge
from support.customer_page import customer_payers, refundable_charges
from support.timeline import KINDS


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
        self.payers = {_payer_choice(agency): agency for agency, _free in payers}
        current = _payer_choice(customer.agency)
        choices = [(_payer_choice(agency), gettext("%(payer)s — %(name)s · free %(free)s") % {
                        "payer": payer_label(agency), "name": agency.name if agency else gettext("the customer itself"),
                        "free": format_amount(free)}
                    + (gettext(" · current payer") if _payer_choice(agency) == current else ""))
                   for agency, free in payers]
        for name in self.payer_fields:
            self.fields[name].choices = choices

    def payer(self, name: str) -> Agency | None:
        return self.payers[self.cleaned_data[name]]


NO_AGENCY = "none"


class ChangeAgencyForm(ReasonForm):
    agency = forms.ChoiceField(label=_("New payer"),
                               help_text=_("An agency of the customer's service, or none (the customer pays itself)."))
    field_order = ["agency", "reason"]

    def __init__(self, *args: Any, customer: Customer, **kwargs: Any) -> None:
        super().__init__(*args, customer=customer, **kwargs)
        agencies = list(Agency.objects.filter(service_id=customer.service_id).order_by("external_id"))
        with_contract = set(Contract.objects.filter(agency__service_id=customer.service_id, active=True)
                            .values_list("agency_id", flat=True))
        self.agencies = {str(agency.pk): agency for agency in agencies}

        def label(agency: Agency) -> str:
            notes = [note for note, shown in (
                (gettext("current payer"), agency.pk == customer.agency_id),
                (gettext("not registered in Balance"), agency.status != RegistrationStatus.ACTIVE),
                (gettext("no active contract"), agency.pk not in with_contract),
            ) if shown]
            suffix = f" ({', '.join(notes)})" if notes else ""
            return f"{agency.external_id} — {agency.name}{suffix}"

        self.fields["agency"].choices = [
            ("", gettext("— choose the new payer —")),
            (NO_AGENCY, gettext("No agency: the customer pays itself")
             + (gettext(" (current)") if customer.agency_id is None else "")),
            *((str(agency.pk), label(agency)) for agency in agencies),
        ]

    def clean_agency(self) -> Agency | None:
        value = self.cleaned_data["agency"]
        agency = None if value == NO_AGENCY else self.agencies[value]
        if (agency.pk if agency else None) == self.customer.agency_id:
            raise forms.ValidationError(gettext("That is already the customer's payer: choose another."))
        return agency


class AdjustWalletForm(PayersForm):
    payer = forms.ChoiceField(label=_("Payer"), help_text=_("Whose wallet of this customer the correction goes to."))
    amount = forms.DecimalField(
        max_digits=18, decimal_places=2,
        label=_("Amount"),
        help_text=_("Signed: 100.00 credits the wallet, -100.00 takes money off it (it may go below zero)."),
    )
    balance_effect = forms.ChoiceField(
        label=_("Balance"), widget=forms.RadioSelect,
        choices=[
            (LEDGER_ONLY, _("Billing's ledger only. Balance is not changed: its money on the payer's order stays as "
                            "it is. Only for taking money off (e.g. money credited twice in billing): an upward "
                            "ledger-only adjustment is refused, because spending it would be unpaid completion in "
                            "Balance.")),
            (MIRRORS_BALANCE, _("Mirrors a change already made in Balance that billing missed. Balance is not "
                                "changed by this either: it already shows the change.")),
        ],
        help_text=_("An adjustment never changes Balance. To put money in Balance use \"Create a payment link\"; to "
                    "move money between payers use \"Move money between payers\" (made in Balance)."),
    )
    field_order = ["payer", "amount", "balance_effect", "reason"]
    payer_fields = ("payer",)

    def clean_amount(self) -> Decimal:
        amount = self.cleaned_data["amount"]
        if amount == 0:
            raise forms.ValidationError(gettext("Must not be zero."))
        return amount


class MoveMoneyForm(PayersForm):
    from_payer = forms.ChoiceField(label=_("From payer"), help_text=_("Its free money only (never held money)."))
    to_payer = forms.ChoiceField(label=_("To payer"))
    amount = forms.DecimalField(label=_("Amount"), max_digits=18, decimal_places=2, min_value=Decimal("0.01"))
    field_order = ["from_payer", "to_payer", "amount", "reason"]
    payer_fields = ("from_payer", "to_payer")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("from_payer") and data.get("from_payer") == data.get("to_payer"):
            self.add_error("to_payer", gettext("Must differ from the payer the money comes from."))
        return data


class RetryOperationForm(ReasonForm):
    pass


# --- the console's period pages (timeline, statement) and the new support actions --------------------------------


class PeriodForm(forms.Form):
    """A payer of the customer and a period of days (GET filters of the timeline and the statement)."""

    payer = forms.ChoiceField(label=_("Payer"), required=False)
    date_from = forms.DateField(label=_("From"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(label=_("To"), required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args: Any, customer: Customer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.customer = customer
        self.payers = {("self" if agency is None else agency.external_id): agency
                       for agency, _free in customer_payers(customer)}
        current = "self" if customer.agency is None else customer.agency.external_id
        self.fields["payer"].choices = [
            (key, f"{key} — {agency.name if agency else gettext('the customer itself')}"
                  f"{gettext(' · current payer') if key == current else ''}")
            for key, agency in self.payers.items()
        ]
        self.fields["payer"].initial = current

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        today = timezone.localdate()
        data["date_to"] = data.get("date_to") or today
        data["date_from"] = data.get("date_from") or data["date_to"].replace(day=1)
        if data["date_from"] > data["date_to"]:
            self.add_error("date_from", gettext("Must not be after the last day."))
        key = data.get("payer") or ("self" if self.customer.agency is None else self.customer.agency.external_id)
        data["payer_agency"] = self.payers.get(key)
        return data


class TimelineForm(PeriodForm):
    kinds = forms.MultipleChoiceField(label=_("Show"), required=False, widget=forms.CheckboxSelectMultiple,
                                      choices=list(KINDS.items()))


class RefundForm(ReasonForm):
    charge = forms.ChoiceField(label=_("Charge"))
    amount = forms.DecimalField(
        label=_("Amount"), required=False, max_digits=18, decimal_places=2, min_value=Decimal("0.01"),
        help_text=_("Empty: refund all that is left of the charge."),
    )
    field_order = ["charge", "amount", "reason"]

    def __init__(self, *args: Any, customer: Customer, **kwargs: Any) -> None:
        super().__init__(*args, customer=customer, **kwargs)
        charges = refundable_charges(customer)
        self.charges = {str(charge.pk): charge for charge in charges}
        self.fields["charge"].choices = [("", gettext("— choose the charge —")), *(
            (str(charge.pk), gettext("%(date)s · %(product)s · %(amount)s, left to refund %(left)s") % {
                "date": formats.date_format(timezone.localtime(charge.created_at), "SHORT_DATETIME_FORMAT"),
                "product": charge.product.name, "amount": format_money(charge.amount),
                "left": format_money(charge.amount - charge.refunded_amount)})
            for charge in charges)]

    def clean_charge(self) -> Charge:
        return self.charges[self.cleaned_data["charge"]]


class PaymentLinkForm(ReasonForm):
    amount = forms.DecimalField(label=_("Amount"), max_digits=18, decimal_places=2, min_value=Decimal("0.01"))
    return_url = forms.URLField(label=_("Return address"), required=False, max_length=2000, assume_scheme="https",
                                help_text=_("Optional: where Balance sends the payer after paying."))
    field_order = ["amount", "return_url", "reason"]


class ResendWebhooksForm(ReasonForm):
    date_from = forms.DateField(label=_("From"), widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(label=_("To"), widget=forms.DateInput(attrs={"type": "date"}))
    field_order = ["date_from", "date_to", "reason"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            self.add_error("date_from", gettext("Must not be after the last day."))
        return data
