"""The built-in reconciliation checks: one module each, which registers itself (`reconciliation.registry`).

A new check is a module here and one line in `BUILT_IN`; the order is the order of the run, the report and the
console. Importing any check module runs this first, so the order holds whoever imports first.
"""

from importlib import import_module

BUILT_IN = (
    "ownership",
    "money_in",
    "money_out",
    "unpaid",
    "party_data",
    "stale_operations",
    "adopted_orders",
)

for _name in BUILT_IN:
    import_module(f"{__name__}.{_name}")
