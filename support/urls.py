from django.contrib import admin
from django.urls import path

from support.dashboard import dashboard

urlpatterns = [
    path("admin/dashboard/", admin.site.admin_view(dashboard), name="support-dashboard"),
]
