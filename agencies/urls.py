from django.urls import path

from agencies import apis

urlpatterns = [
    path("agencies", apis.AgencyListCreateApi.as_view(), name="agency-list"),
    path("agencies/<str:external_id>", apis.AgencyDetailApi.as_view(), name="agency-detail"),
    path("agencies/<str:external_id>/customers", apis.AgencyCustomersApi.as_view(), name="agency-customers"),
]
