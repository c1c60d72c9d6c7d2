from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from subscriptions.charges import PeriodCharges, plans_for_chunk
from subscriptions.services import plans_commit


def amounts(period: PeriodCharges) -> list[Decimal]:
    return [line.amount.amount for line in period.lines]


def bill(subscription, as_of: dt.date) -> list[PeriodCharges]:
    """What the billing run does for one subscription: plan, then commit the advancement."""
    plans = plans_for_chunk(subscription_ids=[subscription.pk], as_of=as_of)
    if not plans:
        return []
    assert plans_commit(plans=plans) == [subscription.pk]
    subscription.refresh_from_db()
    return plans[0].periods


@pytest.fixture
def run_billing():
    return bill
