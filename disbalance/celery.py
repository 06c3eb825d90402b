"""The Celery app. Periodic jobs come from `disbalance.periodic`, the one place they are declared."""

import os

from celery import Celery
from celery.signals import worker_process_init

from disbalance.periodic import beat_schedule
from disbalance.tracing import tracing_setup

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "disbalance.settings")

app = Celery("disbalance")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.beat_schedule = beat_schedule()
app.autodiscover_tasks()


@worker_process_init.connect(weak=False)
def _trace_worker(**kwargs: object) -> None:
    tracing_setup()  # each worker process (prefork), only with OTEL_TRACES_EXPORTER set
