"""Cheaper changelist cells, for the admin's busiest lists (docs/PERFORMANCE.md, "Load").

Django renders each row's action checkbox through the form renderer (a template per row): on a 100-row invoice
list that was about a quarter of the page's time. ``QuickActionCheckbox`` writes the same ``<input>`` directly.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _


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
