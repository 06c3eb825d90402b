from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class BalanceGatewayConfig(AppConfig):
    name = "balance_gateway"
    verbose_name = _("Balance gateway")

    def ready(self) -> None:
        # Imported here, not at the top: an app's modules that touch models load only once the registry is ready.
        from balance_gateway import metrics  # noqa: F401 - registers the notification gauges
        from balance_gateway.client import operation_context
        from disbalance.outbox import outbox_run_context

        outbox_run_context(operation_context)  # calls made by a handler are logged with its operation
