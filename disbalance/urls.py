from django.contrib import admin
from django.urls import include, path
from django_prometheus import exports as prometheus_exports
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from disbalance import health
from disbalance.dashboard import dashboard

api_v1 = [
    path("", include("customers.urls")),
    path("", include("agencies.urls")),
    path("", include("wallets.urls")),
    path("", include("payments.urls")),
    path("", include("overdrafts.urls")),
    path("", include("disbalance.api_urls")),
]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("balance/", include("balance_gateway.urls")),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", prometheus_exports.ExportToDjangoView, name="prometheus-django-metrics"),
    path("admin/dashboard/", admin.site.admin_view(dashboard), name="support-dashboard"),
    path("admin/", admin.site.urls),
]
