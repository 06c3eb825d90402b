"""The shared frame of the management commands that take a consumer's CSV file (`import_customers`,
`adopt_orders`): the common options, the consumer service and batch-size checks, a file that cannot be read, the
progress bar (log lines go through tqdm so that the bar stays on the last line), and a run stopped by Balance.

A command says what differs: `unit` and `verb` (the bar's label), `read_file(path)` and its error class,
`run(service=, rows=, dry_run=, batch_size=, progress=)` and its abort class (whose instance carries the partial
`report`), `nothing_done` (the sentence after an unreadable file), `stopped_advice` (after an abort) and
`finish(report, options)`.

Output is English (`no_translations`): the console's default language is Russian (`LANGUAGE_CODE`), and the API's
validation messages that explain a refused row would otherwise come out in it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, ClassVar

from django.core.management.base import BaseCommand, CommandError, CommandParser, no_translations
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from disbalance.models import ConsumerService

MAX_BATCH_SIZE = 1000


class FileCommand(BaseCommand):
    unit: ClassVar[str] = "row"
    verb: ClassVar[str] = "import"
    batch_help: ClassVar[str] = "rows per Balance batch and transaction"
    dry_run_help: ClassVar[str] = "check everything (Balance too), write nothing"
    report_help: ClassVar[str] = "also write the rows and reasons here"
    file_error: ClassVar[type[Exception]] = ValueError
    aborted: ClassVar[type[Exception]] = RuntimeError
    nothing_done: ClassVar[str] = "Nothing was written."
    stopped_advice: ClassVar[str] = "Re-run the same file."

    def read_file(self, path: str) -> list:
        raise NotImplementedError

    def run(self, *, service: ConsumerService, rows: list, dry_run: bool, batch_size: int,
            progress: Callable[[int], Any]) -> Any:
        raise NotImplementedError

    def finish(self, report: Any, options: dict) -> None:
        raise NotImplementedError

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="CSV file with a header line")
        parser.add_argument("--service", required=True, help="slug of the consumer service")
        parser.add_argument("--dry-run", action="store_true", help=self.dry_run_help)
        parser.add_argument("--batch-size", type=int, default=100, help=self.batch_help)
        parser.add_argument("--report", metavar="FILE.csv", help=self.report_help)
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    @no_translations  # operators read the output and the report in English, whatever LANGUAGE_CODE the console has
    def handle(self, *args: Any, **options: Any) -> None:
        service = ConsumerService.objects.filter(slug=options["service"]).first()
        if service is None:
            raise CommandError(f"No consumer service {options['service']!r}.")
        if not 1 <= options["batch_size"] <= MAX_BATCH_SIZE:
            raise CommandError(f"--batch-size must be between 1 and {MAX_BATCH_SIZE}.")
        try:
            rows = self.read_file(options["file"])
        except self.file_error as exc:
            raise CommandError(f"Cannot read {options['file']}: {exc}. {self.nothing_done}") from exc

        aborted: Exception | None = None
        with logging_redirect_tqdm(), tqdm(total=len(rows), unit=self.unit, desc=self.verb, dynamic_ncols=True,
                                           file=getattr(self.stderr, "_out", sys.stderr),
                                           disable=options["no_progress"]) as bar:
            try:
                report = self.run(service=service, rows=rows, dry_run=options["dry_run"],
                                  batch_size=options["batch_size"], progress=bar.update)
            except self.aborted as exc:
                aborted, report = exc, exc.report  # type: ignore[attr-defined]
        self.finish(report, options)
        if aborted is not None:
            raise CommandError(f"{aborted} {self.stopped_advice}") from aborted
