"""Cheaper changelist cells, for the admin's busiest lists (docs/PERFORMANCE.md, "Load").

Django renders each row's action checkbox through the form renderer (a template per row): on a 100-row invoice
list that was about a quarter of the page's time. ``QuickActionCheckbox`` writes the same ``<input>`` directly.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.options import InlineModelAdmin
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _

from core import formatting as fmt
from core.admin_pages import ADMIN_LANGUAGE, money_text


class QuickActionCheckbox:
    """The changelist's action checkbox, same markup as Django's, without a template render per row."""

    @admin.display(description=mark_safe('<input type="checkbox" id="action-toggle">'))
    def action_checkbox(self, obj: Any) -> SafeString:
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            ACTION_CHECKBOX_NAME,
            str(obj.pk),
            format_html(_("Select this object for an action - {}"), str(obj)),
        )


# --- status badges and yes/no words ------------------------------------------------------------------------
# A status is shown as a coloured pill with its word (static/admin/billing/admin.css, ``.badge-<tone>``), a
# yes/no column as a word — never the admin's ✔/✖ icons, which staff misread at a glance. The tone says what
# the state means for the person reading the list, the same everywhere: done and fine (success), in progress
# or waiting (info), needs a look (warning), went wrong (danger), a draft or paused (neutral), over (muted).

BADGE_TONES = ("success", "info", "warning", "danger", "neutral", "muted")
STATUS_TONES: dict[str, str] = {
    # invoices
    "draft": "neutral",
    "open": "info",
    "paid": "success",
    "void": "muted",
    "uncollectible": "danger",
    "overdue": "warning",
    # subscriptions
    "trialing": "info",
    "active": "success",
    "past_due": "warning",
    "paused": "neutral",
    "canceled": "muted",
    "ended": "muted",
    # payments, attempts, refunds, e-mails, runs, jobs
    "pending": "info",
    "processing": "info",
    "queued": "info",
    "sending": "info",
    "running": "info",
    "succeeded": "success",
    "sent": "success",
    "delivered": "success",
    "matched": "success",
    "assigned": "success",
    "refunded": "muted",
    "partially_refunded": "neutral",
    "ignored": "muted",
    "partial": "warning",
    "unmatched": "warning",
    "ambiguous": "warning",
    "retried": "warning",
    "interrupted": "warning",
    "failed": "danger",
    "bounced": "danger",
    "complained": "danger",
}


def badge(label: str, tone: str = "neutral", *, title: str = "") -> SafeString:
    """A pill with a word: ``<span class="badge badge-success">Paid</span>``."""
    if tone not in BADGE_TONES:
        raise ValueError(f"unknown badge tone {tone!r}: one of {', '.join(BADGE_TONES)}")
    if title:
        return format_html('<span class="badge badge-{}" title="{}">{}</span>', tone, title, label)
    return format_html('<span class="badge badge-{}">{}</span>', tone, label)


def status_badge(value: str, label: str, *, tone: str | None = None, title: str = "") -> SafeString:
    """A status (the stored ``value``, shown as its ``label``) in the tone ``STATUS_TONES`` gives it."""
    return badge(label, tone or STATUS_TONES.get(value, "neutral"), title=title)


def yes_no(value: bool | None, *, yes: str = "Yes", no: str = "No", quiet_no: bool = True) -> SafeString:
    """A yes/no column as a word. ``quiet_no``: "no" in a muted pill, so the rows that say yes stand out."""
    if value is None:
        return format_html("{}", "—")
    if value:
        return badge(yes, "success")
    return badge(no, "muted" if quiet_no else "danger")


def readable_booleans() -> None:
    """Every boolean the admin shows as ✔/✖ icons — a ``BooleanField`` in a changelist or a read-only field, a
    ``@admin.display(boolean=True)`` column — in every admin, third-party ones included (django-celery-beat,
    pghistory, django-otp, …), reads as ``yes_no`` words instead: Django renders all of them through
    ``admin_list._boolean_icon`` (imported at call time by ``admin.utils.display_for_field`` /
    ``display_for_value`` and ``admin.helpers.AdminReadonlyField``), which this replaces once, at start-up
    (``CoreConfig.ready``). One mechanism instead of an override per admin; ``tests/billing_project/
    test_admin_booleans.py`` walks every registered changelist and fails if an icon comes back."""
    from django.contrib.admin.templatetags import admin_list

    admin_list._boolean_icon = _boolean_words  # type: ignore[attr-defined]


def _boolean_words(field_val: bool | None) -> SafeString:
    return yes_no(field_val)


def boolean_column(field: str, description: str, *, yes: str = "Yes", no: str = "No", quiet_no: bool = True) -> Any:
    """A changelist column for a boolean field, as words (``list_display = (…, boolean_column("active",
    "active"))``); sortable by the field."""

    @admin.display(description=description, ordering=field)
    def column(obj: Any) -> SafeString:
        return yes_no(getattr(obj, field), yes=yes, no=no, quiet_no=quiet_no)

    column.__name__ = f"{field}_words"
    return column


# --- amounts as money ------------------------------------------------------------------------------------
# Django prints a read-only DecimalField as stored ("874.060", "650.000000", "1.0000"). A model admin that mixes
# in ``FormattedNumbersMixin`` and names its amount fields shows them per currency instead ("€874.06", "¥3,040",
# "BHD1.235"), quantities without trailing zeros and percentages as "19 %" — in the list, in read-only fields and
# in view-only inlines. Editable fields stay plain inputs; CSV exports keep machine-readable decimals.


def money_display(value: Any, currency: str) -> str:
    """An amount as staff read it: ``€874.06``; a django-money ``Money`` brings its own currency."""
    if value is None or value == "":
        return "—"
    if hasattr(value, "amount") and hasattr(value, "currency"):
        value, currency = value.amount, value.currency.code
    return money_text(value, str(currency or "")) if currency else fmt.plain_decimal(value)


def quantity_display(value: Any) -> str:
    return "—" if value is None else fmt.quantity(value, ADMIN_LANGUAGE)


def percentage_display(value: Any) -> str:
    return "—" if value is None else fmt.percentage(value, ADMIN_LANGUAGE)


def _column(model_admin: Any, name: str) -> Any:
    """The display callable for field ``name`` (the same object each time: Django compares fieldset entries with
    the read-only fields by identity), or ``name`` itself when it is not an amount."""
    cache = model_admin.__dict__.setdefault("_formatted_columns", {})
    if name in cache:
        return cache[name]
    if not isinstance(name, str):
        return name
    currency_field = model_admin.money_fields.get(name)
    if currency_field is not None:

        def show(obj: Any) -> str:
            currency: Any = obj
            for part in currency_field.split(".") if currency_field else ():
                currency = getattr(currency, part, "")
            return money_display(getattr(obj, name), currency if currency_field else "")

    elif name in model_admin.quantity_fields:

        def show(obj: Any) -> str:
            return quantity_display(getattr(obj, name))

    elif name in model_admin.percentage_fields:

        def show(obj: Any) -> str:
            return percentage_display(getattr(obj, name))

    else:
        return name
    field = model_admin.model._meta.get_field(name)
    show.short_description = field.verbose_name  # type: ignore[attr-defined]
    show.admin_order_field = name  # type: ignore[attr-defined]
    show.__name__ = name  # the cell's CSS class (field-<name>), as for the plain field
    cache[name] = show
    return show


class FormattedNumbersMixin:
    """Shows read-only amount, quantity and percentage fields formatted (module comment above).

    ``money_fields`` maps each amount field to the field holding its currency code ("" for a MoneyField, which
    carries its own); ``quantity_fields`` and ``percentage_fields`` name the others."""

    money_fields: dict[str, str] = {}
    quantity_fields: tuple[str, ...] = ()
    percentage_fields: tuple[str, ...] = ()

    def _formatted_names(self) -> set[str]:
        return {*self.money_fields, *self.quantity_fields, *self.percentage_fields}

    def get_queryset(self, request: Any) -> Any:
        # A currency on a related row ("invoice.currency" of a line) comes with the rows, not one query per row.
        related = {path.rsplit(".", 1)[0].replace(".", "__") for path in self.money_fields.values() if "." in path}
        queryset = super().get_queryset(request)  # type: ignore[misc]
        return queryset.select_related(*sorted(related)) if related else queryset

    def get_list_display(self, request: Any) -> Any:
        return [_column(self, name) for name in super().get_list_display(request)]  # type: ignore[misc]

    def _view_only(self, request: Any, obj: Any) -> bool:
        if isinstance(self, InlineModelAdmin) and obj is None:
            return False  # an inline on an add page is filled in, not viewed
        return not self.has_change_permission(request, obj)  # type: ignore[attr-defined]

    def get_readonly_fields(self, request: Any, obj: Any = None) -> Any:
        fields = tuple(super().get_readonly_fields(request, obj))  # type: ignore[misc]
        shown = self._formatted_names()
        swapped = shown if self._view_only(request, obj) else {name for name in fields if name in shown}
        return fields + tuple(_column(self, name) for name in sorted(swapped))

    def get_fieldsets(self, request: Any, obj: Any = None) -> Any:
        return self.formatted_fieldsets(request, obj, super().get_fieldsets(request, obj))  # type: ignore[misc]

    def formatted_fieldsets(self, request: Any, obj: Any, fieldsets: Any) -> list[Any]:
        """``fieldsets`` with the read-only amount fields swapped for their formatted columns; a model admin that
        builds its fieldsets itself (without ``super()``) returns them through this."""
        readonly = set(super().get_readonly_fields(request, obj))  # type: ignore[misc]
        view_only = self._view_only(request, obj)
        shown = self._formatted_names()

        def swap(name: Any) -> Any:
            if isinstance(name, str) and name in shown and (view_only or name in readonly):
                return _column(self, name)
            return name

        # Without declared fields, Django lists the form's fields and then the read-only ones, which now hold
        # the display callables too: each is shown once, where its field was.
        seen: set[Any] = set()

        def once(names: Any) -> list[Any]:
            kept = [swap(name) for name in names if swap(name) not in seen]
            seen.update(kept)
            return kept

        result = []
        for title, options in fieldsets:
            fields: list[Any] = []
            for item in options.get("fields", ()):
                if isinstance(item, list | tuple):
                    if kept := once(item):
                        fields.append(tuple(kept))
                else:
                    fields.extend(once([item]))
            result.append((title, {**options, "fields": fields}))
        return result
