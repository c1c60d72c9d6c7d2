from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.core import mail

from payments.gateways.sandbox import SandboxGateway
from tests.factories.invoicing import NumberSeriesFactory, TaxRateFactory


@pytest.fixture(autouse=True)
def anymail_backend(settings: Any) -> Any:
    settings.EMAIL_BACKEND = "anymail.backends.test.EmailBackend"
    settings.PORTAL_BASE_URL = "https://billing.example"
    mail.outbox = []
    SandboxGateway.reset()
    yield
    SandboxGateway.reset()


@pytest.fixture
def billing(db: Any) -> None:
    NumberSeriesFactory(default_invoices=True)
    NumberSeriesFactory(default_credit_notes=True)
    TaxRateFactory(country="DE", percentage=Decimal("19"))
