from __future__ import annotations

import pytest

from billing_project.demo.customers import seed_customers
from invoicing.demo import seed_invoicing
from payments.demo import seed_payments
from payments.models import CreditLedgerEntry, Payment, PaymentAttempt, PaymentMethod
from tests.factories.invoicing import NumberSeriesFactory

pytestmark = pytest.mark.django_db


def test_seed_payments_is_idempotent(django_capture_on_commit_callbacks):
    NumberSeriesFactory(default_invoices=True)
    NumberSeriesFactory(default_credit_notes=True)
    seed_customers()
    seed_invoicing()
    with django_capture_on_commit_callbacks(execute=True):
        created = seed_payments()
    assert created == 7  # 3 cards, 3 payments, 1 failed attempt
    assert Payment.objects.count() == 3
    assert CreditLedgerEntry.objects.filter(kind="overpayment").count() == 1
    assert PaymentAttempt.objects.filter(status="failed", decline_code="insufficient_funds").count() == 1
    assert PaymentMethod.objects.count() == 3
    with django_capture_on_commit_callbacks(execute=True):
        assert seed_payments() == 0
