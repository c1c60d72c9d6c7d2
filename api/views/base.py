"""What every API view shares: API-key authentication and scopes (settings ``REST_FRAMEWORK``), problem JSON
errors, the key as the audited actor of its writes, ``Idempotency-Key`` on POST, cursor pagination, and helpers
that read ids and query parameters with errors naming the parameter."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.db import models
from django.http import HttpRequest, HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import viewsets
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from api.auth import api_actor
from api.idempotency import HEADER, idempotency_key_of, run_idempotent
from api.problems import ApiProblem
from api.serializers import represent, with_related

IDEMPOTENCY_PARAMETER = OpenApiParameter(
    HEADER,
    str,
    OpenApiParameter.HEADER,
    description="Any unique string (a UUID). The same key with the same body replays the first response for 24 h; "
    "with a different body it is a 409.",
)
AS_OF_PARAMETER = OpenApiParameter(
    "as_of", OpenApiTypes.DATE, OpenApiParameter.QUERY, description="YYYY-MM-DD; default: today."
)


class ApiPagination(CursorPagination):
    """Newest first, by id (stable under inserts); ``?limit=`` (1–API_PAGE_SIZE_MAX) and ``?cursor=`` from ``next``."""

    ordering = "-id"
    page_size_query_param = "limit"

    def __init__(self) -> None:
        self.page_size = settings.API_PAGE_SIZE
        self.max_page_size = settings.API_PAGE_SIZE_MAX

    def get_page_size(self, request: Request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not raw.isdigit() or not 1 <= int(raw) <= self.max_page_size:
            raise ApiProblem(
                400, f"limit: give a whole number from 1 to {self.max_page_size}.", code="invalid_input", field="limit"
            )
        return int(raw)

    def get_paginated_response(self, data: Any) -> Response:
        return Response(
            {"object": "list", "data": data, "next": self.get_next_link(), "previous": self.get_previous_link()}
        )

    def get_paginated_response_schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["object", "data", "next", "previous"],
            "properties": {
                "object": {"type": "string", "enum": ["list"]},
                "data": schema,
                "next": {"type": "string", "nullable": True, "format": "uri"},
                "previous": {"type": "string", "nullable": True, "format": "uri"},
            },
        }

    def decode_cursor(self, request: Request) -> Any:
        try:
            return super().decode_cursor(request)
        except Exception as exc:  # DRF raises NotFound("Invalid cursor"): name the parameter instead
            raise ApiProblem(
                400, "cursor: not a cursor this API gave out.", code="invalid_input", field="cursor"
            ) from exc


class ApiViewSet(viewsets.GenericViewSet):
    """Base of every resource. ``dispatch`` is DRF's, with the key named as the audit actor around the handler
    and the POST handler run once per Idempotency-Key (api/idempotency.py)."""

    pagination_class = ApiPagination
    lookup_value_regex = r"[0-9]+"

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        self.args = args
        self.kwargs = kwargs
        drf_request = self.initialize_request(request, *args, **kwargs)
        self.request = drf_request
        self.headers = self.default_response_headers
        try:
            self.initial(drf_request, *args, **kwargs)
            handler = getattr(self, (drf_request.method or "").lower(), None)
            if handler is None or (drf_request.method or "").lower() not in self.http_method_names:
                handler = self.http_method_not_allowed
            key = idempotency_key_of(request) if drf_request.method == "POST" else None
            with api_actor(drf_request.auth):
                if key is None:
                    response = handler(drf_request, *args, **kwargs)
                else:

                    def handle() -> HttpResponseBase:
                        try:
                            inner = handler(drf_request, *args, **kwargs)
                        except Exception as exc:
                            inner = self.handle_exception(exc)
                        inner = self.finalize_response(drf_request, inner, *args, **kwargs)
                        inner.render()
                        return inner

                    return run_idempotent(request, drf_request.auth, key, handle)
        except Exception as exc:
            response = self.handle_exception(exc)
        self.response = self.finalize_response(drf_request, response, *args, **kwargs)
        return self.response

    # --- helpers -------------------------------------------------------------------------------------

    def represented(self, obj: models.Model, *, status: int = 200) -> Response:
        return Response(represent(obj), status=status)

    def list_response(self, queryset: models.QuerySet[Any]) -> Response:
        page = self.paginate_queryset(with_related(queryset))
        assert page is not None
        return self.get_paginated_response([represent(obj) for obj in page])

    def object_or_404(self, queryset: models.QuerySet[Any], pk: Any, *, what: str) -> Any:
        obj = queryset.filter(pk=pk).first()
        if obj is None:
            raise ApiProblem(404, f"No {what} with id {pk}.", code="not_found")
        return obj

    def query_param(self, name: str) -> str | None:
        value = self.request.query_params.get(name)
        return value if value not in (None, "") else None

    def query_date(self, name: str) -> dt.date | None:
        value = self.query_param(name)
        if value is None:
            return None
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise ApiProblem(
                400, f"{name}: {value!r} is not a date in the form YYYY-MM-DD.", code="invalid_input", field=name
            ) from None

    def query_id(self, name: str) -> int | None:
        value = self.query_param(name)
        if value is None:
            return None
        if not value.isdigit():
            raise ApiProblem(400, f"{name}: {value!r} is not an id.", code="invalid_input", field=name)
        return int(value)

    def query_choice(self, name: str, choices: list[str]) -> str | None:
        value = self.query_param(name)
        if value is not None and value not in choices:
            raise ApiProblem(
                400, f"{name}: {value!r} is not one of {', '.join(choices)}.", code="invalid_input", field=name
            )
        return value
