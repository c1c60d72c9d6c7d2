"""Errors as RFC 9457 problem details (``application/problem+json``), the one shape every API error has.

::

    {"type": "about:blank", "title": "Bad Request", "status": 400,
     "detail": "quantity: Ensure this value is greater than or equal to 1.",
     "code": "invalid_input", "field": "quantity",
     "errors": [{"field": "quantity", "detail": "Ensure this value is greater than or equal to 1.",
                 "code": "min_value"}]}

``type`` stays ``about:blank`` (so ``title`` is the HTTP status phrase); ``code`` is the stable machine name of the
refusal (``core.errors.ApplicationError.code``: ``invalid_input``, ``invoice_state_error``, ``rate_limited`` …),
``field`` the input it is about (a dotted path into the JSON body: ``items.0.price``), ``errors`` every field that
was wrong. The faces that produce them: ``api.auth`` (401/403/429), the DRF exception handler below (validation,
service refusals, 404, 405, 415), and plain Django views (``ApiProblem.response()``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response

from core.errors import ApplicationError, log_application_error

logger = logging.getLogger(__name__)

CONTENT_TYPE = "application/problem+json"


class ApiProblem(Exception):
    """A refusal of the API itself (authentication, scope, rate limit, idempotency) or of its input, with its status.
    Raise it anywhere below a view; the DRF exception handler and ``api_view_problems`` render it."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        code: str,
        field: str | None = None,
        errors: list[dict[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code
        self.field = field
        self.errors = errors
        self.headers = dict(headers or {})

    def as_dict(self) -> dict[str, Any]:
        return problem_body(self.status, self.detail, code=self.code, field=self.field, errors=self.errors)

    def response(self) -> JsonResponse:
        """The problem as a plain Django response (for views outside DRF)."""
        return problem_response(
            self.status, self.detail, code=self.code, field=self.field, errors=self.errors, headers=self.headers
        )


def problem_body(
    status: int, detail: str, *, code: str, field: str | None = None, errors: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if field:
        body["field"] = field
    if errors:
        body["errors"] = errors
    elif field:
        body["errors"] = [{"field": field, "detail": detail, "code": code}]
    return body


def problem_response(
    status: int,
    detail: str,
    *,
    code: str,
    field: str | None = None,
    errors: list[dict[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JsonResponse:
    response = JsonResponse(
        problem_body(status, detail, code=code, field=field, errors=errors), status=status, content_type=CONTENT_TYPE
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def from_application_error(exc: ApplicationError) -> ApiProblem:
    """A service's refusal (``core/errors.py``): its status (400 invalid input, 404, 409 state or conflict, 503),
    its message, its field and code. 400s from a service are 422 when the request itself was well-formed JSON that
    passed the API's own validation — the service refused the *meaning* (an amount above what is due)."""
    log_application_error(exc, where="api")
    status = exc.http_status
    if status == 400:
        status = 422
    return ApiProblem(
        status, exc.message if exc.http_status != 503 else exc.default_message, code=exc.code, field=exc.field
    )


def validation_errors(detail: Any, prefix: str = "") -> list[dict[str, str]]:
    """DRF's nested ``ValidationError.detail`` as a flat list of {field, detail, code}; fields are dotted paths
    (``items.0.quantity``), body-wide errors have the field ``""``."""
    errors: list[dict[str, str]] = []
    if isinstance(detail, Mapping):
        for key, value in detail.items():
            name = "" if key in ("non_field_errors", drf_exceptions.ErrorDetail("non_field_errors")) else str(key)
            errors.extend(validation_errors(value, f"{prefix}.{name}" if prefix and name else (prefix or name)))
    elif isinstance(detail, list):
        if all(isinstance(item, str) for item in detail):
            for item in detail:
                errors.append({"field": prefix, "detail": str(item), "code": getattr(item, "code", "invalid")})
        else:
            for index, item in enumerate(detail):
                if item:
                    errors.extend(validation_errors(item, f"{prefix}.{index}" if prefix else str(index)))
    else:
        errors.append({"field": prefix, "detail": str(detail), "code": getattr(detail, "code", "invalid")})
    return errors


def from_validation_error(exc: drf_exceptions.ValidationError) -> ApiProblem:
    errors = validation_errors(exc.detail)
    first = errors[0] if errors else {"field": "", "detail": "Invalid input.", "code": "invalid"}
    detail = f"{first['field']}: {first['detail']}" if first["field"] else first["detail"]
    if len(errors) > 1:
        detail += f" (and {len(errors) - 1} more)"
    return ApiProblem(400, detail, code="invalid_input", field=first["field"] or None, errors=errors)


_DRF_CODES = {
    drf_exceptions.ParseError: "malformed_body",
    drf_exceptions.NotAuthenticated: "not_authenticated",
    drf_exceptions.AuthenticationFailed: "not_authenticated",
    drf_exceptions.PermissionDenied: "insufficient_scope",
    drf_exceptions.NotFound: "not_found",
    drf_exceptions.MethodNotAllowed: "method_not_allowed",
    drf_exceptions.NotAcceptable: "not_acceptable",
    drf_exceptions.UnsupportedMediaType: "unsupported_media_type",
    drf_exceptions.Throttled: "rate_limited",
}


def as_problem(exc: Exception) -> ApiProblem | None:
    """The problem an exception stands for, or None for an unexpected one (a 500: DRF lets it propagate)."""
    if isinstance(exc, ApiProblem):
        return exc
    if isinstance(exc, ApplicationError):
        return from_application_error(exc)
    if isinstance(exc, drf_exceptions.ValidationError):
        return from_validation_error(exc)
    if isinstance(exc, Http404):
        return ApiProblem(404, "Not found.", code="not_found")
    if isinstance(exc, DjangoPermissionDenied):
        return ApiProblem(403, "Not allowed.", code="insufficient_scope")
    if isinstance(exc, drf_exceptions.APIException):
        code = next((name for kind, name in _DRF_CODES.items() if isinstance(exc, kind)), "error")
        headers = {}
        if isinstance(exc, drf_exceptions.Throttled) and exc.wait is not None:
            headers["Retry-After"] = str(int(exc.wait))
        return ApiProblem(exc.status_code, str(exc.detail), code=code, headers=headers)
    return None


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's ``EXCEPTION_HANDLER``: every refusal as problem JSON; anything else is a 500 (logged by Django)."""
    problem = as_problem(exc)
    if problem is None:
        return None
    response = Response(problem.as_dict(), status=problem.status, headers=problem.headers, content_type=CONTENT_TYPE)
    return response
