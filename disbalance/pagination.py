from django.core.exceptions import FieldDoesNotExist, ValidationError
from rest_framework.exceptions import NotFound
from rest_framework.exceptions import ValidationError as BadRequest
from rest_framework.pagination import Cursor, CursorPagination


class NewestFirstCursorPagination(CursorPagination):
    """Cursor pagination, newest first: `?cursor=`, `?limit=` (1 to 500), `next` in the body.

    A `limit` that is not a whole number from 1 to 500 is `400 validation_error` naming `limit` (DRF would silently
    fall back to the default or cap it, and a client would never learn that its page is not what it asked for).

    A cursor is the client's to send back, so it is checked: a position that is not a valid value of the ordering
    field (a hand-made cursor) is `404 Invalid cursor`, as a malformed one is, never a 500 from the query.
    """

    ordering = "-id"
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 500

    def get_page_size(self, request) -> int:  # type: ignore[no-untyped-def]
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= self.max_page_size:
            raise BadRequest({self.page_size_query_param: [
                f"A whole number from 1 to {self.max_page_size}, got {raw[:20]!r}."]})
        return int(raw)

    def paginate_queryset(self, queryset, request, view=None):  # type: ignore[no-untyped-def]
        self._model = queryset.model
        return super().paginate_queryset(queryset, request, view=view)

    def decode_cursor(self, request) -> Cursor | None:  # type: ignore[no-untyped-def]
        cursor = super().decode_cursor(request)
        if cursor is None or cursor.position is None:
            return cursor
        ordering = self.ordering if isinstance(self.ordering, str) else self.ordering[0]
        try:
            field = self._model._meta.get_field(ordering.lstrip("-"))
            field.run_validators(field.to_python(cursor.position))
        except (FieldDoesNotExist, ValidationError, ValueError, TypeError, OverflowError) as exc:
            raise NotFound(self.invalid_cursor_message) from exc
        return cursor


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
    filterset = filterset_class(request.query_params, queryset=filterset_class.Meta.model.objects.none())
    if not filterset.is_valid():
        raise BadRequest(filterset.errors)
    return {k: v for k, v in filterset.form.cleaned_data.items() if v not in (None, "")}
