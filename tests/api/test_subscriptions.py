"""/api/v1/subscriptions: create, change with each proration behaviour (exact amounts), preview, cancel, pause,
resume, upcoming invoice; bad input names the field and writes nothing."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from djmoney.money import Money

from invoicing.models import Invoice
from invoicing.subscription_billing import billing_run_for_customer
from subscriptions.models import PendingInvoiceItem, Subscription
from tests.factories import CustomerFactory, PriceFactory

pytestmark = pytest.mark.django_db
D = dt.date
D_ = Decimal


@pytest.fixture
def seats(series, vat_de):
    return PriceFactory(per_unit=True, unit_amount=Money("31.00", "EUR"), product__name="Seats")


def _create(api, customer, price, quantity=1, **extra):
    return api.post(
        "/api/v1/subscriptions",
        {
            "customer": customer.pk,
            "items": [{"price": price.pk, "quantity": quantity}],
            "start_date": "2026-01-01",
            **extra,
        },
    )


def test_create_and_get(api, seats):
    customer = CustomerFactory()
    response = _create(api, customer, seats, quantity=3, metadata={"crm": "x1"})
    assert response.status_code == 201, response.content
    body = response.json()
    subscription = Subscription.objects.get()
    assert body["id"] == subscription.pk and body["status"] == "active"
    assert body["items"] == [{"id": subscription.items.get().pk, "price": seats.pk, "quantity": 3}]
    assert body["next_billing_date"] == "2026-01-01" and body["metadata"] == {"crm": "x1"}
    assert api.get(f"/api/v1/subscriptions/{subscription.pk}").json() == body
    assert [row["id"] for row in api.get("/api/v1/subscriptions", {"customer": customer.pk}).json()["data"]] == [
        subscription.pk
    ]


@pytest.mark.parametrize(
    ("items", "field"),
    [
        ([{"price": 999999, "quantity": 1}], "items.0.price"),
        ([{"price": "PRICE", "quantity": 1}], "items.0.price"),
        ([{"price": None, "quantity": -2}], "items.0.price"),
        ([{"quantity": 1}], "items.0.price"),
        ("not a list", "items"),
        ([], "items"),
    ],
)
def test_bad_items_are_400_naming_the_field(api, seats, items, field):
    response = api.post("/api/v1/subscriptions", {"customer": CustomerFactory().pk, "items": items})
    assert response.status_code == 400, response.content
    assert response.json()["field"] == field
    assert not Subscription.objects.exists()


def test_negative_quantity_is_400(api, seats):
    response = _create(api, CustomerFactory(), seats, quantity=-1)
    assert response.status_code == 400
    assert response.json()["field"] == "items.0.quantity"
    assert not Subscription.objects.exists()


def test_another_currency_is_refused_by_the_service_and_writes_nothing(api, seats):
    dollars = PriceFactory(unit_amount=Money("10.00", "USD"))
    response = _create(api, CustomerFactory(currency="EUR"), dollars)
    assert response.status_code == 422, response.content
    problem = response.json()
    assert problem["field"] == "price" and "USD" in problem["detail"]
    assert not Subscription.objects.exists()


def test_unknown_customer_and_coupon(api, seats):
    response = api.post("/api/v1/subscriptions", {"customer": 424242, "items": [{"price": seats.pk}]})
    assert response.status_code == 400 and response.json()["field"] == "customer"
    response = _create(api, CustomerFactory(), seats, coupon="NOPE")
    assert response.status_code == 400 and response.json()["field"] == "coupon"
    assert not Subscription.objects.exists()


def _billed(api, seats, quantity=1):
    customer = CustomerFactory()
    subscription_id = _create(api, customer, seats, quantity=quantity).json()["id"]
    subscription = Subscription.objects.get(pk=subscription_id)
    billing_run_for_customer(as_of=D(2026, 1, 1), subscription=subscription)
    assert Invoice.objects.filter(subscription=subscription).count() == 1
    return subscription


def test_change_quantity_always_invoice_issues_the_proration_now(api, seats):
    subscription = _billed(api, seats)
    body = {
        "items": [{"price": seats.pk, "quantity": 2}],
        "proration_behavior": "always_invoice",
        "as_of": "2026-01-17",
    }
    preview = api.post(f"/api/v1/subscriptions/{subscription.pk}/change/preview", body)
    assert preview.status_code == 200, preview.content
    preview = preview.json()
    # 15 of 31 days left: credit −31.00 × 15/31 = −15.00, charge 62.00 × 15/31 = 30.00
    assert [line["amount"] for line in preview["proration_lines"]] == ["-15.00", "30.00"]
    assert preview["proration_total"] == "15.00"
    assert preview["invoice_now"]["total"] == "17.85"  # 15.00 + 19 % VAT (−2.85 + 5.70)
    assert Invoice.objects.filter(subscription=subscription).count() == 1  # the preview wrote nothing
    response = api.post(f"/api/v1/subscriptions/{subscription.pk}/change", body)
    assert response.status_code == 200, response.content
    result = response.json()
    assert result["subscription"]["items"][0]["quantity"] == 2
    assert result["invoice"]["status"] == "open" and result["invoice"]["number"]
    assert result["invoice"]["total"] == preview["invoice_now"]["total"] == "17.85"
    assert [line["amount"] for line in result["invoice"]["lines"]] == ["-15.00", "30.00"]


def test_change_create_prorations_goes_to_the_next_invoice(api, seats):
    subscription = _billed(api, seats)
    response = api.post(
        f"/api/v1/subscriptions/{subscription.pk}/change",
        {
            "items": [{"price": seats.pk, "quantity": 3}],
            "as_of": "2026-01-17",
        },
    )
    assert response.status_code == 200, response.content
    assert response.json()["invoice"] is None
    assert PendingInvoiceItem.objects.filter(subscription=subscription, billed_at__isnull=True).count() == 2
    upcoming = api.get("/api/v1/invoices/upcoming", {"subscription": subscription.pk}).json()
    assert upcoming["object"] == "invoice_preview" and upcoming["issue_date"] == "2026-02-01"
    # February: 3 × 31.00 = 93.00, plus the prorations −15.00 and +45.00 → 123.00 net, 146.37 gross
    assert sorted(line["amount"] for line in upcoming["lines"]) == sorted(["93.00", "-15.00", "45.00"])
    assert upcoming["total"] == "146.37"


def test_change_proration_none_prorates_nothing(api, seats):
    subscription = _billed(api, seats)
    response = api.post(
        f"/api/v1/subscriptions/{subscription.pk}/change",
        {
            "items": [{"price": seats.pk, "quantity": 2}],
            "as_of": "2026-01-17",
            "proration_behavior": "none",
        },
    )
    assert response.status_code == 200
    assert response.json()["proration_lines"] == []
    assert not PendingInvoiceItem.objects.filter(subscription=subscription).exists()


def test_change_with_bad_behavior_is_400(api, seats):
    subscription = _billed(api, seats)
    response = api.post(
        f"/api/v1/subscriptions/{subscription.pk}/change",
        {
            "items": [{"price": seats.pk, "quantity": 2}],
            "proration_behavior": "sometimes",
        },
    )
    assert response.status_code == 400 and response.json()["field"] == "proration_behavior"


def test_cancel_at_period_end_and_undo(api, seats):
    subscription = _billed(api, seats)
    response = api.post(f"/api/v1/subscriptions/{subscription.pk}/cancel", {"at_period_end": True})
    assert response.status_code == 200 and response.json()["cancel_at_period_end"] is True
    response = api.post(f"/api/v1/subscriptions/{subscription.pk}/undo_cancel", {})
    assert response.status_code == 200 and response.json()["cancel_at_period_end"] is False


def test_cancel_now_credits_the_unused_time(api, seats):
    subscription = _billed(api, seats)
    response = api.post(
        f"/api/v1/subscriptions/{subscription.pk}/cancel", {"as_of": "2026-01-17", "settlement": "credit"}
    )
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "canceled"
    [note] = api.get("/api/v1/credit_notes", {"invoice": Invoice.objects.get(subscription=subscription).pk}).json()[
        "data"
    ]
    assert note["total"] == "17.85"  # 36.89 × 15/31, tax included
    again = api.post(f"/api/v1/subscriptions/{subscription.pk}/cancel", {"as_of": "2026-01-18"})
    assert again.status_code == 409


def test_pause_and_resume(api, seats):
    subscription = _billed(api, seats)
    paused = api.post(f"/api/v1/subscriptions/{subscription.pk}/pause", {"as_of": "2026-01-10"})
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    assert paused.json()["paused_at"] == "2026-01-10"
    twice = api.post(f"/api/v1/subscriptions/{subscription.pk}/pause", {"as_of": "2026-01-11"})
    assert twice.status_code == 409 and twice.json()["code"] == "invalid_transition"
    resumed = api.post(f"/api/v1/subscriptions/{subscription.pk}/resume", {"as_of": "2026-01-20"})
    assert resumed.status_code == 200 and resumed.json()["status"] == "active"


def test_upcoming_invoice_of_a_subscription(api, seats):
    subscription = _billed(api, seats, quantity=2)
    response = api.get(f"/api/v1/subscriptions/{subscription.pk}/upcoming_invoice")
    assert response.status_code == 200
    body = response.json()
    assert body["period_start"] == "2026-02-01" and body["period_end"] == "2026-03-01"
    assert body["subtotal"] == "62.00" and body["tax_total"] == "11.78" and body["total"] == "73.78"
    assert body["due_date"] == "2026-02-15"


def test_read_key_cannot_change_a_subscription(reader, api, seats):
    subscription = _billed(api, seats)
    response = reader.post(f"/api/v1/subscriptions/{subscription.pk}/pause", {"as_of": "2026-01-10"})
    assert response.status_code == 403
    subscription.refresh_from_db()
    assert subscription.status == "active"


def test_commitment_and_thresholds_are_set_on_create_and_patch(api, seats):
    response = _create(api, CustomerFactory(), seats, minimum_commitment="500.00", usage_thresholds=["2500", "1000"])
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["minimum_commitment"], body["usage_thresholds"]) == ("500.00", ["1000.00", "2500.00"])

    patched = api.patch(f"/api/v1/subscriptions/{body['id']}", {"usage_thresholds": []})
    assert patched.status_code == 200, patched.content
    assert (patched.json()["minimum_commitment"], patched.json()["usage_thresholds"]) == ("500.00", [])
    refused = api.patch(f"/api/v1/subscriptions/{body['id']}", {"minimum_commitment": "0.001"})
    assert refused.status_code == 422  # the service refuses it (InvalidInput), naming the field
    assert refused.json()["field"] == "minimum_commitment"
    subscription = Subscription.objects.get()
    assert (subscription.minimum_commitment, subscription.usage_thresholds) == (D_("500.000"), [])
