"""Idempotency-Key on POST: same key + same body replays the first response, another body is a 409, a concurrent
duplicate waits for the first (two threads on PostgreSQL), failures are not kept, records expire after 24 h."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from api.keys import api_key_create
from api.models import IdempotencyRecord
from customers.models import Customer
from tests.api.conftest import ApiClient

BODY = {"name": "Acme", "email": "billing@acme.example", "country": "DE"}


@pytest.mark.django_db
def test_same_key_same_body_replays_the_first_response(api):
    first = api.post("/api/v1/customers", BODY, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 201
    # same JSON, other key order and spacing
    again = api.post(
        "/api/v1/customers",
        raw='{"country": "DE",  "email": "billing@acme.example", "name": "Acme"}',
        headers={"Idempotency-Key": "k-1"},
    )
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Customer.objects.count() == 1


@pytest.mark.django_db
def test_same_key_other_body_is_409_and_runs_nothing(api):
    api.post("/api/v1/customers", BODY, headers={"Idempotency-Key": "k-1"})
    response = api.post("/api/v1/customers", {**BODY, "name": "Other"}, headers={"Idempotency-Key": "k-1"})
    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_key_reused"
    assert response.json()["field"] == "Idempotency-Key"
    assert list(Customer.objects.values_list("name", flat=True)) == ["Acme"]


@pytest.mark.django_db
def test_keys_are_per_api_key(make_client):
    first, second = make_client("write"), make_client("write")
    assert first.post("/api/v1/customers", BODY, headers={"Idempotency-Key": "same"}).status_code == 201
    other = second.post("/api/v1/customers", {**BODY, "email": "b@acme.example"}, headers={"Idempotency-Key": "same"})
    assert other.status_code == 201 and "Idempotent-Replayed" not in other
    assert Customer.objects.count() == 2


@pytest.mark.django_db
def test_a_refusal_is_replayed_too(api):
    bad = {**BODY, "email": "nope"}
    first = api.post("/api/v1/customers", bad, headers={"Idempotency-Key": "k-bad"})
    assert first.status_code == 400
    again = api.post("/api/v1/customers", bad, headers={"Idempotency-Key": "k-bad"})
    assert again.status_code == 400 and again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()


@pytest.mark.django_db
def test_a_server_error_is_not_kept_so_a_retry_runs(api, monkeypatch):
    from api.forms import CustomerApiForm

    original = CustomerApiForm.save
    calls = []

    def failing_once(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database went away")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(CustomerApiForm, "save", failing_once)
    api.client.raise_request_exception = False
    assert api.post("/api/v1/customers", BODY, headers={"Idempotency-Key": "k-5xx"}).status_code == 500
    assert not IdempotencyRecord.objects.exists() and not Customer.objects.exists()
    retry = api.post("/api/v1/customers", BODY, headers={"Idempotency-Key": "k-5xx"})
    assert retry.status_code == 201 and "Idempotent-Replayed" not in retry
    assert Customer.objects.count() == 1


@pytest.mark.django_db
def test_records_expire_after_24_hours(api):
    api.post("/api/v1/customers", BODY, headers={"Idempotency-Key": "k-old"})
    IdempotencyRecord.objects.update(created_at=timezone.now() - dt.timedelta(hours=25))
    again = api.post("/api/v1/customers", {**BODY, "email": "new@acme.example"}, headers={"Idempotency-Key": "k-old"})
    assert again.status_code == 201 and "Idempotent-Replayed" not in again
    assert Customer.objects.count() == 2


@pytest.mark.django_db
def test_purge_command_deletes_old_records(api):
    api.post("/api/v1/customers", BODY, headers={"Idempotency-Key": "old"})
    api.post("/api/v1/customers", {**BODY, "email": "x@acme.example"}, headers={"Idempotency-Key": "new"})
    IdempotencyRecord.objects.filter(key="old").update(created_at=timezone.now() - dt.timedelta(hours=25))
    call_command("purge_idempotency_keys")
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["new"]


@pytest.mark.django_db
def test_overlong_key_is_400(api):
    response = api.post("/api/v1/customers", BODY, headers={"Idempotency-Key": "x" * 300})
    assert response.status_code == 400 and response.json()["field"] == "Idempotency-Key"
    assert not Customer.objects.exists()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicate_waits_for_the_first_and_replays_it(monkeypatch):
    """Two threads, two PostgreSQL connections, the same key and body at once: the first holds the request's lock
    while it works (slowed down here); the second waits, then replays — one customer, two identical answers."""
    from api.forms import CustomerApiForm

    key = api_key_create(name="concurrent", scope="write").key
    original = CustomerApiForm.save
    started = threading.Event()

    def slow_save(self, *args, **kwargs):
        started.set()
        time.sleep(0.8)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(CustomerApiForm, "save", slow_save)
    results: dict[str, object] = {}

    def post(name: str) -> None:
        try:
            response = ApiClient(key).post("/api/v1/customers", BODY, headers={"Idempotency-Key": "race"})
            results[name] = (
                response.status_code,
                response.json(),
                response.get("Idempotent-Replayed"),
                time.monotonic(),
            )
        finally:
            connection.close()

    first = threading.Thread(target=post, args=("first",))
    first.start()
    assert started.wait(10)
    second = threading.Thread(target=post, args=("second",))
    second.start()
    first.join(20)
    second.join(20)
    status1, body1, replayed1, finished1 = results["first"]
    status2, body2, replayed2, finished2 = results["second"]
    assert (status1, status2) == (201, 201)
    assert body1 == body2
    assert replayed1 is None and replayed2 == "true"
    assert finished2 >= finished1  # it waited for the first to commit (an ordering, not a duration)
    assert Customer.objects.count() == 1
    assert IdempotencyRecord.objects.count() == 1
