from __future__ import annotations

import contextlib
import datetime as dt
import threading
from decimal import Decimal

import pytest
from django.db import connection

from core.money import CurrencyMismatch
from invoicing.models import Invoice, InvoiceStatus
from invoicing.services import InvoiceStateError, invoice_void
from payments.models import CreditEntryKind, CreditLedgerEntry, PaymentAllocation
from payments.selectors import customer_credit_balance, invoice_payment_state
from payments.services import AllocationError, AllocationSpec, PaymentError, payment_record
from tests.factories import CustomerFactory, InvoiceFactory
from tests.factories.payments import record_payment
from tests.payments.conftest import make_invoice

pytestmark = pytest.mark.django_db


def test_payment_settles_open_invoices_oldest_due_date_first(customer):
    newer = make_invoice(customer, "50.00", issue_date=dt.date(2026, 3, 5))
    older = make_invoice(customer, "100.00", issue_date=dt.date(2026, 2, 1))
    payment = record_payment(customer=customer, amount="120.00")
    older.refresh_from_db()
    newer.refresh_from_db()
    assert older.status == InvoiceStatus.PAID and older.amount_due == 0
    assert newer.status == InvoiceStatus.OPEN and newer.amount_paid == Decimal("20.00")
    assert newer.amount_due == Decimal("30.00")
    assert invoice_payment_state(invoice=newer) == "partially_paid"
    assert [(a.invoice_id, a.amount) for a in payment.allocations.order_by("pk")] == [
        (older.pk, Decimal("100.00")),
        (newer.pk, Decimal("20.00")),
    ]
    assert customer_credit_balance(customer=customer, currency="EUR") == 0


def test_payment_naming_an_invoice_goes_to_that_invoice_and_the_rest_to_credit(customer):
    older = make_invoice(customer, "100.00", issue_date=dt.date(2026, 2, 1))
    named = make_invoice(customer, "40.00")
    record_payment(customer=customer, amount="55.00", invoice=named)
    older.refresh_from_db()
    named.refresh_from_db()
    assert named.status == InvoiceStatus.PAID
    assert older.amount_due == Decimal("100.00")  # untouched
    entry = CreditLedgerEntry.objects.get(customer=customer)
    assert (entry.kind, entry.amount) == (CreditEntryKind.OVERPAYMENT, Decimal("15.00"))


def test_overpayment_becomes_credit_that_is_applied_to_the_next_invoice(customer, django_capture_on_commit_callbacks):
    first = make_invoice(customer, "80.00")
    record_payment(customer=customer, amount="100.00")
    assert customer_credit_balance(customer=customer, currency="EUR") == Decimal("20.00")
    draft = InvoiceFactory(customer=customer, lines=[{"description": "Next month", "unit_amount": Decimal("50.00")}])
    with django_capture_on_commit_callbacks(execute=True):
        from invoicing.services import invoice_finalize

        invoice_finalize(invoice=draft, issue_date=dt.date(2026, 4, 2))
    draft.refresh_from_db()
    first.refresh_from_db()
    assert first.status == InvoiceStatus.PAID
    assert draft.status == InvoiceStatus.OPEN
    assert (draft.amount_paid, draft.amount_due) == (Decimal("20.00"), Decimal("30.00"))
    assert customer_credit_balance(customer=customer, currency="EUR") == 0
    kinds = list(CreditLedgerEntry.objects.filter(customer=customer).order_by("pk").values_list("kind", "amount"))
    assert kinds == [
        (CreditEntryKind.OVERPAYMENT, Decimal("20.00")),
        (CreditEntryKind.APPLIED_TO_INVOICE, Decimal("-20.00")),
    ]


def test_credit_is_not_applied_at_finalization_when_the_setting_is_off(
    customer, settings, django_capture_on_commit_callbacks
):
    settings.PAYMENTS_APPLY_CREDIT_ON_FINALIZE = False
    record_payment(customer=customer, amount="30.00")
    draft = InvoiceFactory(customer=customer, lines=[{"description": "x", "unit_amount": Decimal("50.00")}])
    with django_capture_on_commit_callbacks(execute=True):
        from invoicing.services import invoice_finalize

        invoice_finalize(invoice=draft, issue_date=dt.date(2026, 4, 2))
    draft.refresh_from_db()
    assert draft.amount_due == Decimal("50.00")
    assert customer_credit_balance(customer=customer, currency="EUR") == Decimal("30.00")


def test_a_payment_in_another_currency_than_the_named_invoice_is_refused(customer):
    invoice = make_invoice(customer, "10.00")
    with pytest.raises(CurrencyMismatch):
        record_payment(customer=customer, amount="10.00", currency="USD", invoice=invoice)
    invoice.refresh_from_db()
    assert invoice.amount_due == Decimal("10.00")
    assert not PaymentAllocation.objects.exists()


def test_oldest_first_skips_invoices_in_other_currencies(customer):
    eur = make_invoice(customer, "10.00")
    payment = record_payment(customer=customer, amount="10.00", currency="USD")
    eur.refresh_from_db()
    assert eur.amount_due == Decimal("10.00")
    assert customer_credit_balance(customer=customer, currency="USD") == Decimal("10.00")
    assert not payment.allocations.exists()


def test_explicit_allocations_may_not_exceed_the_amount_due_or_the_payment(customer):
    a = make_invoice(customer, "30.00")
    b = make_invoice(customer, "30.00")
    with pytest.raises(AllocationError, match="more than its amount due"):
        record_payment(
            customer=customer, amount="50.00", allocations=[AllocationSpec(invoice=a, amount=Decimal("31.00"))]
        )
    with pytest.raises(AllocationError, match="exceed the payment"):
        record_payment(
            customer=customer,
            amount="50.00",
            allocations=[
                AllocationSpec(invoice=a, amount=Decimal("30.00")),
                AllocationSpec(invoice=b, amount=Decimal("30.00")),
            ],
        )
    payment = record_payment(
        customer=customer,
        amount="50.00",
        allocations=[
            AllocationSpec(invoice=b, amount=Decimal("25.00")),
            AllocationSpec(invoice=a, amount=Decimal("5.00")),
        ],
    )
    a.refresh_from_db()
    b.refresh_from_db()
    assert (a.amount_due, b.amount_due) == (Decimal("25.00"), Decimal("5.00"))
    assert customer_credit_balance(customer=customer, currency="EUR") == Decimal("20.00")
    assert payment.allocations.count() == 2


def test_another_customers_invoice_and_bad_amounts_are_refused(customer):
    other_invoice = make_invoice(CustomerFactory(exempt=True), "10.00")
    with pytest.raises(AllocationError, match="another customer"):
        record_payment(customer=customer, amount="10.00", invoice=other_invoice)
    with pytest.raises(PaymentError, match="more decimals"):
        record_payment(customer=customer, amount="10.005")
    with pytest.raises(PaymentError, match="positive"):
        record_payment(customer=customer, amount="0")
    with pytest.raises(TypeError):
        payment_record(customer=customer, amount=10.0, received_on=dt.date(2026, 3, 10))  # type: ignore[arg-type]


def test_a_jpy_payment_is_allocated_in_whole_yen(billing):
    customer = CustomerFactory(exempt=True, currency="JPY")
    invoice = make_invoice(customer, "1500")
    record_payment(customer=customer, amount="1000", currency="JPY")
    invoice.refresh_from_db()
    assert invoice.amount_due == Decimal("500")


def _run_in_threads(targets):
    errors: list[BaseException] = []

    def wrap(target):
        def run():
            try:
                target()
            except BaseException as exc:
                errors.append(exc)
            finally:
                connection.close()

        return run

    threads = [threading.Thread(target=wrap(t)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("rounds", [6])
def test_a_payment_and_a_void_racing_on_one_invoice_leave_a_consistent_state(rounds, settings):
    from tests.factories.invoicing import NumberSeriesFactory, TaxRateFactory

    # Credit left by a round the void won would otherwise settle the next round's invoice at finalization.
    settings.PAYMENTS_APPLY_CREDIT_ON_FINALIZE = False
    NumberSeriesFactory(default_invoices=True)
    TaxRateFactory(country="DE")
    customer = CustomerFactory(exempt=True)
    for _ in range(rounds):
        invoice = make_invoice(customer, "100.00")
        start = threading.Barrier(2)

        def pay(invoice_id=invoice.pk, start=start):
            start.wait()
            record_payment(customer=customer, amount="100.00", invoice=Invoice.objects.get(pk=invoice_id))

        def void(invoice_id=invoice.pk, start=start):
            start.wait()
            # When the payment came first, an invoice with payments is not voided.
            with contextlib.suppress(InvoiceStateError):
                invoice_void(invoice=Invoice.objects.get(pk=invoice_id), reason="race")

        errors = _run_in_threads([pay, void])
        assert not errors, errors
        invoice.refresh_from_db()
        allocated = sum(PaymentAllocation.objects.filter(invoice=invoice).values_list("amount", flat=True), Decimal(0))
        assert invoice.amount_paid == allocated
        if invoice.status == InvoiceStatus.VOID:
            assert allocated == 0
        else:
            assert invoice.status == InvoiceStatus.PAID and allocated == Decimal("100.00")
    # Every payment is either on its invoice or, where the void won, customer credit: nothing lost or doubled.
    paid_in = Decimal(100) * rounds
    on_invoices = sum(Invoice.objects.filter(customer=customer).values_list("amount_paid", flat=True), Decimal(0))
    assert on_invoices + customer_credit_balance(customer=customer, currency="EUR") == paid_in
