"""The sample Grafana dashboard and the alert rules use only series that /metrics really has."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from disbalance.metrics import BALANCE_CALL_SECONDS, BALANCE_CALLS, MONEY_OPERATIONS, WEBHOOK_DELIVERIES

DOCS = Path(__file__).resolve().parents[2] / "docs" / "operations"
GAUGES = {"disbalance_outbox_backlog", "disbalance_outbox_oldest_age_seconds", "disbalance_outbox_failed",
          "disbalance_mismatches_open", "disbalance_notifications_waiting", "disbalance_notifications_lag_seconds",
          "disbalance_webhook_events", "disbalance_webhook_oldest_pending_age_seconds",
          "disbalance_webhook_endpoints_disabled"}


def exposed() -> set[str]:
    names = set(GAUGES)
    for metric in (BALANCE_CALLS, WEBHOOK_DELIVERIES, MONEY_OPERATIONS):
        names.add(metric._name + "_total")
    names |= {BALANCE_CALL_SECONDS._name + suffix for suffix in ("_bucket", "_count", "_sum")}
    return names


def used(expressions: list[str]) -> set[str]:
    return {name for expr in expressions for name in re.findall(r"\bdisbalance_[a-z_]+", expr)}


def test_dashboard_and_alerts_use_only_real_series(db):
    from tests.events.test_metrics import scrape

    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    panel_exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    rules = yaml.safe_load((DOCS / "alerts.yml").read_text())["groups"][0]["rules"]
    rule_exprs = [str(rule["expr"]) for rule in rules]
    names = used(panel_exprs + rule_exprs)
    assert names and names <= exposed(), names - exposed()
    # The scrape-time gauges are on /metrics even with nothing to count (a series per label value seen).
    scraped = {name for name, _labels in scrape()}
    assert {"disbalance_webhook_oldest_pending_age_seconds", "disbalance_webhook_endpoints_disabled",
            "disbalance_notifications_waiting"} <= scraped
