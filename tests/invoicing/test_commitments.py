"""Minimum commitments and progressive billing (issue 25; docs/decisions/commitments.md): exact amounts, German
VAT 19 %, a month [Jan 1, Feb 1) whose usage is billed on Feb 1."""

from __future__ import annotations

import datetime as dt
import io
import json
import threading
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection
from djmoney.money import Money

from invoicing.billing_run import billing_run
from invoicing.models import Invoice
from invoicing.progressive import progressive_billing_run
from invoicing.subscription_billing import subscription_upcoming_invoice
from subscriptions.charges import commitment_for_window, period_accruals
from subscriptions.models import ProgressiveBilling, Subscription
from subscriptions.services import ItemSpec, subscription_commitments_update, usage_record_create
from tests.factories import NumberSeriesFactory, PriceFactory, SubscriptionFactory, TaxRateFactory

D = Decimal
JAN_1, FEB_1 = dt.date(2026, 1, 1), dt.date(2026, 2, 1)


@pytest.fixture
def _vat(series, vat_de):
    """Default number series and German VAT 19 % (the customers' default country)."""


def _usage(subscription: Subscription, quantity: str, day: int, key: str) -> None:
    item = subscription.items.get(price__usage_type="metered")
    usage_record_create(
        subscription_item=item,
        quantity=D(quantity),
        timestamp=dt.datetime(2026, 1, day, 12, tzinfo=dt.UTC),
        idempotency_key=key,
    )


def _plan_with_usage(*, fee: str | None = "100.00") -> Subscription:
    calls = PriceFactory(unit_amount=Money(D("1.00"), "EUR"), metered=True)
    items = [ItemSpec(price=calls, quantity=1)]
    if fee is not None:
        items.insert(0, ItemSpec(price=PriceFactory(unit_amount=Money(D(fee), "EUR")), quantity=1))
    return SubscriptionFactory(items=items, start_date=JAN_1)


def _lines(invoice: Invoice) -> list[tuple[str, Decimal, Decimal]]:
    return [(line.kind, line.net_amount, line.tax_amount) for line in invoice.lines.order_by("position")]


@pytest.mark.django_db
@pytest.mark.usefixtures("_vat")
def test_usage_below_the_minimum_gets_a_true_up_line_taxed_like_the_plan():
    subscription = _plan_with_usage()
    subscription_commitments_update(subscription=subscription, minimum_commitment=D("500.00"), usage_thresholds=[])
    billing_run(as_of=JAN_1)  # January's fee, 100.00, in advance
    _usage(subscription, "150", 10, "a")
    _usage(subscription, "70", 20, "b")
    subscription.refresh_from_db()
    preview = subscription_upcoming_invoice(subscription=subscription, as_of=dt.date(2026, 1, 25))

    billing_run(as_of=FEB_1)

    assert preview is not None
    assert [(line.kind, line.net_amount) for line in preview.lines] == [
        ("recurring", D("100.00")),
        ("usage", D("220.00")),
        ("commitment", D("180.00")),
    ]
    assert preview.invoice.total == D("595.00")
    february = Invoice.objects.get(subscription=subscription, issue_date=FEB_1)
    # February's fee in advance; January's usage 220.00; January spent 100.00 + 220.00 = 320.00 → 180.00 short
    assert _lines(february) == [
        ("recurring", D("100.00"), D("19.00")),
        ("usage", D("220.00"), D("41.80")),
        ("commitment", D("180.00"), D("34.20")),
    ]
    true_up = february.lines.get(kind="commitment")
    assert (true_up.period_start, true_up.period_end, true_up.tax_category) == (JAN_1, FEB_1, "S")
    assert true_up.description == (
        "Minimum commitment true-up — 1 Jan 2026 – 31 Jan 2026 (minimum 500.00 EUR, billed 320.00)"
    )
    assert (february.subtotal, february.tax_total, february.total) == (D("500.00"), D("95.00"), D("595.00"))


@pytest.mark.django_db
@pytest.mark.usefixtures("_vat")
def test_usage_only_plan_short_of_its_minimum_is_trued_up_to_it():
    subscription = _plan_with_usage(fee=None)
    subscription_commitments_update(subscription=subscription, minimum_commitment=D("500.00"), usage_thresholds=[])
    billing_run(as_of=JAN_1)
    _usage(subscription, "320", 10, "a")

    billing_run(as_of=FEB_1)

    invoice = Invoice.objects.get(subscription=subscription)
    assert _lines(invoice) == [("usage", D("320.00"), D("60.80")), ("commitment", D("180.00"), D("34.20"))]
    assert (invoice.subtotal, invoice.tax_total, invoice.total) == (D("500.00"), D("95.00"), D("595.00"))


@pytest.mark.django_db
@pytest.mark.usefixtures("_vat")
def test_no_true_up_when_the_period_spends_more_than_the_minimum():
    subscription = _plan_with_usage()
    subscription_commitments_update(subscription=subscription, minimum_commitment=D("500.00"), usage_thresholds=[])
    billing_run(as_of=JAN_1)
    _usage(subscription, "450", 10, "a")

    billing_run(as_of=FEB_1)

    february = Invoice.objects.get(subscription=subscription, issue_date=FEB_1)
    assert _lines(february) == [("recurring", D("100.00"), D("19.00")), ("usage", D("450.00"), D("85.50"))]
    assert february.total == D("654.50")


def test_the_commitment_of_a_short_period_is_prorated_by_days():
    subscription = Subscription(
        currency="EUR",
        interval="month",
        interval_count=1,
        billing_cycle_anchor=dt.date(2026, 1, 1),
        minimum_commitment=D("500.00"),
    )
    assert commitment_for_window(subscription, (JAN_1, FEB_1)) == D("500.00")
    # started on Jan 15: 17 of January's 31 days → 500 × 17 / 31 = 274.193… → 274.19
    assert commitment_for_window(subscription, (dt.date(2026, 1, 15), FEB_1)) == D("274.19")
    # canceled on Feb 11: 10 of February's 28 days → 178.571… → 178.57
    assert commitment_for_window(subscription, (FEB_1, dt.date(2026, 2, 11))) == D("178.57")


def _threshold_plan() -> Subscription:
    subscription = _plan_with_usage(fee=None)
    subscription_commitments_update(subscription=subscription, minimum_commitment=None, usage_thresholds=["1000"])
    return subscription


@pytest.mark.django_db
@pytest.mark.usefixtures("_vat")
def test_a_threshold_invoice_then_the_periods_invoice_deducting_it_add_up_to_one_invoice():
    subscription = _threshold_plan()
    control = _plan_with_usage(fee=None)  # the same usage, no threshold: one invoice at the period's end
    billing_run(as_of=JAN_1)
    for sub in (subscription, control):
        _usage(sub, "600", 10, f"{sub.pk}-a")
    assert progressive_billing_run(as_of=dt.date(2026, 1, 10)).issued == []  # 600.00: below 1,000.00
    for sub in (subscription, control):
        _usage(sub, "450", 15, f"{sub.pk}-b")

    outcome = progressive_billing_run(as_of=dt.date(2026, 1, 15))

    assert [(entry.subscription_id, entry.threshold) for entry in outcome.issued] == [(subscription.pk, D("1000.00"))]
    threshold_invoice = Invoice.objects.get(subscription=subscription)
    assert (threshold_invoice.status, threshold_invoice.billing_reason, threshold_invoice.issue_date) == (
        "open",
        "subscription_threshold",
        dt.date(2026, 1, 15),
    )
    assert (threshold_invoice.period_start, threshold_invoice.period_end) == (JAN_1, dt.date(2026, 1, 16))
    assert _lines(threshold_invoice) == [("usage", D("1050.00"), D("199.50"))]
    assert threshold_invoice.total == D("1249.50")
    for sub in (subscription, control):
        _usage(sub, "350", 20, f"{sub.pk}-c")

    dry = billing_run(as_of=FEB_1, dry_run=True)
    run = billing_run(as_of=FEB_1)

    assert (
        (dry.invoices_created, dry.totals) == (run.invoices_created, run.totals) == (2, {"EUR": "2082.50"})
    )  # 416.50 + 1,666.00
    final = Invoice.objects.get(subscription=subscription, issue_date=FEB_1)
    assert _lines(final) == [("usage", D("1400.00"), D("266.00")), ("usage", D("-1050.00"), D("-199.50"))]
    assert final.lines.order_by("position").last().description.startswith("Billed during the period (invoiced")
    assert (final.subtotal, final.tax_total, final.total) == (D("350.00"), D("66.50"), D("416.50"))
    one_invoice = Invoice.objects.get(subscription=control)
    assert threshold_invoice.total + final.total == one_invoice.total == D("1666.00")
    assert threshold_invoice.tax_total + final.tax_total == one_invoice.tax_total == D("266.00")


@pytest.mark.django_db
@pytest.mark.usefixtures("_vat")
def test_a_second_threshold_bills_only_the_usage_since_the_first():
    subscription = _plan_with_usage(fee=None)
    subscription_commitments_update(
        subscription=subscription, minimum_commitment=None, usage_thresholds=["1000", "2000.00"]
    )
    billing_run(as_of=JAN_1)
    _usage(subscription, "1200", 10, "a")
    progressive_billing_run(as_of=dt.date(2026, 1, 10))
    _usage(subscription, "1000", 12, "b")
    progressive_billing_run(as_of=dt.date(2026, 1, 12))
    _usage(subscription, "5", 20, "c")
    billing_run(as_of=FEB_1)

    invoices = list(Invoice.objects.filter(subscription=subscription).order_by("pk"))
    assert [(i.billing_reason, i.subtotal, i.total) for i in invoices] == [
        ("subscription_threshold", D("1200.00"), D("1428.00")),
        ("subscription_threshold", D("1000.00"), D("1190.00")),  # 2,200.00 so far less the 1,200.00 billed
        ("subscription_cycle", D("5.00"), D("5.95")),
    ]
    assert sum(i.total for i in invoices) == D("2205.00") * D("1.19")
    assert list(ProgressiveBilling.objects.order_by("threshold").values_list("threshold", "amount")) == [
        (D("1000.000"), D("1200.000")),
        (D("2000.000"), D("2200.000")),
    ]


@pytest.mark.django_db
@pytest.mark.usefixtures("_vat")
def test_the_threshold_invoice_is_issued_once_when_the_job_runs_twice():
    subscription = _threshold_plan()
    billing_run(as_of=JAN_1)
    _usage(subscription, "1500", 10, "a")

    out = io.StringIO()
    call_command("progressive_billing", "--as-of", "2026-01-10", "--json", stdout=out)
    again = progressive_billing_run(as_of=dt.date(2026, 1, 11))

    first = json.loads(out.getvalue())
    assert [(i["subscription"], i["threshold"], i["total"]) for i in first["invoices"]] == [
        (subscription.pk, "1000.00", "1785.00")
    ]
    assert again.issued == []
    assert Invoice.objects.filter(subscription=subscription).count() == 1
    accrual = period_accruals(subscription_ids=[subscription.pk], as_of=dt.date(2026, 1, 11))[0]
    assert (accrual.usage_amount, accrual.billed_amount, accrual.threshold_due) == (D("1500.00"), D("1500.000"), None)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_threshold_invoice_is_issued_once_when_two_jobs_run_at_once(monkeypatch):
    from core import events

    monkeypatch.setitem(events._registry, "invoice.issued", [])
    NumberSeriesFactory(default_invoices=True)
    TaxRateFactory(country="DE", percentage=D("19"))
    subscriptions = [_threshold_plan() for _ in range(3)]
    billing_run(as_of=JAN_1)
    for sub in subscriptions:
        _usage(sub, "1000", 10, f"{sub.pk}")
    barrier = threading.Barrier(2)
    issued: list[int] = []
    errors: list[BaseException] = []

    def job() -> None:
        try:
            barrier.wait(timeout=30)
            issued.append(len(progressive_billing_run(as_of=dt.date(2026, 1, 10)).issued))
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=job) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not errors, errors
    assert sum(issued) == 3
    assert Invoice.objects.filter(billing_reason="subscription_threshold").count() == 3
    assert sorted(Invoice.objects.values_list("number", flat=True)) == [f"INV-2026-{n:06d}" for n in range(1, 4)]
    assert ProgressiveBilling.objects.count() == 3


@pytest.mark.django_db
@pytest.mark.usefixtures("_vat")
def test_the_migration_backfills_the_recurring_fees_billed_for_the_current_period():
    from importlib import import_module

    from django.apps import apps

    migration = import_module("invoicing.migrations.0017_commitments_threshold_invoices")
    subscription = _plan_with_usage()
    unbilled = _plan_with_usage()
    billing_run(as_of=JAN_1, subscription_id=subscription.pk)  # January's fee: 100.00
    Subscription.objects.update(period_recurring_net=D(0))  # as before the migration

    migration.current_period_recurring_billed(apps, None)

    subscription.refresh_from_db()
    unbilled.refresh_from_db()
    assert (subscription.period_recurring_net, unbilled.period_recurring_net) == (D("100.000"), D("0.000"))
