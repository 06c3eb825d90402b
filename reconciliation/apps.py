from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ReconciliationConfig(AppConfig):
    name = "reconciliation"
    verbose_name = _("Reconciliation")

    def ready(self) -> None:
        # Imported here, not at the top: the checks import models, which load only once the registry is ready.
        from reconciliation import checks, metrics  # noqa: F401 - registers the built-in checks and the gauges
