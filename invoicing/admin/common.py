"""Shared pieces of invoicing's staff screens: amounts as money, the acting user, read-only inlines."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from core.admin_readonly import ReadOnlyMixin
from core.money import round_amount


def _amount(value: Decimal | None, currency: str) -> str:
    if value is None:
        return "—"
    return f"{round_amount(value, currency):,} {currency}"


def _actor(request: HttpRequest) -> Any:
    return request.user if request.user.is_authenticated else None


class ReadOnlyInline(ReadOnlyMixin, admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False
