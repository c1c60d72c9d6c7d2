"""``represent(obj)``: the one API representation (responses and webhook payloads) — amounts as strings with the
currency's minor units, ids of related objects, nested lines."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from djmoney.money import Money

from api.serializers import represent
from core.models import DomainEvent
from invoicing.services import credit_note_issue
from tests.factories import (
    CouponFactory,
    CustomerFactory,
    InvoiceFactory,
    PriceFactory,
    SubscriptionFactory,
    record_payment,
    tiered_price,
)

pytestmark = pytest.mark.django_db


def test_customer():
    customer = CustomerFactory(name="Acme GmbH", external_id="crm-1", metadata={"plan": "gold"})
    data = represent(customer)
    assert data["object"] == "customer" and data["id"] == customer.pk
    assert data["name"] == "Acme GmbH" and data["external_id"] == "crm-1"
    assert data["country"] == "DE" and data["currency"] == "EUR"
    assert data["metadata"] == {"plan": "gold"}
    json.dumps(data)  # JSON-ready as it is


def test_invoice_amounts_are_strings_with_minor_units(series, vat_de):
    invoice = InvoiceFactory(
        lines=[{"description": "Seats", "quantity": Decimal(3), "unit_amount": Decimal("3.335")}],
        finalized=dt.date(2026, 3, 2),
    )
    data = represent(invoice)
    assert data["object"] == "invoice" and data["status"] == "open"
    assert data["number"] == invoice.number != ""
    assert data["subtotal"] == "10.01"  # 3 × 3.335 = 10.005 → 10.01 (ROUND_HALF_UP)
    assert data["tax_total"] == "1.90"
    assert data["total"] == "11.91"
    assert data["amount_due"] == "11.91"
    assert data["issue_date"] == "2026-03-02"
    [line] = data["lines"]
    assert line["unit_amount"] == "3.335"  # unit amounts keep their decimals
    assert line["quantity"] == "3"
    assert line["amount"] == "10.01" and line["total_amount"] == "11.91"
    json.dumps(data)


def test_jpy_and_bhd_minor_units(series):
    from invoicing.models import TaxRate

    TaxRate.objects.create(name="VAT 0 %", country="JP", percentage=Decimal(0))
    yen = InvoiceFactory(
        customer=CustomerFactory(currency="JPY", country="JP"),
        lines=[{"description": "x", "unit_amount": Decimal("500")}],
    )
    assert represent(yen)["total"] == "500"
    assert represent(PriceFactory(unit_amount=Money(Decimal("1.25"), "BHD")))["unit_amount"] == "1.250"


def test_credit_note_and_payment(series, vat_de):
    invoice = InvoiceFactory(lines=[{"description": "Plan", "unit_amount": Decimal("100.00")}], finalized=True)
    credit_note = credit_note_issue(
        invoice=invoice, reason="goodwill", amount=Decimal("11.90"), issue_date=dt.date(2026, 3, 3)
    )
    data = represent(credit_note)
    assert data["object"] == "credit_note" and data["invoice"] == invoice.pk
    assert data["total"] == "11.90" and data["net_total"] == "10.00" and data["tax_total"] == "1.90"
    assert sum(Decimal(line["total_amount"]) for line in data["lines"]) == Decimal("11.90")

    payment = record_payment(customer=invoice.customer, amount="50.00")
    data = represent(payment)
    assert data["object"] == "payment" and data["amount"] == "50.00" and data["status"] == "succeeded"
    assert data["allocations"] == [{"invoice": invoice.pk, "amount": "50.00", "amount_refunded": "0.00"}]


def test_subscription_price_coupon_and_event():
    price = tiered_price(model="graduated", tiers=[(10, "1.5", "0"), (None, "1", "5")])
    data = represent(price)
    assert data["pricing_model"] == "graduated" and data["unit_amount"] == "0.00"
    assert data["tiers"] == [
        {"up_to": 10, "unit_amount": "1.50", "flat_amount": "0.00"},
        {"up_to": None, "unit_amount": "1.00", "flat_amount": "5.00"},
    ]
    subscription = SubscriptionFactory(price=PriceFactory(), quantity=2, start_date=dt.date(2026, 1, 15))
    data = represent(subscription)
    assert data["object"] == "subscription" and data["status"] == "active"
    assert data["current_period_start"] == "2026-01-15"
    assert [(item["price"], item["quantity"]) for item in data["items"]] == [(subscription.items.get().price_id, 2)]
    coupon = CouponFactory(amount=True)
    data = represent(coupon)
    assert data["amount_off"] == "5.00" and data["currency"] == "EUR" and data["percent_off"] is None
    event = DomainEvent.objects.filter(type="subscription.created").first()
    assert event is not None
    data = represent(event)
    assert data["object"] == "event" and data["type"] == "subscription.created"
    assert data["subject_id"] == subscription.pk


def test_unknown_model_is_a_type_error():
    from customers.models import PortalUser

    with pytest.raises(TypeError, match="PortalUser"):
        represent(PortalUser())
