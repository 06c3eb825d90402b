"""Customers of a consumer service (dealers, developers, agents), addressed by the service's own id."""

from __future__ import annotations

from django.db import models
from simple_history.models import HistoricalRecords

from balance_gateway.models import BalanceParty
from disbalance.models import history_user


class Customer(BalanceParty):
    """A customer of one consumer service. `agency` is the current payer (None: the customer pays itself)."""

    class Kind(models.TextChoices):
        COMPANY = "company"
        INDIVIDUAL = "individual"

    service = models.ForeignKey("disbalance.ConsumerService", on_delete=models.PROTECT, related_name="customers")
    external_id = models.CharField(max_length=128)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    agency = models.ForeignKey(
        "agencies.Agency", null=True, blank=True, on_delete=models.PROTECT, related_name="customers"
    )
    user_uids = models.JSONField(default=list, blank=True)
    linked_user_uids = models.JSONField(default=list, blank=True, help_text="Users already linked in Balance")
    blocked = models.BooleanField(default=False)
    low_balance_threshold = models.DecimalField(
        max_digits=18, decimal_places=2, null=True, blank=True,
        help_text="`wallet.low_balance` when the balance falls below it; empty: the service's default")
    history = HistoricalRecords(get_user=history_user)

    class Meta:
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

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="agency_assignments")
    agency = models.ForeignKey("agencies.Agency", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    since = models.DateTimeField()
    until = models.DateTimeField(null=True, blank=True)
    changed_by = models.CharField(max_length=150, help_text="service:<slug> or user:<username>")
    changed_by_user = models.ForeignKey("auth.User", null=True, blank=True, on_delete=models.PROTECT,
                                        related_name="+")
    reason = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        ordering = ["-since", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["customer"], condition=models.Q(until__isnull=True),
                                    name="one_open_agency_assignment_per_customer"),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id}: {self.agency_id or 'no agency'} since {self.since:%Y-%m-%d %H:%M}"
