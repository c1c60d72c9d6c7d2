"""/api/v1/products, prices, coupons: created through the admin's model forms; prices are archived, never
re-priced."""

from __future__ import annotations

import pytest

from subscriptions.models import Coupon, Price, PriceTier, Product
from tests.factories import PriceFactory, ProductFactory

pytestmark = pytest.mark.django_db


def test_product_and_flat_price(api):
    product = api.post("/api/v1/products", {"name": "Pro plan"}).json()
    response = api.post(
        "/api/v1/prices",
        {
            "product": product["id"],
            "currency": "EUR",
            "unit_amount": "29.99",
            "interval": "month",
            "nickname": "monthly",
        },
    )
    assert response.status_code == 201, response.content
    price = response.json()
    assert price["unit_amount"] == "29.99" and price["pricing_model"] == "flat" and price["tiers"] == []
    assert str(Price.objects.get().unit_amount.amount.normalize()) == "29.99"


def test_graduated_price_with_tiers(api):
    product = ProductFactory()
    response = api.post(
        "/api/v1/prices",
        {
            "product": product.pk,
            "currency": "EUR",
            "unit_amount": "0",
            "pricing_model": "graduated",
            "usage_type": "metered",
            "tiers": [
                {"up_to": 1000, "unit_amount": "0.0125"},
                {"up_to": None, "unit_amount": "0.01", "flat_amount": "5"},
            ],
        },
    )
    assert response.status_code == 201, response.content
    assert response.json()["tiers"] == [
        {"up_to": 1000, "unit_amount": "0.0125", "flat_amount": "0.00"},
        {"up_to": None, "unit_amount": "0.01", "flat_amount": "5.00"},
    ]
    assert PriceTier.objects.count() == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"unit_amount": "-1"}, "unit_amount"),
        ({"product": 999999}, "product"),
        ({"currency": "XYZ"}, "currency"),
        ({"interval": "fortnight"}, "interval"),
        ({"pricing_model": "package"}, "package_size"),  # the model's constraint, named by the admin form
        ({"pricing_model": "graduated"}, "tiers"),
        ({"pricing_model": "volume", "tiers": [{"up_to": 10, "unit_amount": "1"}]}, "tiers"),
        ({"tiers": [{"up_to": None, "unit_amount": "1"}]}, "tiers"),
    ],
)
def test_bad_price_input_writes_nothing(api, body, field):
    product = ProductFactory()
    response = api.post("/api/v1/prices", {"product": product.pk, "currency": "EUR", "unit_amount": "10", **body})
    assert response.status_code == 400, response.content
    assert response.json()["field"] == field
    assert not Price.objects.exists() and not PriceTier.objects.exists()


def test_archive_price(api):
    price = PriceFactory()
    response = api.patch(f"/api/v1/prices/{price.pk}", {"active": False})
    assert response.status_code == 200 and response.json()["active"] is False
    response = api.patch(f"/api/v1/prices/{price.pk}", {"unit_amount": "1.00"})
    assert response.status_code == 400 and response.json()["field"] == "unit_amount"


def test_coupons(api):
    product = ProductFactory()
    response = api.post(
        "/api/v1/coupons",
        {
            "code": "SPRING",
            "percent_off": "20",
            "duration": "repeating",
            "duration_in_periods": 3,
            "products": [product.pk],
        },
    )
    assert response.status_code == 201, response.content
    assert response.json()["products"] == [product.pk] and response.json()["percent_off"] == "20.00"
    response = api.post("/api/v1/coupons", {"code": "FIVE", "amount_off": "5.00", "currency": "EUR"})
    assert response.status_code == 201 and response.json()["amount_off"] == "5.00"
    duplicate = api.post("/api/v1/coupons", {"code": "FIVE", "amount_off": "5.00", "currency": "EUR"})
    assert duplicate.status_code == 400 and duplicate.json()["field"] == "code"
    neither = api.post("/api/v1/coupons", {"code": "NONE"})
    assert neither.status_code == 400 and neither.json()["field"] == "percent_off"
    assert Coupon.objects.count() == 2
    assert [row["code"] for row in api.get("/api/v1/coupons", {"code": "SPRING"}).json()["data"]] == ["SPRING"]


def test_product_update(api):
    product = ProductFactory(name="Old")
    response = api.patch(f"/api/v1/products/{product.pk}", {"name": "New", "active": False})
    assert response.status_code == 200
    product.refresh_from_db()
    assert (product.name, product.active) == ("New", False)
    assert Product.objects.count() == 1
