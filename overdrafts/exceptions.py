"""Errors of the overdrafts app. Permission problems raise Django's `PermissionDenied` (403 `forbidden`)."""

from __future__ import annotations

from disbalance.exceptions import InvalidState


class NoOverdraftForAgencyCustomer(InvalidState):
    title = "A customer served by an agency has no overdraft"


class NotBlocked(InvalidState):
    title = "The customer has no such block"
