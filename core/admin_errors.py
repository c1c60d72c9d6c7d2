"""The admin's way of saying no: an ``ApplicationError`` becomes a message on the page, never a traceback.

``ApplicationErrorsAdminSite`` (the base of the project's admin site) wraps every admin view — changelists with
their actions, change forms, and the process screens that ``get_urls`` adds through ``admin_site.admin_view`` —
in ``shows_application_errors``: a POST that an ``ApplicationError`` stops (an action, a form) is redirected
back to the page it came from with the message in red (``messages.error``, naming the field if the error has
one); a GET renders an error page with the message and the error's HTTP status. Screens that hold a form can do
better and put the message on the form itself, next to its field: ``form_application_error(form, exc)``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponseBase, HttpResponseRedirect
from django.template.response import TemplateResponse

from core.errors import ApplicationError, log_application_error

ERROR_TEMPLATE = "admin/billing/application_error.html"


def message_application_error(request: HttpRequest, exc: ApplicationError) -> None:
    """Show the error above the page (``messages.error``), prefixed by its field if it has one."""
    messages.error(request, exc.for_display())


def form_application_error(form: forms.BaseForm, exc: ApplicationError) -> None:
    """Put the error on ``form``: next to its field if the form has that field, else above the form."""
    if exc.field and exc.field in form.fields:
        form.add_error(exc.field, exc.message)
    else:
        form.add_error(None, exc.for_display())


_View = TypeVar("_View", bound=Callable[..., HttpResponseBase])


def shows_application_errors(view: _View, *, site: admin.AdminSite | None = None) -> _View:
    """Wrap an admin view so that an ``ApplicationError`` it raises is shown, not turned into a 500."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        try:
            return view(request, *args, **kwargs)
        except ApplicationError as exc:
            log_application_error(exc, where=request.path)
            if request.method == "POST":
                # An action or a submitted form: back to the page, which shows the message. (A changelist action
                # is not atomic: what it did before the error stays done, as with any action.)
                message_application_error(request, exc)
                return HttpResponseRedirect(request.get_full_path())
            # A page that cannot be shown at all (redirecting would ask for it again).
            context = {
                **(site.each_context(request) if site is not None else {}),
                "title": "Not possible",
                "message": exc.for_display(),
            }
            return TemplateResponse(request, ERROR_TEMPLATE, context, status=exc.http_status)

    return cast(_View, wrapper)


class ApplicationErrorsAdminSite(admin.AdminSite):
    """An admin site whose every view shows an ``ApplicationError`` as a message (``shows_application_errors``).

    ``ModelAdmin.get_urls`` wraps each model view in ``admin_site.admin_view``, and custom process screens are
    registered the same way, so this one override covers actions, change forms and process screens alike."""

    def admin_view(self, view: _View, cacheable: bool = False) -> _View:
        return super().admin_view(shows_application_errors(view, site=self), cacheable)
