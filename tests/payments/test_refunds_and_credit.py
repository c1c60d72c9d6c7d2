from __future__ import annotations

from decimal import Decimal

import pytest

from invoicing.models import InvoiceEvent, InvoiceStatus
from invoicing.services import credit_note_issue
from payments.gateways.sandbox import SandboxGateway
from payments.models import CreditEntryKind, CreditLedgerEntry, PaymentMethodKind, PaymentStatus, RefundStatus
from payments.selectors import customer_credit_balance
from payments.services import (
    CreditError,
    RefundError,
    customer_credit_adjust,
    customer_credit_from_credit_note,
    customer_credit_refund,
    payment_refund,
)
from tests.factories.payments import PaymentMethodFactory, record_payment
from tests.payments.conftest import make_invoice

pytestmark = pytest.mark.django_db


def test_partial_refund_of_a_bank_payment_reopens_the_paid_invoice(customer):
    invoice = make_invoice(customer, "100.00")
    payment = record_payment(customer=customer, amount="100.00", invoice=invoice)
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID

    refund = payment_refund(payment=payment, amount=Decimal("30.00"), reason="service credit")

    assert refund.status == RefundStatus.SUCCEEDED and refund.gateway == ""
    assert (refund.amount_reopened, refund.amount_from_credit) == (Decimal("30.00"), Decimal("0"))
    invoice.refresh_from_db()
    payment.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN
    assert (invoice.amount_paid, invoice.amount_due) == (Decimal("70.00"), Decimal("30.00"))
    assert invoice.paid_at is None
    assert payment.status == PaymentStatus.PARTIALLY_REFUNDED and payment.amount_refunded == Decimal("30.00")
    assert InvoiceEvent.objects.filter(invoice=invoice, from_status="paid", to_status="open").count() == 1
    assert payment.allocations.get().amount_refunded == Decimal("30.00")

    payment_refund(payment=payment, reason="the rest")
    payment.refresh_from_db()
    invoice.refresh_from_db()
    assert payment.status == PaymentStatus.REFUNDED
    assert invoice.amount_due == Decimal("100.00")
    with pytest.raises(RefundError):
        payment_refund(payment=payment, amount=Decimal("1.00"), reason="too much")


def test_refunding_an_overpayment_takes_back_the_credit_first(customer):
    invoice = make_invoice(customer, "80.00")
    payment = record_payment(customer=customer, amount="100.00", invoice=invoice)
    refund = payment_refund(payment=payment, amount=Decimal("25.00"), reason="paid twice by mistake")
    assert (refund.amount_from_credit, refund.amount_reopened) == (Decimal("20.00"), Decimal("5.00"))
    assert customer_credit_balance(customer=customer, currency="EUR") == 0
    invoice.refresh_from_db()
    assert invoice.amount_due == Decimal("5.00")
    entry = CreditLedgerEntry.objects.get(kind=CreditEntryKind.REFUND)
    assert entry.amount == Decimal("-20.00") and entry.refund == refund


def test_a_card_payment_is_refunded_through_its_gateway(customer):
    invoice = make_invoice(customer, "60.00")
    method = PaymentMethodFactory(customer=customer)
    payment = record_payment(
        customer=customer,
        amount="60.00",
        invoice=invoice,
        method=PaymentMethodKind.CARD,
        gateway="sandbox",
        gateway_reference="pi_sbx_manual",
        payment_method=method,
    )
    refund = payment_refund(payment=payment, amount=Decimal("10.00"), reason="goodwill")
    assert refund.status == RefundStatus.SUCCEEDED
    assert refund.idempotency_key == f"refund:{refund.pk}"
    assert refund.gateway_reference.startswith("re_sbx_")
    assert [r["amount"] for r in SandboxGateway.refunds] == [1000]
    assert SandboxGateway.refunds[0]["payment_intent"] == "pi_sbx_manual"


def test_refunds_never_exceed_the_payment(customer):
    payment = record_payment(customer=customer, amount="10.00")
    with pytest.raises(RefundError, match=r"at most 10\.00"):
        payment_refund(payment=payment, amount=Decimal("10.01"), reason="x")
    with pytest.raises(RefundError, match="reason"):
        payment_refund(payment=payment, reason=" ")


def test_a_credit_note_lands_in_the_ledger_once(customer):
    invoice = make_invoice(customer, "100.00")
    record_payment(customer=customer, amount="100.00", invoice=invoice)
    credit_note = credit_note_issue(invoice=invoice, reason="returned goods", amount=Decimal("40.00"))
    assert credit_note.amount_to_customer_credit == Decimal("40.00")
    customer_credit_from_credit_note(credit_note.pk, credit_note.amount_to_customer_credit)
    customer_credit_from_credit_note(credit_note.pk, credit_note.amount_to_customer_credit)  # a re-run hook
    assert customer_credit_balance(customer=customer, currency="EUR") == Decimal("40.00")
    assert CreditLedgerEntry.objects.filter(credit_note=credit_note).count() == 1

    refund = customer_credit_refund(customer=customer, amount=Decimal("15.00"), currency="EUR", reason="paid out")
    assert refund.payment is None and refund.amount_from_credit == Decimal("15.00")
    assert customer_credit_balance(customer=customer, currency="EUR") == Decimal("25.00")
    with pytest.raises(RefundError):
        customer_credit_refund(customer=customer, amount=Decimal("25.01"), currency="EUR", reason="too much")


def test_the_credit_note_hook_is_registered(customer, django_capture_on_commit_callbacks):
    invoice = make_invoice(customer, "50.00")
    record_payment(customer=customer, amount="50.00", invoice=invoice)
    with django_capture_on_commit_callbacks(execute=True):
        credit_note_issue(invoice=invoice, reason="cancelled")
    assert customer_credit_balance(customer=customer, currency="EUR") == Decimal("50.00")


def test_manual_adjustments_need_a_reason_and_keep_the_balance_non_negative(customer):
    with pytest.raises(CreditError, match="reason"):
        customer_credit_adjust(customer=customer, amount=Decimal("5.00"), currency="EUR", reason="")
    customer_credit_adjust(customer=customer, amount=Decimal("5.00"), currency="EUR", reason="goodwill")
    with pytest.raises(CreditError, match="cannot remove"):
        customer_credit_adjust(customer=customer, amount=Decimal("-5.01"), currency="EUR", reason="fix")
    customer_credit_adjust(customer=customer, amount=Decimal("-5.00"), currency="EUR", reason="fix")
    assert customer_credit_balance(customer=customer, currency="EUR") == 0


# --- a credit note and a refund of the same paid invoice: money is never counted twice -----------------


def _ledger(customer) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for entry in CreditLedgerEntry.objects.filter(customer=customer):
        totals[entry.kind] = totals.get(entry.kind, Decimal("0")) + entry.amount
    return totals


def test_refunding_a_payment_of_a_fully_credited_invoice_pays_out_the_credit_and_leaves_the_invoice_settled(
    customer, django_capture_on_commit_callbacks
):
    invoice = make_invoice(customer, "100.00")
    payment = record_payment(customer=customer, amount="100.00", invoice=invoice)
    with django_capture_on_commit_callbacks(execute=True):
        credit_note_issue(invoice=invoice, reason="cancelled")
    assert customer_credit_balance(customer=customer, currency="EUR") == Decimal("100.00")

    refund = payment_refund(payment=payment, reason="customer wants the money back, not credit")

    assert (refund.amount, refund.amount_from_credit, refund.amount_reopened) == (
        Decimal("100.00"),
        Decimal("100.00"),
        Decimal("0"),
    )
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    assert (invoice.amount_due, invoice.amount_paid) == (Decimal("0.00"), Decimal("100.00"))
    assert customer_credit_balance(customer=customer, currency="EUR") == Decimal("0")
    assert _ledger(customer) == {"credit_note": Decimal("100.00"), "refund": Decimal("-100.00")}
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.REFUNDED
    with pytest.raises(RefundError):  # the credit is gone: it cannot be paid out a second time
        customer_credit_refund(customer=customer, amount=Decimal("0.01"), currency="EUR", reason="again")
    _integrity_holds()


def test_refunding_a_payment_of_a_partly_credited_invoice_takes_the_credit_then_reopens_the_rest(
    customer, django_capture_on_commit_callbacks
):
    invoice = make_invoice(customer, "100.00")
    payment = record_payment(customer=customer, amount="100.00", invoice=invoice)
    with django_capture_on_commit_callbacks(execute=True):
        credit_note_issue(invoice=invoice, reason="one seat too many", amount=Decimal("30.00"))

    refund = payment_refund(payment=payment, reason="paid by the wrong company")

    assert (refund.amount_from_credit, refund.amount_reopened) == (Decimal("30.00"), Decimal("70.00"))
    invoice.refresh_from_db()
    # 100 invoiced − 30 credited = 70 owed; the 100 paid went back: 70 due, no credit left over.
    assert invoice.status == InvoiceStatus.OPEN
    assert (invoice.amount_due, invoice.amount_paid) == (Decimal("70.00"), Decimal("30.00"))
    assert customer_credit_balance(customer=customer, currency="EUR") == Decimal("0")
    _integrity_holds()


def _integrity_holds():
    """verify_integrity agrees with the booking: the refund's part taken from the credit note's credit is not
    counted as missing from the invoice's payments (reporting.integrity.check_amount_due)."""
    from reporting.integrity import integrity_verify

    report = integrity_verify(checks=["amount_due", "credit_ledger", "payments"])
    assert report.ok, [p.line() for p in report.problems or []]


def test_a_credit_note_whose_credit_was_not_booked_yet_is_not_counted_twice_by_a_refund(customer):
    invoice = make_invoice(customer, "100.00")
    payment = record_payment(customer=customer, amount="100.00", invoice=invoice)
    credit_note = credit_note_issue(invoice=invoice, reason="cancelled")  # its settle handler has not run yet

    refund = payment_refund(payment=payment, reason="money back")
    customer_credit_from_credit_note(credit_note.pk, credit_note.amount_to_customer_credit)  # the handler, late

    assert (refund.amount_from_credit, refund.amount_reopened) == (Decimal("100.00"), Decimal("0"))
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_due) == (InvoiceStatus.PAID, Decimal("0.00"))
    assert customer_credit_balance(customer=customer, currency="EUR") == Decimal("0")


def test_credit_note_credit_already_spent_on_another_invoice_is_not_taken_again(
    customer, django_capture_on_commit_callbacks
):
    invoice = make_invoice(customer, "100.00")
    payment = record_payment(customer=customer, amount="100.00", invoice=invoice)
    with django_capture_on_commit_callbacks(execute=True):
        credit_note_issue(invoice=invoice, reason="cancelled")
    customer_credit_refund(customer=customer, amount=Decimal("100.00"), currency="EUR", reason="paid out")

    with pytest.raises(RefundError, match="credit note"):
        payment_refund(payment=payment, reason="and the money again")
    assert customer_credit_balance(customer=customer, currency="EUR") == Decimal("0")
