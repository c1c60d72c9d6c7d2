"""Buttons on a change page and the one-object action screens behind them (invoice, customer).

A change page's buttons are ``ObjectTool`` rows an admin builds per request (``get_object_tools``) — each app that
extends the admin from above adds its own, each shown only where the user's role and the object's state allow it.
The screen behind a button (``object_action_page``) shows what will happen before anything changes; the view then
calls one service. Templates: ``admin/billing/object_tools.html`` (the buttons) and
``admin/billing/object_action.html`` (the screen)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse

from core import formatting as fmt

ADMIN_LANGUAGE = "en"


def money_text(amount: Any, currency: str) -> str:
    """An amount as staff read it on the admin pages and in its messages: ``€1,190.00``, ``¥1,200``."""
    if amount is None:
        return "—"
    return fmt.money(amount, currency, ADMIN_LANGUAGE)


def date_text(value: Any) -> str:
    return fmt.date(value, ADMIN_LANGUAGE) if value else "—"


@dataclass(frozen=True)
class ObjectTool:
    """One button on a change page. ``name`` is stable (``data-action`` in the HTML, for tests and people);
    ``kind`` is ``action`` (changes something, behind its own screen) or ``view`` (reads)."""

    name: str
    label: str
    url: str
    kind: str = "action"
    title: str = ""
    order: int = 50


def object_action_page(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    *,
    original: Any,
    title: str,
    submit_label: str,
    intro: str = "",
    subject_rows: list[tuple[str, Any]] | None = None,
    preview: dict[str, Any] | None = None,
    form: forms.Form | None = None,
    hidden: dict[str, Any] | None = None,
    submit_name: str = "_confirm",
    secondary_submits: list[tuple[str, str]] | None = None,
    refusal: str = "",
    status: int = 200,
) -> TemplateResponse:
    """The screen behind a button. ``refusal``: why the action is not possible now (the object's state); the
    page then explains it and offers no form."""
    opts = model_admin.model._meta
    media = model_admin.media + (form.media if form is not None else forms.Media())
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": opts,
        "original": original,
        "title": title,
        "intro": intro,
        "refusal": refusal,
        "subject_rows": subject_rows or [],
        "preview": preview,
        "form": form,
        "hidden": hidden or {},
        "media": media,
        "submit_label": submit_label,
        "submit_name": submit_name,
        "secondary_submits": secondary_submits or [],
        "cancel_url": reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[original.pk]),
    }
    return TemplateResponse(request, "admin/billing/object_action.html", context, status=status)
