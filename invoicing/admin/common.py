"""Shared pieces of invoicing's staff screens: amounts as money, the acting user, read-only inlines."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from core.admin_lists import money_display
from core.admin_readonly import ReadOnlyMixin


def _amount(value: Decimal | None, currency: str) -> str:
    """An amount as staff read it: ``€874.06``, ``¥3,040``, ``BHD1.235`` (core.admin_lists.money_display)."""
    return money_display(value, currency)


def _actor(request: HttpRequest) -> Any:
    return request.user if request.user.is_authenticated else None


class ReadOnlyInline(ReadOnlyMixin, admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False
