from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from payments.gateways.sandbox import SandboxGateway
from tests.factories import CustomerFactory, InvoiceFactory
from tests.factories.invoicing import NumberSeriesFactory, TaxRateFactory

ISSUE = dt.date(2026, 3, 2)


@pytest.fixture(autouse=True)
def _sandbox() -> Any:
    SandboxGateway.reset()
    yield
    SandboxGateway.reset()


@pytest.fixture
def series(db: Any) -> dict[str, Any]:
    return {
        "invoice": NumberSeriesFactory(default_invoices=True),
        "credit_note": NumberSeriesFactory(default_credit_notes=True),
    }


@pytest.fixture
def billing(series: Any) -> None:
    """Number series and the German VAT rate: what finalizing an invoice needs."""
    TaxRateFactory(country="DE", percentage=Decimal("19"))


@pytest.fixture
def customer(billing: Any) -> Any:
    """Tax-exempt, so an invoice's total is the sum of its lines (easy numbers)."""
    return CustomerFactory(exempt=True)


def make_invoice(customer: Any, amount: str, *, issue_date: dt.date = ISSUE, **kwargs: Any) -> Any:
    """A finalized (open) invoice of ``customer`` with one line of ``amount``."""
    return InvoiceFactory(
        customer=customer,
        lines=[{"description": "Service", "unit_amount": Decimal(amount)}],
        finalized=issue_date,
        **kwargs,
    )
