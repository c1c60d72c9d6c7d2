"""API keys in the admin: a billing admin creates one (shown once), sees prefix, scope and last use, revokes it;
clerks and auditors cannot reach the screens."""

from __future__ import annotations

import pytest
from django.urls import reverse

from api.keys import api_key_create, key_hash
from api.models import ApiKey
from billing_project.staff_groups import AUDITOR, BILLING_ADMIN, BILLING_CLERK
from tests.api.conftest import ApiClient
from tests.factories import StaffUserFactory

pytestmark = pytest.mark.django_db


def _fresh(user):
    from django.contrib.auth.models import User

    return User.objects.get(pk=user.pk)  # the factory's password is set after save: load what the session sees


def _client(client, group):
    client.force_login(StaffUserFactory(group=group))
    return client


def test_billing_admin_creates_a_key_and_sees_it_once(client):
    _client(client, BILLING_ADMIN)
    response = client.post(reverse("admin:api_apikey_add"), {"name": "CRM sync", "scope": "write"})
    assert response.status_code == 200
    html = response.content.decode()
    row = ApiKey.objects.get()
    key = html.split('data-testid="api-key"', 1)[1].split(">", 1)[1].split("<", 1)[0]
    assert key.startswith(f"ck_{row.prefix}_") and row.key_hash == key_hash(key)
    assert row.created_by is not None and row.created_by.groups.filter(name=BILLING_ADMIN).exists()
    assert ApiClient(key).get("/api/v1/customers").status_code == 200
    # never again: the change page and the list show the prefix only
    for url in (reverse("admin:api_apikey_change", args=[row.pk]), reverse("admin:api_apikey_changelist")):
        page = client.get(url).content.decode()
        assert f"ck_{row.prefix}_" in page and key not in page


def test_revoke_action(client):
    new = api_key_create(name="old", scope="read")
    _client(client, BILLING_ADMIN)
    response = client.post(
        reverse("admin:api_apikey_changelist"),
        {"action": "revoke_selected", "_selected_action": [new.api_key.pk], "index": 0},
    )
    assert response.status_code == 302
    row = ApiKey.objects.get()
    assert row.revoked_at is not None and row.revoked_by is not None
    assert ApiClient(new.key).get("/api/v1/customers").status_code == 401


def test_nobody_deletes_a_key(client):
    new = api_key_create(name="old", scope="read")
    client.force_login(_fresh(StaffUserFactory(is_superuser=True)))
    response = client.get(reverse("admin:api_apikey_delete", args=[new.api_key.pk]))
    assert response.status_code == 403, response.get("Location")


@pytest.mark.parametrize("group", [BILLING_CLERK, AUDITOR])
def test_clerks_and_auditors_cannot_see_or_create_keys(client, group):
    new = api_key_create(name="k", scope="read")
    _client(client, group)
    assert client.get(reverse("admin:api_apikey_changelist")).status_code == 403
    assert client.get(reverse("admin:api_apikey_change", args=[new.api_key.pk])).status_code == 403
    assert client.post(reverse("admin:api_apikey_add"), {"name": "x", "scope": "write"}).status_code == 403
    assert ApiKey.objects.count() == 1


def test_changelist_queries_are_bounded(client, django_assert_max_num_queries):
    for index in range(20):
        api_key_create(name=f"k{index}", scope="read", actor=StaffUserFactory())
    client.force_login(_fresh(StaffUserFactory(is_superuser=True)))
    with django_assert_max_num_queries(12):
        assert client.get(reverse("admin:api_apikey_changelist")).status_code == 200
