"""Coupons: percent and amount over once / repeating 3 / forever; several discounts; currency."""

import datetime as dt
from decimal import Decimal

import pytest
from djmoney.money import Money

from core.money import CurrencyMismatch
from subscriptions.models import Discount
from subscriptions.services import CouponNotRedeemable, SubscriptionError, discount_create
from tests.factories.subscriptions import CouponFactory, PriceFactory, SubscriptionFactory
from tests.subscriptions.conftest import bill

pytestmark = pytest.mark.django_db
D = dt.date


def _discounts_over_five_periods(coupon):
    price = PriceFactory(unit_amount=Money("31.00", "EUR"))
    subscription = SubscriptionFactory(price=price, start_date=D(2026, 1, 1), coupon=coupon)
    result = []
    for _ in range(5):
        (period,) = bill(subscription, subscription.next_billing_date)
        (line,) = period.lines
        result.append(line.discount_amount.amount)
    return result


@pytest.mark.parametrize(
    ("traits", "expected"),
    [
        ({}, ["6.20", "0", "0", "0", "0"]),
        ({"repeating": True}, ["6.20", "6.20", "6.20", "0", "0"]),
        ({"forever": True}, ["6.20"] * 5),
        ({"amount": True}, ["5.00", "0", "0", "0", "0"]),
        ({"amount": True, "repeating": True}, ["5.00", "5.00", "5.00", "0", "0"]),
        ({"amount": True, "forever": True}, ["5.00"] * 5),
    ],
    ids=[
        "percent-once",
        "percent-repeating-3",
        "percent-forever",
        "amount-once",
        "amount-repeating-3",
        "amount-forever",
    ],
)
def test_percent_and_amount_coupons_over_durations(traits, expected):
    coupon = CouponFactory(**traits) if traits.get("amount") else CouponFactory(percent_off=Decimal("20"), **traits)
    assert _discounts_over_five_periods(coupon) == [Decimal(v) for v in expected]


def test_customer_discount_and_subscription_discount_apply_in_order_never_below_zero():
    price = PriceFactory(unit_amount=Money("31.00", "EUR"))
    subscription = SubscriptionFactory(price=price, start_date=D(2026, 1, 1))
    discount_create(
        coupon=CouponFactory(forever=True, percent_off=Decimal("50")),
        customer=subscription.customer,
        as_of=D(2025, 12, 1),
    )
    discount_create(
        coupon=CouponFactory(amount=True, amount_off=Money("40.00", "EUR")),
        subscription=subscription,
        as_of=D(2026, 1, 1),
    )
    (period,) = bill(subscription, D(2026, 1, 1))
    (line,) = period.lines
    assert line.discount_amount == Money("31.00", "EUR")  # 15.50 (50 %), then min(40, 15.50)
    assert line.net_amount == Money("0.00", "EUR")


def test_coupon_rules_are_enforced():
    subscription = SubscriptionFactory(start_date=D(2026, 1, 1))
    with pytest.raises(CurrencyMismatch):
        discount_create(
            coupon=CouponFactory(amount=True, amount_off=Money("5", "USD")),
            subscription=subscription,
            as_of=D(2026, 1, 1),
        )
    with pytest.raises(CouponNotRedeemable, match="until"):
        discount_create(coupon=CouponFactory(redeem_by=D(2025, 12, 31)), subscription=subscription, as_of=D(2026, 1, 1))
    limited = CouponFactory(max_redemptions=1)
    discount_create(coupon=limited, subscription=subscription, as_of=D(2026, 1, 1))
    with pytest.raises(CouponNotRedeemable, match="redeemed 1 times"):
        discount_create(coupon=limited, subscription=subscription, as_of=D(2026, 1, 1))
    with pytest.raises(SubscriptionError, match="forever"):
        discount_create(coupon=CouponFactory(), customer=subscription.customer, as_of=D(2026, 1, 1))
    assert Discount.objects.filter(subscription=subscription).count() == 1


def test_coupon_restricted_to_a_product_discounts_only_its_lines():
    from subscriptions.services import ItemSpec

    seats = PriceFactory(per_unit=True, unit_amount=Money("10.00", "EUR"))
    support = PriceFactory(unit_amount=Money("50.00", "EUR"))
    coupon = CouponFactory(forever=True, percent_off=Decimal("10"))
    coupon.products.add(support.product)
    subscription = SubscriptionFactory(
        items=[ItemSpec(seats, 3), ItemSpec(support, 1)], start_date=D(2026, 1, 1), coupon=coupon, price=seats
    )
    (period,) = bill(subscription, D(2026, 1, 1))
    assert [line.discount_amount.amount for line in period.lines] == [Decimal("0"), Decimal("5.00")]
