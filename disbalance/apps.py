from django.apps import AppConfig


class DisbalanceConfig(AppConfig):
    name = "disbalance"
    verbose_name = "Consumer services"

    def ready(self) -> None:
        from disbalance import schema, webhooks  # noqa: F401 - the OpenAPI extension, the webhook outbox handler
