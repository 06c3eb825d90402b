"""`manage.py adopt_orders FILE.csv --service SLUG`: adopt a consumer's existing Balance orders and their money.

Thin: reading, checking, moving and posting live in `payments.adopting`. Exit code 0 when the run completed
(refused rows included), 1 when the file cannot be read or Balance fails (what was done stays; re-run the file).
"""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from disbalance.models import ConsumerService
from disbalance.money import format_amount
from payments.adopting import (
    COLUMNS,
    AdoptAborted,
    AdoptFileError,
    AdoptReport,
    Outcome,
    adopt_file_read,
    orders_adopt,
)
from payments.adopting import adopt_report_write as write_report

MAX_BATCH_SIZE = 1000


class Command(BaseCommand):
    help = (
        "Adopt a consumer's existing Balance orders: check each in Balance, move its free money (paid minus "
        "completed) into billing's wallet order of the customer and payer (CreateTransferMultiple) and post it as "
        "an opening balance. Idempotent and resumable. CSV columns (header line): " + ", ".join(COLUMNS) + "; "
        "agency_external_id only when an agency pays. Link customers and agencies first (import_customers)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="CSV file with a header line")
        parser.add_argument("--service", required=True, help="slug of the consumer service")
        parser.add_argument("--dry-run", action="store_true", help="check billing and Balance, move and write nothing")
        parser.add_argument("--batch-size", type=int, default=100, help="orders per GetOrdersInfo batch")
        parser.add_argument("--report", metavar="FILE.csv", help="also write every row's outcome and reason here")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, **options) -> None:
        service = ConsumerService.objects.filter(slug=options["service"]).first()
        if service is None:
            raise CommandError(f"No consumer service {options['service']!r}.")
        if not 1 <= options["batch_size"] <= MAX_BATCH_SIZE:
            raise CommandError(f"--batch-size must be between 1 and {MAX_BATCH_SIZE}.")
        try:
            rows = adopt_file_read(options["file"])
        except AdoptFileError as exc:
            raise CommandError(f"Cannot read {options['file']}: {exc}. Nothing was adopted.") from exc

        aborted: AdoptAborted | None = None
        with logging_redirect_tqdm(), tqdm(total=len(rows), unit="order", desc="adopt", dynamic_ncols=True,
                                           file=getattr(self.stderr, "_out", sys.stderr),
                                           disable=options["no_progress"]) as bar:
            try:
                report = orders_adopt(service=service, rows=rows, dry_run=options["dry_run"],
                                      batch_size=options["batch_size"], progress=bar.update)
            except AdoptAborted as exc:
                aborted, report = exc, exc.report
        self._finish(report, options)
        if aborted is not None:
            raise CommandError(f"{aborted} Stopped; what was done stays. Re-run the same file: adopted orders come "
                               "back as already adopted and an interrupted one is settled.") from aborted

    def _finish(self, report: AdoptReport, options: dict) -> None:
        counts = report.counts()
        if report.dry_run:
            self.stdout.write(f"Dry run, nothing moved or written: {counts['would_adopt']} would be adopted "
                              f"({format_amount(report.money(Outcome.WOULD_ADOPT))} free), "
                              f"{counts['already_adopted']} already adopted, {counts['refused']} refused.")
        else:
            self.stdout.write(f"{counts['adopted']} adopted ({format_amount(report.money())} moved to wallets), "
                              f"{counts['already_adopted']} already adopted, {counts['refused']} refused.")
        refused = report.refused()
        if refused:
            self.stdout.write("Refused:")
            for result in refused:
                self.stdout.write(f"  line {result.line}: order {result.service_order_id or '(none)'} "
                                  f"({result.customer_external_id}): {result.reason}")
        if options["report"]:
            write_report(report, options["report"])
            self.stdout.write(f"Every row's outcome written to {options['report']}.")
