"""/api/v1/webhook_endpoints: read with a read key, change with a write key, the secret in the create and rotate
responses only, bad input as problem JSON naming the field with nothing written."""

from __future__ import annotations

import pytest
from standardwebhooks import Webhook

from api.keys import api_key_create
from tests.api.conftest import ApiClient
from webhooks import services
from webhooks.models import WebhookEndpoint

pytestmark = pytest.mark.django_db
URL = "/api/v1/webhook_endpoints"


@pytest.fixture
def writer(db) -> ApiClient:
    return ApiClient(api_key_create(name="hooks writer", scope="write").key)


@pytest.fixture
def reader(db) -> ApiClient:
    return ApiClient(api_key_create(name="hooks reader", scope="read").key)


def _delete(client: ApiClient, path: str):
    return client.client.delete(path, headers=client._headers(None))


def test_create_shows_the_secret_once_and_reads_never_again(writer, reader):
    response = writer.post(
        URL,
        {"url": "https://93.184.215.14/hooks", "event_types": ["invoice.issued", "invoice.paid"], "description": "CRM"},
    )
    assert response.status_code == 201, response.content
    body = response.json()
    endpoint = WebhookEndpoint.objects.get()
    assert body["object"] == "webhook_endpoint" and body["id"] == endpoint.pk
    assert body["secret"] == endpoint.secret and body["secret"].startswith("whsec_")
    Webhook(body["secret"])  # a secret the standardwebhooks package accepts
    assert (body["url"], body["event_types"], body["enabled"], body["description"]) == (
        "https://93.184.215.14/hooks",
        ["invoice.issued", "invoice.paid"],
        True,
        "CRM",
    )
    for response in (reader.get(f"{URL}/{endpoint.pk}"), reader.get(URL)):
        assert response.status_code == 200
        assert endpoint.secret not in response.content.decode()
    shown = reader.get(f"{URL}/{endpoint.pk}").json()
    assert shown["secret_hint"] == endpoint.secret[:10] + "…" and "secret" not in shown
    [listed] = reader.get(URL).json()["data"]
    assert listed["id"] == endpoint.pk


def test_a_read_key_cannot_create_change_rotate_or_delete(reader):
    endpoint = services.endpoint_create(url="https://93.184.215.14/hooks").endpoint
    refused = [
        reader.post(URL, {"url": "https://93.184.215.14/other"}),
        reader.patch(f"{URL}/{endpoint.pk}", {"enabled": False}),
        reader.post(f"{URL}/{endpoint.pk}/rotate_secret"),
        _delete(reader, f"{URL}/{endpoint.pk}"),
    ]
    assert [r.status_code for r in refused] == [403, 403, 403, 403]
    assert refused[0]["Content-Type"] == "application/problem+json"
    endpoint.refresh_from_db()
    assert WebhookEndpoint.objects.count() == 1 and endpoint.enabled
    assert ApiClient(None).get(URL).status_code == 401


def test_update_rotate_and_delete(writer):
    endpoint = services.endpoint_create(url="https://93.184.215.14/hooks").endpoint
    old_secret = endpoint.secret
    response = writer.patch(f"{URL}/{endpoint.pk}", {"enabled": False, "event_types": ["payment.failed"]})
    assert response.status_code == 200, response.content
    assert (response.json()["enabled"], response.json()["event_types"]) == (False, ["payment.failed"])
    rotated = writer.post(f"{URL}/{endpoint.pk}/rotate_secret")
    assert rotated.status_code == 200, rotated.content
    endpoint.refresh_from_db()
    assert rotated.json()["secret"] == endpoint.secret != old_secret
    assert endpoint.previous_secret == old_secret
    assert _delete(writer, f"{URL}/{endpoint.pk}").status_code == 204
    assert not WebhookEndpoint.objects.exists()
    assert writer.get(f"{URL}/{endpoint.pk}").status_code == 404


@pytest.mark.parametrize(
    ("body", "field", "status"),
    [
        ({"url": "http://127.0.0.1:8000/hooks"}, "url", 422),
        ({"url": "http://169.254.169.254/latest/meta-data/"}, "url", 422),
        ({"url": "http://10.0.0.8/hooks"}, "url", 422),
        ({"url": "ftp://example.com/x"}, "url", 422),
        ({"url": "https://93.184.215.14/h", "event_types": ["invoice.exploded"]}, "event_types.0", 400),
        ({"url": "https://93.184.215.14/h", "event_types": "invoice.issued"}, "event_types", 400),
        ({"url": "https://93.184.215.14/h", "enabled": "maybe"}, "enabled", 400),
        ({"url": "https://93.184.215.14/h", "secret": "whsec_mine"}, "secret", 400),
        ({"event_types": []}, "url", 400),
    ],
)
def test_bad_input_is_problem_json_naming_the_field_and_writes_nothing(writer, settings, body, field, status):
    settings.WEBHOOKS_ALLOW_PRIVATE_URLS = False
    response = writer.post(URL, body)
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["field"] == field
    assert not WebhookEndpoint.objects.exists()


def test_a_staff_session_without_a_key_gets_401_not_a_csrf_free_write(client, admin_user):
    client.force_login(admin_user)
    response = client.post(URL, {"url": "https://93.184.215.14/hooks"}, content_type="application/json")
    assert response.status_code == 401
    assert not WebhookEndpoint.objects.exists()
