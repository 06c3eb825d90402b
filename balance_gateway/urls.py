from django.urls import path

from balance_gateway import apis

urlpatterns = [
    path("notify", apis.balance_notify, name="balance-notify"),
    path("notify/BalanceClient/<str:method>", apis.balance_notify_json, name="balance-notify-json"),
]
