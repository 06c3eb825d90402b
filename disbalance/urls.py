from django.contrib import admin
from django.urls import include, path, re_path
from django_prometheus import exports as prometheus_exports
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from disbalance import api_root, health

api_v1 = [
    path("", include("customers.urls")),
    path("", include("agencies.urls")),
    path("", include("wallets.urls")),
    path("", include("payments.urls")),
    path("", include("overdrafts.urls")),
    path("", include("disbalance.api_urls")),
]

urlpatterns = [
    path("", api_root.index, name="index"),
    # The index is public and names no operation: it sits beside the API's routes, not among them.
    re_path(r"^api/v1/$", api_root.index, name="api-index"),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    # Last under /api/: whatever names no operation is a problem+json 404, never Django's HTML page.
    re_path(r"^api(?:/.*)?$", api_root.not_found, name="api-not-found"),
    path("balance/", include("balance_gateway.urls")),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", prometheus_exports.ExportToDjangoView, name="prometheus-django-metrics"),
    path("", include("support.urls")),  # the support dashboard, before the admin catches admin/...
    path("admin/", admin.site.urls),
]
