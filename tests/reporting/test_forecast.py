"""The forecast (reporting/forecast.py): what it says for the next days is what the billing run, the payment
retries and the reminders then do, day by day, to the cent."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from djmoney.money import Money

from dunning import services as dunning
from dunning.models import DunningAction, DunningActionKind, DunningActionStatus
from invoicing.billing_run import billing_run
from invoicing.models import Invoice
from payments.models import PaymentAttempt, PaymentMethod
from payments.services import customer_credit_adjust, payment_attempts_retry_due
from reporting.forecast import forecast_actuals, forecast_compute
from subscriptions.models import Interval
from subscriptions.services import ItemSpec, subscription_cancel, subscription_change
from tests.factories import CustomerFactory, InvoiceFactory, PriceFactory, SubscriptionFactory, TaxRateFactory
from tests.factories.invoicing import NumberSeriesFactory
from tests.factories.payments import PaymentMethodFactory

D = Decimal
BERLIN = ZoneInfo("Europe/Berlin")
TODAY = dt.date(2026, 3, 1)  # the forecast's as-of date; the base is billed up to the day before
DAYS = 60

pytestmark = [pytest.mark.django_db, pytest.mark.scenario, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _setup(db):
    NumberSeriesFactory(default_invoices=True)
    NumberSeriesFactory(default_credit_notes=True)
    TaxRateFactory(country="DE", percentage=D("19"))
    dunning.seed_dunning()  # friendly −3, reminders +1, +7, +14, suspend +30, uncollectible +60


def _run_day(day: dt.date, capture) -> None:
    """The day's jobs in their beat order (billing 05:00, retries 07:00, reminders 09:00), handlers included."""
    for hour, job in ((5, billing_run), (7, payment_attempts_retry_due), (9, dunning.send_reminders)):
        at = dt.datetime(day.year, day.month, day.day, hour, tzinfo=BERLIN)
        with time_machine.travel(at, tick=False), capture(execute=True):
            job(as_of=day)


def _seed(capture) -> dict[str, object]:
    monthly = PriceFactory(unit_amount=Money(D("31.00"), "EUR"))
    seats = PriceFactory(unit_amount=Money(D("12.50"), "EUR"))
    yearly = PriceFactory(unit_amount=Money(D("480.00"), "USD"), interval=Interval.YEAR)
    trial_price = PriceFactory(unit_amount=Money(D("19.99"), "EUR"))

    # Monthly, sent for payment and never paid: renewals, then reminders, then suspension at +30.
    unpaid = SubscriptionFactory(price=monthly, start_date=dt.date(2026, 1, 20))
    # Yearly in USD, charged automatically, partly paid by the customer's credit.
    yearly_customer = CustomerFactory(currency="USD")
    PaymentMethodFactory(customer=yearly_customer)
    yearly_sub = SubscriptionFactory(
        customer=yearly_customer,
        price=yearly,
        start_date=dt.date(2025, 4, 10),
        collection_method="charge_automatically",
    )
    # A trial that converts on March 17, charged automatically.
    trial_customer = CustomerFactory()
    PaymentMethodFactory(customer=trial_customer)
    SubscriptionFactory(
        customer=trial_customer,
        price=trial_price,
        start_date=dt.date(2026, 2, 15),
        trial_days=30,
        collection_method="charge_automatically",
    )
    # Canceled at period end (March 5): nothing more is billed.
    ending = SubscriptionFactory(price=monthly, start_date=dt.date(2026, 1, 5))
    # Seats 2 → 5 on February 25: the prorations go with the next invoice (March 10).
    changed = SubscriptionFactory(price=seats, quantity=2, start_date=dt.date(2026, 1, 10))
    # Charged automatically; the card was declined (soft) on its last invoice, then the customer replaced it.
    retried_customer = CustomerFactory()
    PaymentMethodFactory(customer=retried_customer, processing_error=True)
    SubscriptionFactory(
        customer=retried_customer,
        price=monthly,
        start_date=dt.date(2026, 2, 10),
        collection_method="charge_automatically",
    )
    # A one-off invoice overdue today (due February 24).
    overdue = InvoiceFactory(customer=CustomerFactory(), finalized=dt.date(2026, 2, 10))

    with time_machine.travel(dt.datetime(2026, 2, 25, 10, tzinfo=BERLIN), tick=False):
        with capture(execute=True):
            billing_run(as_of=dt.date(2026, 2, 25))
        subscription_change(subscription=changed, items=[ItemSpec(price=seats, quantity=5)], as_of=dt.date(2026, 2, 25))
        subscription_cancel(subscription=ending, as_of=dt.date(2026, 2, 25), at_period_end=True)
    _run_day(dt.date(2026, 2, 28), capture)
    PaymentMethod.objects.filter(customer=retried_customer).update(is_default=False)
    PaymentMethodFactory(customer=retried_customer)
    customer_credit_adjust(customer=yearly_customer, amount=D("100.00"), currency="USD", reason="goodwill")
    return {"unpaid": unpaid, "yearly": yearly_sub, "overdue": overdue, "retried_customer": retried_customer}


COMPARED = ("invoices", "total", "net", "tax", "credit", "charges", "reminders", "late_fees")


def test_the_forecast_for_60_days_is_what_the_jobs_then_do_day_by_day(django_capture_on_commit_callbacks):
    base = _seed(django_capture_on_commit_callbacks)
    failed = PaymentAttempt.objects.get(customer=base["retried_customer"], next_retry_on__isnull=False)
    assert (failed.status, failed.attempt_number, failed.next_retry_on) == ("failed", 2, dt.date(2026, 3, 2))
    invoices_before = Invoice.objects.count()

    with time_machine.travel(dt.datetime(2026, 3, 1, 4, tzinfo=BERLIN), tick=False):
        forecast = forecast_compute(days=DAYS, as_of=TODAY)
    assert Invoice.objects.count() == invoices_before  # the forecast writes nothing

    for offset in range(DAYS):
        _run_day(TODAY + dt.timedelta(days=offset), django_capture_on_commit_callbacks)

    actual = forecast_actuals(start=TODAY, end=forecast.last_day)
    predicted = {
        (row.day, row.currency): {name: getattr(row, name) for name in COMPARED}
        for row in forecast.rows
        if any(getattr(row, name) for name in COMPARED)
    }
    happened = {
        key: {name: values[name] for name in COMPARED}
        for key, values in actual.items()
        if any(values[name] for name in COMPARED)
    }
    assert predicted == happened

    # The drill-down names who: the invoices and reminder e-mails behind the figures are those of the same
    # customers and subscriptions, on the same days (an existing invoice's reminders name the invoice too).
    def drill(figure: str) -> Counter[tuple[object, ...]]:
        return Counter(
            (entry.day, entry.customer_id, entry.subscription_id, entry.invoice_id, entry.amount)
            for currency in ("EUR", "USD")
            for entry in forecast.entries_for(day=None, currency=currency, figure=figure)
        )

    issued = Invoice.objects.filter(issue_date__range=(TODAY, forecast.last_day)).exclude(
        pk__in=DunningAction.objects.filter(late_fee_invoice__isnull=False).values("late_fee_invoice_id")
    )
    assert drill("invoices") == Counter(
        (invoice.issue_date, invoice.customer_id, invoice.subscription_id, None, invoice.total) for invoice in issued
    )
    sent = DunningAction.objects.filter(
        as_of__range=(TODAY, forecast.last_day), action=DunningActionKind.EMAIL, status=DunningActionStatus.DONE
    ).select_related("invoice")
    assert Counter(key[:3] for key in drill("reminders")) == Counter(
        (action.as_of, action.invoice.customer_id, action.invoice.subscription_id) for action in sent
    )
    assert {key[3] for key in drill("reminders")} - {None} == {
        action.invoice_id for action in sent if action.invoice.issue_date < TODAY
    }

    # The cash the automatic charges brought is what the forecast expected of them, on the same days.
    charged = {(row.day, row.currency): row.charges_amount for row in forecast.rows if row.charges_amount}
    received = {key: values["cash_in"] for key, values in actual.items() if values["cash_in"]}
    assert charged == received

    # The base is the one described: each kind of event is in the forecast, on its day.
    rows = {(row.day, row.currency): row for row in forecast.rows}
    assert rows[dt.date(2026, 3, 17), "EUR"].trial_conversions == 1
    assert rows[dt.date(2026, 3, 10), "EUR"].plan_changes == 1
    assert rows[dt.date(2026, 3, 5), "EUR"].cancellations == 1
    yearly = rows[dt.date(2026, 4, 10), "USD"]
    assert (yearly.invoices, yearly.total, yearly.credit, yearly.charges_amount) == (
        1,
        D("571.20"),
        D("100.00"),
        D("471.20"),
    )
    assert rows[dt.date(2026, 3, 2), "EUR"].charges == 1  # the retry
    assert rows[dt.date(2026, 3, 3), "EUR"].reminders == 1  # the overdue invoice's +7 (its +1 went out on Feb 28)
    # Suspended at +30 of its first invoices (due March 11): no invoice after April 10.
    assert not any(
        entry.subscription_id == base["unpaid"].pk and entry.day > dt.date(2026, 4, 10)
        for entry in forecast.entries_for(day=None, currency="EUR", figure="invoices")
    )
    assert sum(row.reminders for row in forecast.rows) > 5
