from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DisbalanceConfig(AppConfig):
    name = "disbalance"
    verbose_name = _("Consumer services")

    def ready(self) -> None:
        from disbalance import schema, webhooks  # noqa: F401 - the OpenAPI extension, the webhook outbox handler
