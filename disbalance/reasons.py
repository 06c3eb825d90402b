"""The reason a support action must give (services check it, whoever calls them)."""

from __future__ import annotations

from disbalance.exceptions import ValidationFailed


def required_reason(reason: str) -> str:
    """The reason, stripped; `400 validation_error` when it is empty."""
    if not reason or not reason.strip():
        raise ValidationFailed("A reason is required.", errors={"reason": ["This field is required."]})
    return reason.strip()
