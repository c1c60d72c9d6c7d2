"""Every admin changelist and add form renders for a superuser."""

import pytest
from django.contrib import admin
from django.urls import reverse

pytestmark = pytest.mark.django_db


def _registered_models():
    return sorted(admin.site._registry, key=lambda m: m._meta.label)


@pytest.mark.parametrize("model", _registered_models(), ids=lambda m: m._meta.label)
def test_changelist_and_add_form_render(admin_client, model):
    opts = model._meta
    response = admin_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
    assert response.status_code == 200
    # yes/no as words, never Django's icons (core.admin_lists.readable_booleans; test_admin_booleans.py)
    assert b"icon-yes.svg" not in response.content and b"icon-no.svg" not in response.content
    model_admin = admin.site._registry[model]
    if model_admin.has_add_permission(response.wsgi_request):
        response = admin_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_add"))
        assert response.status_code == 200
