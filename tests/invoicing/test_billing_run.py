"""The billing run: subscriptions → numbered invoices, exactly once, in chunks."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from djmoney.money import Money

from core import events
from core.models import DomainEvent
from invoicing.billing_run import billing_run
from invoicing.models import BillingRun, BillingRunError, Invoice, InvoiceLine, InvoiceStatus
from subscriptions.models import Subscription, SubscriptionStatus, TaxBehavior
from subscriptions.services import ItemSpec, ProrationBehavior, subscription_change, usage_record_create
from tests.factories import CustomerFactory, PriceFactory, SubscriptionFactory, TaxRateFactory

D = Decimal
JAN_1 = dt.date(2026, 1, 1)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _vat(series, vat_de):
    """Default number series and German VAT 19 % (the customers' default country)."""


def _numbers() -> list[str]:
    return list(Invoice.objects.exclude(number="").order_by("number").values_list("number", flat=True))


def test_run_issues_one_numbered_invoice_per_due_subscription_and_advances_them():
    price = PriceFactory(unit_amount=Money(D("31.00"), "EUR"))
    subscriptions = [SubscriptionFactory(price=price, start_date=JAN_1) for _ in range(3)]

    run = billing_run(as_of=JAN_1)

    assert (run.status, run.subscriptions_seen, run.invoices_created, run.failed) == ("succeeded", 3, 3, 0)
    assert run.totals == {"EUR": "110.67"}  # 3 × (31.00 + 5.89 VAT)
    assert _numbers() == ["INV-2026-000001", "INV-2026-000002", "INV-2026-000003"]
    invoice = Invoice.objects.get(subscription=subscriptions[0])
    assert (invoice.status, invoice.issue_date, invoice.due_date) == ("open", JAN_1, dt.date(2026, 1, 15))
    assert (invoice.period_start, invoice.period_end, invoice.billing_reason) == (
        JAN_1,
        dt.date(2026, 2, 1),
        "subscription_create",
    )
    assert (invoice.subtotal, invoice.tax_total, invoice.total, invoice.amount_due) == (
        D("31.00"),
        D("5.89"),
        D("36.89"),
        D("36.89"),
    )
    assert invoice.customer_snapshot["name"] == subscriptions[0].customer.name
    assert invoice.seller_snapshot["legal_name"]
    assert invoice.billing_run_id == run.pk
    for subscription in subscriptions:
        subscription.refresh_from_db()
        assert subscription.next_billing_date == dt.date(2026, 2, 1)


def test_second_run_for_the_same_date_issues_nothing():
    SubscriptionFactory(start_date=JAN_1)
    billing_run(as_of=JAN_1)
    again = billing_run(as_of=JAN_1)
    assert (again.subscriptions_seen, again.invoices_created) == (0, 0)
    assert Invoice.objects.count() == 1


def test_database_refuses_a_second_invoice_for_the_same_period():
    from django.db import IntegrityError, transaction

    subscription = SubscriptionFactory(start_date=JAN_1)
    billing_run(as_of=JAN_1)
    first = Invoice.objects.get()
    duplicate = Invoice(
        customer=first.customer,
        subscription=subscription,
        period_key=first.period_key,
        currency="EUR",
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        duplicate.save()


def test_catch_up_after_missed_days_bills_each_due_period_exactly_once():
    """Anchored on the 31st, the machine off until 1 April: Jan 31, Feb 28 and Mar 31 each billed once."""
    subscription = SubscriptionFactory(start_date=dt.date(2026, 1, 31))
    run = billing_run(as_of=dt.date(2026, 4, 1))
    assert run.invoices_created == 3
    periods = list(
        Invoice.objects.filter(subscription=subscription)
        .order_by("period_start")
        .values_list("period_start", "period_end")
    )
    assert periods == [
        (dt.date(2026, 1, 31), dt.date(2026, 2, 28)),
        (dt.date(2026, 2, 28), dt.date(2026, 3, 31)),
        (dt.date(2026, 3, 31), dt.date(2026, 4, 30)),
    ]
    assert billing_run(as_of=dt.date(2026, 4, 29)).invoices_created == 0
    assert billing_run(as_of=dt.date(2026, 4, 30)).invoices_created == 1


def test_dry_run_writes_nothing_and_reports_what_it_would_bill():
    SubscriptionFactory.create_batch(2, start_date=JAN_1)
    counts_before = (Invoice.objects.count(), BillingRun.objects.count())
    with CaptureQueriesContext(connection) as queries:
        run = billing_run(as_of=JAN_1, dry_run=True)
    assert run.pk is None and run.dry_run
    assert (run.invoices_created, run.totals) == (2, {"EUR": "73.78"})
    assert (Invoice.objects.count(), BillingRun.objects.count()) == counts_before
    assert not [q for q in queries.captured_queries if q["sql"].startswith(("INSERT", "UPDATE", "DELETE"))]
    assert Subscription.objects.filter(next_billing_date=JAN_1).count() == 2


def test_one_failing_subscription_is_recorded_and_does_not_stop_the_others(monkeypatch):
    import invoicing.billing_run as module

    good = SubscriptionFactory.create_batch(3, start_date=JAN_1)
    bad = SubscriptionFactory(start_date=JAN_1)
    real = module.invoice_from_period

    def flaky(*, period, **kwargs):
        if period.subscription_id == bad.pk:
            raise RuntimeError("pricing exploded")
        return real(period=period, **kwargs)

    monkeypatch.setattr(module, "invoice_from_period", flaky)
    run = billing_run(as_of=JAN_1, chunk_size=10)

    assert (run.status, run.invoices_created, run.failed) == ("partial", 3, 1)
    error = BillingRunError.objects.get(run=run)
    assert (error.subscription_id, error.message) == (bad.pk, "RuntimeError: pricing exploded")
    assert "Traceback" in error.traceback
    assert set(Invoice.objects.values_list("subscription_id", flat=True)) == {s.pk for s in good}
    bad.refresh_from_db()
    assert bad.next_billing_date == JAN_1  # not advanced: it will be billed when fixed
    # numbers stay gapless despite the rolled-back chunk
    assert _numbers() == [f"INV-2026-{n:06d}" for n in (1, 2, 3)]
    monkeypatch.setattr(module, "invoice_from_period", real)
    assert billing_run(as_of=JAN_1).invoices_created == 1


def test_customer_reviewing_invoices_gets_drafts_without_numbers(settings):
    reviewed = CustomerFactory(review_invoices=True)
    SubscriptionFactory(customer=reviewed, start_date=JAN_1)
    SubscriptionFactory(start_date=JAN_1)
    run = billing_run(as_of=JAN_1)
    assert (run.invoices_created, run.drafts_created) == (1, 1)
    draft = Invoice.objects.get(customer=reviewed)
    assert (draft.status, draft.number, draft.total) == ("draft", "", D("36.89"))
    assert "held for review" in draft.memo
    # the period counts as billed: the draft is the invoice for it
    assert billing_run(as_of=JAN_1).subscriptions_seen == 0

    settings.BILLING_AUTO_FINALIZE = False
    SubscriptionFactory(start_date=JAN_1)
    assert billing_run(as_of=JAN_1).drafts_created == 1


def test_without_the_sellers_country_invoices_are_held_and_issuing_names_the_profile():
    """A new installation's empty seller profile: the run does not guess domestic VAT for a Dutch business with a
    VAT number (it would be reverse charge from Germany) — it holds the drafts for review saying why, and issuing
    one refuses naming the profile, until staff fill it in."""
    from customers.models import SellerProfile
    from invoicing.services import InvoiceError, invoice_finalize

    TaxRateFactory(country="NL", percentage=D(21))
    customer = CustomerFactory(country="NL", tax_id="NL000099998B57", tax_status="taxable")
    SubscriptionFactory(customer=customer, start_date=JAN_1)
    SellerProfile.objects.update(country="")
    run = billing_run(as_of=JAN_1)
    assert (run.invoices_created, run.drafts_created) == (0, 1)
    draft = Invoice.objects.get(customer=customer)
    assert (draft.status, draft.number) == (InvoiceStatus.DRAFT, "")
    assert draft.memo == "held for review: the seller profile has no country (Customers › Seller profile): " + (
        "domestic, EU cross-border and export sales cannot be told apart"
    )
    with pytest.raises(InvoiceError, match="seller profile has no country"):
        invoice_finalize(invoice=draft)
    draft.refresh_from_db()
    assert (draft.status, draft.number) == (InvoiceStatus.DRAFT, "")

    SellerProfile.objects.update(country="DE")
    issued = invoice_finalize(invoice=draft)
    assert (issued.status, issued.tax_total, issued.tax_treatment) == (InvoiceStatus.OPEN, D("0.00"), "reverse_charge")
    assert issued.number == "INV-2026-000001"


def test_staff_finalize_a_reviewed_draft_keeping_the_computed_proration_amounts():
    from invoicing.services import invoice_finalize

    customer = CustomerFactory(review_invoices=True)
    pro = PriceFactory(unit_amount=Money(D("10.00"), "EUR"), per_unit=True)
    subscription = SubscriptionFactory(customer=customer, price=pro, quantity=3, start_date=dt.date(2026, 3, 1))
    billing_run(as_of=dt.date(2026, 3, 1))
    subscription_change(subscription=subscription, items=[ItemSpec(price=pro, quantity=5)], as_of=dt.date(2026, 3, 14))
    billing_run(as_of=dt.date(2026, 4, 1))
    draft = Invoice.objects.get(period_start=dt.date(2026, 4, 1))
    amounts = sorted(draft.lines.values_list("amount", flat=True))
    # 18/31 of 30.00 credited, 18/31 of 50.00 charged, April's 50.00
    assert amounts == [D("-17.42"), D("29.03"), D("50.00")]
    invoice_finalize(invoice=draft, issue_date=dt.date(2026, 4, 2))
    draft.refresh_from_db()
    assert sorted(draft.lines.values_list("amount", flat=True)) == [D("-17.42"), D("29.03"), D("50.00")]
    assert (draft.subtotal, draft.tax_total, draft.total) == (D("61.61"), D("11.71"), D("73.32"))


def test_period_that_nets_to_a_credit_is_held_as_a_draft():
    big = PriceFactory(unit_amount=Money(D("300.00"), "EUR"))
    small = PriceFactory(unit_amount=Money(D("1.00"), "EUR"))
    subscription = SubscriptionFactory(price=big, start_date=dt.date(2026, 3, 1))
    billing_run(as_of=dt.date(2026, 3, 1))
    subscription_change(
        subscription=subscription,
        items=[ItemSpec(price=small, quantity=1)],
        as_of=dt.date(2026, 3, 2),
        proration_behavior=ProrationBehavior.CREATE_PRORATIONS,
    )
    run = billing_run(as_of=dt.date(2026, 4, 1))
    assert (run.invoices_created, run.drafts_created) == (0, 1)
    draft = Invoice.objects.get(period_start=dt.date(2026, 4, 1))
    assert draft.total < 0 and draft.status == "draft"
    assert "nets to a credit" in draft.memo


def test_inclusive_price_keeps_its_gross_and_extracts_the_tax():
    price = PriceFactory(unit_amount=Money(D("119.00"), "EUR"), tax_behavior=TaxBehavior.INCLUSIVE)
    SubscriptionFactory(price=price, start_date=JAN_1)
    billing_run(as_of=JAN_1)
    invoice = Invoice.objects.get()
    line = invoice.lines.get()
    assert (line.amount, line.tax_amount, line.net_amount, line.total_amount) == (
        D("119.00"),
        D("19.00"),
        D("100.00"),
        D("119.00"),
    )
    assert invoice.total == D("119.00")


@pytest.mark.parametrize(
    ("currency", "country", "unit", "rate", "expected_total"),
    [
        ("JPY", "JP", "1234", "10", D("1357")),  # 1234 + round(123.4) = 1234 + 123
        ("BHD", "BH", "1.2345", "10", D("1.359")),  # 1.2345 → 1.235 (3 decimals); 10 % = 0.1235 → 0.124
        ("EUR", "DE", "3.335", "19", D("11.91")),  # 3 × 3.335 = 10.005 → 10.01; 19 % → 1.9019 → 1.90
    ],
)
def test_currency_minor_units_round_half_up_per_line(currency, country, unit, rate, expected_total):
    TaxRateFactory(country=country, percentage=D(rate)) if country != "DE" else None
    quantity = 3 if currency == "EUR" else 1
    price = PriceFactory(unit_amount=Money(D(unit), currency), per_unit=True)
    customer = CustomerFactory(country=country, currency=currency)
    SubscriptionFactory(customer=customer, price=price, quantity=quantity, start_date=JAN_1)
    run = billing_run(as_of=JAN_1)
    assert run.failed == 0, list(BillingRunError.objects.values_list("message", flat=True))
    assert Invoice.objects.get().total == expected_total


@pytest.mark.parametrize(
    ("customer_kwargs", "treatment", "tax", "note"),
    [
        ({"exempt": True}, "exempt", D("0"), "exempt"),
        ({"reverse_charge": True}, "reverse_charge", D("0"), "ATU13585627"),
    ],
)
def test_exempt_and_reverse_charge_customers_are_billed_without_tax(customer_kwargs, treatment, tax, note):
    customer = CustomerFactory(**customer_kwargs)
    SubscriptionFactory(customer=customer, start_date=JAN_1)
    billing_run(as_of=JAN_1)
    invoice = Invoice.objects.get()
    assert (invoice.tax_treatment, invoice.tax_total, invoice.total) == (treatment, tax, D("31.00"))
    assert note in invoice.tax_note.lower() or note in invoice.tax_note


def test_taxable_customer_without_a_configured_rate_gets_a_draft_not_a_wrong_invoice():
    customer = CustomerFactory(country="FR", currency="EUR")  # no FR rate configured
    SubscriptionFactory(customer=customer, start_date=JAN_1)
    run = billing_run(as_of=JAN_1)
    assert (run.invoices_created, run.drafts_created, run.failed) == (0, 1, 0)
    assert "no active tax rate for FR" in Invoice.objects.get().memo


def test_usage_is_billed_in_arrears_with_the_next_period():
    seats = PriceFactory(unit_amount=Money(D("10.00"), "EUR"), per_unit=True)
    calls = PriceFactory(unit_amount=Money(D("0.0125"), "EUR"), metered=True)
    subscription = SubscriptionFactory(
        items=[ItemSpec(price=seats, quantity=2), ItemSpec(price=calls, quantity=1)], start_date=JAN_1
    )
    billing_run(as_of=JAN_1)
    metered_item = subscription.items.get(price=calls)
    for n in range(3):
        usage_record_create(
            subscription_item=metered_item,
            quantity=D("1000"),
            timestamp=dt.datetime(2026, 1, 10 + n, 12, tzinfo=dt.UTC),
            idempotency_key=f"calls-{n}",
        )
    billing_run(as_of=dt.date(2026, 2, 1))
    february = Invoice.objects.get(period_start=dt.date(2026, 2, 1))
    lines = {line.kind: line for line in february.lines.all()}
    assert (lines["recurring"].amount, lines["usage"].amount) == (D("20.00"), D("37.50"))
    assert (lines["usage"].period_start, lines["usage"].period_end) == (JAN_1, dt.date(2026, 2, 1))


def test_finalized_invoices_are_handed_to_the_invoice_issued_handlers(django_capture_on_commit_callbacks):
    SubscriptionFactory.create_batch(2, start_date=JAN_1)
    SubscriptionFactory(customer=CustomerFactory(review_invoices=True), start_date=JAN_1)
    seen: list[int] = []
    with (
        events.handler_registered(
            event_type="invoice.issued",
            name="test.seen",
            phase=events.NOTIFY,
            handler=lambda event: seen.append(event.payload["invoice_id"]),
        ),
        django_capture_on_commit_callbacks(execute=True),
    ):
        billing_run(as_of=JAN_1)
    assert sorted(seen) == sorted(Invoice.objects.exclude(status="draft").values_list("pk", flat=True))
    assert len(seen) == 2


def _mixed_subscriptions(count: int) -> None:
    seats = PriceFactory(unit_amount=Money(D("12.00"), "EUR"), per_unit=True)
    base = PriceFactory(unit_amount=Money(D("29.00"), "EUR"))
    calls = PriceFactory(unit_amount=Money(D("0.0125"), "EUR"), metered=True)
    for n in range(count):
        items = [ItemSpec(price=base, quantity=1), ItemSpec(price=seats, quantity=1 + n % 5)]
        if n % 2:
            items.append(ItemSpec(price=calls, quantity=1))
        SubscriptionFactory(items=items, start_date=JAN_1)


@pytest.mark.slow
@pytest.mark.parametrize("chunk_size", [20, 200])
def test_a_chunk_costs_at_most_seventeen_queries_whatever_its_size(chunk_size):
    from invoicing.billing_run import RunContext, billing_run_chunk
    from invoicing.numbering import number_series_default
    from invoicing.taxes import tax_rates_load

    _mixed_subscriptions(chunk_size)
    billing_run(as_of=JAN_1)  # the first invoices; then February is a plain cycle with usage in arrears
    ids = list(Subscription.objects.order_by("pk").values_list("pk", flat=True))
    run = BillingRun.objects.create(started_at=dt.datetime(2026, 2, 1, tzinfo=dt.UTC), as_of=dt.date(2026, 2, 1))
    context = RunContext(tax_rates=tax_rates_load(), series=number_series_default(kind="invoice"))
    with CaptureQueriesContext(connection) as captured:
        outcome = billing_run_chunk(run=run, subscription_ids=ids, as_of=dt.date(2026, 2, 1), context=context)
    # The test itself runs inside a transaction, which turns the chunk's own transaction into a savepoint; in a
    # real run that is BEGIN/COMMIT, so savepoint statements are not the chunk's queries.
    statements = [q["sql"] for q in captured.captured_queries if "SAVEPOINT" not in q["sql"]]
    # eleven for the billing (one of them the prices, read once per run; the invoices' ids and their numbers are
    # two statements: the ids are taken first, without a lock, so that the number counter is locked only for the
    # last writes), two for its invoice.issued domain events (their ids, one COPY), one for the chunk's
    # done-marker (a redelivered chunk must not count twice); the run's count of done chunks is one more statement
    # after the chunk's commit, in place of the update of the run's row that used to be inside it; two turn the
    # audit of the run's own lines off and on around their COPY (docs/decisions/audit.md); one reads the seller
    # profile that the chunk's invoices snapshot
    assert len(statements) <= 17, "\n".join(s[:120] for s in statements)
    assert (outcome.invoices, outcome.failed) == (chunk_size, 0)
    assert InvoiceLine.objects.filter(invoice__billing_run=run).count() == chunk_size * 2


def test_command_prints_a_one_line_summary_and_json(capsys):
    SubscriptionFactory.create_batch(2, start_date=JAN_1)
    call_command("billing_run", "--as-of", "2026-01-01", "--dry-run")
    assert capsys.readouterr().out.strip() == (
        "Dry run as of 2026-01-01: 2 subscription(s) due, would issue 2 invoice(s) (73.78 EUR), "
        "0 draft(s) held for review, 0 failed."
    )
    call_command("billing_run", "--as-of", "2026-01-01", "--json")
    result = json.loads(capsys.readouterr().out)
    assert (result["invoices"], result["status"], result["totals"], result["dry_run"]) == (
        2,
        "succeeded",
        {"EUR": "73.78"},
        False,
    )


def test_command_rejects_a_bad_date_naming_the_option():
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="--as-of: '2026-13-01' is not a date"):
        call_command("billing_run", "--as-of", "2026-13-01")


def test_paused_subscription_is_not_billed_until_resumed():
    from subscriptions.services import subscription_pause

    subscription = SubscriptionFactory(start_date=JAN_1)
    billing_run(as_of=JAN_1)
    subscription_pause(subscription=subscription, as_of=dt.date(2026, 1, 20))
    assert billing_run(as_of=dt.date(2026, 3, 1)).invoices_created == 0
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.PAUSED
    assert Invoice.objects.get().status == InvoiceStatus.OPEN


def test_each_chunk_hands_its_invoices_to_delivery_in_one_task(monkeypatch, django_capture_on_commit_callbacks):
    from core import tasks

    sent: list[list[int]] = []
    monkeypatch.setattr(tasks.process_event_batch, "delay", lambda ids: sent.append(ids))
    SubscriptionFactory.create_batch(3, start_date=JAN_1)
    with django_capture_on_commit_callbacks(execute=True):
        billing_run(as_of=JAN_1, chunk_size=2)
    assert [len(ids) for ids in sent] == [2, 1]
    issued = DomainEvent.objects.filter(pk__in=[pk for ids in sent for pk in ids])
    assert {event.type for event in issued} == {"invoice.issued"}
    assert sorted(event.subject_id for event in issued) == sorted(Invoice.objects.values_list("pk", flat=True))
