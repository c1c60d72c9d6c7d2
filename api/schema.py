"""drf-spectacular: how the schema describes the API-key authentication (imported by ApiConfig.ready)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "api.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (ck_…) from the admin or `manage.py create_api_key`; read keys may only GET.",
        }


PROBLEM_SCHEMA = {
    "type": "object",
    "description": "RFC 9457 problem details (docs/API.md, Errors).",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string", "example": "about:blank"},
        "title": {"type": "string", "example": "Bad Request"},
        "status": {"type": "integer", "example": 400},
        "detail": {"type": "string", "example": "items.0.quantity: Ensure this value is greater than or equal to 1."},
        "code": {"type": "string", "example": "invalid_input"},
        "field": {"type": "string", "example": "items.0.quantity"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "detail": {"type": "string"}, "code": {"type": "string"}},
            },
        },
    },
}
ERRORS = {
    "400": "Invalid input: the field is named.",
    "401": "No valid API key.",
    "403": "The key's scope does not allow this (a read key on a write).",
    "404": "Not found.",
    "409": "The object's state does not allow it, or an Idempotency-Key was reused with another body.",
    "422": "Well-formed, but the service refused it (another currency, more than is due).",
    "429": "Rate limit reached: retry after the Retry-After header's seconds.",
}


def add_problem_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: every operation documents its problem JSON errors."""
    result.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    reference = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            writes = method in ("post", "patch", "put", "delete")
            for status, description in ERRORS.items():
                if status in ("409", "422") and not writes:
                    continue
                if status == "400" and not writes and "{id}" in path and not path.endswith("upcoming_invoice"):
                    continue
                operation.setdefault("responses", {}).setdefault(
                    status, {"description": description, "content": reference}
                )
    return result
