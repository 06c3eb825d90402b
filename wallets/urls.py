from django.urls import path

from wallets import apis

urlpatterns = [
    path("customers/<str:external_id>/wallet", apis.WalletApi.as_view(), name="customer-wallet"),
    path("customers/<str:external_id>/wallet/alerts", apis.WalletAlertsApi.as_view(), name="customer-wallet-alerts"),
    path("customers/<str:external_id>/wallet/transactions", apis.WalletTransactionsApi.as_view(),
         name="customer-wallet-transactions"),
    path("customers/<str:external_id>/statement", apis.CustomerStatementApi.as_view(), name="customer-statement"),
]
