from django.urls import path

from balance_gateway import apis

urlpatterns = [
    path("notify", apis.balance_notify, name="balance-notify"),
    path("notify/BalanceClient/<str:method>", apis.balance_notify_json, name="balance-notify-json"),
    # The service in the path, so that one URL per service serves both protocols: JSON delivery appends
    # `/BalanceClient/<method>` to the configured URL, which a query string would swallow.
    path("notify/<int:service_id>", apis.balance_notify, name="balance-notify-service"),
    path("notify/<int:service_id>/BalanceClient/<str:method>", apis.balance_notify_json,
         name="balance-notify-json-service"),
]
