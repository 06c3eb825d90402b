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
