"""`manage.py reconcile [--customer EXTERNAL_ID] [--service SLUG] [--no-autofix] [--batch-size N]`.

Compares billing with Balance (see `reconciliation.run`), with a progress bar on stderr and a summary
table (found / new / fixed / closed by kind) on stdout. Exit code 0 whatever was found (mismatches are data, not
errors); 1 when Balance cannot be reached or refuses the reads (what was checked before is kept).
"""

from __future__ import annotations

import sys
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from balance_gateway.exceptions import BalanceError
from customers.models import Customer
from disbalance.models import ConsumerService
from reconciliation.findings import ReconcileReport, batch_size_default
from reconciliation.models import Mismatch
from reconciliation.registry import CHECKS
from reconciliation.run import reconcile


class Command(BaseCommand):
    help = "Compare billing with Balance, record mismatches, fix the safe ones, close what is no longer seen."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--customer", metavar="EXTERNAL_ID", help="only this customer (e.g. dealer:20101)")
        parser.add_argument("--service", metavar="SLUG", help="only this consumer service")
        parser.add_argument("--no-autofix", action="store_true", help="record only; fix nothing")
        parser.add_argument("--batch-size", type=int, default=None, metavar="N",
                            help=f"customers per batch and orders/clients per Balance call "
                                 f"(default {batch_size_default()})")
        parser.add_argument("--persons", choices=["changed", "all", "none"], default="changed",
                            help="which clients' persons (INN) to read: recently changed ones (default), all "
                                 "(one call per client), none")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args: Any, **options: Any) -> None:
        service = customer = None
        if options["service"]:
            service = ConsumerService.objects.filter(slug=options["service"]).first()
            if service is None:
                raise CommandError(f"no consumer service {options['service']!r}")
        if options["customer"]:
            matches = Customer.objects.filter(external_id=options["customer"])
            if service is not None:
                matches = matches.filter(service=service)
            found = list(matches.select_related("service")[:2])
            if not found:
                raise CommandError(f"no customer {options['customer']!r}")
            if len(found) > 1:
                raise CommandError(f"customer {options['customer']!r} exists in several services: add --service")
            customer = found[0]
        if options["batch_size"] is not None and options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")

        bar = tqdm(total=None, unit="party", desc="reconcile", file=sys.stderr, dynamic_ncols=True,
                   disable=options["no_progress"])

        def progress(done: int, total: int) -> None:
            if bar.total != total:
                bar.total = total
            bar.update(done - bar.n)

        try:
            report = reconcile(customer=customer, service=service, batch_size=options["batch_size"],
                               progress=progress, autofix=not options["no_autofix"], persons=options["persons"])
        except BalanceError as exc:
            bar.close()
            raise CommandError(
                f"Balance is unreachable or refused a read at {settings.BALANCE_URL} ({exc}). Reconciliation "
                "stopped: what was checked before is recorded, nothing unchecked was closed. Try again later.",
                returncode=1,
            ) from exc
        bar.close()
        self._summary(report, autofix=not options["no_autofix"])

    def _summary(self, report: ReconcileReport, *, autofix: bool) -> None:
        write = self.stdout.write
        calls = ", ".join(f"{method} {count}" for method, count in sorted(report.calls.items())) or "none"
        write(f"Checked {report.customers} customer(s), {report.agencies} agency(ies), {report.orders} order(s), "
              f"{report.persons_checked} person list(s), {report.operations} outbox operation(s) in "
              f"{report.duration:.2f}s; {report.calls_total} Balance call(s): {calls}.")
        header = ("kind", "found", "new", "fixed", "fix failed", "closed")
        rows = [(CHECKS[kind].label, *figures) for kind, *figures in report.rows()]
        totals = ("total", *(sum(row[i] for row in rows) for i in range(1, len(header))))
        widths = [max(len(str(r[i])) for r in [header, *rows, totals]) for i in range(len(header))]

        def line(row: tuple) -> str:
            return "  ".join(str(v).ljust(widths[0]) if i == 0 else str(v).rjust(widths[i]) for i, v in enumerate(row))

        write(line(header))
        write("  ".join("-" * w for w in widths))
        for row in rows:
            write(line(row))
        write(line(totals))
        if not autofix:
            write("Autofix was off: nothing was fixed.")
        if sum(report.acknowledged.values()):
            write(f"{sum(report.acknowledged.values())} difference(s) support already resolved with the same "
                  "figures were not raised again.")
        for error in report.errors:
            write(self.style.WARNING(f"warning: {error}"))
        open_now = Mismatch.objects.filter(status=Mismatch.Status.OPEN).count()
        write(f"Open mismatches now: {open_now} (admin: Reconciliation > Mismatches).")
