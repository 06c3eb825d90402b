from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DisbalanceConfig(AppConfig):
    name = "disbalance"
    verbose_name = _("Consumer services")

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from disbalance import metrics, schema, webhooks  # noqa: F401 - the OpenAPI extension, the webhook tasks
        from disbalance.auth import token_cache_clear
        from disbalance.models import ConsumerService, ServiceToken

        metrics.install()
        # A revoked token or a deactivated service is refused at once by the process that changed it.
        for model in (ServiceToken, ConsumerService):
            post_save.connect(token_cache_clear, sender=model, dispatch_uid=f"token_cache_clear_save_{model.__name__}")
            post_delete.connect(token_cache_clear, sender=model,
                                dispatch_uid=f"token_cache_clear_delete_{model.__name__}")
