"""``{% load admin_rendering %}``: a change page's fieldsets and inlines, view-only ones rendered in Python
(core/admin_rendering.py), the others through Django's templates as before.

    {% for fieldset in adminform %}{% admin_fieldset fieldset forloop.counter0 %}{% endfor %}
    {% for inline_admin_formset in inline_admin_formsets %}{% admin_inline inline_admin_formset %}{% endfor %}
"""

from __future__ import annotations

from typing import Any

from django import template
from django.contrib.admin.helpers import Fieldset, InlineAdminFormSet
from django.template.context import Context
from django.utils.safestring import SafeString, mark_safe

from core.admin_rendering import app_list_html, readonly_fieldset_html, readonly_tabular_html

register = template.Library()
FIELDSET_TEMPLATE = "admin/includes/fieldset.html"


def _template(context: Context, name: str) -> SafeString:
    # As {% include %} does: the engine's (cached) template, rendered with the page's context.
    assert context.template is not None
    return mark_safe(context.template.engine.get_template(name).render(context))  # noqa: S308 - a template's output


@register.simple_tag(takes_context=True)
def admin_fieldset(context: Context, fieldset: Fieldset, id_suffix: Any) -> SafeString:
    """``{% include "admin/includes/fieldset.html" with heading_level=2 prefix="fieldset" id_prefix=0
    id_suffix=… %}`` (change_form.html's), in Python when every field is read-only."""
    html = readonly_fieldset_html(fieldset, heading_level=2, prefix="fieldset", id_prefix=0, id_suffix=id_suffix)
    if html is not None:
        return html
    with context.push(fieldset=fieldset, heading_level=2, prefix="fieldset", id_prefix=0, id_suffix=id_suffix):
        return _template(context, FIELDSET_TEMPLATE)


@register.simple_tag(takes_context=True)
def admin_inline(context: Context, inline_admin_formset: InlineAdminFormSet) -> SafeString:
    """``{% include inline_admin_formset.opts.template %}`` (change_form.html's), in Python for a view-only
    tabular inline. Used inside the ``{% for %}`` over the inlines (the template reads ``forloop.last``)."""
    forloop = context.get("forloop") or {}
    html = readonly_tabular_html(inline_admin_formset, last=bool(forloop.get("last")))
    if html is not None:
        return html
    with context.push(inline_admin_formset=inline_admin_formset):
        return _template(context, inline_admin_formset.opts.template)


@register.simple_tag(takes_context=True)
def admin_app_list(context: Context) -> SafeString:
    """``admin/app_list.html`` in Python: reads ``app_list``, ``show_changelinks`` and ``request`` as the template
    does (templates/admin/app_list.html)."""
    request = context.get("request")
    return app_list_html(
        context.get("app_list") or [],
        path=request.path if request is not None else "",
        show_changelinks=bool(context.get("show_changelinks")),
    )
