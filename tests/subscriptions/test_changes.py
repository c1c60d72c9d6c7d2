"""Plan changes mid-period: prorated by days, each line rounded on its own (docs/proration.md)."""

import datetime as dt
from decimal import Decimal

import pytest
from djmoney.money import Money
from hypothesis import given, settings
from hypothesis import strategies as st

from subscriptions.charges import change_invoice_now_charges, charges_due
from subscriptions.models import PendingInvoiceItem, Price, Product
from subscriptions.services import (
    ItemSpec,
    ProrationBehavior,
    SubscriptionError,
    pending_items_mark_billed,
    proration_line,
    subscription_change,
    subscription_change_preview,
)
from tests.factories.subscriptions import PriceFactory, SubscriptionFactory
from tests.subscriptions.conftest import amounts, bill

D = dt.date


@pytest.fixture
def pro(db):
    price = PriceFactory(per_unit=True, unit_amount=Money("29.99", "EUR"), product__name="Pro")
    subscription = SubscriptionFactory(price=price, quantity=5, start_date=D(2026, 3, 1))
    bill(subscription, D(2026, 3, 1))
    return subscription, price


def test_quantity_up_on_day_14_of_a_31_day_month(pro):
    subscription, price = pro
    preview = subscription_change_preview(subscription=subscription, items=[ItemSpec(price, 8)], as_of=D(2026, 3, 14))
    assert [(line.description, line.amount) for line in preview.lines] == [
        ("Unused time on Pro × 5 from 14 Mar 2026 (18/31 days)", Money("-87.07", "EUR")),  # 149.95 × 18/31
        ("Remaining time on Pro × 8 from 14 Mar 2026 (18/31 days)", Money("139.31", "EUR")),  # 239.92 × 18/31
    ]
    assert all(line.proration and line.kind == "proration" for line in preview.lines)
    assert {(line.period_start, line.period_end) for line in preview.lines} == {(D(2026, 3, 14), D(2026, 4, 1))}
    result = subscription_change(subscription=subscription, items=[ItemSpec(price, 8)], as_of=D(2026, 3, 14))
    assert result.lines == preview.lines  # the preview is exact
    (period,) = charges_due(subscription=subscription, as_of=D(2026, 4, 1))
    assert amounts(period) == [Decimal("239.92"), Decimal("-87.07"), Decimal("139.31")]
    assert [line.pending_item_id is not None for line in period.lines] == [False, True, True]
    bill(subscription, D(2026, 4, 1))
    assert not PendingInvoiceItem.objects.filter(subscription=subscription, billed_at__isnull=True).exists()
    (period,) = charges_due(subscription=subscription, as_of=D(2026, 5, 1))
    assert amounts(period) == [Decimal("239.92")]  # prorations are billed once


def test_upgrade_to_another_price_credits_the_old_and_charges_the_new(pro):
    subscription, _ = pro
    team = PriceFactory(unit_amount=Money("99.00", "EUR"), product__name="Team")
    result = subscription_change(subscription=subscription, items=[ItemSpec(team, 1)], as_of=D(2026, 3, 14))
    assert [line.amount.amount for line in result.lines] == [Decimal("-87.07"), Decimal("57.48")]  # 99 × 18/31
    (period,) = charges_due(subscription=subscription, as_of=D(2026, 4, 1))
    assert period.lines[0].description == "Team"
    assert sum(amounts(period)) == Decimal("99.00") - Decimal("87.07") + Decimal("57.48")


def test_change_without_proration_creates_no_lines(pro):
    subscription, price = pro
    result = subscription_change(
        subscription=subscription,
        items=[ItemSpec(price, 2)],
        as_of=D(2026, 3, 14),
        proration_behavior=ProrationBehavior.NONE,
    )
    assert result.lines == [] and result.pending_item_ids == []
    (period,) = charges_due(subscription=subscription, as_of=D(2026, 4, 1))
    assert amounts(period) == [Decimal("59.98")]


def test_invoice_now_returns_a_change_invoice_and_the_next_cycle_skips_it(pro):
    subscription, price = pro
    result = subscription_change(
        subscription=subscription,
        items=[ItemSpec(price, 6)],
        as_of=D(2026, 3, 14),
        proration_behavior=ProrationBehavior.ALWAYS_INVOICE,
    )
    charges = change_invoice_now_charges(subscription=subscription, pending_item_ids=result.pending_item_ids)
    assert charges is not None and charges.billing_reason == "subscription_change"
    assert amounts(charges) == [Decimal("-87.07"), Decimal("104.48")]  # 179.94 × 18/31
    assert pending_items_mark_billed(pending_item_ids=result.pending_item_ids) == result.pending_item_ids
    assert pending_items_mark_billed(pending_item_ids=result.pending_item_ids) == []
    (period,) = charges_due(subscription=subscription, as_of=D(2026, 4, 1))
    assert amounts(period) == [Decimal("179.94")]


def test_change_outside_the_current_period_or_to_the_same_items_is_refused(pro):
    subscription, price = pro
    with pytest.raises(SubscriptionError, match="outside the current period"):
        subscription_change(subscription=subscription, items=[ItemSpec(price, 8)], as_of=D(2026, 4, 2))
    with pytest.raises(SubscriptionError, match="nothing changes"):
        subscription_change(subscription=subscription, items=[ItemSpec(price, 5)], as_of=D(2026, 3, 14))


def test_change_before_the_first_invoice_is_not_prorated(db):
    price = PriceFactory(per_unit=True, unit_amount=Money("10.00", "EUR"))
    subscription = SubscriptionFactory(price=price, quantity=1, start_date=D(2026, 3, 1))
    result = subscription_change(subscription=subscription, items=[ItemSpec(price, 3)], as_of=D(2026, 3, 1))
    assert result.lines == []
    (period,) = charges_due(subscription=subscription, as_of=D(2026, 3, 1))
    assert amounts(period) == [Decimal("30.00")]


def _price(amount: Decimal) -> Price:
    return Price(product=Product(name="P"), unit_amount=Money(amount, "EUR"), pricing_model="per_unit")


@settings(max_examples=300)
@given(
    old_amount=st.decimals(min_value="0.01", max_value=10000, places=2),
    new_amount=st.decimals(min_value="0.01", max_value=10000, places=2),
    old_quantity=st.integers(1, 50),
    new_quantity=st.integers(1, 50),
    period_days=st.sampled_from([28, 29, 30, 31, 365, 366, 7]),
    data=st.data(),
)
def test_credit_plus_new_charge_plus_paid_never_exceeds_a_full_period_of_the_larger(
    old_amount, new_amount, old_quantity, new_quantity, period_days, data
):
    start = D(2026, 1, 1)
    end = start + dt.timedelta(days=period_days)
    change_day = start + dt.timedelta(days=data.draw(st.integers(0, period_days - 1)))
    old, new = _price(old_amount), _price(new_amount)
    common = {"change_date": change_day, "period_start": start, "period_end": end, "subscription_item_id": None}
    credit = proration_line(price=old, quantity=old_quantity, credit=True, **common)
    charge = proration_line(price=new, quantity=new_quantity, credit=False, **common)
    paid = old_amount * old_quantity
    larger = max(paid, new_amount * new_quantity)
    assert credit.amount.amount <= 0 <= charge.amount.amount
    assert paid + credit.amount.amount + charge.amount.amount <= larger
    assert paid + credit.amount.amount >= 0
