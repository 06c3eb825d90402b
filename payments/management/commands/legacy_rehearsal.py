"""`manage.py legacy_rehearsal --out DIR`: a made-up legacy Balance state of a consumer, to rehearse a cut-over.

Writes `seed.json` (for `balance_emulator --seed-file`), `customers.csv` (for `import_customers`) and `orders.csv`
(for `adopt_orders`); see `payments.rehearsal` and docs/migrating.md.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from payments.rehearsal import legacy_rehearsal


class Command(BaseCommand):
    help = ("Write a made-up legacy Balance state (seed.json) and the cut-over files (customers.csv, orders.csv) "
            "into --out, to rehearse a migration against the emulator.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", required=True, help="directory to write the three files into")
        parser.add_argument("--customers", type=int, default=300)
        parser.add_argument("--orders", type=int, default=1000)
        parser.add_argument("--agencies", type=int, default=5)
        parser.add_argument("--broken", type=int, default=5, help="orders broken on purpose (the last ones)")
        parser.add_argument("--service-id", type=int, default=7, help="the consumer's Balance ServiceID")
        parser.add_argument("--prefix", default="legacy", help="prefix of the external ids")
        parser.add_argument("--random-seed", type=int, default=14)

    def handle(self, *args, **options) -> None:
        state = legacy_rehearsal(customers=options["customers"], orders=options["orders"],
                                 agencies=options["agencies"], broken=options["broken"],
                                 service_id=options["service_id"], seed=options["random_seed"],
                                 prefix=options["prefix"])
        paths = state.write(options["out"])
        total = sum(state.free_money.values())
        self.stdout.write(f"{len(state.customers)} parties, {len(state.orders)} orders ({len(state.broken)} broken "
                          f"on purpose), {total} free money in the good ones.")
        for name, path in paths.items():
            self.stdout.write(f"  {name}: {path}")
