"""The admin's list of models (the dashboard's, and the navigation sidebar's on every admin page) written in Python
(core/admin_rendering.py, ``app_list_html``) is the same HTML as Django's admin/app_list.html renders it — for a
superuser and for roles that may only view some models, with the current app and model marked."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.contrib import admin
from django.contrib.admin import AdminSite
from django.template import Context, Engine
from django.test.html import parse_html

from core.templatetags import admin_rendering
from tests.factories.customers import StaffUserFactory

pytestmark = pytest.mark.django_db
DJANGO_APP_LIST = Path(admin.__file__).parent / "templates" / "admin" / "app_list.html"


def _through_djangos_template(monkeypatch):
    template = Engine.get_default().from_string(DJANGO_APP_LIST.read_text())

    def render(app_list, *, path, show_changelinks):
        context = {"app_list": app_list, "show_changelinks": show_changelinks, "request": SimpleNamespace(path=path)}
        return template.render(Context(context))

    monkeypatch.setattr(admin_rendering, "app_list_html", render)


def _html(client, url):
    response = client.get(url)
    assert response.status_code == 200
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", response.content.decode())


@pytest.mark.parametrize(
    ("role", "url"),
    [
        (None, "/admin/"),  # the superuser's dashboard: every model, with add and change links
        ("Billing clerk", "/admin/invoicing/invoice/"),  # the sidebar, the invoices marked as the current model
        ("Auditor (read-only)", "/admin/"),  # view links only
        ("Auditor (read-only)", "/admin/customers/customer/"),
    ],
)
def test_the_list_of_models_is_the_same_html_as_djangos_template(client, admin_client, monkeypatch, role, url):
    if role:
        client.force_login(StaffUserFactory(group=role))
    else:
        client = admin_client
    fast = _html(client, url)
    assert 'id="nav-sidebar"' in fast or url == "/admin/"
    assert 'class="model-invoice current-model"' in fast or url != "/admin/invoicing/invoice/"
    _through_djangos_template(monkeypatch)
    assert parse_html(fast) == parse_html(_html(client, url))


@pytest.mark.parametrize("role", [None, "Billing clerk", "Auditor (read-only)"])
def test_the_sites_models_and_links_are_djangos(rf, admin_user, role):
    """BillingAdminSite._build_app_dict (its URLs remembered per process) gives what Django's own gives."""
    request = rf.get("/admin/")
    request.user = StaffUserFactory(group=role) if role else admin_user
    for label in (None, "invoicing"):
        ours = admin.site._build_app_dict(request, label)
        djangos = AdminSite._build_app_dict(admin.site, request, label)
        assert ours == djangos and ours
        assert [m["add_url"] for a in ours.values() for m in a["models"]] == [
            m["add_url"] for a in djangos.values() for m in a["models"]
        ]  # (the order of the models too)
