"""Demo data for payments (steps of ``manage.py seed_demo``: ``seed_cards`` before the billing, ``seed_payments``
after invoicing's): saved sandbox cards, a full payment, a partial payment, an overpayment (→ customer credit)
and failed card attempts, on the one-off invoices ``invoicing.demo`` creates for DEMO-0001, DEMO-0002, DEMO-0008
and DEMO-0017.

Idempotent: cards are keyed by token, payments by reference, attempts by invoice (none are made for an invoice
that has attempts)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from core.dates import billing_today
from customers.models import Customer
from invoicing.demo import DEMO_MEMO
from invoicing.models import Invoice
from invoicing.services import InvoiceLineSpec, invoice_create_draft, invoice_finalize
from payments.models import Payment, PaymentAttempt, PaymentMethod, PaymentMethodKind, Wallet
from payments.services import invoice_charge_now, payment_method_add, payment_record
from payments.wallets import wallet_configure, wallet_consume, wallet_grant_free, wallet_top_up, wallet_top_up_activate
from subscriptions.calendar import add_months
from subscriptions.models import BillingReason, LineKind

# external id → (sandbox token, brand, last4)
_CARDS = {
    "DEMO-0001": ("pm_card_visa", "visa", "4242"),
    "DEMO-0002": ("pm_card_mastercard", "mastercard", "4444"),
    "DEMO-0017": ("pm_card_chargeDeclinedInsufficientFunds", "visa", "9995"),
}


def _demo_invoice(customer: Customer) -> Invoice | None:
    return Invoice.objects.filter(customer=customer, memo=DEMO_MEMO).exclude(number="").order_by("pk").first()


def seed_cards() -> int:
    """The saved sandbox cards, before the first billing run, so that automatic collection finds them (as it
    would have: customers save a card when they subscribe). Returns how many were created."""
    created = 0
    today = billing_today()
    customers = {c.external_id: c for c in Customer.objects.filter(external_id__in=list(_CARDS))}
    for external_id, (token, brand, last4) in _CARDS.items():
        customer = customers.get(external_id)
        if customer is None or PaymentMethod.objects.filter(gateway="sandbox", token=f"{token}:{external_id}").exists():
            continue
        payment_method_add(
            customer=customer,
            gateway="sandbox",
            token=f"{token}:{external_id}",
            brand=brand,
            last4=last4,
            exp_month=12,
            exp_year=today.year + 3,
        )
        created += 1
    return created


def seed_payments() -> int:
    """Create what is missing; returns the number of records created."""
    created = seed_cards()
    today = billing_today()
    customers = {
        c.external_id: c
        for c in Customer.objects.filter(external_id__in=["DEMO-0001", "DEMO-0002", "DEMO-0008", "DEMO-0017"])
    }
    # (external id, reference, share of the invoice's total: "full", "partial" (40 %), "over" (+50.00))
    for external_id, reference, kind in (
        ("DEMO-0001", "Demo payment DEMO-0001 (bank transfer)", "full"),
        ("DEMO-0002", "Demo payment DEMO-0002 (first instalment)", "partial"),
        ("DEMO-0008", "Demo payment DEMO-0008 (paid too much)", "over"),
    ):
        customer = customers.get(external_id)
        invoice = _demo_invoice(customer) if customer else None
        if customer is None or invoice is None or Payment.objects.filter(reference=reference).exists():
            continue
        if kind == "full":
            amount = invoice.total
        elif kind == "partial":
            amount = (invoice.total * Decimal("0.4")).quantize(Decimal("0.01"))
        else:
            amount = invoice.total + Decimal("50.00")
        payment_record(
            customer=customer,
            amount=amount,
            currency=invoice.currency,
            received_on=today,
            method=PaymentMethodKind.BANK_TRANSFER,
            reference=reference,
            invoice=invoice,
        )
        created += 1
    customer = customers.get("DEMO-0017")
    invoice = _demo_invoice(customer) if customer else None
    # Insufficient funds (a soft decline): retried in 3 days by retry_payments.
    if (
        invoice is not None
        and not PaymentAttempt.objects.filter(invoice=invoice).exists()
        and invoice_charge_now(invoice=invoice, as_of=today) is not None
    ):
        created += 1
    return created


WALLET_CUSTOMER = "DEMO-0003"
WALLET_USAGE_MEMO = "Demo: API calls beyond the plan, paid from the wallet"


def seed_wallets() -> int:
    """One customer with a wallet (docs/decisions/wallets.md): a free grant of 100.00 (a launch promotion, usable
    to the end of next month), a paid top-up of 50.00 (its invoice paid by bank transfer), an automatic top-up of
    50.00 below 20.00, and a one-off usage invoice the free credits paid. Idempotent: nothing is made twice."""
    customer = Customer.objects.filter(external_id=WALLET_CUSTOMER).first()
    if customer is None or Wallet.objects.filter(customer=customer).exists():
        return 0
    today = billing_today()
    end_of_next_month = add_months(today.replace(day=1), 2) - dt.timedelta(days=1)
    wallet_configure(customer=customer, auto_top_up_threshold=Decimal("20.00"), auto_top_up_amount=Decimal("50.00"))
    promotion = "Launch promotion"
    wallet_grant_free(customer=customer, amount=Decimal("100.00"), reason=promotion, expires_on=end_of_next_month)
    grant = wallet_top_up(customer=customer, amount=Decimal("50.00"), as_of=today)
    assert grant.invoice is not None
    payment_record(
        customer=customer,
        amount=grant.invoice.total,
        currency=grant.invoice.currency,
        received_on=today,
        reference=f"Wallet top-up {grant.invoice.number}",
        invoice=grant.invoice,
    )
    wallet_top_up_activate(invoice_id=grant.invoice.pk, as_of=today)  # the invoice.paid handler's work, if it is off
    draft = invoice_create_draft(
        customer=customer,
        billing_reason=BillingReason.ONE_OFF,
        memo=WALLET_USAGE_MEMO,
        lines=[
            InvoiceLineSpec(
                description="API calls beyond the plan (2,400 × 0.0125)",
                quantity=Decimal(2400),
                unit_amount=Decimal("0.0125"),
                kind=LineKind.USAGE,
            )
        ],
    )
    invoice = invoice_finalize(invoice=draft, issue_date=today)
    wallet_consume(invoice=invoice)  # the invoice.issued handler's work, if it is off (idempotent)
    return 4
