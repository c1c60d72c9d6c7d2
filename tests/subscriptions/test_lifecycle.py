"""The staff lifecycle services: undo a cancel at period end, extend a trial, remove a coupon, the coupon checks
named on their field (also in the Discount admin), all audited with their actor."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.urls import reverse
from djmoney.money import Money

from core.errors import ApplicationError
from subscriptions.charges import charges_due
from subscriptions.models import Discount, SubscriptionEvent, SubscriptionStatus
from subscriptions.services import (
    discount_create,
    discount_remove,
    subscription_cancel,
    subscription_cancel_undo,
    subscription_trial_extend,
)
from tests.factories import StaffUserFactory
from tests.factories.subscriptions import CouponFactory, PriceFactory, SubscriptionFactory
from tests.subscriptions.conftest import amounts, bill

pytestmark = pytest.mark.django_db
D = dt.date


def _last_event(subscription):
    return SubscriptionEvent.objects.filter(subscription=subscription).order_by("pk").last()


def test_undo_cancel_at_period_end_renews_as_before():
    clerk = StaffUserFactory(group="Billing clerk")
    subscription = SubscriptionFactory(price=PriceFactory(unit_amount=Money("20.00", "EUR")), start_date=D(2026, 3, 1))
    bill(subscription, D(2026, 3, 1))
    subscription_cancel(subscription=subscription, as_of=D(2026, 3, 10), at_period_end=True, actor=clerk)
    subscription_cancel_undo(subscription=subscription, actor=clerk, reason="changed their mind")
    assert (subscription.cancel_at_period_end, subscription.canceled_at) == (False, None)
    assert _last_event(subscription).actor == clerk
    (period,) = bill(subscription, D(2026, 4, 1))
    assert amounts(period) == [Decimal("20.00")] and subscription.status == SubscriptionStatus.ACTIVE
    with pytest.raises(ApplicationError, match="not set to cancel"):
        subscription_cancel_undo(subscription=subscription)


def test_extending_a_trial_moves_the_first_invoice_and_the_anchor():
    subscription = SubscriptionFactory(
        price=PriceFactory(unit_amount=Money("20.00", "EUR")), start_date=D(2026, 3, 1), trial_days=14
    )
    assert subscription.trial_end == D(2026, 3, 15)
    subscription_trial_extend(subscription=subscription, trial_end=D(2026, 3, 31), as_of=D(2026, 3, 10))
    assert charges_due(subscription=subscription, as_of=D(2026, 3, 30)) == []
    (period,) = bill(subscription, D(2026, 3, 31))
    assert (period.period_start, period.period_end, amounts(period)) == (
        D(2026, 3, 31),
        D(2026, 4, 30),
        [Decimal("20.00")],
    )
    assert "trial extended from 2026-03-15 to 2026-03-31" in SubscriptionEvent.objects.filter(
        subscription=subscription
    ).values_list("reason", flat=True)
    with pytest.raises(ApplicationError) as caught:
        subscription_trial_extend(subscription=subscription, trial_end=D(2026, 5, 1), as_of=D(2026, 4, 1))
    assert "trialing" in str(caught.value)


def test_a_trial_cannot_be_shortened_by_extending_it():
    subscription = SubscriptionFactory(start_date=D(2026, 3, 1), trial_days=14)
    with pytest.raises(ApplicationError) as caught:
        subscription_trial_extend(subscription=subscription, trial_end=D(2026, 3, 10), as_of=D(2026, 3, 5))
    assert caught.value.field == "trial_end"


def test_removing_a_coupon_stops_its_discount_from_that_date():
    price = PriceFactory(unit_amount=Money("100.00", "EUR"))
    subscription = SubscriptionFactory(price=price, start_date=D(2026, 3, 1))
    discount = discount_create(coupon=CouponFactory(forever=True), subscription=subscription, as_of=D(2026, 3, 1))
    (march,) = bill(subscription, D(2026, 3, 1))
    assert march.discount_total == Money("10.00", "EUR")
    discount_remove(discount=discount, as_of=D(2026, 3, 20))
    (april,) = bill(subscription, D(2026, 4, 1))
    assert april.discount_total == Money("0.00", "EUR")
    assert Discount.objects.get().end == D(2026, 3, 20)
    assert "removed from 2026-03-20" in _last_event(subscription).reason


def test_an_unused_coupon_removed_on_its_first_day_is_deleted():
    subscription = SubscriptionFactory(start_date=D(2026, 3, 1))
    discount = discount_create(coupon=CouponFactory(), subscription=subscription, as_of=D(2026, 3, 5))
    assert discount_remove(discount=discount, as_of=D(2026, 3, 5)) is None
    assert not Discount.objects.exists()


@pytest.mark.parametrize(
    ("coupon_kwargs", "message"),
    [
        ({"active": False}, "not active"),
        ({"redeem_by": D(2026, 2, 28)}, "has expired"),
        ({"max_redemptions": 2, "times_redeemed": 2}, "redemption limit"),
        ({"percent_off": None, "amount_off": Money("5", "USD")}, "amount in USD"),
    ],
)
def test_coupon_checks_name_the_coupon_field(coupon_kwargs, message):
    subscription = SubscriptionFactory(start_date=D(2026, 3, 1))
    with pytest.raises(ApplicationError, match=message) as caught:
        discount_create(coupon=CouponFactory(**coupon_kwargs), subscription=subscription, as_of=D(2026, 3, 1))
    assert caught.value.field == "coupon"


def test_a_coupon_for_other_products_is_refused():
    subscription = SubscriptionFactory(price=PriceFactory(product__name="Basic"), start_date=D(2026, 3, 1))
    coupon = CouponFactory(code="PROONLY")
    coupon.products.add(PriceFactory(product__name="Pro").product)
    with pytest.raises(ApplicationError, match="applies to Pro") as caught:
        discount_create(coupon=coupon, subscription=subscription, as_of=D(2026, 3, 1))
    assert caught.value.field == "coupon"


def test_the_discount_admin_goes_through_the_service_and_its_checks(admin_client):
    subscription = SubscriptionFactory(start_date=D(2026, 3, 1))
    expired = CouponFactory(code="OLD", redeem_by=D(2026, 1, 31))
    url = reverse("admin:subscriptions_discount_add")
    data = {"coupon": expired.pk, "subscription": subscription.pk, "start": "2026-03-01"}
    response = admin_client.post(url, data)
    assert response.status_code == 200 and "has expired" in response.content.decode()
    assert not Discount.objects.exists()
    good = CouponFactory(code="GOOD", max_redemptions=1)
    response = admin_client.post(url, {**data, "coupon": good.pk})
    assert response.status_code == 302
    good.refresh_from_db()
    assert good.times_redeemed == 1 and Discount.objects.get().coupon == good
    assert _last_event(subscription).actor.username == "admin"
    response = admin_client.post(url, {**data, "coupon": good.pk})
    assert "redemption limit" in response.content.decode() and Discount.objects.count() == 1
