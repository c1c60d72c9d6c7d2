"""API keys: 401 without a valid key, 403 for a read key on a write, 429 past the rate limit, problem JSON."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import call_command

from api.keys import api_key_create, api_key_revoke, key_hash
from api.models import ApiKey
from customers.models import Customer
from tests.api.conftest import ApiClient
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db


def _problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == "about:blank"
    return body


def test_no_key_is_401_problem_with_challenge():
    response = ApiClient(None).get("/api/v1/customers")
    _problem(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("key", ["nonsense", "ck_abcdef12_wrong", "ck_short_x"])
def test_unknown_or_malformed_key_is_401(key):
    api_key_create(name="real", scope="write")
    _problem(ApiClient(key).get("/api/v1/customers"), 401, "not_authenticated")


def test_right_prefix_wrong_secret_is_401():
    new = api_key_create(name="real", scope="write")
    forged = f"ck_{new.api_key.prefix}_{'x' * 43}"
    _problem(ApiClient(forged).get("/api/v1/customers"), 401, "not_authenticated")


def test_revoked_key_is_refused():
    new = api_key_create(name="crm", scope="write")
    assert ApiClient(new.key).get("/api/v1/customers").status_code == 200
    api_key_revoke(api_key=new.api_key)
    body = _problem(ApiClient(new.key).get("/api/v1/customers"), 401, "not_authenticated")
    assert "revoked" in body["detail"]


def test_key_is_stored_hashed_with_visible_prefix():
    new = api_key_create(name="crm", scope="read")
    row = ApiKey.objects.get()
    assert new.key.startswith(f"ck_{row.prefix}_")
    assert row.key_hash == key_hash(new.key)
    assert new.key not in (row.key_hash, row.prefix, row.name)
    assert len(new.key) > 40


def test_read_key_cannot_post_and_nothing_is_written(reader):
    body = _problem(
        reader.post("/api/v1/customers", {"name": "A", "email": "a@example.com", "country": "DE"}),
        403,
        "insufficient_scope",
    )
    assert "read" in body["detail"]
    assert not Customer.objects.exists()


def test_read_key_can_get(reader):
    customer = CustomerFactory()
    response = reader.get(f"/api/v1/customers/{customer.pk}")
    assert response.status_code == 200
    assert response.json()["name"] == customer.name


def test_last_used_time_is_recorded(api):
    assert ApiKey.objects.get().last_used_at is None
    api.get("/api/v1/customers")
    assert ApiKey.objects.get().last_used_at is not None


def test_rate_limit_answers_429_with_retry_after(api, settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 3
    for _ in range(3):
        assert api.get("/api/v1/customers").status_code == 200
    response = api.get("/api/v1/customers")
    body = _problem(response, 429, "rate_limited")
    assert 1 <= int(response["Retry-After"]) <= 60
    assert "3 requests per minute" in body["detail"]


def test_rate_limit_is_per_key(make_client, settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 1
    first, second = make_client("read"), make_client("read")
    assert first.get("/api/v1/customers").status_code == 200
    assert first.get("/api/v1/customers").status_code == 429
    assert second.get("/api/v1/customers").status_code == 200


@pytest.mark.redis
def test_rate_limit_counts_in_redis(api, settings):
    """With CACHE_URL pointing at Redis (production), the counter lives there: shared by every web process."""
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:6379/14"}
    }
    from django.core.cache import cache

    cache.clear()
    settings.API_RATE_LIMIT_PER_MINUTE = 2
    assert api.get("/api/v1/customers").status_code == 200
    assert api.get("/api/v1/customers").status_code == 200
    response = api.get("/api/v1/customers")
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    cache.clear()


def test_create_api_key_command_prints_the_key_once(capsys):
    call_command("create_api_key", "--name", "Shop", "--scope", "write")
    out = capsys.readouterr().out
    key = next(word for word in out.split() if word.startswith("ck_"))
    row = ApiKey.objects.get()
    assert row.name == "Shop" and row.scope == "write"
    assert row.key_hash == key_hash(key)
    assert ApiClient(key).get("/api/v1/customers").status_code == 200


def test_create_api_key_command_refuses_unknown_scope():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="scope"):
        call_command("create_api_key", "--name", "Shop", "--scope", "admin")
    assert not ApiKey.objects.exists()


def test_plain_django_view_uses_the_same_authentication(rf):
    """api_key_required: what the lean ingestion view (outside DRF) uses."""
    from django.http import JsonResponse

    from api.auth import api_key_required

    @api_key_required("write")
    def view(request):
        return JsonResponse({"key": request.api_key.name})

    reader = api_key_create(name="reader", scope="read")
    writer = api_key_create(name="writer", scope="write")
    assert view(rf.post("/x")).status_code == 401
    refused = view(rf.post("/x", HTTP_AUTHORIZATION=f"Bearer {reader.key}"))
    assert refused.status_code == 403 and refused["Content-Type"] == "application/problem+json"
    assert view(rf.post("/x", HTTP_AUTHORIZATION=f"Bearer {writer.key}")).status_code == 200


def test_key_revoked_keeps_its_row_and_who_revoked_it():
    from tests.factories import StaffUserFactory

    staff = StaffUserFactory()
    new = api_key_create(name="crm", scope="write", actor=staff)
    api_key_revoke(api_key=new.api_key, actor=staff)
    row = ApiKey.objects.get()
    assert row.revoked_by == staff and row.created_by == staff
    assert row.revoked_at is not None and row.revoked_at <= dt.datetime.now(dt.UTC)


def test_staff_session_cookie_is_not_an_api_credential(client):
    """The API is CSRF-exempt because it never reads the session: a signed-in staff member's browser gets 401."""
    from tests.factories import StaffUserFactory

    client.force_login(StaffUserFactory(is_superuser=True))
    response = client.post(
        "/api/v1/customers", '{"name": "A", "email": "a@example.com", "country": "DE"}', content_type="application/json"
    )
    assert response.status_code == 401
    assert not Customer.objects.exists()
