"""/api/v1/forecast: the forecast of reporting/forecast.py with a read key."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from djmoney.money import Money

from tests.factories import PriceFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def monthly(series, vat_de):
    price = PriceFactory(unit_amount=Money(Decimal("31.00"), "EUR"))
    return [SubscriptionFactory(price=price, start_date=dt.date(2026, 3, 5)) for _ in range(2)]


def test_forecast_per_day_and_currency_with_a_read_key(reader, monthly):
    response = reader.get("/api/v1/forecast", {"days": "40", "as_of": "2026-03-01"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["object"], body["as_of"], body["horizon_days"]) == ("forecast", "2026-03-01", 40)
    days = {day["date"]: day for day in body["days"]}
    issuing = [(day["date"], day["currency"], day["invoices"], day["total"]) for day in body["days"] if day["invoices"]]
    assert issuing == [
        ("2026-03-05", "EUR", 2, "73.78"),  # 2 × (31.00 + 5.89 VAT)
        ("2026-04-05", "EUR", 2, "73.78"),
    ]
    assert (days["2026-03-05"]["new"], days["2026-04-05"]["renewals"]) == (2, 2)
    # Sent for payment, net 14: cash expected on the due date; unpaid, the friendly notice 3 days before it.
    assert (days["2026-03-19"]["cash_in"], days["2026-03-16"]["reminders"], days["2026-03-05"]["charges"]) == (
        "73.78",
        2,
        0,
    )
    assert any("sign-ups" in item for item in body["unknown"])


@pytest.mark.parametrize(
    ("params", "field"),
    [({"days": "0"}, "days"), ({"days": "x"}, "days"), ({"days": "400"}, "days"), ({"as_of": "3/1"}, "as_of")],
)
def test_bad_parameters_are_named(reader, params, field):
    response = reader.get("/api/v1/forecast", params)
    assert response.status_code == 400
    assert field in response.json()["detail"]
