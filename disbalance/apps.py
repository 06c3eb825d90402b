from django.apps import AppConfig


class DisbalanceConfig(AppConfig):
    name = "disbalance"
    verbose_name = "Consumer services"

    def ready(self) -> None:
        from disbalance import schema  # noqa: F401 - registers the OpenAPI extension
