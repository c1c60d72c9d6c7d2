"""Request plumbing that knows no app."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest

NUL = "\x00"


class RefuseNulCharacters:
    """A NUL character in the path or the query string is a 400 before any view runs.

    PostgreSQL text cannot hold NUL, so a value carrying one failed inside the query with a 500: a portal URL
    (``/portal/invoices/INV%00/``), every admin filter and search (``?status=%00``). No legitimate URL of ours
    contains one. Form fields refuse NUL themselves (Django's ``ProhibitNullCharactersValidator``, a form error);
    this covers what reaches a query without a form (list filters, ordering, page numbers, portal URL segments).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if NUL in request.path or any(
            NUL in key or any(NUL in value for value in values)
            for key, values in request.GET.lists()
            if key not in self.searches_of(request)
        ):
            return HttpResponseBadRequest("NUL characters are not allowed in URLs.", content_type="text/plain")
        return self.get_response(request)

    @staticmethod
    def searches_of(request: HttpRequest) -> tuple[str, ...]:
        """The admin's search box is left to the admin, which validates it with a form field that refuses NUL and
        then ignores the search (the list is shown unsearched, tests/reliability/test_bad_values.py) — friendlier
        for staff who pasted a stray character than an error page; it never reaches PostgreSQL."""
        return ("q",) if request.path.startswith("/admin/") else ()


class ContentSecurityPolicy:
    """Sends ``settings.CONTENT_SECURITY_POLICY`` on every response that does not set its own.

    The policy (settings.py) allows scripts, styles, images and fonts from our own origin (the admin's and the
    portal's static files) and Stripe.js for card collection; inline ``<script>`` is refused, so injected markup
    cannot run. Inline ``style`` attributes are allowed (the admin and some templates use them; CSS cannot run
    code). Framing is refused (``frame-ancestors 'none'``, with X-Frame-Options for old browsers).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        from django.conf import settings

        self.policy = str(getattr(settings, "CONTENT_SECURITY_POLICY", "") or "")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        # Documents only: a PDF under object-src 'none' would not open in Chromium's built-in viewer.
        content_type = response.get("Content-Type", "").split(";")[0].strip().lower()
        if self.policy and content_type in ("text/html", "image/svg+xml") and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = self.policy
        return response
