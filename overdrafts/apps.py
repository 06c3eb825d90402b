from django.apps import AppConfig


class OverdraftsConfig(AppConfig):
    name = "overdrafts"
    verbose_name = "Overdrafts"

    def ready(self) -> None:
        from overdrafts import services  # noqa: F401 - registers the client (NotifyClient2) notification applier
