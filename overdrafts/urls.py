from django.urls import path

from overdrafts import apis

urlpatterns = [
    path("customers/<str:external_id>/overdraft", apis.OverdraftApi.as_view(), name="customer-overdraft"),
]
