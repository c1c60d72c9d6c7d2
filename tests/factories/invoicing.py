"""factory_boy factories for invoicing. Finalized invoices are made through the service (``finalized=True`` or
``finalized=<issue date>``), never by setting a status, so every factory invoice obeys the invariants."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import factory

from invoicing.models import BillingReason, Invoice, InvoiceLine, LineKind, NumberSeries, TaxRate
from invoicing.services import invoice_finalize, invoice_recompute
from tests.factories.customers import CustomerFactory


class NumberSeriesFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = NumberSeries
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"series-{n}")
    name = factory.LazyAttribute(lambda o: o.code.title())
    kind = NumberSeries.Kind.INVOICE
    prefix = "T-"
    format = "{prefix}{year}-{number:06d}"
    yearly_reset = True
    is_default = False

    class Params:
        default_invoices = factory.Trait(code="invoices", name="Invoices", prefix="INV-", is_default=True)
        default_credit_notes = factory.Trait(
            code="credit-notes", name="Credit notes", prefix="CN-", kind=NumberSeries.Kind.CREDIT_NOTE, is_default=True
        )


class TaxRateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TaxRate

    name = factory.LazyAttribute(lambda o: f"VAT {Decimal(o.percentage).normalize()} %")
    country = "DE"
    region = ""
    percentage = Decimal("19")
    inclusive = False
    active = True


class InvoiceFactory(factory.django.DjangoModelFactory):
    """A draft with one 100.00 line by default (``lines=[...]`` of dicts to choose, ``lines=[]`` for none)."""

    class Meta:
        model = Invoice
        skip_postgeneration_save = True

    customer = factory.SubFactory(CustomerFactory)
    currency = factory.LazyAttribute(lambda o: o.customer.currency)
    billing_reason = BillingReason.MANUAL

    @factory.post_generation
    def lines(self, create: bool, extracted: list[dict[str, Any]] | None, **kwargs: Any) -> None:
        if not create:
            return
        specs = [{"description": "Service", "unit_amount": Decimal("100.00")}] if extracted is None else extracted
        for position, spec in enumerate(specs, start=1):
            InvoiceLineFactory(invoice=self, position=position, **spec)
        invoice_recompute(invoice=self)
        self.refresh_from_db()

    @factory.post_generation
    def finalized(self, create: bool, extracted: bool | dt.date | None, **kwargs: Any) -> None:
        if create and extracted:
            issue_date = extracted if isinstance(extracted, dt.date) else dt.date(2026, 3, 2)
            invoice_finalize(invoice=self, issue_date=issue_date)
            self.refresh_from_db()
            self._loaded_status = self.status


class InvoiceLineFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = InvoiceLine

    invoice = factory.SubFactory(InvoiceFactory, lines=[])
    kind = LineKind.ONE_OFF
    description = factory.Sequence(lambda n: f"Line {n}")
    quantity = Decimal(1)
    unit_amount = Decimal("100.00")
