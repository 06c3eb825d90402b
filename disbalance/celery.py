"""The Celery app. Periodic jobs come from `disbalance.periodic`, the one place they are declared."""

import os

from celery import Celery

from disbalance.periodic import beat_schedule

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "disbalance.settings")

app = Celery("disbalance")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.beat_schedule = beat_schedule()
app.autodiscover_tasks()
