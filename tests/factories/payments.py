"""factory_boy factories for payments. Payments are recorded through the service (``record_payment``) so every
one is allocated exactly as the application would; saved methods and bank rows are plain model factories."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import factory

from payments.models import BankStatement, BankTransaction, BankTransactionStatus, Gateway, Payment, PaymentMethod
from payments.services import payment_record
from tests.factories.customers import CustomerFactory


class PaymentMethodFactory(factory.django.DjangoModelFactory):
    """A saved sandbox card (``pm_card_visa`` by default); traits choose the sandbox's decline behaviour."""

    class Meta:
        model = PaymentMethod

    customer = factory.SubFactory(CustomerFactory)
    gateway = Gateway.SANDBOX
    token = factory.Sequence(lambda n: f"pm_card_visa:{n}")
    brand = "visa"
    last4 = "4242"
    exp_month = 12
    exp_year = 2030
    is_default = True

    class Params:
        declined = factory.Trait(token=factory.Sequence(lambda n: f"pm_card_chargeDeclined:{n}"), last4="0002")
        insufficient_funds = factory.Trait(
            token=factory.Sequence(lambda n: f"pm_card_chargeDeclinedInsufficientFunds:{n}"), last4="9995"
        )
        expired_card = factory.Trait(
            token=factory.Sequence(lambda n: f"pm_card_chargeDeclinedExpiredCard:{n}"), last4="0069"
        )
        processing_error = factory.Trait(
            token=factory.Sequence(lambda n: f"pm_card_chargeDeclinedProcessingError:{n}"), last4="0119"
        )
        stripe = factory.Trait(
            gateway=Gateway.STRIPE,
            token=factory.Sequence(lambda n: f"pm_test_{n:06d}"),
            gateway_customer_id=factory.Sequence(lambda n: f"cus_test_{n:06d}"),
        )


def record_payment(
    *, customer: Any, amount: str | Decimal, received_on: dt.date | None = None, **kwargs: Any
) -> Payment:
    """``payment_record`` with test defaults (a bank transfer received on 2026-03-10)."""
    return payment_record(
        customer=customer,
        amount=Decimal(amount),
        received_on=received_on or dt.date(2026, 3, 10),
        **kwargs,
    )


class BankStatementFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BankStatement

    format = "csv"
    filename = "statement.csv"
    sha256 = "0" * 64


class BankTransactionFactory(factory.django.DjangoModelFactory):
    """A queued (unmatched) incoming credit."""

    class Meta:
        model = BankTransaction

    statement = factory.SubFactory(BankStatementFactory)
    transaction_id = factory.Sequence(lambda n: f"BANK-TX-{n:06d}")
    booking_date = dt.date(2026, 3, 12)
    currency = "EUR"
    amount = Decimal("100.00")
    counterparty_name = "Someone"
    remittance = "thanks"
    status = BankTransactionStatus.UNMATCHED
