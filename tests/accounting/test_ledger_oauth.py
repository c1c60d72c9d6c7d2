"""Connecting a ledger through the admin (OAuth 2 authorization code, against the local fake): the state is
checked, the tokens are stored encrypted (the column does not contain them), an expired or revoked access token
is refreshed and the rotated refresh token stored."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection as db
from django.urls import reverse
from django.utils import timezone

from accounting.ledger.crypto import token_decrypt
from accounting.ledger.models import LedgerConnection, SyncRecord
from accounting.ledger.oauth import access_token
from accounting.ledger.sync import ledger_sync
from billing_project import deployment
from tests.accounting.fake_ledger import FakeLedger
from tests.factories import CustomerFactory, InvoiceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def fake(settings: Any) -> Iterator[FakeLedger]:
    ledger = FakeLedger().start()
    settings.LEDGER_PROVIDERS = ledger.settings()
    yield ledger
    ledger.stop()


def _start(admin_client: Any, provider: str) -> str:
    url = reverse("admin:accounting_ledgerconnection_connect", args=[provider])
    page = admin_client.get(url)
    assert page.status_code == 200 and "Continue to" in page.content.decode()
    response = admin_client.post(url)
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    query = {key: values[0] for key, values in parse_qs(location.query).items()}
    assert query["client_id"] == "fake-client" and query["response_type"] == "code"
    assert query["redirect_uri"].endswith(f"/callback/{provider}/")
    return query["state"]


def _stored_row() -> str:
    with db.cursor() as cursor:
        cursor.execute("SELECT * FROM accounting_ledgerconnection")
        return repr(cursor.fetchall())


def test_connect_xero_stores_the_tenant_and_the_tokens_encrypted(fake, admin_client):
    state = _start(admin_client, "xero")
    callback = reverse("admin:accounting_ledgerconnection_callback", args=["xero"])
    response = admin_client.get(callback, {"code": "good-code", "state": state})
    connection = LedgerConnection.objects.get()
    assert response.status_code == 302 and response["Location"].endswith(f"/{connection.pk}/change/")
    assert (connection.provider, connection.tenant_id, connection.tenant_name) == ("xero", "tenant-1", "Fake Org")
    (access,) = fake.access_tokens
    (refresh,) = fake.refresh_tokens
    row = _stored_row()
    assert access not in row and refresh not in row  # encrypted at rest
    assert token_decrypt(connection.access_token_encrypted) == access
    assert token_decrypt(connection.refresh_token_encrypted) == refresh
    # the state is good once: the same callback again is refused
    again = admin_client.get(callback, {"code": "good-code", "state": state})
    assert again.status_code == 400 and "state does not match" in again.content.decode()


def test_connect_quickbooks_keeps_the_realm(fake, admin_client):
    state = _start(admin_client, "quickbooks")
    callback = reverse("admin:accounting_ledgerconnection_callback", args=["quickbooks"])
    admin_client.get(callback, {"code": "good-code", "state": state, "realmId": "realm-9"})
    connection = LedgerConnection.objects.get()
    assert (connection.provider, connection.tenant_id) == ("quickbooks", "realm-9")


def test_a_callback_with_another_state_is_refused_and_stores_nothing(fake, admin_client):
    _start(admin_client, "xero")
    callback = reverse("admin:accounting_ledgerconnection_callback", args=["xero"])
    response = admin_client.get(callback, {"code": "good-code", "state": "forged"})
    assert response.status_code == 400 and "state does not match" in response.content.decode()
    assert not LedgerConnection.objects.exists() and fake.token_grants == []  # the code was never exchanged
    # a state started for Xero does not complete QuickBooks either
    state = _start(admin_client, "xero")
    qbo = reverse("admin:accounting_ledgerconnection_callback", args=["quickbooks"])
    assert admin_client.get(qbo, {"code": "good-code", "state": state, "realmId": "r"}).status_code == 400


def test_connect_without_a_client_id_says_which_setting_is_missing(fake, admin_client, settings):
    settings.LEDGER_PROVIDERS = {**fake.settings(), "xero": {**fake.settings()["xero"], "client_id": ""}}
    response = admin_client.post(reverse("admin:accounting_ledgerconnection_connect", args=["xero"]))
    assert response.status_code == 400 and "LEDGER_XERO_CLIENT_ID" in response.content.decode()


def _connected(fake: FakeLedger, admin_client: Any) -> LedgerConnection:
    state = _start(admin_client, "xero")
    callback = reverse("admin:accounting_ledgerconnection_callback", args=["xero"])
    admin_client.get(callback, {"code": "good-code", "state": state})
    return LedgerConnection.objects.get()


def test_an_expired_access_token_is_refreshed_and_the_rotated_refresh_token_stored(fake, admin_client):
    connection = _connected(fake, admin_client)
    (old_refresh,) = fake.refresh_tokens
    LedgerConnection.objects.filter(pk=connection.pk).update(access_token_expires_at=timezone.now())
    connection.refresh_from_db()
    token = access_token(connection)
    assert fake.token_grants == ["authorization_code", "refresh_token"]
    connection.refresh_from_db()
    assert token_decrypt(connection.access_token_encrypted) == token and token in fake.access_tokens
    assert token_decrypt(connection.refresh_token_encrypted) != old_refresh
    assert old_refresh not in fake.refresh_tokens  # spent at the provider: storing the new one mattered
    assert connection.access_token_expires_at > timezone.now() + dt.timedelta(minutes=29)
    assert token not in _stored_row()
    assert access_token(connection) == token and len(fake.token_grants) == 2  # still valid: no second refresh


def test_a_revoked_access_token_is_refreshed_once_during_a_sync(fake, admin_client, series, vat_de):
    InvoiceFactory(customer=CustomerFactory(), finalized=dt.date(2026, 3, 2))
    connection = _connected(fake, admin_client)
    fake.access_tokens.clear()  # the provider no longer accepts it (revoked, expired early)
    outcome = ledger_sync(connection=connection)
    assert (outcome.created, outcome.failed, outcome.stopped) == (2, 0, "")
    assert fake.token_grants == ["authorization_code", "refresh_token"]
    assert SyncRecord.objects.count() == 2


def test_the_ledger_pages_and_the_retry_action(fake, admin_client, series, vat_de):
    InvoiceFactory(customer=CustomerFactory(), finalized=dt.date(2026, 3, 2))
    connection = _connected(fake, admin_client)
    fake.refuse[f"CB-C{CustomerFactory._meta.model.objects.get().pk}"] = "The contact name is already assigned."
    ledger_sync(connection=connection)
    assert SyncRecord.objects.filter(status="failed").count() == 2  # the contact, and its invoice
    page = admin_client.get(reverse("admin:accounting_ledgerconnection_changelist"))
    assert page.status_code == 200 and "Connect QuickBooks Online" in page.content.decode()
    change = admin_client.get(reverse("admin:accounting_ledgerconnection_change", args=[connection.pk]))
    assert change.status_code == 200 and "2 failed" in change.content.decode()
    log = admin_client.get(reverse("admin:accounting_syncrecord_changelist"))
    assert log.status_code == 200 and "The contact name is already assigned." in log.content.decode()
    fake.refuse.clear()
    response = admin_client.post(
        reverse("admin:accounting_syncrecord_changelist"),
        {"action": "retry", "_selected_action": list(SyncRecord.objects.values_list("pk", flat=True))},
        follow=True,
    )
    assert "Xero: 2 created, 0 linked, 0 failed." in response.content.decode()
    assert SyncRecord.objects.filter(status="synced").count() == 2


def test_production_refuses_a_missing_or_published_token_key():
    providers = {"xero": {"client_id": "abc"}, "quickbooks": {"client_id": ""}}
    assert "not set, but xero" in str(deployment.ledger_token_key_problem("", providers))
    assert deployment.ledger_token_key_problem("", {"xero": {"client_id": ""}}) is None
    published = next(iter(deployment.PUBLISHED_LEDGER_TOKEN_KEYS))
    assert "published" in str(deployment.ledger_token_key_problem(published, providers))
    assert "not a Fernet key" in str(deployment.ledger_token_key_problem("short", providers))
    assert deployment.ledger_token_key_problem("A" * 43 + "=", providers) is None


def test_a_refused_refresh_token_stops_the_sync_without_retrying(fake, admin_client, series, vat_de):
    InvoiceFactory(customer=CustomerFactory(), finalized=dt.date(2026, 3, 2))
    connection = _connected(fake, admin_client)
    fake.access_tokens.clear()
    fake.refresh_tokens.clear()  # the organisation disconnected the app
    outcome = ledger_sync(connection=connection)
    assert outcome.retry_after is None and "connect the ledger again" in outcome.stopped
    assert outcome.created == 0 and SyncRecord.objects.count() == 0


def test_the_sync_log_lists_in_a_bounded_number_of_queries(admin_client, django_assert_max_num_queries):
    connection = LedgerConnection.objects.create(
        provider="xero",
        tenant_id="tenant-1",
        access_token_encrypted="x",
        refresh_token_encrypted="x",
        access_token_expires_at=timezone.now(),
        connected_at=timezone.now(),
    )
    SyncRecord.objects.bulk_create(
        SyncRecord(connection=connection, object_type="invoice", local_id=n, reference=f"INV-{n}", status="failed")
        for n in range(1, 41)
    )
    with django_assert_max_num_queries(12):
        response = admin_client.get(reverse("admin:accounting_syncrecord_changelist"))
    assert response.status_code == 200 and "INV-40" in response.content.decode()


def test_sync_now_queues_the_task_after_commit(fake, admin_client, series, vat_de, django_capture_on_commit_callbacks):
    InvoiceFactory(customer=CustomerFactory(), finalized=dt.date(2026, 3, 2))
    connection = _connected(fake, admin_client)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:accounting_ledgerconnection_changelist"),
            {"action": "sync_now", "_selected_action": [connection.pk]},
            follow=True,
        )
    assert "sync queued" in response.content.decode()
    assert SyncRecord.objects.filter(status="synced").count() == 2 and len(fake.xero["Invoices"]) == 1
