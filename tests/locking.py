"""Row locks switched off for chosen models, for the experiments that show a concurrency test fails without them.

Production code has no switch: the test patches `QuerySet.select_for_update` so that queries on the given models
take no lock, every other lock stays.
"""

from __future__ import annotations

from django.db.models import QuerySet


def without_row_locks(monkeypatch, *models) -> None:
    original = QuerySet.select_for_update

    def select_for_update(self, *args, **kwargs):
        if self.model in models:
            return self._chain()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(QuerySet, "select_for_update", select_for_update)
