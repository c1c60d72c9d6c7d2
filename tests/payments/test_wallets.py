"""Wallets (prepaid credits): grants, top-ups through the one issue path, consumption on issue (free first, then
the soonest expiry), expiry, automatic top-up once per crossing, refunds of paid credits only
(docs/decisions/wallets.md)."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection
from djmoney.money import Money

from core import events
from invoicing.billing_run import billing_run
from invoicing.models import Invoice, InvoiceStatus
from invoicing.services import invoice_void
from payments.models import GrantStatus, PaymentAttempt, WalletEntryKind, WalletGrant, WalletTransaction
from payments.selectors import customer_credit_balance, wallet_balance
from payments.services import customer_credit_adjust
from payments.wallets import (
    WalletStateError,
    wallet_configure,
    wallet_consume,
    wallet_credits_expire,
    wallet_grant_free,
    wallet_refund,
    wallet_top_up,
)
from reporting.integrity import check_amount_due
from reporting.statements import statement_of_account
from subscriptions.services import ItemSpec, usage_record_create
from tests.factories import CustomerFactory, PaymentMethodFactory, PriceFactory, SubscriptionFactory, record_payment
from tests.payments.conftest import make_invoice

D = Decimal
DEC_15 = dt.date(2025, 12, 15)
JAN_15 = dt.date(2026, 1, 15)
FEB_15 = dt.date(2026, 2, 15)

pytestmark = pytest.mark.django_db


def _ledger(wallet) -> list[tuple[str, str, Decimal, Decimal]]:
    return [
        (row.kind, row.credit_kind, row.amount, row.balance_after)
        for row in WalletTransaction.objects.filter(wallet=wallet).order_by("pk")
    ]


def _usage(item, calls: int, day: dt.date, key: str) -> None:
    usage_record_create(
        subscription_item=item,
        quantity=D(calls),
        timestamp=dt.datetime(day.year, day.month, day.day, 12, tzinfo=dt.UTC),
        idempotency_key=key,
    )


@pytest.mark.scenario
def test_usage_across_two_periods_uses_free_credits_first_expiry_voids_the_rest_then_paid(
    billing, django_capture_on_commit_callbacks
):
    """Free 100.00 usable through Jan 31 and a paid top-up of 50.00; the wallet pays usage lines only. Period 1's
    usage (71.40 with VAT) is paid from the free grant, its rest (28.60) expires on Feb 1, and period 2's usage
    (59.50) takes all 50.00 paid credits: 9.50 of usage and the 11.90 base fee stay due."""
    customer = CustomerFactory()  # German, 19 % VAT
    base = PriceFactory(unit_amount=Money(D("10.00"), "EUR"))
    calls = PriceFactory(unit_amount=Money(D("0.05"), "EUR"), metered=True)
    subscription = SubscriptionFactory(
        customer=customer,
        items=[ItemSpec(price=base, quantity=1), ItemSpec(price=calls, quantity=1)],
        start_date=DEC_15,
    )
    item = subscription.items.get(price=calls)
    with django_capture_on_commit_callbacks(execute=True):
        billing_run(as_of=DEC_15)  # the first base fee: 11.90, nothing in the wallet yet
        wallet_configure(customer=customer, applies_to="usage")
        free = wallet_grant_free(
            customer=customer,
            amount=D("100.00"),
            reason="launch promotion",
            expires_on=dt.date(2026, 1, 31),
            as_of=DEC_15,
        )
        paid = wallet_top_up(customer=customer, amount=D("50.00"), as_of=DEC_15)
    top_up_invoice = Invoice.objects.get(pk=paid.invoice_id)
    assert (top_up_invoice.status, top_up_invoice.total, top_up_invoice.tax_total) == ("open", D("50.00"), D("0.00"))
    assert top_up_invoice.lines.get().tax_category == "O"  # a prepayment: VAT is on the invoices the credits pay
    assert wallet_balance(wallet=free.wallet).pending == D("50.00")
    with django_capture_on_commit_callbacks(execute=True):
        record_payment(customer=customer, amount=D("50.00"), invoice=top_up_invoice, received_on=DEC_15)
    paid.refresh_from_db()
    assert paid.status == GrantStatus.ACTIVE
    assert wallet_balance(wallet=free.wallet).total == D("150.00")

    _usage(item, 1200, dt.date(2026, 1, 5), "p1")  # 60.00 + 11.40 VAT
    with django_capture_on_commit_callbacks(execute=True):
        billing_run(as_of=JAN_15)
    period_1 = Invoice.objects.get(subscription=subscription, issue_date=JAN_15)
    assert (period_1.total, period_1.amount_paid, period_1.amount_due) == (D("83.30"), D("71.40"), D("11.90"))
    free.refresh_from_db()
    assert free.remaining == D("28.60")

    report = wallet_credits_expire(as_of=dt.date(2026, 2, 1))
    assert (report.grants, report.amounts) == (1, {"EUR": D("28.60")})
    assert wallet_credits_expire(as_of=dt.date(2026, 2, 2)).grants == 0  # never twice

    _usage(item, 1000, dt.date(2026, 1, 20), "p2")  # 50.00 + 9.50 VAT
    with django_capture_on_commit_callbacks(execute=True):
        billing_run(as_of=FEB_15)
    period_2 = Invoice.objects.get(subscription=subscription, issue_date=FEB_15)
    assert (period_2.total, period_2.amount_paid, period_2.amount_due) == (D("71.40"), D("50.00"), D("21.40"))
    balance = wallet_balance(wallet=free.wallet)
    assert (balance.free, balance.paid, balance.total) == (D("0"), D("0"), D("0"))
    assert _ledger(free.wallet) == [
        ("grant", "free", D("100.00"), D("100.00")),
        ("top_up", "paid", D("50.00"), D("150.00")),
        ("consumption", "free", D("-71.40"), D("78.60")),
        ("expiry", "free", D("-28.60"), D("50.00")),
        ("consumption", "paid", D("-50.00"), D("0.00")),
    ]
    # The books agree: amounts paid by credits count as paid, the statement shows them like payments and closes at
    # what is due (11.90 + 11.90 + 21.40 of the three subscription invoices).
    assert check_amount_due()[1] == []
    statement = statement_of_account(customer=customer, start=DEC_15, end=FEB_15)
    assert statement.closing == D("45.20")
    assert [entry.amount for entry in statement.entries if entry.kind == "wallet"] == [
        D("-71.40"),
        D("-50.00"),
    ]


def test_wallet_credits_pay_before_customer_credit_and_once_per_invoice(customer, django_capture_on_commit_callbacks):
    customer_credit_adjust(customer=customer, amount=D("30.00"), currency="EUR", reason="goodwill")
    wallet_grant_free(customer=customer, amount=D("25.00"), reason="promo", as_of=dt.date(2026, 3, 1))
    with django_capture_on_commit_callbacks(execute=True):
        invoice = make_invoice(customer, "40.00")
    invoice.refresh_from_db()
    assert (invoice.amount_paid, invoice.status) == (D("40.00"), InvoiceStatus.PAID)
    assert customer_credit_balance(customer=customer, currency="EUR") == D("15.00")  # 30.00 − the 15.00 left
    assert wallet_consume(invoice=invoice) == 0  # a re-run settles nothing twice


def test_grants_are_used_free_first_then_soonest_expiry_then_oldest(customer):
    day = dt.date(2026, 3, 1)
    later = wallet_grant_free(
        customer=customer, amount=D("10.00"), reason="a", expires_on=dt.date(2026, 6, 30), as_of=day
    )
    never = wallet_grant_free(customer=customer, amount=D("10.00"), reason="b", as_of=day)
    sooner = wallet_grant_free(
        customer=customer, amount=D("10.00"), reason="c", expires_on=dt.date(2026, 4, 30), as_of=day
    )
    invoice = make_invoice(customer, "15.00")  # no hooks: consumed by hand
    assert wallet_consume(invoice=invoice) == D("15.00")
    remaining = {grant.pk: grant.remaining for grant in WalletGrant.objects.all()}
    assert (remaining[sooner.pk], remaining[later.pk], remaining[never.pk]) == (D("0"), D("5.00"), D("10.00"))


def test_an_expired_grant_is_not_used_even_before_the_expiry_job_ran(customer):
    wallet_grant_free(
        customer=customer, amount=D("10.00"), reason="a", expires_on=dt.date(2026, 3, 1), as_of=dt.date(2026, 2, 1)
    )
    invoice = make_invoice(customer, "15.00", issue_date=dt.date(2026, 3, 2))
    assert wallet_consume(invoice=invoice) == 0


def test_automatic_top_up_happens_once_per_crossing(customer, django_capture_on_commit_callbacks):
    wallet_configure(customer=customer, auto_top_up_threshold=D("20.00"), auto_top_up_amount=D("50.00"))
    grant = wallet_grant_free(customer=customer, amount=D("30.00"), reason="promo", as_of=dt.date(2026, 3, 1))
    wallet = grant.wallet
    with django_capture_on_commit_callbacks(execute=True):
        make_invoice(customer, "15.00")  # 30 → 15: below 20, one automatic top-up
        make_invoice(customer, "5.00")  # 15 → 10: still below, the top-up is pending: no second one
    top_ups = list(WalletGrant.objects.filter(wallet=wallet, automatic=True))
    assert len(top_ups) == 1 and top_ups[0].status == GrantStatus.PENDING
    assert Invoice.objects.get(pk=top_ups[0].invoice_id).total == D("50.00")
    with django_capture_on_commit_callbacks(execute=True):
        record_payment(
            customer=customer, amount=D("50.00"), invoice=top_ups[0].invoice, received_on=dt.date(2026, 3, 2)
        )
    assert wallet_balance(wallet=wallet).total == D("60.00")  # back above the threshold: armed again
    with django_capture_on_commit_callbacks(execute=True):
        make_invoice(customer, "45.00")  # 60 → 15: the second crossing, the second top-up
    assert WalletGrant.objects.filter(wallet=wallet, automatic=True).count() == 2


def test_automatic_top_up_is_charged_to_the_saved_card(customer, django_capture_on_commit_callbacks):
    PaymentMethodFactory(customer=customer)
    wallet_configure(customer=customer, auto_top_up_threshold=D("20.00"), auto_top_up_amount=D("50.00"))
    wallet = wallet_grant_free(customer=customer, amount=D("30.00"), reason="promo", as_of=dt.date(2026, 3, 1)).wallet
    with django_capture_on_commit_callbacks(execute=True):
        make_invoice(customer, "15.00")
    top_up = WalletGrant.objects.get(wallet=wallet, automatic=True)
    assert PaymentAttempt.objects.get(invoice_id=top_up.invoice_id).status == "succeeded"
    top_up.refresh_from_db()
    assert top_up.status == GrantStatus.ACTIVE
    assert wallet_balance(wallet=wallet).total == D("65.00")


def test_free_credits_are_never_refunded_paid_ones_are(customer, django_capture_on_commit_callbacks):
    day = dt.date(2026, 3, 1)
    wallet_grant_free(customer=customer, amount=D("40.00"), reason="promo", as_of=day)
    with django_capture_on_commit_callbacks(execute=True):
        grant = wallet_top_up(customer=customer, amount=D("25.00"), as_of=day)
        record_payment(customer=customer, amount=D("25.00"), invoice=grant.invoice, received_on=day)
    with pytest.raises(WalletStateError, match="free credits are never refunded"):
        wallet_refund(customer=customer, amount=D("25.01"), reason="closing the account")
    refund = wallet_refund(customer=customer, amount=D("25.00"), reason="closing the account")
    assert (refund.amount, refund.status) == (D("25.00"), "succeeded")
    balance = wallet_balance(wallet=grant.wallet)
    assert (balance.free, balance.paid) == (D("40.00"), D("0"))
    assert _ledger(grant.wallet)[-1] == ("refund", "paid", D("-25.00"), D("40.00"))


def test_a_voided_top_up_invoice_cancels_its_credits(customer, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        grant = wallet_top_up(customer=customer, amount=D("25.00"), as_of=dt.date(2026, 3, 1))
        invoice_void(invoice=grant.invoice, reason="ordered by mistake")
    grant.refresh_from_db()
    assert grant.status == GrantStatus.CANCELED
    assert wallet_balance(wallet=grant.wallet).pending == 0


def test_commands_grant_and_expire(customer, capsys):
    call_command(
        "wallet_grant",
        str(customer.pk),
        "12.50",
        "--reason",
        "webinar",
        "--expires-on",
        "2026-03-31",
        "--as-of",
        "2026-03-01",
    )
    call_command("expire_wallet_credits", "--as-of", "2026-04-01")
    out = capsys.readouterr().out
    assert "Granted 12.50 EUR free credits" in out and "1 grant(s) expired, 12.50 EUR voided" in out
    assert WalletTransaction.objects.filter(kind=WalletEntryKind.EXPIRY, amount=D("-12.50")).count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_invoices_issued_at_once_never_overdraw_the_wallet(billing):
    customer = CustomerFactory(exempt=True)
    wallet_grant_free(customer=customer, amount=D("50.00"), reason="promo", as_of=dt.date(2026, 3, 1))
    with events.handlers_replaced():  # issued without their settle handlers: the threads consume
        invoices = [make_invoice(customer, "40.00"), make_invoice(customer, "40.00")]
    results: list[Decimal] = []
    barrier = threading.Barrier(2)

    def consume(invoice: Invoice) -> None:
        try:
            barrier.wait()
            results.append(wallet_consume(invoice=invoice))
        finally:
            connection.close()

    threads = [threading.Thread(target=consume, args=(invoice,)) for invoice in invoices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [D("10.00"), D("40.00")]
    assert wallet_balance(wallet=WalletGrant.objects.get().wallet).total == 0
