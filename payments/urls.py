from django.urls import path

from payments import apis

urlpatterns = [
    path("products", apis.ProductListApi.as_view(), name="product-list"),
    path("customers/<str:external_id>/topups", apis.CustomerTopUpsApi.as_view(), name="customer-topups"),
    path("topups/<str:topup_id>", apis.TopUpDetailApi.as_view(), name="topup-detail"),
    path("customers/<str:external_id>/charges", apis.CustomerChargesApi.as_view(), name="customer-charges"),
    path("charges/<str:charge_id>", apis.ChargeDetailApi.as_view(), name="charge-detail"),
    path("charges/<str:charge_id>/refunds", apis.ChargeRefundsApi.as_view(), name="charge-refunds"),
    path("customers/<str:external_id>/holds", apis.CustomerHoldsApi.as_view(), name="customer-holds"),
    path("holds/<str:hold_id>", apis.HoldDetailApi.as_view(), name="hold-detail"),
    path("holds/<str:hold_id>/capture", apis.HoldCaptureApi.as_view(), name="hold-capture"),
    path("holds/<str:hold_id>/release", apis.HoldReleaseApi.as_view(), name="hold-release"),
]
