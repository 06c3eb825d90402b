"""`manage.py import_customers FILE.csv --service SLUG`: link customers and agencies that already exist in Balance.

Thin: reading and checking the file live in `customers.import_file`, linking in `customers.importing`. Exit code 0
when the run completed (skipped rows included), 1 when the file cannot be read or Balance fails (batches committed
before the failure stay; re-run).
"""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from customers.import_file import (
    COLUMNS,
    ImportAborted,
    ImportFileError,
    ImportReport,
    import_file_read,
    import_report_write,
)
from customers.importing import customers_import
from disbalance.models import ConsumerService

MAX_BATCH_SIZE = 1000


class Command(BaseCommand):
    help = (
        "Link customers and agencies that already exist in Balance to billing, after checking them in Balance. "
        "Never creates anything in Balance; idempotent. CSV columns (header line): " + ", ".join(COLUMNS) + "; "
        "required: external_id, kind (company, individual or agency), balance_client_id, name, and the legal "
        "details the API requires (company and agency: inn, legal_address; individual: lname, fname). "
        "agency_external_id names an agency of this file or one already in billing; balance_person_id is optional."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="CSV file with a header line")
        parser.add_argument("--service", required=True, help="slug of the consumer service")
        parser.add_argument("--dry-run", action="store_true", help="check everything (Balance too), write nothing")
        parser.add_argument("--batch-size", type=int, default=100, help="rows per Balance batch and transaction")
        parser.add_argument("--report", metavar="FILE.csv", help="also write the skipped rows and reasons here")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, **options) -> None:
        service = ConsumerService.objects.filter(slug=options["service"]).first()
        if service is None:
            raise CommandError(f"No consumer service {options['service']!r}.")
        if not 1 <= options["batch_size"] <= MAX_BATCH_SIZE:
            raise CommandError(f"--batch-size must be between 1 and {MAX_BATCH_SIZE}.")
        try:
            rows = import_file_read(options["file"])
        except ImportFileError as exc:
            raise CommandError(f"Cannot read {options['file']}: {exc}. Nothing was imported.") from exc

        # Log lines (one per Balance call) go through tqdm, so that the bar stays on the last line.
        with logging_redirect_tqdm(), tqdm(total=len(rows), unit="row", desc="import", dynamic_ncols=True,
                                           file=getattr(self.stderr, "_out", sys.stderr),
                                           disable=options["no_progress"]) as bar:
            try:
                report = customers_import(service=service, rows=rows, dry_run=options["dry_run"],
                                          batch_size=options["batch_size"], progress=bar.update)
            except ImportAborted as exc:
                aborted = exc
                report = exc.report
            else:
                aborted = None
        self._finish(report, options)
        if aborted is not None:
            raise CommandError(
                f"{aborted} Stopped; batches before the failure are committed. Re-run the same file when Balance "
                "is back: rows already linked come back as unchanged."
            ) from aborted

    def _finish(self, report: ImportReport, options: dict) -> None:
        counts = report.counts()
        if report.dry_run:
            summary = (f"Dry run, nothing written: {counts['would_link']} would link, {counts['unchanged']} unchanged, "
                       f"{counts['skipped']} skipped.")
        else:
            summary = f"{counts['linked']} linked, {counts['unchanged']} unchanged, {counts['skipped']} skipped."
        self.stdout.write(summary)
        skipped = report.skipped()
        if skipped:
            self.stdout.write("Skipped:")
            for result in skipped:
                self.stdout.write(f"  line {result.line}: {result.external_id or '(no external id)'}: {result.reason}")
        noted = report.noted()
        if noted:
            self.stdout.write("Notes:")
            for result in noted:
                self.stdout.write(f"  line {result.line}: {result.external_id}: {result.note}")
        if options["report"]:
            import_report_write(report, options["report"])
            self.stdout.write(f"Skipped rows written to {options['report']}.")
