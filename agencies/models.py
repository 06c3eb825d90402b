"""Agencies: Balance clients with the agency flag that pay for their customers, and their contracts."""

from __future__ import annotations

from datetime import date

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords

from balance_gateway.models import BalanceParty
from disbalance.models import history_user
from disbalance.money import MoneyField


class Agency(BalanceParty):
    """An agency of one consumer service, addressed by the service's own `external_id`. Always a company (`ur`)."""

    service = models.ForeignKey("disbalance.ConsumerService", on_delete=models.PROTECT, related_name="agencies",
                                verbose_name=_("service"))
    external_id = models.CharField(max_length=128, verbose_name=_("external id"))
    contracts_refreshed_at = models.DateTimeField(null=True, blank=True, verbose_name=_("contracts refreshed at"))
    history = HistoricalRecords(get_user=history_user)

    IS_AGENCY = True

    class Meta:
        verbose_name = _("agency")
        verbose_name_plural = _("agencies")
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["service", "external_id"], name="agency_external_id_unique_per_service"),
        ]

    def __str__(self) -> str:
        return f"{self.external_id} ({self.name})"


class Contract(models.Model):
    """An agency's contract as read from Balance (`GetClientContracts`); refreshed periodically, never edited here."""

    class PaymentType(models.TextChoices):
        PREPAID = "prepaid", _("Prepaid")
        POSTPAID = "postpaid", _("Postpaid")

    agency = models.ForeignKey(Agency, on_delete=models.CASCADE, related_name="contracts", verbose_name=_("agency"))
    balance_contract_id = models.BigIntegerField(verbose_name=_("balance contract id"))
    number = models.CharField(max_length=100, blank=True, default="", verbose_name=_("number"))
    active = models.BooleanField(default=False, verbose_name=_("active"))
    payment_type = models.CharField(max_length=10, choices=PaymentType.choices, verbose_name=_("payment type"))
    credit_limit = MoneyField(default=0, verbose_name=_("credit limit"))
    valid_from = models.DateField(null=True, blank=True, verbose_name=_("valid from"))
    valid_to = models.DateField(null=True, blank=True, verbose_name=_("valid to"))
    services = models.JSONField(default=list, blank=True, verbose_name=_("services"))
    refreshed_at = models.DateTimeField(default=timezone.now, verbose_name=_("refreshed at"))

    class Meta:
        verbose_name = _("contract")
        verbose_name_plural = _("contracts")
        ordering = ["-active", "-valid_from", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["agency", "balance_contract_id"], name="contract_unique_per_agency"),
        ]

    def __str__(self) -> str:
        return f"{self.number or self.balance_contract_id} ({self.payment_type})"

    def valid_on(self, *, day: date, balance_service_id: int) -> bool:
        """The one rule for "this contract serves the service on that day": active, covering the service (an
        empty list covers every service), and within its dates (both bounds included). Callers pass the local
        day (`timezone.localdate()`), the calendar Balance's dates are in."""
        if not self.active:
            return False
        if self.services and balance_service_id not in self.services:
            return False
        if self.valid_from and self.valid_from > day:
            return False
        return not (self.valid_to and self.valid_to < day)
