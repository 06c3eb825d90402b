"""`manage.py import_customers FILE.csv --service SLUG`: link customers and agencies that already exist in Balance.

Thin: reading and checking the file live in `customers.import_file`, linking in `customers.importing`. Exit code 0
when the run completed (skipped rows included), 1 when the file cannot be read or Balance fails (batches committed
before the failure stay; re-run).
"""

from __future__ import annotations

from customers.import_file import (
    COLUMNS,
    ImportAborted,
    ImportFileError,
    ImportReport,
    import_file_read,
    import_report_write,
)
from customers.importing import customers_import
from disbalance.file_commands import FileCommand


class Command(FileCommand):
    help = (
        "Link customers and agencies that already exist in Balance to billing, after checking them in Balance. "
        "Never creates anything in Balance; idempotent. CSV columns (header line): " + ", ".join(COLUMNS) + "; "
        "required: external_id, kind (company, individual or agency), balance_client_id, name, and the legal "
        "details the API requires (company and agency: inn, legal_address; individual: lname, fname). "
        "agency_external_id names an agency of this file or one already in billing; balance_person_id is optional."
    )
    report_help = "also write the skipped rows and reasons here"
    file_error = ImportFileError
    aborted = ImportAborted
    nothing_done = "Nothing was imported."
    stopped_advice = ("Stopped; batches before the failure are committed. Re-run the same file when Balance is "
                      "back: rows already linked come back as unchanged.")

    def read_file(self, path: str) -> list:
        return import_file_read(path)

    def run(self, **kwargs) -> ImportReport:  # type: ignore[no-untyped-def, override]
        return customers_import(**kwargs)

    def finish(self, report: ImportReport, options: dict) -> None:
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
