"""The forecast's pricing signatures (reporting/forecast_billing.py): subscriptions that bill the same invoices share
one computation, and every ingredient of an invoice is in the signature — flipping one puts the subscription in a
group of its own and changes its forecast as the run's own code, run for it alone, says."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from djmoney.money import Money

from customers.models import Customer, TaxStatus, VatStatus
from dunning.models import DunningPolicy
from invoicing.billing_run import billing_run
from reporting.forecast import forecast_compute
from reporting.forecast_billing import group_subscriptions
from subscriptions.charges import PriceCache
from subscriptions.models import Subscription
from subscriptions.services import (
    ItemSpec,
    discount_create,
    subscription_cancel,
    subscription_change,
    usage_record_create,
)
from tests.factories import CustomerFactory, PriceFactory, SubscriptionFactory, TaxRateFactory
from tests.factories.invoicing import NumberSeriesFactory
from tests.factories.subscriptions import CouponFactory

D = Decimal
BERLIN = ZoneInfo("Europe/Berlin")
FEB_1 = dt.date(2026, 2, 1)
FEB_15 = dt.date(2026, 2, 15)
TODAY = dt.date(2026, 3, 1)
DAYS = 60

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _setup(db):
    NumberSeriesFactory(default_invoices=True)
    TaxRateFactory(country="DE", percentage=D("19"))
    TaxRateFactory(country="FR", percentage=D("20"))
    DunningPolicy.objects.update(is_default=False)  # no one is chased: no suspension stops a renewal here


def _base(capture) -> dict[str, Subscription]:
    """Twins of one base subscription (31.00 EUR a month, German customer, sent for payment), and one variant per
    ingredient of the signature, billed for February; the changes made on February 15."""
    monthly = PriceFactory(unit_amount=Money(D("31.00"), "EUR"), per_unit=True)  # per seat
    dearer = PriceFactory(unit_amount=Money(D("32.00"), "EUR"), per_unit=True)
    dollars = PriceFactory(unit_amount=Money(D("31.00"), "USD"), per_unit=True)
    calls = PriceFactory(unit_amount=Money(D("0.0125"), "EUR"), metered=True)

    def sub(price=monthly, quantity=1, start=FEB_1, **customer) -> Subscription:
        return SubscriptionFactory(
            customer=CustomerFactory(**customer), price=price, quantity=quantity, start_date=start
        )

    subs = {
        "base": sub(),
        "twin": sub(name="Another name", email="other@example.com", city="Hamburg"),  # identity only
        "price": sub(price=dearer),
        "quantity": sub(quantity=2),
        "country": sub(country="FR"),
        "exempt": sub(tax_status=TaxStatus.EXEMPT),
        "vat_id": sub(country="FR", tax_id="FR40303265045"),  # an EU business: reverse charge
        "vat_invalid": sub(country="FR", tax_id="FR40303265045"),  # VIES says invalid (below): taxed
        "currency": sub(price=dollars, currency="USD"),
        "coupon": sub(),
        "customer_coupon": sub(),
        "pending": sub(),
        "cancel": sub(),
        "terms": sub(payment_terms_days=30),
        "automatic": sub(),
        "metered_used": SubscriptionFactory(
            items=[ItemSpec(price=monthly, quantity=1), ItemSpec(price=calls, quantity=1)], start_date=FEB_1
        ),
        "metered_idle": SubscriptionFactory(
            items=[ItemSpec(price=monthly, quantity=1), ItemSpec(price=calls, quantity=1)], start_date=FEB_1
        ),
        "commitment": sub(),
        "thresholds": SubscriptionFactory(
            items=[ItemSpec(price=monthly, quantity=1), ItemSpec(price=calls, quantity=1)], start_date=FEB_1
        ),
    }
    Customer.objects.filter(pk=subs["vat_invalid"].customer_id).update(vat_status=VatStatus.INVALID)
    Subscription.objects.filter(pk=subs["commitment"].pk).update(minimum_commitment=D("50.00"))
    # a threshold makes the period's invoice read its own threshold invoices: priced alone
    Subscription.objects.filter(pk=subs["thresholds"].pk).update(usage_thresholds=["100.00"])
    Subscription.objects.filter(pk=subs["automatic"].pk).update(collection_method="charge_automatically")
    with time_machine.travel(dt.datetime(2026, 2, 1, 10, tzinfo=BERLIN), tick=False):
        billing_run(as_of=FEB_1)
    subs["trial"] = SubscriptionFactory(price=monthly, start_date=dt.date(2026, 2, 20), trial_days=14)  # → March 6
    with time_machine.travel(dt.datetime(2026, 2, 15, 10, tzinfo=BERLIN), tick=False):
        # 25 % off the next invoice only (a coupon that ends inside the horizon)
        discount_create(
            coupon=CouponFactory(percent_off=D("25"), repeating=True, duration_in_periods=1),
            as_of=FEB_15,
            subscription=subs["coupon"],
        )
        discount_create(
            coupon=CouponFactory(percent_off=D("10"), forever=True),
            as_of=FEB_15,
            customer=subs["customer_coupon"].customer,
        )
        subscription_change(subscription=subs["pending"], items=[ItemSpec(price=monthly, quantity=3)], as_of=FEB_15)
        subscription_cancel(subscription=subs["cancel"], as_of=FEB_15, at_period_end=True)
        usage_record_create(
            subscription_item=subs["metered_used"].items.get(price=calls),
            quantity=D("1000"),
            timestamp=dt.datetime(2026, 2, 10, 12, tzinfo=dt.UTC),
            idempotency_key="calls-1",
        )
    return subs


def _invoices(forecast, subscription: Subscription) -> list[tuple[dt.date, str, Decimal, Decimal, str]]:
    return [
        (entry.day, entry.currency, entry.amount, entry.tax, entry.kind)
        for entry in forecast.entries
        if entry.figure == "invoices" and entry.subscription_id == subscription.pk
    ]


def _signature_of(groups) -> dict[int, int]:
    return {
        member.subscription_id: number
        for number, members in enumerate(groups.by_signature.values())
        for member in members
    }


def test_every_ingredient_is_in_the_signature_and_memoising_changes_no_cent(django_capture_on_commit_callbacks):
    subs = _base(django_capture_on_commit_callbacks)
    last_day = TODAY + dt.timedelta(days=DAYS - 1)

    with time_machine.travel(dt.datetime(2026, 3, 1, 8, tzinfo=BERLIN), tick=False):
        groups = group_subscriptions(last_day=last_day, prices=PriceCache())
        grouped = forecast_compute(days=DAYS, as_of=TODAY)
        alone = forecast_compute(days=DAYS, as_of=TODAY, grouped=False)

    # The memoised forecast is, entry for entry, the one that prices every subscription on its own.
    def key(entry):
        return tuple(str(value) for value in entry)

    assert Counter(map(key, grouped.entries)) == Counter(map(key, alone.entries))
    assert [row.as_dict() for row in grouped.rows] == [row.as_dict() for row in alone.rows]

    # The twins share a signature (computed once); every flipped ingredient makes a group of its own.
    signature = _signature_of(groups)
    assert signature[subs["twin"].pk] == signature[subs["base"].pk]
    for name, subscription in subs.items():
        if name not in ("base", "twin"):
            assert signature[subscription.pk] != signature[subs["base"].pk], name
    assert len(groups.by_signature) == len(subs) - 1
    assert groups.subscriptions == len(subs)

    base = _invoices(grouped, subs["base"])
    assert base == [
        (TODAY, "EUR", D("36.89"), D("5.89"), "renewal"),
        (dt.date(2026, 4, 1), "EUR", D("36.89"), D("5.89"), "renewal"),
    ]
    assert _invoices(grouped, subs["twin"]) == base
    expected = {
        "price": [D("38.08"), D("38.08")],
        "quantity": [D("73.78"), D("73.78")],
        "country": [D("37.20"), D("37.20")],
        "exempt": [D("31.00"), D("31.00")],
        "vat_id": [D("31.00"), D("31.00")],
        "vat_invalid": [D("37.20"), D("37.20")],
        "currency": [D("36.89"), D("36.89")],  # in USD: a German customer pays German VAT in any currency
        "coupon": [D("27.67"), D("36.89")],  # 25 % off March only: 23.25 + 19 %
        "customer_coupon": [D("33.20"), D("33.20")],  # 10 % off forever: 27.90 + 19 %
        "cancel": [],  # ends on March 1: nothing more billed
        "terms": [D("36.89"), D("36.89")],
        "automatic": [D("36.89"), D("36.89")],
        "metered_used": [D("51.77"), D("36.89")],  # 1,000 calls × 0.0125 = 12.50 (+ 2.38 VAT) in March, then none
        "metered_idle": [D("36.89"), D("36.89")],
        "thresholds": [D("36.89"), D("36.89")],  # no usage: no threshold crossed
    }
    for name, totals in expected.items():
        assert [invoice[2] for invoice in _invoices(grouped, subs[name])] == totals, name
    assert _invoices(grouped, subs["currency"])[0][1] == "USD"
    # The seat change of February 15 (1 → 3): its prorations ride on the March invoice, then 3 seats.
    pending = _invoices(grouped, subs["pending"])
    assert [invoice[4] for invoice in pending] == ["plan_change", "renewal"]
    assert pending[1][2] == D("110.67")
    assert pending[0][2] > pending[1][2]
    # The trial converts on March 6 (its first invoice), then renews on April 6.
    trial = _invoices(grouped, subs["trial"])
    assert [(invoice[0], invoice[2], invoice[4]) for invoice in trial] == [
        (dt.date(2026, 3, 6), D("36.89"), "trial_conversion"),
        (dt.date(2026, 4, 6), D("36.89"), "renewal"),
    ]
    # Same amounts, other due dates and collection: cash in on the due date (30 days) or by the charge (today).
    cash = {
        name: sorted(
            entry.day
            for entry in grouped.entries
            if entry.figure == "cash_in" and entry.subscription_id == subs[name].pk and entry.invoice_id is None
        )
        for name in ("base", "terms", "automatic")
    }
    assert cash["automatic"][0] == TODAY
    assert cash["terms"][0] == TODAY + dt.timedelta(days=30)
    assert cash["base"][0] not in (cash["automatic"][0], cash["terms"][0])
