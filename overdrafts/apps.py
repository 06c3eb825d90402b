from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class OverdraftsConfig(AppConfig):
    name = "overdrafts"
    verbose_name = _("Overdrafts")

    def ready(self) -> None:
        from overdrafts import services  # noqa: F401 - registers the client (NotifyClient2) notification applier
