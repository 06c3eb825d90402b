from rest_framework.pagination import CursorPagination


class NewestFirstCursorPagination(CursorPagination):
    """Cursor pagination, newest first: `?cursor=`, `?limit=` (1 to 500), `next` in the body."""

    ordering = "-id"
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 500


class CreatedNewestFirstCursorPagination(NewestFirstCursorPagination):
    ordering = "-created_at"


def paginated_response(request, queryset, serializer_class, *, view=None,
                       pagination_class: type[CursorPagination] = NewestFirstCursorPagination):
    """One page of `queryset` as `{next, previous, results}` with the API's cursor pagination."""
    paginator = pagination_class()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)


def validated_filters(filterset_class, request) -> dict:
    """Query-parameter filters checked by a django-filter FilterSet; bad values are `400 validation_error`."""
    from rest_framework.exceptions import ValidationError

    filterset = filterset_class(request.query_params, queryset=filterset_class.Meta.model.objects.none())
    if not filterset.is_valid():
        raise ValidationError(filterset.errors)
    return {k: v for k, v in filterset.form.cleaned_data.items() if v not in (None, "")}
