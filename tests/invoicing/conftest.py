from __future__ import annotations

from decimal import Decimal

import pytest

from tests.factories.invoicing import NumberSeriesFactory, TaxRateFactory


@pytest.fixture
def series(db):
    """The two default series, as the demo seed and a fresh database create them."""
    return {
        "invoice": NumberSeriesFactory(default_invoices=True),
        "credit_note": NumberSeriesFactory(default_credit_notes=True),
    }


@pytest.fixture
def vat_de(db):
    return TaxRateFactory(country="DE", percentage=Decimal("19"))


@pytest.fixture
def vat_at(db):
    return TaxRateFactory(country="AT", percentage=Decimal("20"))
