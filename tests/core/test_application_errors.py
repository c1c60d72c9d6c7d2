"""One root for the errors a person can act on (core/errors.py), and the faces that show its message instead of a
traceback: the admin (an action, a process screen), management commands, the portal (tests/portal/…)."""

from __future__ import annotations

import io
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from core.asof import InvalidDate
from core.commands import BaseCommand
from core.csvfile import CsvFileError
from core.errors import ApplicationError, Conflict, InvalidInput, NotAllowed, NotFound, Unavailable
from core.imports import DataImportError
from core.links import InvalidLink
from core.money import CurrencyMismatch
from customers.models import Customer
from customers.portal_services import PortalInviteError
from customers.services import CustomerHasBillingHistory, CustomerImportError
from dunning.services import DunningError
from invoicing.billing_run import ConcurrentBilling, InvoiceNeedsReview
from invoicing.delivery import DeliveryError
from invoicing.documents import DocumentRenderError
from invoicing.models import DocumentImmutable
from invoicing.services import CreditNoteError, InvoiceError, InvoiceStateError, PaymentExceedsAmountDue
from invoicing.taxes import TaxRateMissing
from payments.bank_import import BankImportError, MappingError, ReconciliationError
from payments.gateways import GatewayUnavailable, InvalidWebhook
from payments.services import AllocationError, CreditError, PaymentError, PossibleDuplicatePayment, RefundError
from payments.webhooks import UnknownGateway
from reporting.exports import ExportError
from subscriptions.services import (
    ConcurrentUpdate,
    CouponNotRedeemable,
    IdempotencyConflict,
    IntervalMismatch,
    InvalidTransition,
    SubscriptionError,
    UsageImportError,
    UsageRejected,
)
from tests.factories import CustomerFactory, InvoiceFactory, NumberSeriesFactory, record_payment

# Every domain exception, with the kind of refusal it is. Those that were ValueError before the root existed are
# still ValueError: callers that catch ValueError keep working.
DOMAIN_ERRORS = [
    (CurrencyMismatch, InvalidInput, True),
    (CsvFileError, InvalidInput, True),
    (InvalidLink, NotFound, False),
    (PortalInviteError, NotAllowed, True),
    (CustomerHasBillingHistory, NotAllowed, False),
    (CustomerImportError, InvalidInput, False),
    (SubscriptionError, ApplicationError, True),
    (IntervalMismatch, InvalidInput, True),
    (InvalidTransition, NotAllowed, True),
    (ConcurrentUpdate, Conflict, True),
    (CouponNotRedeemable, NotAllowed, True),
    (UsageRejected, InvalidInput, True),
    (IdempotencyConflict, Conflict, True),
    (UsageImportError, InvalidInput, False),
    (ExportError, InvalidInput, False),
    (DunningError, NotAllowed, False),
    (DocumentRenderError, Unavailable, False),
    (InvoiceError, ApplicationError, False),
    (InvoiceStateError, NotAllowed, False),
    (PaymentExceedsAmountDue, InvalidInput, False),
    (CreditNoteError, InvalidInput, False),
    (ConcurrentBilling, Conflict, False),
    (InvoiceNeedsReview, NotAllowed, False),
    (TaxRateMissing, NotFound, False),
    (DocumentImmutable, NotAllowed, False),
    (DeliveryError, NotAllowed, False),
    (PaymentError, ApplicationError, True),
    (AllocationError, InvalidInput, True),
    (PossibleDuplicatePayment, Conflict, True),
    (RefundError, NotAllowed, True),
    (CreditError, InvalidInput, True),
    (BankImportError, InvalidInput, False),
    (ReconciliationError, NotAllowed, True),
    (GatewayUnavailable, Unavailable, False),
    (InvalidWebhook, InvalidInput, False),
    (UnknownGateway, InvalidInput, False),
    (MappingError, InvalidInput, True),
    (InvalidDate, InvalidInput, True),
    (DataImportError, InvalidInput, False),
]


@pytest.mark.parametrize(("error", "kind", "is_value_error"), DOMAIN_ERRORS, ids=lambda v: getattr(v, "__name__", ""))
def test_every_domain_error_derives_from_the_one_root(
    error: type[Exception], kind: type[ApplicationError], is_value_error: bool
) -> None:
    assert issubclass(error, ApplicationError)
    assert issubclass(error, kind)
    assert issubclass(error, ValueError) is is_value_error


def test_an_application_error_carries_message_field_code_and_status() -> None:
    error = InvalidTransition("a canceled subscription cannot be paused", field="status")
    assert (error.message, error.field, error.code, error.http_status) == (
        "a canceled subscription cannot be paused",
        "status",
        "invalid_transition",
        409,
    )
    assert str(error) == "a canceled subscription cannot be paused"
    assert error.for_display() == "status: a canceled subscription cannot be paused"
    assert NotFound().message == "Not found."
    assert InvalidInput("--as-of: 'x' is not a date", field="--as-of").for_display() == "--as-of: 'x' is not a date"


# --- management commands --------------------------------------------------------------------------------


class _RefusingCommand(BaseCommand):
    def handle(self, *args: Any, **options: Any) -> None:
        raise NotAllowed("invoice INV-1 is void", field="--invoice")


class _BrokenCommand(BaseCommand):
    def handle(self, *args: Any, **options: Any) -> None:
        raise KeyError("a bug")


def test_a_command_shows_the_message_of_an_application_error_as_a_command_error() -> None:
    with pytest.raises(CommandError) as caught:
        call_command(_RefusingCommand(), stdout=io.StringIO(), stderr=io.StringIO())
    assert str(caught.value) == "--invoice: invoice INV-1 is void"
    assert isinstance(caught.value.__cause__, NotAllowed)


def test_a_command_still_raises_what_is_not_an_application_error() -> None:
    with pytest.raises(KeyError):
        call_command(_BrokenCommand(), stdout=io.StringIO(), stderr=io.StringIO())


@pytest.mark.django_db
def test_a_real_command_refuses_with_the_services_message(tmp_path: Any) -> None:
    """export_accounting's service refuses a period that ends before it starts (ExportError)."""
    with pytest.raises(CommandError, match=r"the period ends \(2026-03-01\) before it starts \(2026-03-31\)"):
        call_command("export_accounting", "--from", "2026-03-31", "--to", "2026-03-01", stdout=io.StringIO())


# --- admin ----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_admin_action_shows_the_message_of_an_application_error(admin_client: Any, monkeypatch: Any) -> None:
    customer = CustomerFactory(name="Locked GmbH")

    def refuse(*, customer: Customer) -> Customer:
        raise NotAllowed(f"{customer} is under legal hold", field="is_archived")

    monkeypatch.setattr("customers.admin.customer_archive", refuse)
    url = reverse("admin:customers_customer_changelist")
    response = admin_client.post(
        url, {"action": "archive_customers", "_selected_action": [customer.pk], "index": 0}, follow=True
    )
    assert response.status_code == 200
    assert response.redirect_chain == [(url, 302)]
    shown = [str(message) for message in response.context["messages"]]
    assert shown == ["is_archived: Locked GmbH is under legal hold"]
    assert b"Traceback" not in response.content


@pytest.mark.django_db
def test_an_admin_process_screen_shows_the_message_of_an_application_error(admin_client: Any, monkeypatch: Any) -> None:
    """The invoice PDF screen when the renderer fails: the message on an error page (503), not a 500."""
    NumberSeriesFactory(default_invoices=True)
    invoice = InvoiceFactory(
        customer=CustomerFactory(exempt=True), lines=[{"description": "Service", "unit_amount": Decimal("10.00")}]
    )

    def fail(**kwargs: Any) -> bytes:
        raise DocumentRenderError("xhtml2pdf reported 2 error(s)")

    monkeypatch.setattr("invoicing.documents.render_invoice_pdf", fail)
    response = admin_client.get(reverse("admin:invoicing_invoice_pdf", args=[invoice.pk]))
    assert response.status_code == 503
    assert "xhtml2pdf reported 2 error(s)" in response.content.decode()


@pytest.mark.django_db
def test_a_refused_admin_form_post_comes_back_to_the_page_with_the_message(admin_client: Any, monkeypatch: Any) -> None:
    """A process screen that does not catch the error itself: back to the same page, the message on top."""
    payment = record_payment(customer=CustomerFactory(exempt=True), amount="30.00")

    def refuse(**kwargs: Any) -> Any:
        raise Conflict(f"payment #{payment.pk} was changed by someone else; reload and retry")

    monkeypatch.setattr("payments.admin.payment_refund", refuse)
    url = reverse("admin:payments_payment_refund", args=[payment.pk])
    response = admin_client.post(url, {"amount": "10.00", "reason": "goodwill"}, follow=True)
    assert response.redirect_chain == [(url, 302)]
    assert [str(m) for m in response.context["messages"]] == [
        f"payment #{payment.pk} was changed by someone else; reload and retry"
    ]
