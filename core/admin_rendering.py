"""View-only fieldsets and tabular inlines of a change page, rendered in Python (docs/PERFORMANCE.md, "Load").

Django renders each read-only field of a change page through ``admin/includes/fieldset.html`` and each inline row
through ``admin/edit_inline/tabular.html``: a dozen template nodes per field, about a third of the invoice page's
CPU. A view-only fieldset or inline (every field read-only, nothing to add, change or delete, no errors) has
nothing left for the template to decide, so these functions write the same markup directly — the field values
still come from Django (``AdminReadonlyField.contents``), and the labels, CSS classes and ids are the templates'.

Anything else (an editable field, an extra or empty form, a bound formset, another inline template) makes them
return ``None``, and the template tags in ``core/templatetags/admin_rendering.py`` render Django's template
instead. ``tests/invoicing/test_admin_rendering.py`` renders pages both ways and compares the HTML.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from django.contrib.admin.helpers import AdminReadonlyField, Fieldline
from django.forms.widgets import HiddenInput
from django.templatetags.static import static
from django.urls import NoReverseMatch, reverse
from django.utils.html import conditional_escape, escape, format_html, strip_tags
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import capfirst
from django.utils.translation import gettext

TABULAR_TEMPLATE = "admin/edit_inline/tabular.html"


def _text(value: Any) -> str:
    """``{{ value }}`` in a template: the text, escaped unless safe; a callable (which a template would call
    without arguments and, when it needs some, print as nothing) and ``None`` print as nothing here."""
    if value is None or callable(value):
        return ""
    return str(conditional_escape(value))


def _hidden_input(bound_field: Any) -> str:
    """A hidden form field as Django's widget template writes it (``<input type="hidden" name value id>``)."""
    widget = bound_field.field.widget
    if type(widget) is not HiddenInput or widget.attrs:
        return str(bound_field)  # anything else through its own template
    value = widget.format_value(bound_field.value())
    value_attr = "" if value is None else format_html(' value="{}"', value)
    id_attr = format_html(' id="{}"', bound_field.auto_id) if bound_field.auto_id else ""
    return format_html('<input type="hidden" name="{}"{}{}>', bound_field.html_name, value_attr, id_attr)


def _readonly_fields(line: Fieldline) -> list[AdminReadonlyField] | None:
    fields = list(line)
    if not all(isinstance(field, AdminReadonlyField) for field in fields):
        return None
    return fields  # type: ignore[return-value]


def _help(field: AdminReadonlyField) -> str:
    help_text = field.field["help_text"]
    if not help_text:
        return ""
    hidden = " hidden" if field.field.get("is_hidden") else ""
    return f'<div class="help{hidden}"><div>{help_text}</div></div>'


def readonly_fieldset_html(
    fieldset: Any, *, heading_level: int = 2, prefix: str = "fieldset", id_prefix: Any = 0, id_suffix: Any = 0
) -> SafeString | None:
    """``admin/includes/fieldset.html`` for a ``Fieldset`` whose every field is read-only, or ``None``."""
    rows = []
    for line in fieldset:
        fields = _readonly_fields(line)
        if fields is None or line.errors():
            return None
        single = len(line.fields) == 1
        classes = "form-row"
        if not line.has_visible_field:
            classes += " hidden"
        classes += "".join(f" field-{_text(field.field['name'])}" for field in fields if field.field["name"])
        cells = []
        for field in fields:
            box = "flex-container"
            if not single:
                box += " fieldBox"
                if field.field["name"]:
                    box += f" field-{_text(field.field['name'])}"
                if field.field.get("is_hidden"):
                    box += " hidden"
            cells.append(
                f'<div><div class="{box}">{field.label_tag()}<div class="readonly">{_text(field.contents())}</div>'
                f"</div>{_help(field)}</div>"
            )
        inner = "".join(cells)
        rows.append(
            f'<div class="{classes}">{inner}</div>'
            if single
            else f'<div class="{classes}"><div class="flex-container form-multiline">{inner}</div></div>'
        )
    heading_id = f"{_text(prefix)}-{_text(id_prefix)}-{_text(id_suffix)}-heading"
    collapsible = fieldset.name and fieldset.is_collapsible
    parts = [f'<fieldset class="module aligned {_text(fieldset.classes)}"']
    if fieldset.name:
        level = _text(heading_level or 2)
        parts.append(f' aria-labelledby="{heading_id}">')
        heading = f'<h{level} id="{heading_id}" class="fieldset-heading">{_text(fieldset.name)}</h{level}>'
        parts.append(f"<details><summary>{heading}</summary>" if collapsible else heading)
    else:
        parts.append(">")
    if fieldset.description:
        parts.append(f'<div class="description">{fieldset.description}</div>')
    parts += rows
    if collapsible:
        parts.append("</details>")
    parts.append("</fieldset>")
    return mark_safe("".join(parts))  # noqa: S308 - every value above is escaped or Django's own safe markup


def _view_only(formset: Any) -> bool:
    return (
        formset.opts.template == TABULAR_TEMPLATE
        and not (formset.has_add_permission or formset.has_change_permission or formset.has_delete_permission)
        and not formset.formset.is_bound
        and not formset.formset.extra_forms
    )


def readonly_tabular_html(formset: Any, *, last: bool) -> SafeString | None:
    """``admin/edit_inline/tabular.html`` for a view-only ``InlineAdminFormSet`` (``last``: the template's
    ``forloop.last``), or ``None``."""
    if not _view_only(formset):
        return None
    prefix = _text(formset.formset.prefix)
    opts = formset.opts
    headers = ['<th class="original"></th>']
    column: Any
    for column in formset.fields():
        classes = f"column-{_text(column['name'])}"
        if column["required"]:
            classes += " required"
        if column["widget"]["is_hidden"] if isinstance(column["widget"], dict) else column["widget"].is_hidden:
            classes += " hidden"
        help_img = ""
        if column["help_text"]:
            tip = escape(strip_tags(column["help_text"]))
            help_img = (
                f'<img src="{escape(static("admin/img/icon-unknown.svg"))}" class="help help-tooltip" width="10" '
                f'height="10" alt="({tip})" title="{tip}">'
            )
        headers.append(f'<th class="{classes}">{_text(capfirst(column["label"]))}{help_img}</th>')
    headers.append("<th></th>")

    rows = []
    change_link = opts.show_change_link and opts.has_registered_model
    for number, inline_form in enumerate(formset):
        original: Any = inline_form.original
        if original is None or inline_form.form.non_field_errors():
            return None
        cells = []
        for inline_fieldset in inline_form:
            for line in inline_fieldset:
                fields = _readonly_fields(line)
                if fields is None:
                    return None
                for field in fields:
                    hidden = " hidden" if field.field.get("is_hidden") else ""
                    name = f"field-{_text(field.field['name'])}" if field.field["name"] else ""
                    cells.append(f'<td class="{name}{hidden}"><p>{_text(field.contents())}</p></td>')
        link = ""
        if change_link:
            try:
                url = reverse(
                    f"admin:{opts.opts.app_label}_{opts.opts.model_name}_change",
                    args=[original.pk],
                    current_app=opts.admin_site.name,
                )
            except NoReverseMatch:
                return None
            link = format_html('<a href="{}" class="inlineviewlink">{}</a>', url, gettext("View"))
        on_site = ""
        if inline_form.show_url:
            on_site = format_html('<a href="{}">{}</a>', inline_form.absolute_url, gettext("View on site"))
        hidden_fields = ""
        if inline_form.needs_explicit_pk_field():
            hidden_fields += _hidden_input(inline_form.pk_field().field)
        if inline_form.fk_field():
            hidden_fields += _hidden_input(inline_form.fk_field().field)
        rows.append(
            f'<tr class="form-row has_original" id="{prefix}-{number}"><td class="original">'
            f"<p>{_text(original)}{link}{on_site}</p>{hidden_fields}</td>{''.join(cells)}"
            '<td class="delete"></td></tr>'
        )

    management = "".join(_hidden_input(field) for field in formset.formset.management_form)
    title = opts.verbose_name if formset.formset.max_num == 1 else opts.verbose_name_plural
    collapsible = formset.is_collapsible
    heading = f'<h2 id="{prefix}-heading" class="inline-heading">{_text(capfirst(title))}</h2>'
    return mark_safe(  # noqa: S308 - every value above is escaped or Django's own safe markup
        f'<div class="js-inline-admin-formset inline-group" id="{prefix}-group" data-inline-type="tabular" '
        f'data-inline-formset="{escape(formset.inline_formset_data())}">'
        f'<div class="tabular inline-related {"last-related" if last else ""}">{management}'
        f'<fieldset class="module {_text(formset.classes)}" aria-labelledby="{prefix}-heading">'
        f"{f'<details><summary>{heading}</summary>' if collapsible else heading}"
        f"{_text(formset.formset.non_form_errors())}"
        f"<table><thead><tr>{''.join(headers)}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        f"{'</details>' if collapsible else ''}</fieldset></div></div>"
    )


def _contains(needle: Any, haystack: str) -> bool:
    """``{% if needle in haystack %}``: false when the test itself fails (no URL: ``None``)."""
    try:
        return bool(needle in haystack)
    except TypeError:
        return False


def app_list_html(app_list: list[dict[str, Any]], *, path: str, show_changelinks: bool) -> SafeString:
    """``admin/app_list.html`` (the dashboard's list of models, and the navigation sidebar's on every admin page):
    a table per app, a row per model with its links; ``path`` (the request's) marks the current app and model."""
    if not app_list:
        return format_html("<p>{}</p>", gettext("You don’t have permission to view or edit anything."))
    path = quote(path, safe="/")  # the template's request.path|urlencode
    headers = (
        '<thead class="visually-hidden"><tr>'
        f'<th scope="col">{escape(gettext("Model name"))}</th><th scope="col">{escape(gettext("Add link"))}</th>'
        f'<th scope="col">{escape(gettext("Change or view list link"))}</th></tr></thead>'
    )
    add, view, change = escape(gettext("Add")), escape(gettext("View")), escape(gettext("Change"))
    apps = []
    for app in app_list:
        label = _text(app["app_label"])
        rows = []
        for model in app["models"]:
            model_name = _text(str(model["object_name"]).lower())
            row_id = f"{label}-{model_name}"
            admin_url = model.get("admin_url")
            current = _contains(admin_url, path)
            name = _text(model["name"])
            if admin_url:
                aria = ' aria-current="page"' if current else ""
                name = f'<a href="{_text(admin_url)}"{aria}>{name}</a>'
            cells = [f'<th scope="row" id="{row_id}">{name}</th>']
            if model.get("add_url"):
                link = f'<a href="{_text(model["add_url"])}" class="addlink" aria-describedby="{row_id}">{add}</a>'
                cells.append(f"<td>{link}</td>")
            else:
                cells.append("<td></td>")
            if admin_url and show_changelinks:
                kind, word = ("viewlink", view) if model.get("view_only") else ("changelink", change)
                cells.append(
                    f'<td><a href="{_text(admin_url)}" class="{kind}" aria-describedby="{row_id}">{word}</a></td>'
                )
            elif show_changelinks:
                cells.append("<td></td>")
            rows.append(f'<tr class="model-{model_name}{" current-model" if current else ""}">{"".join(cells)}</tr>')
        title = gettext("Models in the %(name)s application") % {"name": _text(app["name"])}
        apps.append(
            f'<div class="app-{label} module{" current-app" if _contains(app["app_url"], path) else ""}"><table>'
            f'<caption><a href="{_text(app["app_url"])}" class="section" title="{title}">{_text(app["name"])}</a>'
            f"</caption>{headers}{''.join(rows)}</table></div>"
        )
    return mark_safe("".join(apps))  # noqa: S308 - every value above is escaped
