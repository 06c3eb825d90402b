"""A reconciliation check that lives outside the app: one module, one `register(...)` line, nothing else touched.

It flags every customer of a batch whose name ends with "(flagged)", and its fix renames nothing: it only says
it ran, so that tests see the one fix dispatcher reach it.
"""

from __future__ import annotations

from reconciliation.findings import Finding, Severity
from reconciliation.registry import STAGE_CUSTOMERS, Check, register

KIND = "test_flagged_name"
LABEL = "flagged name (test check)"


def compare(run, batch, checks) -> None:
    for customer in batch.customers:
        key = f"{KIND}:customer:{customer.pk}"
        if not customer.name.endswith("(flagged)"):
            checks.equal(key)
            continue
        checks.differ(Finding(
            kind=KIND, key=key, severity=Severity.INFO, summary=f"{customer.external_id}: the name is flagged",
            rows=[["name", customer.name, ""]], note="A test check.", service_id=customer.service_id,
            customer_id=customer.pk,
        ))


def fix(context, mismatches) -> dict[int, tuple[bool, str]]:
    return {m.pk: (True, f"test fix ran ({'support' if context.by_support else 'autofix'})") for m in mismatches}


register(Check(kind=KIND, label=LABEL, stages=(STAGE_CUSTOMERS,), compare=compare, autofix=False, fix=fix,
               always_fixable=True))
