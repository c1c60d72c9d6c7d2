"""Invoices, credit notes, payments and domain events. Every write is the service the admin's buttons call:
``invoice_create_draft``, ``invoice_finalize``, ``invoice_void``, ``delivery.invoice_email_send`` (Send),
``invoice_charge_now`` (Charge saved card now), ``credit_note_issue``, ``payment_record``, ``payment_refund``;
documents come from the archive (``documents.invoice_pdf_bytes``), the upcoming invoice from the billing run's own
builder (``subscription_upcoming_invoice``)."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.db.models import Q
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from api.fields import AmountIn, CurrencyIn, RowIn, check_minor_units
from api.problems import ApiProblem
from api.serializers import (
    CreditNoteOut,
    EventOut,
    InvoiceOut,
    PaymentAttemptOut,
    PaymentOut,
    RefundOut,
    represent_invoice_preview,
)
from api.views.base import AS_OF_PARAMETER, IDEMPOTENCY_PARAMETER, ApiViewSet
from core.dates import billing_today
from core.models import DomainEvent
from customers.models import Customer
from invoicing import delivery, documents
from invoicing.einvoice.service import invoice_einvoice_file
from invoicing.models import CreditNote, Invoice, InvoiceLine, InvoiceStatus
from invoicing.services import (
    CreditNoteLineSpec,
    InvoiceLineSpec,
    credit_note_issue,
    invoice_create_draft,
    invoice_finalize,
    invoice_void,
)
from invoicing.subscription_billing import subscription_upcoming_invoice
from payments.models import Payment, PaymentMethod, PaymentMethodKind
from payments.services import AllocationSpec, invoice_charge_now, payment_record, payment_refund
from subscriptions.models import Subscription

PDF_RESPONSE = {(200, "application/pdf"): OpenApiTypes.BINARY}


def _pdf(filename: str, content: bytes) -> HttpResponse:
    response = HttpResponse(content, content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    return response


# --- invoices -------------------------------------------------------------------------------------------


class InvoiceLineIn(serializers.Serializer):
    description = serializers.CharField(max_length=500)
    quantity = AmountIn(positive=True, required=False, help_text="Default 1; decimals allowed (hours).")
    unit_amount = AmountIn(help_text="In the invoice's currency; gross for inclusive tax rates.")
    discount_amount = AmountIn(min_value=0, required=False)
    period_start = serializers.DateField(required=False, allow_null=True)
    period_end = serializers.DateField(required=False, allow_null=True)


class InvoiceIn(serializers.Serializer):
    customer = RowIn(Customer.objects.all())
    currency = CurrencyIn(required=False, help_text="Default: the customer's.")
    subscription = RowIn(Subscription.objects.all(), required=False, allow_null=True)
    memo = serializers.CharField(required=False, allow_blank=True)
    footer = serializers.CharField(required=False, allow_blank=True)
    lines = InvoiceLineIn(many=True, allow_empty=False)


class FinalizeIn(serializers.Serializer):
    issue_date = serializers.DateField(required=False, help_text="Default: today.")


class ReasonIn(serializers.Serializer):
    reason = serializers.CharField(max_length=300, required=False, allow_blank=True)


class SendIn(serializers.Serializer):
    resend = serializers.BooleanField(
        required=False,
        default=False,
        help_text="false: the invoice's e-mail (sent once, whoever asks); true: send it again.",
    )


class PayIn(serializers.Serializer):
    payment_method = RowIn(
        PaymentMethod.objects.all(),
        required=False,
        allow_null=True,
        help_text="One of the customer's active saved methods; default: the default one.",
    )


class InvoiceViewSet(ApiViewSet):
    queryset = Invoice.objects.all()
    outside_transaction_actions = frozenset({"pay"})  # the gateway is called with no transaction open

    def _invoice(self, pk: str) -> Invoice:
        return self.object_or_404(Invoice.objects.prefetch_related("lines"), pk, what="invoice")

    @extend_schema(
        responses=InvoiceOut(many=True),
        parameters=[
            OpenApiParameter("customer", int),
            OpenApiParameter("subscription", int),
            OpenApiParameter("status", str, enum=list(InvoiceStatus.values)),
            OpenApiParameter("number", str),
            OpenApiParameter("issued_from", OpenApiTypes.DATE),
            OpenApiParameter("issued_to", OpenApiTypes.DATE),
            OpenApiParameter("due_before", OpenApiTypes.DATE),
        ],
    )
    def list(self, request: Request) -> Response:
        queryset = Invoice.objects.all()
        if (customer := self.query_id("customer")) is not None:
            queryset = queryset.filter(customer_id=customer)
        if (subscription := self.query_id("subscription")) is not None:
            queryset = queryset.filter(subscription_id=subscription)
        if (status := self.query_choice("status", list(InvoiceStatus.values))) is not None:
            queryset = queryset.filter(status=status)
        if (number := self.query_param("number")) is not None:
            queryset = queryset.filter(number=number)
        if (issued_from := self.query_date("issued_from")) is not None:
            queryset = queryset.filter(issue_date__gte=issued_from)
        if (issued_to := self.query_date("issued_to")) is not None:
            queryset = queryset.filter(issue_date__lte=issued_to)
        if (due_before := self.query_date("due_before")) is not None:
            queryset = queryset.filter(due_date__lt=due_before)
        return self.list_response(queryset)

    @extend_schema(responses=InvoiceOut)
    def retrieve(self, request: Request, pk: str) -> Response:
        return self.represented(self._invoice(pk))

    @extend_schema(request=InvoiceIn, responses={201: InvoiceOut}, parameters=[IDEMPOTENCY_PARAMETER])
    def create(self, request: Request) -> Response:
        """A draft (one-off invoice); finalize it to number and issue it."""
        given = self.typed(InvoiceIn)
        customer = given["customer"]
        currency = given.get("currency") or customer.currency
        for index, line in enumerate(given["lines"]):
            if "discount_amount" in line:  # unit amounts may have more decimals (0.0125); a discount may not
                check_minor_units(line["discount_amount"], currency, f"lines.{index}.discount_amount")
        invoice = invoice_create_draft(
            customer=customer,
            currency=currency,
            subscription=given.get("subscription"),
            memo=given.get("memo", ""),
            footer=given.get("footer", ""),
            lines=[
                InvoiceLineSpec(
                    description=line["description"],
                    unit_amount=line["unit_amount"],
                    quantity=line.get("quantity") or Decimal(1),
                    discount_amount=line.get("discount_amount") or Decimal(0),
                    period_start=line.get("period_start"),
                    period_end=line.get("period_end"),
                )
                for line in given["lines"]
            ],
        )
        return self.represented(self._invoice(str(invoice.pk)), status=201)

    @extend_schema(request=FinalizeIn, responses=InvoiceOut, parameters=[IDEMPOTENCY_PARAMETER])
    @action(detail=True, methods=["post"])
    def finalize(self, request: Request, pk: str) -> Response:
        """Number and issue a draft (``invoice_finalize``); the invoice.issued event then applies credit,
        charges or e-mails it."""
        given = self.typed(FinalizeIn)
        invoice_finalize(invoice=self._invoice(pk), issue_date=given.get("issue_date") or billing_today())
        return self.represented(self._invoice(pk))

    @extend_schema(request=ReasonIn, responses=InvoiceOut, parameters=[IDEMPOTENCY_PARAMETER])
    @action(detail=True, methods=["post"])
    def void(self, request: Request, pk: str) -> Response:
        given = self.typed(ReasonIn)
        invoice_void(invoice=self._invoice(pk), reason=given.get("reason", ""))
        return self.represented(self._invoice(pk))

    @extend_schema(request=SendIn, responses=InvoiceOut, parameters=[IDEMPOTENCY_PARAMETER])
    @action(detail=True, methods=["post"])
    def send(self, request: Request, pk: str) -> Response:
        """Queue the invoice e-mail with its PDF (the admin's Send / Resend)."""
        invoice = self._invoice(pk)
        given = self.typed(SendIn)
        if invoice.status not in (InvoiceStatus.OPEN, InvoiceStatus.PAID, InvoiceStatus.UNCOLLECTIBLE):
            raise ApiProblem(
                409,
                f"Invoice {invoice.pk} is {invoice.status}: only issued invoices are e-mailed.",
                code="invoice_state_error",
            )
        delivery.invoice_email_send(invoice=invoice, request_key=uuid.uuid4().hex if given["resend"] else None)
        return self.represented(invoice)

    @extend_schema(request=PayIn, responses=PaymentAttemptOut, parameters=[IDEMPOTENCY_PARAMETER])
    @action(detail=True, methods=["post"])
    def pay(self, request: Request, pk: str) -> Response:
        """Charge the amount due to a saved payment method (``invoice_charge_now``): the attempt, with its status
        (succeeded, failed with the decline, or processing). 409 when nothing is due or a charge is under way."""
        invoice = self._invoice(pk)
        given = self.typed(PayIn)
        method = given.get("payment_method")
        if method is not None and (method.customer_id != invoice.customer_id or not method.is_active):
            raise ApiProblem(
                422,
                "payment_method: not an active saved method of the invoice's customer.",
                code="invalid_input",
                field="payment_method",
            )
        attempt = invoice_charge_now(invoice=invoice, as_of=billing_today(), payment_method=method)
        if attempt is None:
            raise ApiProblem(
                409,
                f"Invoice {invoice.pk}: nothing to charge (nothing due, or a charge is under way).",
                code="nothing_to_charge",
            )
        return self.represented(attempt)

    @extend_schema(responses=PDF_RESPONSE, parameters=[OpenApiParameter("version", int)])
    @action(detail=True, methods=["get"])
    def pdf(self, request: Request, pk: str) -> HttpResponse:
        """The archived PDF (rendered once, never rewritten); a draft is rendered on the fly."""
        invoice = self.object_or_404(Invoice.objects.all(), pk, what="invoice")
        filename, content = documents.invoice_pdf_bytes(invoice_id=invoice.pk, version=self.query_id("version"))
        return _pdf(filename, content)

    @extend_schema(responses={(200, "application/xml"): OpenApiTypes.BINARY})
    @action(detail=True, methods=["get"])
    def einvoice(self, request: Request, pk: str) -> HttpResponse:
        """The archived e-invoice XML (XRechnung, Factur-X's CII, Peppol BIS) of an issued invoice whose customer
        takes e-invoices; 404 otherwise (docs/decisions/einvoice.md)."""
        invoice = self.object_or_404(Invoice.objects.all(), pk, what="invoice")
        found = invoice_einvoice_file(invoice)
        if found is None:
            raise ApiProblem(
                404, f"Invoice {invoice.pk} has no e-invoice (a draft, or its customer takes none).", code="no_einvoice"
            )
        filename, content = found
        response = HttpResponse(content, content_type="application/xml")
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response

    @extend_schema(
        parameters=[OpenApiParameter("subscription", int, required=True), AS_OF_PARAMETER],
        responses={200: OpenApiTypes.OBJECT},
    )
    @action(detail=False, methods=["get"])
    def upcoming(self, request: Request) -> Response:
        """The subscription's next invoice as the billing run will issue it (no number, written nowhere)."""
        subscription_id = self.query_id("subscription")
        if subscription_id is None:
            raise ApiProblem(
                400, "subscription: give the subscription's id.", code="invalid_input", field="subscription"
            )
        subscription = self.object_or_404(Subscription.objects.all(), subscription_id, what="subscription")
        preview = subscription_upcoming_invoice(subscription=subscription, as_of=self.query_date("as_of"))
        if preview is None:
            raise ApiProblem(
                404,
                f"Subscription {subscription.pk} has no upcoming invoice ({subscription.status}).",
                code="not_found",
            )
        return Response(represent_invoice_preview(preview))


# --- credit notes ---------------------------------------------------------------------------------------


class CreditNoteLineIn(serializers.Serializer):
    invoice_line = serializers.IntegerField(help_text="The id of a line of the invoice.")
    quantity = AmountIn(positive=True, required=False, allow_null=True, help_text="Part of it; default: all.")


class CreditNoteIn(serializers.Serializer):
    invoice = RowIn(Invoice.objects.all())
    reason = serializers.CharField(max_length=500)
    amount = AmountIn(positive=True, required=False, help_text="A gross amount split over the invoice's rates.")
    lines = CreditNoteLineIn(many=True, required=False, allow_empty=False)
    memo = serializers.CharField(required=False, allow_blank=True)
    issue_date = serializers.DateField(required=False)


class CreditNoteViewSet(ApiViewSet):
    queryset = CreditNote.objects.all()

    @extend_schema(responses=CreditNoteOut(many=True))
    def list(self, request: Request) -> Response:
        queryset = CreditNote.objects.all()
        if (customer := self.query_id("customer")) is not None:
            queryset = queryset.filter(customer_id=customer)
        if (invoice := self.query_id("invoice")) is not None:
            queryset = queryset.filter(invoice_id=invoice)
        return self.list_response(queryset)

    @extend_schema(responses=CreditNoteOut)
    def retrieve(self, request: Request, pk: str) -> Response:
        return self.represented(
            self.object_or_404(CreditNote.objects.prefetch_related("lines"), pk, what="credit note")
        )

    @extend_schema(request=CreditNoteIn, responses={201: CreditNoteOut}, parameters=[IDEMPOTENCY_PARAMETER])
    def create(self, request: Request) -> Response:
        """In full (neither amount nor lines), for some lines, or for a gross amount (``credit_note_issue``)."""
        given = self.typed(CreditNoteIn)
        invoice = given["invoice"]
        lines = given.get("lines")
        if "amount" in given and lines:
            raise ApiProblem(400, "amount: give an amount or lines, not both.", code="invalid_input", field="amount")
        if "amount" in given:
            check_minor_units(given["amount"], invoice.currency, "amount")
        if lines:
            known = set(InvoiceLine.objects.filter(invoice=invoice).values_list("pk", flat=True))
            for index, line in enumerate(lines):
                if line["invoice_line"] not in known:
                    raise ApiProblem(
                        400,
                        f"lines.{index}.invoice_line: no line {line['invoice_line']} on this invoice.",
                        code="invalid_input",
                        field=f"lines.{index}.invoice_line",
                    )
        credit_note = credit_note_issue(
            invoice=invoice,
            reason=given["reason"],
            amount=given.get("amount"),
            lines=[
                CreditNoteLineSpec(invoice_line_id=line["invoice_line"], quantity=line.get("quantity"))
                for line in lines
            ]
            if lines
            else None,
            issue_date=given.get("issue_date") or billing_today(),
            memo=given.get("memo", ""),
        )
        return self.represented(CreditNote.objects.prefetch_related("lines").get(pk=credit_note.pk), status=201)

    @extend_schema(responses=PDF_RESPONSE)
    @action(detail=True, methods=["get"])
    def pdf(self, request: Request, pk: str) -> HttpResponse:
        credit_note = self.object_or_404(CreditNote.objects.all(), pk, what="credit note")
        filename, content = documents.credit_note_pdf_bytes(credit_note_id=credit_note.pk)
        return _pdf(filename, content)


# --- payments -------------------------------------------------------------------------------------------


class AllocationIn(serializers.Serializer):
    invoice = RowIn(Invoice.objects.all())
    amount = AmountIn(positive=True)


class PaymentIn(serializers.Serializer):
    customer = RowIn(Customer.objects.all())
    amount = AmountIn(positive=True)
    currency = CurrencyIn(required=False, help_text="Default: the customer's.")
    received_on = serializers.DateField(required=False, help_text="Default: today.")
    method = serializers.ChoiceField(choices=PaymentMethodKind.values, required=False)
    reference = serializers.CharField(max_length=255, required=False, allow_blank=True)
    invoice = RowIn(
        Invoice.objects.all(),
        required=False,
        allow_null=True,
        help_text="The invoice the payer named; default: the oldest open invoices.",
    )
    allocations = AllocationIn(many=True, required=False, allow_empty=False)
    notes = serializers.CharField(required=False, allow_blank=True)


class RefundIn(serializers.Serializer):
    amount = AmountIn(positive=True, required=False, help_text="Default: all that is not refunded yet.")
    reason = serializers.CharField(max_length=500)


class PaymentViewSet(ApiViewSet):
    queryset = Payment.objects.all()
    outside_transaction_actions = frozenset({"refund"})  # a card refund goes through the gateway

    @extend_schema(responses=PaymentOut(many=True))
    def list(self, request: Request) -> Response:
        queryset = Payment.objects.all()
        if (customer := self.query_id("customer")) is not None:
            queryset = queryset.filter(customer_id=customer)
        if (invoice := self.query_id("invoice")) is not None:
            queryset = queryset.filter(Q(invoice_id=invoice) | Q(allocations__invoice_id=invoice)).distinct()
        return self.list_response(queryset)

    @extend_schema(responses=PaymentOut)
    def retrieve(self, request: Request, pk: str) -> Response:
        return self.represented(self.object_or_404(Payment.objects.all(), pk, what="payment"))

    @extend_schema(request=PaymentIn, responses={201: PaymentOut}, parameters=[IDEMPOTENCY_PARAMETER])
    def create(self, request: Request) -> Response:
        """Record a payment received (``payment_record``) and settle invoices from it: the ``allocations`` given,
        else the named ``invoice``, else the oldest open invoices; what is left becomes customer credit."""
        given = self.typed(PaymentIn)
        customer = given["customer"]
        currency = given.get("currency") or customer.currency
        check_minor_units(given["amount"], currency, "amount")
        allocations = given.get("allocations")
        for index, row in enumerate(allocations or []):
            check_minor_units(row["amount"], currency, f"allocations.{index}.amount")
            for name, value in (("invoice", row["invoice"]),):
                if value.customer_id != customer.pk:
                    raise ApiProblem(
                        422,
                        f"allocations.{index}.{name}: invoice {value.pk} is another customer's.",
                        code="invalid_input",
                        field=f"allocations.{index}.{name}",
                    )
        named = given.get("invoice")
        if named is not None and named.customer_id != customer.pk:
            raise ApiProblem(
                422, f"invoice: invoice {named.pk} is another customer's.", code="invalid_input", field="invoice"
            )
        payment = payment_record(
            customer=customer,
            amount=given["amount"],
            currency=currency,
            received_on=given.get("received_on") or billing_today(),
            method=given.get("method") or PaymentMethodKind.BANK_TRANSFER,
            reference=given.get("reference", ""),
            invoice=named,
            allocations=[AllocationSpec(invoice=row["invoice"], amount=row["amount"]) for row in allocations]
            if allocations
            else None,
            notes=given.get("notes", ""),
        )
        return self.represented(Payment.objects.prefetch_related("allocations").get(pk=payment.pk), status=201)

    @extend_schema(request=RefundIn, responses={201: RefundOut}, parameters=[IDEMPOTENCY_PARAMETER])
    @action(detail=True, methods=["post"])
    def refund(self, request: Request, pk: str) -> Response:
        """Refund all or part (``payment_refund``): a card through its gateway, a transfer recorded as paid back;
        the invoices it settled open again."""
        payment = self.object_or_404(Payment.objects.all(), pk, what="payment")
        given = self.typed(RefundIn)
        if "amount" in given:
            check_minor_units(given["amount"], payment.currency, "amount")
        refund = payment_refund(payment=payment, reason=given["reason"], amount=given.get("amount"))
        return self.represented(refund, status=201)


# --- domain events --------------------------------------------------------------------------------------


class DomainEventViewSet(ApiViewSet):
    """What happened, newest first: the same rows that drive the after-commit handlers and the webhooks."""

    queryset = DomainEvent.objects.all()

    @extend_schema(
        responses=EventOut(many=True),
        parameters=[
            OpenApiParameter("type", str),
            OpenApiParameter("subject_type", str),
            OpenApiParameter("subject_id", int),
        ],
    )
    def list(self, request: Request) -> Response:
        queryset = DomainEvent.objects.all()
        if (event_type := self.query_param("type")) is not None:
            queryset = queryset.filter(type=event_type)
        if (subject_type := self.query_param("subject_type")) is not None:
            queryset = queryset.filter(subject_type=subject_type)
        if (subject_id := self.query_id("subject_id")) is not None:
            queryset = queryset.filter(subject_id=subject_id)
        return self.list_response(queryset)

    @extend_schema(responses=EventOut)
    def retrieve(self, request: Request, pk: str) -> Response:
        return self.represented(self.object_or_404(DomainEvent.objects.all(), pk, what="event"))
