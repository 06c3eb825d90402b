from django.urls import path

from customers import apis

urlpatterns = [
    path("customers", apis.CustomerListCreateApi.as_view(), name="customer-list"),
    path("customers/<str:external_id>", apis.CustomerDetailApi.as_view(), name="customer-detail"),
    path("customers/<str:external_id>/agency", apis.CustomerAgencyApi.as_view(), name="customer-agency"),
    path("customers/<str:external_id>/agency-history", apis.CustomerAgencyHistoryApi.as_view(),
         name="customer-agency-history"),
]
