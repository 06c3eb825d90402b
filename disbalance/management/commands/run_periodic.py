import time

from django.core.management.base import BaseCommand, CommandError

from disbalance.celery import app
from disbalance.periodic import PERIODIC_JOBS, get_job


class Command(BaseCommand):
    help = "Run a periodic job once, now, in this process (the same task Celery beat schedules)."

    def add_arguments(self, parser):
        parser.add_argument("name", nargs="?")
        parser.add_argument("--all", action="store_true", help="run every periodic job once")
        parser.add_argument("--list", action="store_true", help="list the periodic jobs and their schedules")

    def handle(self, *args, **options):
        if options["list"]:
            for job in PERIODIC_JOBS:
                self.stdout.write(f"{job.name:32} {job.schedule!s:40} {job.description}")
            return
        if options["all"]:
            names = [job.name for job in PERIODIC_JOBS]
        elif options["name"]:
            names = [options["name"]]
        else:
            raise CommandError("give a job name, --all or --list")
        app.loader.import_default_modules()
        for name in names:
            try:
                job = get_job(name)
            except KeyError as exc:
                known = ", ".join(j.name for j in PERIODIC_JOBS)
                raise CommandError(f"unknown periodic job {name!r}; known: {known}") from exc
            started = time.monotonic()
            result = app.tasks[job.task]()  # the task's body, here and now; errors propagate
            elapsed = time.monotonic() - started
            self.stdout.write(f"{name}: {result if result is not None else 'done'} ({elapsed:.2f}s)")
