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
    this covers what reaches a query without a form.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if NUL in request.path or any(
            NUL in key or any(NUL in value for value in values) for key, values in request.GET.lists()
        ):
            return HttpResponseBadRequest("NUL characters are not allowed in URLs.", content_type="text/plain")
        return self.get_response(request)
