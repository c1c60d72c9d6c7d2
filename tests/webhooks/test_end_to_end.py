"""Issue 22's end-to-end acceptance: another system bills through the API alone and learns the outcome from
signed webhooks. Customer, prices, subscription and webhook endpoint are created over HTTP with an API key,
usage arrives through ``POST /api/v1/events``, the billing run command bills at the period end (the clock moved
with time_machine), a payment is recorded through the API, and the ``invoice.issued`` / ``invoice.paid``
webhooks arrive on a real HTTP server on 127.0.0.1 — sent by the real delivery task (Celery eager in tests) and
verified with the ``standardwebhooks`` package, as any receiver would."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D
from typing import Any

import pytest
import time_machine
from django.core.management import call_command
from standardwebhooks import Webhook

from api.keys import KEY_PREFIX
from invoicing.models import Invoice, InvoiceStatus
from subscriptions.models import UsageEvent
from tests.api.conftest import ApiClient
from tests.factories.subscriptions import BillableMetricFactory
from webhooks.models import DeliveryStatus, WebhookDelivery

pytestmark = pytest.mark.django_db
BERLIN = dt.timezone(dt.timedelta(hours=1))


def _ok(response: Any, status: int = 201) -> dict[str, Any]:
    assert response.status_code == status, response.content
    return response.json()


def _usage(prefix: str, count: int, calls: int, day: int) -> dict[str, Any]:
    return {
        "events": [
            {
                "transaction_id": f"{prefix}-{n}",
                "code": "api-calls",
                "timestamp": f"2026-03-{day:02d}T{n % 24:02d}:15:00+01:00",
                "external_customer_id": "crm-7",
                "properties": {"calls": calls, "endpoint": "/v2/search"},
            }
            for n in range(count)
        ]
    }


def test_a_system_bills_through_the_api_and_receives_the_signed_invoice_webhooks(
    billing, receiver, django_capture_on_commit_callbacks
):
    BillableMetricFactory(code="api-calls", name="API calls", aggregation="sum", field_name="calls")
    call_command("create_api_key", "--name", "crm", "--scope", "write", stdout=(out := _Capture()))
    api = ApiClient(out.key())
    verified: list[dict[str, Any]] = []

    def receive() -> None:
        """Verify what arrived since the last call, at the time it arrived (the spec's 5-minute tolerance)."""
        verified.extend(Webhook(hook["secret"]).verify(r.body, r.headers) for r in receiver.requests[len(verified) :])

    with time_machine.travel(dt.datetime(2026, 2, 27, 9, 0, tzinfo=BERLIN), tick=False) as clock:
        hook = _ok(
            api.post(
                "/api/v1/webhook_endpoints",
                {"url": receiver.url, "event_types": ["invoice.issued", "invoice.paid"], "description": "CRM"},
            )
        )
        customer = _ok(
            api.post(
                "/api/v1/customers",
                {"name": "Acme GmbH", "email": "ap@acme.example", "country": "DE", "external_id": "crm-7"},
            )
        )
        plan = _ok(api.post("/api/v1/products", {"name": "Pro plan"}))
        calls = _ok(api.post("/api/v1/products", {"name": "API calls"}))
        fixed = _ok(
            api.post(
                "/api/v1/prices",
                {"product": plan["id"], "currency": "EUR", "unit_amount": "49.00", "interval": "month"},
            )
        )
        metered = _ok(
            api.post(
                "/api/v1/prices",
                {
                    "product": calls["id"],
                    "currency": "EUR",
                    "unit_amount": "0.0125",
                    "pricing_model": "per_unit",
                    "usage_type": "metered",
                    "metric": "api-calls",
                    "interval": "month",
                },
            )
        )
        subscription = _ok(
            api.post(
                "/api/v1/subscriptions",
                {
                    "customer": customer["id"],
                    "items": [{"price": fixed["id"], "quantity": 1}, {"price": metered["id"]}],
                    "start_date": "2026-03-01",
                },
            )
        )
        assert subscription["next_billing_date"] == "2026-03-01"

        # March 1: the first period's fixed fee, in advance (no usage yet): 49.00 + 19 % = 58.31.
        clock.move_to(dt.datetime(2026, 3, 1, 6, 0, tzinfo=BERLIN))
        with django_capture_on_commit_callbacks(execute=True):
            call_command("billing_run", "--as-of", "2026-03-01", stdout=_Capture())
        receive()
        first = Invoice.objects.get(subscription_id=subscription["id"])
        assert (first.subtotal, first.total) == (D("49.00"), D("58.31"))

        # March: 1,000 events of 12 calls, then a re-sent half batch (ignored), then 234 events of 3 calls.
        clock.move_to(dt.datetime(2026, 3, 20, 12, 0, tzinfo=BERLIN))
        assert _ok(api.post("/api/v1/events", _usage("a", 1000, 12, day=10)), 202) == {
            "object": "event_batch",
            "received": 1000,
            "accepted": 1000,
            "duplicates": 0,
        }
        again = _ok(api.post("/api/v1/events", {"events": _usage("a", 1000, 12, day=10)["events"][:500]}), 200)
        assert (again["accepted"], again["duplicates"]) == (0, 500)
        assert _ok(api.post("/api/v1/events", _usage("b", 234, 3, day=30)), 202)["accepted"] == 234
        assert UsageEvent.objects.count() == 1234
        usage = _ok(api.get(f"/api/v1/customers/{customer['id']}/usage", {"as_of": "2026-03-31"}), 200)
        assert [(row["metric"], row["quantity"], row["events"]) for row in usage["data"]] == [
            ("api-calls", "12702", 1234)
        ]

        # April 1: March's usage in arrears and April's fee in advance.
        clock.move_to(dt.datetime(2026, 4, 1, 6, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))))
        with django_capture_on_commit_callbacks(execute=True):
            call_command("billing_run", "--as-of", "2026-04-01", stdout=_Capture())
        receive()
        second = Invoice.objects.filter(subscription_id=subscription["id"]).exclude(pk=first.pk).get()
        shown = _ok(api.get(f"/api/v1/invoices/{second.pk}"), 200)
        # 12,702 calls × 0.0125 = 158.775 → 158.78 (half up); + 49.00 = 207.78 net; VAT 19 % per line:
        # 31.62 (30.1682 → 30.17 on the usage, 9.31 on the fee → 39.48); total 247.26.
        lines = sorted((line["quantity"], line["unit_amount"], line["amount"]) for line in shown["lines"])
        assert lines == [("1", "49.00", "49.00"), ("12702", "0.0125", "158.78")]
        assert (shown["subtotal"], shown["tax_total"], shown["total"], shown["amount_due"]) == (
            "207.78",
            "39.48",
            "247.26",
            "247.26",
        )

        # The customer's bank transfer, recorded through the API against the invoice.
        clock.move_to(dt.datetime(2026, 4, 9, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))))
        with django_capture_on_commit_callbacks(execute=True):
            payment = _ok(
                api.post(
                    "/api/v1/payments",
                    {
                        "customer": customer["id"],
                        "amount": "247.26",
                        "received_on": "2026-04-09",
                        "invoice": second.pk,
                        "reference": "SEPA 2026-04",
                    },
                )
            )
        receive()
        assert payment["allocations"] == [{"invoice": second.pk, "amount": "247.26", "amount_refunded": "0.00"}]
        assert _ok(api.get(f"/api/v1/invoices/{second.pk}"), 200)["status"] == InvoiceStatus.PAID

    # What the receiver got: each request verified with the secret shown once at creation, and nothing else.
    assert receiver.types() == ["invoice.issued", "invoice.issued", "invoice.paid"]
    issued_march, issued_april, paid = verified
    assert issued_march["data"]["object"]["number"] == first.number
    assert issued_march["data"]["object"]["total"] == "58.31"
    second.refresh_from_db()
    for payload, status in ((issued_april, "open"), (paid, "paid")):
        invoice = payload["data"]["object"]
        assert (invoice["id"], invoice["number"], invoice["status"]) == (second.pk, second.number, status)
        assert (invoice["subtotal"], invoice["tax_total"], invoice["total"]) == ("207.78", "39.48", "247.26")
        assert sorted(line["amount"] for line in invoice["lines"]) == ["158.78", "49.00"]
    assert paid["data"]["object"]["amount_due"] == "0.00"
    assert [(r.headers["webhook-id"], r.path) for r in receiver.requests] == [
        (d.webhook_id, "/hooks/cadence") for d in WebhookDelivery.objects.order_by("pk")
    ]
    assert set(WebhookDelivery.objects.values_list("status", "attempts", "response_status")) == {
        (DeliveryStatus.SUCCEEDED, 1, 200)
    }


class _Capture:
    """A command's stdout; ``key()`` finds the API key ``create_api_key`` prints once."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass

    def key(self) -> str:
        return next(word for word in self.text.split() if word.startswith(KEY_PREFIX))
