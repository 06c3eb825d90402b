"""The API's front door and its floor: a JSON index at `/` and `/api/v1/`, and problem+json for everything under
`/api/` that names no operation (unknown paths here; unknown methods are DRF's `405 method_not_allowed`), so no
HTML page is ever served under `/api/`, with DEBUG on or off."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from disbalance.exceptions import problem_response

API_VERSION = "v1"


@method_decorator(csrf_exempt, name="dispatch")
class IndexView(View):
    """Where to start: the API's base path, its OpenAPI schema, Swagger UI and the health endpoints."""

    http_method_names = ["get", "head", "options"]

    def get(self, request: HttpRequest) -> JsonResponse:
        return JsonResponse({
            "name": "Disbalance consumer API",
            "version": API_VERSION,
            "api": request.build_absolute_uri(f"/api/{API_VERSION}/"),
            "schema": request.build_absolute_uri(reverse("schema")),
            "docs": request.build_absolute_uri(reverse("swagger-ui")),
            "health": request.build_absolute_uri(reverse("healthz")),
            "auth": "Authorization: Bearer <service token>",
        })

    def http_method_not_allowed(self, request: HttpRequest, *args: object, **kwargs: object) -> JsonResponse:
        response = problem_response(status=405, code="method_not_allowed", title="Method not allowed",
                                    detail=f'Method "{request.method}" not allowed.')
        response["Allow"] = "GET, HEAD"
        return response


index = IndexView.as_view()


@csrf_exempt
def not_found(request: HttpRequest, *args: object, **kwargs: object) -> JsonResponse:
    """Any path under /api/ that names no operation, with any method."""
    return problem_response(status=404, code="not_found", title="Not found",
                            detail=f"No operation at {request.path!r}; see /api/schema/ for the operations.")
