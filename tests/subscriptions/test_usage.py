"""Usage: idempotency, aggregation, late usage, trial usage, CSV import command."""

import datetime as dt
import json
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from djmoney.money import Money

from core.dates import billing_tz
from subscriptions.charges import charges_due
from subscriptions.models import UsageEvent
from subscriptions.services import IdempotencyConflict, UsageRejected, usage_record_create
from tests.factories.subscriptions import PriceFactory, SubscriptionFactory, tiered_price
from tests.subscriptions.conftest import bill

pytestmark = pytest.mark.django_db
D = dt.date


def at(day: dt.date, hour: int = 12) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=billing_tz())


@pytest.fixture
def api_calls():
    price = PriceFactory(metered=True, unit_amount=Money("0.0125", "EUR"), product__name="API calls")
    subscription = SubscriptionFactory(price=price, quantity=0, start_date=D(2026, 3, 1))
    bill(subscription, D(2026, 3, 1))  # metered only: nothing to invoice in advance
    return subscription, subscription.items.get()


def test_usage_is_billed_in_arrears_and_a_resent_record_is_ignored(api_calls):
    subscription, item = api_calls
    record, created = usage_record_create(
        subscription_item=item, quantity=Decimal(700), timestamp=at(D(2026, 3, 10)), idempotency_key="k1"
    )
    assert created
    again, created = usage_record_create(
        subscription_item=item, quantity=Decimal(700), timestamp=at(D(2026, 3, 10)), idempotency_key="k1"
    )
    assert (again.pk, created) == (record.pk, False)
    with pytest.raises(IdempotencyConflict):
        usage_record_create(
            subscription_item=item, quantity=Decimal(1), timestamp=at(D(2026, 3, 10)), idempotency_key="k1"
        )
    usage_record_create(
        subscription_item=item, quantity=Decimal(300), timestamp=at(D(2026, 3, 31), 23), idempotency_key="k2"
    )
    (period,) = charges_due(subscription=subscription, as_of=D(2026, 4, 1))
    (line,) = period.lines
    assert (line.kind, line.quantity, line.unit_amount, line.amount) == (
        "usage",
        Decimal(1000),
        Money("0.0125", "EUR"),
        Money("12.50", "EUR"),
    )
    assert (line.period_start, line.period_end) == (D(2026, 3, 1), D(2026, 4, 1))
    assert line.description == "API calls × 1000 — usage 1 Mar 2026 – 31 Mar 2026"


def test_usage_in_the_billing_timezone_decides_the_period(api_calls):
    subscription, item = api_calls
    # 23:30 UTC on 31 March is 1 April in Berlin: next period.
    usage_record_create(
        subscription_item=item,
        quantity=Decimal(80),
        timestamp=dt.datetime(2026, 3, 31, 23, 30, tzinfo=dt.UTC),
        idempotency_key="tz",
    )
    assert charges_due(subscription=subscription, as_of=D(2026, 4, 1)) == []
    (period,) = charges_due(subscription=subscription, as_of=D(2026, 5, 1))
    assert period.lines[0].amount == Money("1.00", "EUR")


def test_late_usage_goes_to_the_next_period_never_lost(api_calls):
    subscription, item = api_calls
    usage_record_create(subscription_item=item, quantity=Decimal(400), timestamp=at(D(2026, 3, 5)), idempotency_key="a")
    (period,) = bill(subscription, D(2026, 4, 1))
    assert period.lines[0].amount == Money("5.00", "EUR")
    late, _ = usage_record_create(
        subscription_item=item, quantity=Decimal(200), timestamp=at(D(2026, 3, 20)), idempotency_key="late"
    )
    assert (late.usage_date, late.billing_date) == (D(2026, 3, 20), D(2026, 4, 1))
    usage_record_create(subscription_item=item, quantity=Decimal(100), timestamp=at(D(2026, 4, 2)), idempotency_key="b")
    (period,) = bill(subscription, D(2026, 5, 1))
    # April's usage, then March's late usage as an adjustment: 3.75 in all, as when both were one line.
    usage, adjustment = period.lines
    assert (usage.kind, usage.quantity, usage.amount) == ("usage", Decimal(100), Money("1.25", "EUR"))
    assert (adjustment.kind, adjustment.quantity, adjustment.amount) == (
        "adjustment",
        Decimal(200),
        Money("2.50", "EUR"),
    )
    assert (adjustment.period_start, adjustment.period_end) == (D(2026, 3, 1), D(2026, 4, 1))
    assert adjustment.description == "API calls × 200 — late usage of 1 Mar 2026 – 31 Mar 2026"
    assert period.subtotal == Money("3.75", "EUR")
    assert bill(subscription, D(2026, 6, 1)) == []


@pytest.mark.parametrize(("aggregation", "quantity"), [("sum", 17), ("max", 9), ("latest", 3)])
def test_aggregations(aggregation, quantity):
    price = PriceFactory(metered=True, aggregation=aggregation, unit_amount=Money("1.00", "EUR"))
    subscription = SubscriptionFactory(price=price, quantity=0, start_date=D(2026, 3, 1))
    item = subscription.items.get()
    for key, (day, amount) in enumerate([(D(2026, 3, 2), 5), (D(2026, 3, 9), 9), (D(2026, 3, 20), 3)]):
        usage_record_create(
            subscription_item=item, quantity=Decimal(amount), timestamp=at(day), idempotency_key=f"{aggregation}{key}"
        )
    periods = charges_due(subscription=subscription, as_of=D(2026, 4, 1))
    assert periods[-1].lines[0].quantity == Decimal(quantity)


def test_tiered_usage_uses_the_graduated_tiers():
    price = tiered_price(model="graduated", tiers=[(1000, "0.0100", "0"), (None, "0.0050", "0")], usage_type="metered")
    subscription = SubscriptionFactory(price=price, quantity=0, start_date=D(2026, 3, 1))
    usage_record_create(
        subscription_item=subscription.items.get(),
        quantity=Decimal(1500),
        timestamp=at(D(2026, 3, 3)),
        idempotency_key="t",
    )
    (period,) = charges_due(subscription=subscription, as_of=D(2026, 4, 1))
    assert [line.amount.amount for line in period.lines] == [Decimal("10.00"), Decimal("2.50")]


def test_trial_usage_is_free_and_usage_after_the_end_is_refused():
    price = PriceFactory(metered=True, unit_amount=Money("1.00", "EUR"))
    subscription = SubscriptionFactory(price=price, quantity=0, start_date=D(2026, 3, 1), trial_days=10)
    item = subscription.items.get()
    usage_record_create(
        subscription_item=item, quantity=Decimal(5), timestamp=at(D(2026, 3, 5)), idempotency_key="trial"
    )
    usage_record_create(
        subscription_item=item, quantity=Decimal(2), timestamp=at(D(2026, 3, 12)), idempotency_key="paid"
    )
    bill(subscription, D(2026, 3, 11))
    (period,) = charges_due(subscription=subscription, as_of=D(2026, 4, 11))
    assert period.lines[0].quantity == Decimal(2)
    from subscriptions.services import subscription_cancel

    subscription_cancel(subscription=subscription, as_of=D(2026, 3, 20))
    with pytest.raises(UsageRejected, match="canceled"):
        usage_record_create(
            subscription_item=item, quantity=Decimal(1), timestamp=at(D(2026, 3, 21)), idempotency_key="after"
        )
    (final,) = bill(subscription, D(2026, 3, 20))
    assert final.period_key == "2026-03-20/final" and final.lines[0].quantity == Decimal(2)


def _csv(tmp_path, text):
    path = tmp_path / "usage.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_import_usage_command_is_all_or_nothing_and_names_row_and_column(api_calls, tmp_path, capsys):
    _, item = api_calls
    bad = _csv(
        tmp_path,
        "subscription_item_id,quantity,timestamp,idempotency_key\n"
        f"{item.pk},10,2026-03-05T10:00:00,r1\n"
        f"{item.pk},-3,2026-03-05T10:00:00,r2\n"
        f"{item.pk},1,yesterday,r3\n"
        f"{item.pk},1,2026-03-05T10:00:00,r1\n",
    )
    with pytest.raises(CommandError, match="3 error"):
        call_command("import_usage", str(bad))
    err = capsys.readouterr().err
    assert "row 3, column 'quantity'" in err
    assert "row 4, column 'timestamp'" in err
    assert "row 5, column 'idempotency_key': duplicate of row 2" in err
    assert UsageEvent.objects.count() == 0


def test_import_usage_command_imports_and_a_resent_file_is_ignored(api_calls, tmp_path, capsys):
    subscription, item = api_calls
    good = _csv(
        tmp_path,
        "subscription_item_id,quantity,timestamp,idempotency_key\n"
        f"{item.pk},10,2026-03-05T10:00:00,r1\n"
        f"{item.pk},30,2026-03-06T10:00:00+00:00,r2\n",
    )
    call_command("import_usage", str(good), "--dry-run")
    assert "Dry run: would record 2" in capsys.readouterr().out
    assert UsageEvent.objects.count() == 0
    call_command("import_usage", str(good))
    assert "Recorded 2 usage record(s); ignored 0" in capsys.readouterr().out
    call_command("import_usage", str(good), "--json")
    assert json.loads(capsys.readouterr().out) == {
        "ok": True,
        "dry_run": False,
        "summary": "Recorded 0 usage record(s); ignored 2 already recorded.",
        "rows": 2,
        "counts": {"created": 0, "duplicates": 2},
        "errors": [],
        "details": {},
    }
    (period,) = charges_due(subscription=subscription, as_of=D(2026, 4, 1))
    assert period.lines[0].amount == Money("0.50", "EUR")
