"""Portal test plumbing: two customers with invoices, signed-in clients, and the browser set-up (Debian's
Chromium, docs/GOTCHAS.md §9)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client

from customers.portal import SESSION_USER_KEY
from invoicing.services import credit_note_issue
from payments.gateways.sandbox import SandboxGateway

# Debian's Chromium and the async-safety switch for the browser test in this folder
from tests.browser import browser_type_launch_args, pytest_runtest_setup, pytest_runtest_teardown  # noqa: F401
from tests.factories import CustomerFactory, InvoiceFactory, PaymentMethodFactory, record_payment
from tests.factories.invoicing import NumberSeriesFactory, TaxRateFactory
from tests.factories.portal import PortalUserFactory

ISSUE = dt.date(2026, 3, 2)


@pytest.fixture(autouse=True)
def _fresh_state() -> Any:
    cache.clear()  # the login rate limit counts in the cache
    SandboxGateway.reset()
    yield
    cache.clear()
    SandboxGateway.reset()


@pytest.fixture
def billing(db: Any) -> None:
    NumberSeriesFactory(default_invoices=True)
    NumberSeriesFactory(default_credit_notes=True)
    TaxRateFactory(country="DE", percentage=Decimal("19"))


def make_invoice(customer: Any, amount: str, *, issue_date: dt.date = ISSUE, description: str = "Service") -> Any:
    return InvoiceFactory(
        customer=customer,
        lines=[{"description": description, "unit_amount": Decimal(amount)}],
        finalized=issue_date,
    )


class Account:
    """A customer with a portal user, an open invoice, a paid invoice with its payment, a credit note and a
    saved card."""

    def __init__(self, name: str) -> None:
        self.customer = CustomerFactory(name=name, exempt=True)
        self.portal_user = PortalUserFactory(customer=self.customer, email=f"{name.lower()}@portal.example")
        self.open_invoice = make_invoice(self.customer, "120.00")
        self.paid_invoice = make_invoice(self.customer, "50.00")
        self.payment = record_payment(customer=self.customer, amount="50.00", invoice=self.paid_invoice)
        self.paid_invoice.refresh_from_db()
        self.credit_note = credit_note_issue(invoice=self.paid_invoice, reason="goodwill", amount=Decimal("10.00"))
        self.payment_method = PaymentMethodFactory(customer=self.customer)


@pytest.fixture
def account_a(billing: Any) -> Account:
    return Account("Alpha")


@pytest.fixture
def account_b(billing: Any) -> Account:
    return Account("Bravo")


def signed_in_client(portal_user: Any, *, enforce_csrf_checks: bool = False) -> Client:
    client = Client(enforce_csrf_checks=enforce_csrf_checks)
    session = client.session
    session[SESSION_USER_KEY] = portal_user.pk
    session.save()
    return client


@pytest.fixture
def client_a(account_a: Account) -> Client:
    return signed_in_client(account_a.portal_user)
