from django.urls import path

from disbalance import apis

urlpatterns = [
    path("events", apis.EventListApi.as_view(), name="event-list"),
]
