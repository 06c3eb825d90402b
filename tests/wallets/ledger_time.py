"""Posting ledger transactions at a chosen time: the ledger is append-only (also in PostgreSQL triggers), so tests
that need transactions in past periods set the creation time instead of editing rows afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import pytest

from wallets.models import LedgerTransaction


@contextmanager
def ledger_time(when: datetime) -> Iterator[None]:
    field = LedgerTransaction._meta.get_field("created_at")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(field, "_get_default", lambda: when)
        yield
