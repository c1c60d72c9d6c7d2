"""POST /api/v1/events and GET /api/v1/customers/{id}/usage."""

import datetime as dt
import json
from decimal import Decimal

import pytest
from djmoney.money import Money

from subscriptions.charges import charges_due
from subscriptions.models import UsageEvent
from tests.factories.customers import CustomerFactory
from tests.factories.subscriptions import BillableMetricFactory, PriceFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db
D = dt.date


@pytest.fixture
def subscription():
    metric = BillableMetricFactory(code="api-calls", aggregation="sum", field_name="calls")
    price = PriceFactory(metered=True, metric=metric, unit_amount=Money("0.0125", "EUR"))
    customer = CustomerFactory(external_id="acme")
    return SubscriptionFactory(customer=customer, price=price, quantity=0, start_date=D(2026, 3, 1))


def ev(tid, calls=10, **overrides):
    return {
        "transaction_id": tid,
        "code": "api-calls",
        "timestamp": "2026-03-05T10:00:00Z",
        "external_customer_id": "acme",
        "properties": {"calls": calls},
        **overrides,
    }


def test_a_batch_is_stored_and_duplicates_are_counted(api, subscription):
    response = api.post("/api/v1/events", {"events": [ev("a", 600), ev("b", 400), ev("a", 600)]})
    assert response.status_code == 202
    assert response.json() == {"object": "event_batch", "received": 3, "accepted": 2, "duplicates": 1}
    again = api.post("/api/v1/events", {"event": ev("b", 400)})
    assert (again.status_code, again.json()["accepted"], again.json()["duplicates"]) == (200, 0, 1)
    (period,) = charges_due(subscription=subscription, as_of=D(2026, 4, 1))
    assert (period.lines[0].quantity, period.lines[0].amount) == (Decimal(1000), Money("12.50", "EUR"))
    usage = api.get(f"/api/v1/customers/{subscription.customer_id}/usage", {"as_of": "2026-03-31"})
    assert usage.status_code == 200
    (row,) = usage.json()["data"]
    assert (row["metric"], row["quantity"], row["events"], row["period_start"]) == (
        "api-calls",
        "1000",
        2,
        "2026-03-01",
    )


@pytest.mark.parametrize(
    ("bad", "status", "field_name"),
    [
        (ev("x", timestamp=1733300000), 422, "events[1].timestamp"),
        (ev("x", timestamp="2026-03-05T10:00:00"), 422, "events[1].timestamp"),
        (ev("x", subscription_id="7"), 422, "events[1].subscription_id"),
        (ev("x", code="nope"), 422, "events[1].code"),
        (ev("x", external_customer_id="ghost"), 422, "events[1].external_customer_id"),
        (ev("x", calls=-5), 422, "events[1].properties.calls"),
        (ev("x", calls=1.0000001), 422, "events[1].properties.calls"),
        ({**ev("x"), "colour": "red"}, 422, "events[1]"),
    ],
)
def test_bad_input_is_problem_json_naming_index_and_field_and_writes_nothing(
    api, subscription, bad, status, field_name
):
    response = api.post("/api/v1/events", {"events": [ev("good"), bad]})
    assert response.status_code == status
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status and problem["field"].startswith(field_name)
    assert field_name in problem["detail"]
    assert not UsageEvent.objects.exists()


def test_a_batch_of_1001_is_refused_whole(api, subscription):
    response = api.post("/api/v1/events", {"events": [ev(f"e{i}") for i in range(1001)]})
    assert response.status_code == 413
    assert response.json()["code"] == "too_many_events" and response.json()["field"] == "events"
    assert not UsageEvent.objects.exists()
    ok = api.post("/api/v1/events", {"events": [ev(f"e{i}") for i in range(1000)]})
    assert ok.json()["accepted"] == 1000


def test_a_body_over_the_size_limit_is_refused_unread(api, subscription):
    # ≈ 2.5 MB of valid events, under 1,000 of them
    body = {"events": [ev(f"e{i}", properties={"calls": 1, "note": "x" * 3000}) for i in range(800)]}
    response = api.post("/api/v1/events", body)
    assert response.status_code == 413
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "payload_too_large"
    assert not UsageEvent.objects.exists()


def test_not_json_and_neither_event_nor_events_are_422(api, subscription):
    assert api.post("/api/v1/events", raw="{").status_code == 422
    response = api.post("/api/v1/events", {})
    assert (response.status_code, response.json()["field"]) == (422, "events")


def test_a_read_key_may_read_usage_but_not_send_events(reader, subscription):
    assert reader.post("/api/v1/events", {"event": ev("a")}).status_code == 403
    assert reader.get(f"/api/v1/customers/{subscription.customer_id}/usage").status_code == 200
    assert reader.get("/api/v1/customers/999999/usage").status_code == 404
    assert not UsageEvent.objects.exists()


def test_an_idempotency_key_replays_the_first_answer(api, subscription):
    body = {"events": [ev("a"), ev("b")]}
    first = api.post("/api/v1/events", body, headers={"Idempotency-Key": "batch-1"})
    replay = api.post("/api/v1/events", body, headers={"Idempotency-Key": "batch-1"})
    assert first.json()["accepted"] == 2
    assert replay.json() == first.json() and replay["Idempotent-Replayed"] == "true"
    assert json.loads(replay.content)["duplicates"] == 0
