from django.apps import AppConfig


class OverdraftsConfig(AppConfig):
    name = "overdrafts"
    verbose_name = "Overdrafts"
