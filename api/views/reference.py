"""/api/v1/docs/: the API reference, Redoc (vendored under static/api/redoc/) reading /api/v1/schema/."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.generic import TemplateView


class ApiReferenceView(TemplateView):
    template_name = "api/docs.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {**super().get_context_data(**kwargs), "product_name": settings.PRODUCT_NAME}

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = super().get(request, *args, **kwargs)
        # The site's policy, with what Redoc needs beyond it: its fonts are inlined as data: URLs and its search
        # runs in a blob: worker. Its "Redocly" logo (from their CDN) stays refused by img-src, so the page loads
        # nothing from elsewhere.
        policy = settings.CONTENT_SECURITY_POLICY.replace("font-src 'self'", "font-src 'self' data:")
        policy += "; worker-src 'self' blob:"
        response["Content-Security-Policy"] = policy
        return response
