from django.contrib import admin
from django.urls import path

from support.dashboard import dashboard
from support.views import console_language_view

urlpatterns = [
    path("admin/dashboard/", admin.site.admin_view(dashboard), name="support-dashboard"),
    path("admin/language/", admin.site.admin_view(console_language_view), name="support-language"),
]
