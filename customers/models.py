"""Customers of a consumer service (dealers, developers, agents), addressed by the service's own id."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords

from balance_gateway.models import BalanceParty
from disbalance.models import history_user


class Customer(BalanceParty):
    """A customer of one consumer service. `agency` is the current payer (None: the customer pays itself)."""

    class Kind(models.TextChoices):
        COMPANY = "company", _("Company")
        INDIVIDUAL = "individual", _("Individual")

    service = models.ForeignKey("disbalance.ConsumerService", on_delete=models.PROTECT, related_name="customers",
                                verbose_name=_("service"))
    external_id = models.CharField(max_length=128, verbose_name=_("external id"))
    kind = models.CharField(max_length=16, choices=Kind.choices, verbose_name=_("kind"))
    agency = models.ForeignKey(
        "agencies.Agency", null=True, blank=True, on_delete=models.PROTECT, related_name="customers",
        verbose_name=_("agency")
    )
    user_uids = models.JSONField(default=list, blank=True, verbose_name=_("user uids"))
    linked_user_uids = models.JSONField(default=list, blank=True,
                                        help_text=_("Users already linked in Balance"),
                                        verbose_name=_("linked user uids"))
    blocked = models.BooleanField(default=False, verbose_name=_("blocked"))
    low_balance_threshold = models.DecimalField(
        max_digits=18, decimal_places=2, null=True, blank=True,
        help_text=_("`wallet.low_balance` when the balance falls below it; empty: the service's default"),
        verbose_name=_("low balance threshold"))
    history = HistoricalRecords(get_user=history_user)

    class Meta:
        verbose_name = _("customer")
        verbose_name_plural = _("customers")
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["service", "external_id"], name="customer_external_id_unique_per_service"),
        ]

    def __str__(self) -> str:
        return f"{self.external_id} ({self.name})"

    @property
    def person_type(self) -> str:
        return "ur" if self.kind == self.Kind.COMPANY else "ph"


class AgencyAssignment(models.Model):
    """Who paid for the customer when: one row per period (`until` null = in force now), with who and why.

    Invariant: at most one open row per customer, and its agency is `customer.agency`.
    """

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="agency_assignments",
                                 verbose_name=_("customer"))
    agency = models.ForeignKey("agencies.Agency", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                               verbose_name=_("agency"))
    since = models.DateTimeField(verbose_name=_("since"))
    until = models.DateTimeField(null=True, blank=True, verbose_name=_("until"))
    changed_by = models.CharField(max_length=150, help_text=_("service:<slug> or user:<username>"),
                                  verbose_name=_("changed by"))
    changed_by_user = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.PROTECT,
                                        related_name="+", verbose_name=_("changed by user"))
    reason = models.CharField(max_length=500, blank=True, default="", verbose_name=_("reason"))

    class Meta:
        verbose_name = _("agency assignment")
        verbose_name_plural = _("agency assignments")
        ordering = ["-since", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["customer"], condition=models.Q(until__isnull=True),
                                    name="one_open_agency_assignment_per_customer"),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id}: {self.agency_id or 'no agency'} since {self.since:%Y-%m-%d %H:%M}"
