"""``{% load formatting %}``: dates and money in templates as documents print them (core/formatting.py), in the
active language — the customer's in the portal. ``{{ invoice.issue_date|doc_date }}`` → ``Mar 2, 2026`` /
``02.03.2026`` / ``2 mars 2026`` / ``2 mar 2026``: one date style per language, the same on the PDF, in the
e-mail and on the page (Django's ``|date:"SHORT_DATE_FORMAT"`` wrote "03/02/2026" in English)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import template
from django.utils import timezone
from django.utils.translation import get_language

from core import formatting as fmt

register = template.Library()


@register.filter
def doc_date(value: dt.date | dt.datetime | None) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, dt.datetime):
        value = (timezone.localtime(value) if timezone.is_aware(value) else value).date()
    return fmt.date(value, fmt.document_language(get_language()))


@register.filter
def money(amount: Any, currency: str) -> str:
    """``{{ amount|money:currency }}``; empty for no amount."""
    if amount is None or amount == "":
        return ""
    return fmt.money(amount, str(currency), fmt.document_language(get_language()))
