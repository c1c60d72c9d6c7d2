"""factory_boy factories for invoicing. Finalized invoices are made through the service (``finalized=True`` or
``finalized=<issue date>``), never by setting a status, so every factory invoice obeys the invariants."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import factory

from core.formatting import plain_decimal
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

    name = factory.LazyAttribute(lambda o: f"VAT {plain_decimal(o.percentage)} %")
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


def invoices_issue_new(*, invoices: list[tuple[Invoice, list[InvoiceLine]]], issue_date: dt.date) -> list[Invoice]:
    """Issue many new invoices at once through the one issue path (``invoices_issue``), as the billing run does:
    taxes and totals computed in memory, then numbers, rows, status events and domain events in one go. Each
    ``Invoice`` is unsaved with ``customer`` loaded; its lines are unsaved with quantity, unit amount, discount."""
    from django.db import transaction

    from invoicing.services import invoices_issue
    from invoicing.taxes import apply_tax_resolution, apply_totals, compute_invoice_totals, resolve_tax, tax_rates_load

    with transaction.atomic():
        rates = tax_rates_load(countries={str(invoice.customer.country) for invoice, _ in invoices})
        for invoice, lines in invoices:
            resolution = resolve_tax(customer=invoice.customer, tax_rates_by_country=rates)
            apply_tax_resolution(lines, resolution)
            apply_totals(invoice, lines, compute_invoice_totals(lines, invoice.currency))
            invoice.tax_treatment, invoice.tax_note = resolution.treatment, resolution.note
        issued = invoices_issue(invoices=[invoice for invoice, _ in invoices], issue_date=issue_date).invoices
        all_lines = []
        for invoice, lines in invoices:
            for position, line in enumerate(lines, start=1):
                line.invoice, line.position = invoice, line.position or position
                all_lines.append(line)
        InvoiceLine.objects.bulk_create(all_lines)
    return issued
