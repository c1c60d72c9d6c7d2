"""plans_for_chunk and plans_commit use a fixed number of queries whatever the chunk size."""

import datetime as dt
from decimal import Decimal

import pytest
from djmoney.money import Money

from subscriptions.charges import plans_for_chunk
from subscriptions.services import ItemSpec, discount_create, plans_commit, subscription_change, usage_record_create
from tests.factories.customers import CustomerFactory
from tests.factories.subscriptions import CouponFactory, PriceFactory, SubscriptionFactory, tiered_price
from tests.subscriptions.test_usage import at

pytestmark = pytest.mark.django_db
D = dt.date


def _chunk(size):
    seats = PriceFactory(per_unit=True, unit_amount=Money("10.00", "EUR"))
    bigger = PriceFactory(per_unit=True, unit_amount=Money("12.00", "EUR"))
    calls = tiered_price(model="graduated", tiers=[(100, "0.10", "1"), (None, "0.05", "0")], usage_type="metered")
    coupon = CouponFactory(forever=True)
    ids = []
    for index in range(size):
        subscription = SubscriptionFactory(
            customer=CustomerFactory(),
            items=[ItemSpec(seats, 3), ItemSpec(calls, 0)],
            price=seats,
            start_date=D(2026, 3, 1),
        )
        plans_commit(plans=plans_for_chunk(subscription_ids=[subscription.pk], as_of=D(2026, 3, 1)))
        discount_create(coupon=coupon, subscription=subscription, as_of=D(2026, 3, 1))
        calls_item = subscription.items.get(price=calls)
        usage_record_create(
            subscription_item=calls_item,
            quantity=Decimal(150),
            timestamp=at(D(2026, 3, 4)),
            idempotency_key=f"q{size}-{index}",
        )
        if index % 2:
            subscription_change(
                subscription=subscription, items=[ItemSpec(bigger, 3), ItemSpec(calls, 0)], as_of=D(2026, 3, 14)
            )
        ids.append(subscription.pk)
    return ids


@pytest.mark.parametrize("size", [10, pytest.param(200, marks=pytest.mark.slow)])
def test_plans_for_chunk_and_commit_use_a_fixed_number_of_queries(size, django_assert_max_num_queries):
    ids = _chunk(size)
    with django_assert_max_num_queries(7):
        plans = plans_for_chunk(subscription_ids=ids, as_of=D(2026, 4, 1))
    assert len(plans) == size
    for plan in plans:
        (period,) = plan.periods
        kinds = [line.kind for line in period.lines]
        assert kinds.count("recurring") == 1 and kinds.count("usage") == 3  # tier 1, its flat fee, tier 2
        assert all(line.discount_amount.amount >= 0 for line in period.lines)
    with django_assert_max_num_queries(7):
        assert plans_commit(plans=plans) == ids
