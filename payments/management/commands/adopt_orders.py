"""`manage.py adopt_orders FILE.csv --service SLUG`: adopt a consumer's existing Balance orders and their money.

Thin: reading, checking, moving and posting live in `payments.adopting`. Exit code 0 when the run completed
(refused rows included), 1 when the file cannot be read or Balance fails (what was done stays; re-run the file).
"""

from __future__ import annotations

from disbalance.file_commands import FileCommand
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


class Command(FileCommand):
    help = (
        "Adopt a consumer's existing Balance orders: check each in Balance, move its free money (paid minus "
        "completed) into billing's wallet order of the customer and payer (CreateTransferMultiple) and post it as "
        "an opening balance. Idempotent and resumable. CSV columns (header line): " + ", ".join(COLUMNS) + "; "
        "agency_external_id only when an agency pays. Link customers and agencies first (import_customers)."
    )
    unit, verb = "order", "adopt"
    dry_run_help = "check billing and Balance, move and write nothing"
    batch_help = "orders per GetOrdersInfo batch"
    report_help = "also write every row's outcome and reason here"
    file_error = AdoptFileError
    aborted = AdoptAborted
    nothing_done = "Nothing was adopted."
    stopped_advice = ("Stopped; what was done stays. Re-run the same file: adopted orders come back as already "
                      "adopted and an interrupted one is settled.")

    def read_file(self, path: str) -> list:
        return adopt_file_read(path)

    def run(self, **kwargs) -> AdoptReport:  # type: ignore[no-untyped-def, override]
        return orders_adopt(**kwargs)

    def finish(self, report: AdoptReport, options: dict) -> None:
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
