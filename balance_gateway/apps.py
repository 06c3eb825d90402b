from django.apps import AppConfig


class BalanceGatewayConfig(AppConfig):
    name = "balance_gateway"
    verbose_name = "Balance gateway"
