"""A year of billing for a handful of customers, the calendar run forward one day at a time as the daily beat
task would, with the exact amounts a finance lead would check by hand."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from djmoney.money import Money

from invoicing.billing_run import billing_run
from invoicing.models import Invoice
from subscriptions.models import SubscriptionStatus
from subscriptions.services import (
    ItemSpec,
    subscription_cancel,
    subscription_change,
    subscription_create,
    usage_record_create,
)
from tests.factories import CouponFactory, CustomerFactory, PriceFactory, TaxRateFactory

D = Decimal


def _days(start: dt.date, end: dt.date):
    day = start
    while day <= end:
        yield day
        day += dt.timedelta(days=1)


def _totals(customer) -> tuple[int, Decimal]:
    invoices = Invoice.objects.filter(customer=customer).exclude(status="draft")
    return invoices.count(), sum((i.total for i in invoices), D(0))


@pytest.mark.slow
@pytest.mark.scenario
@pytest.mark.django_db
def test_a_year_of_billing_for_five_customers(series):
    TaxRateFactory(country="DE", percentage=D("19"))
    pro = PriceFactory(product__name="Pro", unit_amount=Money(D("49.00"), "EUR"))
    seat = PriceFactory(product__name="Team seat", unit_amount=Money(D("12.00"), "EUR"), per_unit=True)
    basic = PriceFactory(product__name="Basic", unit_amount=Money(D("20.00"), "EUR"))
    plus = PriceFactory(product__name="Plus", unit_amount=Money(D("50.00"), "EUR"))
    base_jpy = PriceFactory(product__name="API base", unit_amount=Money(D("1000"), "JPY"))
    calls_jpy = PriceFactory(product__name="API calls", unit_amount=Money(D("0.35"), "JPY"), metered=True)

    # A: Pro monthly from 15 Jan, German VAT. B: three seats from 31 Jan (month-end anchor), reverse charge,
    # 10 % off for three periods. C: Basic from 1 Mar, upgraded to Plus on 14 Mar, canceled at period end in
    # November. D: JPY base fee plus metered calls from 1 Jun, exempt. E: Pro after a 14-day trial.
    a = CustomerFactory(name="Anna GmbH")
    b = CustomerFactory(name="Bergführer OG", reverse_charge=True)
    c = CustomerFactory(name="Café Größenwahn")
    d = CustomerFactory(name="株式会社さくら", country="JP", currency="JPY", exempt=True)
    e = CustomerFactory(name="Emil Trial")
    subscription_create(customer=a, items=[ItemSpec(price=pro, quantity=1)], start_date=dt.date(2026, 1, 15))
    subscription_create(
        customer=b,
        items=[ItemSpec(price=seat, quantity=3)],
        start_date=dt.date(2026, 1, 31),
        coupon=CouponFactory(repeating=True, percent_off=D("10")),
    )
    sub_c = subscription_create(customer=c, items=[ItemSpec(price=basic, quantity=1)], start_date=dt.date(2026, 3, 1))
    sub_d = subscription_create(
        customer=d,
        items=[ItemSpec(price=base_jpy, quantity=1), ItemSpec(price=calls_jpy, quantity=1)],
        start_date=dt.date(2026, 6, 1),
    )
    subscription_create(
        customer=e, items=[ItemSpec(price=pro, quantity=1)], start_date=dt.date(2026, 1, 1), trial_days=14
    )
    calls_item = sub_d.items.get(price=calls_jpy)

    for day in _days(dt.date(2026, 1, 1), dt.date(2026, 12, 31)):
        if day == dt.date(2026, 3, 14):
            subscription_change(subscription=sub_c, items=[ItemSpec(price=plus, quantity=1)], as_of=day)
        if day == dt.date(2026, 11, 20):
            subscription_cancel(subscription=sub_c, as_of=day, at_period_end=True)
        if day.day == 10 and dt.date(2026, 6, 1) <= day <= dt.date(2026, 11, 30):
            usage_record_create(
                subscription_item=calls_item,
                quantity=D("1001"),
                timestamp=dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC),
                idempotency_key=f"calls-{day}",
            )
        run = billing_run(as_of=day)
        assert run.failed == 0, day

    # A: 15 Jan … 15 Dec, 12 × (49.00 + 9.31)
    assert _totals(a) == (12, D("699.72"))
    # B: 31 Jan, 28 Feb, 31 Mar, 30 Apr … 31 Dec; 3 × 32.40 (10 % off 36.00) + 9 × 36.00, no VAT
    assert _totals(b) == (12, D("421.20"))
    b_dates = list(Invoice.objects.filter(customer=b).order_by("issue_date").values_list("issue_date", flat=True))
    assert [x.day for x in b_dates] == [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    # C: 1 Mar 20.00 + 3.80; 1 Apr: Plus 50.00, unused Basic −11.61 (18/31 of 20.00), remaining Plus 29.03
    # (18/31 of 50.00), VAT 9.50 − 2.21 + 5.52 = 12.81 → 80.23; 1 May … 1 Nov 7 × 59.50; ended on 1 Dec.
    assert _totals(c) == (9, D("520.53"))
    april = Invoice.objects.get(customer=c, issue_date=dt.date(2026, 4, 1))
    assert sorted(april.lines.values_list("amount", flat=True)) == [D("-11.61"), D("29.03"), D("50.00")]
    assert (april.tax_total, april.total) == (D("12.81"), D("80.23"))
    sub_c.refresh_from_db()
    assert (sub_c.status, sub_c.ended_at) == (SubscriptionStatus.ENDED, dt.date(2026, 12, 1))
    # D: 1 Jun base 1000; 1 Jul … 1 Dec base 1000 + previous month's 1001 calls × 0.35 = 350.35 → 350
    assert _totals(d) == (7, D("9100"))
    # E: trial until 15 Jan, then like A
    assert _totals(e) == (12, D("699.72"))
    # every number once, in one gapless sequence
    numbers = sorted(Invoice.objects.values_list("number", flat=True))
    assert numbers == [f"INV-2026-{n:06d}" for n in range(1, 53)]
