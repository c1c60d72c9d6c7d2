"""The forecast's faces: the admin page (drill-down, CSV, cache), forecast vs actual, the command."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command
from djmoney.money import Money

from invoicing.billing_run import billing_run
from reporting.forecast import forecast_cached, forecast_compare
from reporting.models import ForecastDay
from tests.factories import PriceFactory, SubscriptionFactory, TaxRateFactory
from tests.factories.invoicing import NumberSeriesFactory

pytestmark = pytest.mark.django_db
MARCH_1 = dt.date(2026, 3, 1)


@pytest.fixture
def subscriptions(db):
    NumberSeriesFactory(default_invoices=True)
    TaxRateFactory(country="DE", percentage=Decimal("19"))
    price = PriceFactory(unit_amount=Money(Decimal("31.00"), "EUR"))
    return [SubscriptionFactory(price=price, start_date=dt.date(2026, 3, 5)) for _ in range(2)]


def test_page_shows_the_figures_and_the_customers_behind_one(
    admin_client, subscriptions, django_assert_max_num_queries
):
    with django_assert_max_num_queries(40):
        page = admin_client.get("/admin/reports/forecast/", {"days": "30", "as_of": "2026-03-01"})
    assert page.status_code == 200
    html = page.content.decode()
    assert "2026-03-05" in html and "€73.78" in html and "What a forecast cannot know" in html
    assert "<svg" in html  # the charts
    drill = admin_client.get(
        "/admin/reports/forecast/",
        {"days": "30", "as_of": "2026-03-01", "figure": "invoices", "drill_currency": "EUR", "day": "2026-03-05"},
    )
    text = drill.content.decode()
    for subscription in subscriptions:
        assert subscription.customer.name in text
    download = admin_client.get(
        "/admin/reports/forecast/",
        {"days": "30", "as_of": "2026-03-01", "figure": "invoices", "drill_currency": "EUR", "format": "csv"},
    )
    lines = download.content.decode().splitlines()
    assert lines[0] == "date,customer_id,customer,subscription_id,invoice_id,kind,amount"
    assert len(lines) == 3 and lines[1].endswith(",new,36.89")
    summary = admin_client.get("/admin/reports/forecast/", {"days": "30", "as_of": "2026-03-01", "format": "csv"})
    assert "2026-03-05,EUR,2,62.00,11.78,73.78" in summary.content.decode()


def test_the_forecast_is_cached_per_horizon_and_date_until_recomputed(subscriptions):
    first = forecast_cached(days=30, as_of=MARCH_1)
    assert forecast_cached(days=30, as_of=MARCH_1).computed_at == first.computed_at
    assert forecast_cached(days=7, as_of=MARCH_1).computed_at != first.computed_at
    assert forecast_cached(days=30, as_of=MARCH_1, refresh=True).computed_at != first.computed_at


def test_command_prints_the_issue_s_json_and_stores_the_snapshot(subscriptions, admin_client):
    out = StringIO()
    call_command("forecast", "--days", "10", "--as-of", "2026-03-01", "--json", "--store", stdout=out)
    body = json.loads(out.getvalue().splitlines()[-1])
    assert body["as_of"] == "2026-03-01"
    assert [
        {key: day[key] for key in ("date", "currency", "invoices", "total", "reminders", "charges")}
        for day in body["days"]
    ] == [{"date": "2026-03-05", "currency": "EUR", "invoices": 2, "total": "73.78", "reminders": 0, "charges": 0}]
    assert ForecastDay.objects.get(made_on=MARCH_1).total == Decimal("73.78")

    # Forecast vs actual: the run issues what was forecast; a new sign-up on the 5th is what it could not know.
    SubscriptionFactory(price=subscriptions[0].items.get().price, start_date=dt.date(2026, 3, 5))
    with time_machine.travel(dt.datetime(2026, 3, 5, 5, tzinfo=dt.UTC), tick=False):
        billing_run(as_of=dt.date(2026, 3, 5))
    comparison = forecast_compare(made_on=MARCH_1, until=dt.date(2026, 3, 6))
    assert [(row["day"], row["invoices"], row["total"]) for row in comparison.rows] == [
        (dt.date(2026, 3, 5), (2, 3), (Decimal("73.78"), Decimal("110.67")))
    ]
    with time_machine.travel(dt.datetime(2026, 3, 7, 12, tzinfo=dt.UTC), tick=False):
        page = admin_client.get("/admin/reports/forecast/compare/", {"made_on": "2026-03-01"})
    assert page.status_code == 200
    assert "≠" in page.content.decode() and "new sign-ups" in page.content.decode()


def test_a_bad_horizon_is_named(subscriptions):
    with pytest.raises(CommandError, match="days: give a number of days from 1 to 366"):
        call_command("forecast", "--days", "0")


def test_late_fees_and_a_customer_s_own_policy_are_forecast_as_the_reminders_then_apply(subscriptions):
    from dunning import services as dunning
    from dunning.models import DunningActionKind, DunningPolicy
    from reporting.forecast import forecast_actuals, forecast_compute
    from tests.factories import InvoiceFactory
    from tests.factories.dunning import CustomerDunningSettingsFactory, DunningStepFactory

    strict = DunningStepFactory(offset_days=1).policy
    DunningStepFactory(
        policy=strict,
        offset_days=5,
        action=DunningActionKind.LATE_FEE,
        template="",
        late_fee_percent=Decimal("2.5"),
    )
    overdue = InvoiceFactory(finalized=dt.date(2026, 2, 10))  # 119.00 due February 24
    CustomerDunningSettingsFactory(customer=overdue.customer, policy=strict)
    held = InvoiceFactory(finalized=dt.date(2026, 2, 10))
    dunning.invoice_hold_reminders_set(invoice=held, hold=True)
    assert DunningPolicy.objects.filter(is_default=True).exists()

    forecast = forecast_compute(days=10, as_of=MARCH_1)
    for offset in range(10):
        dunning.send_reminders(as_of=MARCH_1 + dt.timedelta(days=offset))
    fees = [(row.day, row.late_fees, row.late_fees_amount) for row in forecast.rows if row.late_fees]
    assert fees == [(MARCH_1, 1, Decimal("2.98"))]  # 2.5 % of 119.00, on due + 5
    actual = forecast_actuals(start=MARCH_1, end=forecast.last_day)
    assert {key: row["late_fees"] for key, row in actual.items() if row["late_fees"]} == {(MARCH_1, "EUR"): 1}
    reminders = {row.day: row.reminders for row in forecast.rows if row.reminders}
    assert reminders == {MARCH_1: 1}
    assert reminders == {
        key[0]: row["reminders"] for key, row in actual.items() if row["reminders"]
    }  # the +1 of the strict policy (sent on the first day), none for the held invoice


def test_the_reminders_drill_down_names_each_e_mail_as_the_policy_does(admin_client):
    """A reminder's kind is its e-mail template: the drill-down and its CSV show the template's name ("Payment
    reminder"), not its file ("reminders/reminder")."""
    from dunning.models import ReminderTemplate
    from tests.factories import InvoiceFactory
    from tests.factories.dunning import CustomerDunningSettingsFactory, DunningStepFactory

    NumberSeriesFactory(default_invoices=True)
    TaxRateFactory(country="DE", percentage=Decimal("19"))
    policy = DunningStepFactory(offset_days=1, template=ReminderTemplate.REMINDER).policy
    overdue = InvoiceFactory(finalized=dt.date(2026, 2, 10))  # 119.00 due February 24
    CustomerDunningSettingsFactory(customer=overdue.customer, policy=policy)
    query = {"days": "7", "as_of": "2026-03-01", "figure": "reminders", "drill_currency": "EUR", "day": "2026-03-01"}
    html = admin_client.get("/admin/reports/forecast/", query).content.decode()
    assert overdue.customer.name in html and "Payment reminder" in html and "reminders/reminder" not in html
    rows = admin_client.get("/admin/reports/forecast/", {**query, "format": "csv"}).content.decode().splitlines()
    assert len(rows) == 2 and rows[1].endswith(",Payment reminder,119.00")
