"""The forecast's drill-down kept as entry groups (reporting/forecast.py ``EntryGroup``): subscriptions of one pricing
signature share their invoices and reminder schedules, and the groups stand for exactly the entries — customer by
customer, day by day — that settling and chasing every invoice on its own gives."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from decimal import Decimal

import pytest
from djmoney.money import Money

from dunning import services as dunning
from payments.services import customer_credit_adjust
from reporting.forecast import FIGURES, forecast_cached, forecast_compute
from subscriptions.models import Subscription
from tests.factories import PriceFactory, SubscriptionFactory, TaxRateFactory
from tests.factories.invoicing import NumberSeriesFactory

D = Decimal
MARCH_1 = dt.date(2026, 3, 1)
DAYS = 60

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

# What a day row counts per figure (the number of entries behind it).
COUNTED = {
    "invoices": "invoices",
    "drafts": "drafts",
    "charges": "charges",
    "reminders": "reminders",
    "late_fees": "late_fees",
    "cancellations": "cancellations",
}


@pytest.fixture
def twins(db):
    """Five subscriptions of one signature (31.00 EUR a month from March 5, German customers, sent for payment and
    chased by the default policy: reminders, then suspension at +30), one of them with 50.00 credit, one charged
    automatically."""
    NumberSeriesFactory(default_invoices=True)
    TaxRateFactory(country="DE", percentage=D("19"))
    dunning.seed_dunning()
    price = PriceFactory(unit_amount=Money(D("31.00"), "EUR"))
    subscriptions = [SubscriptionFactory(price=price, start_date=dt.date(2026, 3, 5)) for _ in range(5)]
    customer_credit_adjust(customer=subscriptions[3].customer, amount=D("50.00"), currency="EUR", reason="goodwill")
    Subscription.objects.filter(pk=subscriptions[4].pk).update(collection_method="charge_automatically")
    return subscriptions


def _key(entry) -> tuple[str, ...]:
    return tuple(str(value) for value in entry)


def test_groups_stand_for_the_entries_of_every_invoice_settled_and_chased_alone(twins):
    grouped = forecast_compute(days=DAYS, as_of=MARCH_1)
    alone = forecast_compute(days=DAYS, as_of=MARCH_1, grouped=False)

    # The same entries and rows as settling and chasing each subscription's invoices on its own.
    assert Counter(map(_key, grouped.entries)) == Counter(map(_key, alone.entries))
    assert [row.as_dict() for row in grouped.rows] == [row.as_dict() for row in alone.rows]
    assert grouped.entry_count == len(grouped.entries) == len(alone.entries)
    # ... with fewer records: the three plain twins share their invoices and their reminder schedule.
    reminder_groups = [group for group in grouped.groups if group.figure == "reminders"]
    assert len(reminder_groups) < len(grouped.entries_for(day=None, currency="EUR", figure="reminders"))
    assert any(len(group.who) == 3 for group in reminder_groups)
    assert len(grouped.groups) < len(alone.groups)

    # Every twin sent for payment is chased by name, on the same days; the one with credit (50.00 covers its first
    # 36.89) and the automatic one are not chased for a paid invoice.
    chased = Counter(
        entry.subscription_id for entry in grouped.entries_for(day=None, currency="EUR", figure="reminders")
    )
    plain = [subscription.pk for subscription in twins[:3]]
    assert len({chased[pk] for pk in plain}) == 1 and chased[plain[0]] > 0
    assert chased[twins[4].pk] == 0
    assert 0 < chased[twins[3].pk] < chased[plain[0]]
    credit = grouped.entries_for(day=dt.date(2026, 3, 5), currency="EUR", figure="credit")
    assert [(entry.customer_id, entry.amount) for entry in credit] == [(twins[3].customer_id, D("36.89"))]

    # The day rows count exactly the entries the drill-down lists, figure by figure.
    for row in grouped.rows:
        for figure in FIGURES:
            entries = grouped.entries_for(day=row.day, currency=row.currency, figure=figure)
            if figure in COUNTED:
                assert getattr(row, COUNTED[figure]) == len(entries), (row.day, figure)
            if figure == "invoices":
                assert row.total == sum((entry.amount for entry in entries), D(0))
            if figure == "cash_in":
                assert row.cash_in == sum((entry.amount for entry in entries), D(0))
    # A drill-down lists its entries in order of day, then subscription.
    reminders = grouped.entries_for(day=None, currency="EUR", figure="reminders")
    assert reminders == sorted(reminders, key=lambda entry: (entry.day, entry.subscription_id))

    # The cached forecast (pickled by the cache) keeps the groups: the same entries and rows.
    computed = forecast_cached(days=DAYS, as_of=MARCH_1, refresh=True)
    cached = forecast_cached(days=DAYS, as_of=MARCH_1)
    assert cached is not computed and cached.computed_at == computed.computed_at
    assert cached.entries == grouped.entries and cached.rows == grouped.rows


def test_a_customer_s_own_policy_splits_a_shared_schedule(twins):
    from dunning.models import DunningActionKind
    from tests.factories.dunning import CustomerDunningSettingsFactory, DunningStepFactory

    strict = DunningStepFactory(offset_days=1).policy
    DunningStepFactory(policy=strict, offset_days=3, action=DunningActionKind.SUBSCRIPTION_CANCEL, template="")
    CustomerDunningSettingsFactory(customer=twins[0].customer, policy=strict)
    CustomerDunningSettingsFactory(customer=twins[1].customer, hold_reminders=True)

    grouped = forecast_compute(days=DAYS, as_of=MARCH_1)
    alone = forecast_compute(days=DAYS, as_of=MARCH_1, grouped=False)
    assert Counter(map(_key, grouped.entries)) == Counter(map(_key, alone.entries))
    assert [row.as_dict() for row in grouped.rows] == [row.as_dict() for row in alone.rows]

    reminders = Counter(
        entry.subscription_id for entry in grouped.entries_for(day=None, currency="EUR", figure="reminders")
    )
    assert reminders[twins[0].pk] == 1  # the strict policy's +1, then canceled at +3: no renewal
    assert reminders[twins[1].pk] == 0  # held
    assert reminders[twins[2].pk] > 1  # the default policy
    invoices = Counter(
        entry.subscription_id for entry in grouped.entries_for(day=None, currency="EUR", figure="invoices")
    )
    assert invoices[twins[0].pk] == 1 and invoices[twins[2].pk] == 2
