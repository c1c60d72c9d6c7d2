"""Portal pages of invoicing: the invoice list, an invoice (as the PDF shows it) and its PDF, credit notes, and the
signed deep link from e-mails (``/portal/link/<token>/``).

Every query starts from a selector below that takes the customer (and, for a deep-link visit, the one invoice
it grants): ownership is checked here and nowhere else. Another customer's document is a 404, never a 403, so a
number that exists elsewhere looks exactly like one that does not. Drafts are never shown.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from core import formatting as fmt
from core.errors import InvalidInput
from core.links import InvalidLink, invoice_link_verify
from customers.models import Customer
from customers.portal import PortalView, client_ip, portal_access, portal_link_grant
from invoicing.documents import (
    credit_note_pdf_bytes,
    document_versions,
    invoice_context,
    invoice_pdf_bytes,
    quote_context,
    render_quote_pdf,
)
from invoicing.einvoice.service import einvoice_in_pdf, format_label, invoice_einvoice_file
from invoicing.models import CreditNote, DocumentPdf, Invoice, InvoiceStatus, Quote, QuoteStatus
from invoicing.quotes import quote_accept, quote_decline, quote_is_expired

PORTAL_STATUSES = (InvoiceStatus.OPEN, InvoiceStatus.PAID, InvoiceStatus.VOID, InvoiceStatus.UNCOLLECTIBLE)
PAYABLE_STATUSES = (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE)
STATUS_LABELS: dict[str, Any] = {
    InvoiceStatus.OPEN: _("Open"),
    InvoiceStatus.PAID: _("Paid"),
    InvoiceStatus.VOID: _("Void"),
    InvoiceStatus.UNCOLLECTIBLE: _("Overdue"),
}


# --- selectors: every portal read of invoices goes through these ----------------------------------------


def _visible_customers(customer: Customer) -> QuerySet[Customer, int]:
    """Whose invoices the customer's portal shows: its own and its child accounts' (a parent sees what its
    children are billed; a child never sees its parent's or its siblings'; docs/decisions/parent-accounts.md).
    A subquery, not a query of its own: the invoice list keeps its index on (customer, issue date)."""
    return Customer.objects.filter(Q(pk=customer.pk) | Q(parent_id=customer.pk)).values_list("pk", flat=True)


def portal_invoices(*, customer: Customer, status: str | None = None) -> QuerySet[Invoice]:
    """The issued invoices of the customer and of its child accounts, newest first; ``status`` one of
    ``PORTAL_STATUSES`` or None for all."""
    invoices = Invoice.objects.filter(customer_id__in=_visible_customers(customer)).finalized()
    if status:
        invoices = invoices.filter(status=status)
    return invoices.only(
        "pk", "customer", "number", "status", "issue_date", "due_date", "currency", "total", "amount_due"
    ).order_by("-issue_date", "-pk")


def portal_invoice_get(*, customer: Customer, number: str, only_invoice_id: int | None = None) -> Invoice:
    """One issued invoice of the customer by number, with its lines; 404 otherwise. ``only_invoice_id`` narrows
    a deep-link visit to the invoice it was signed for."""
    invoices = Invoice.objects.filter(customer_id__in=_visible_customers(customer), number=number).finalized()
    if only_invoice_id is not None:
        invoices = invoices.filter(pk=only_invoice_id)
    invoice = invoices.prefetch_related("lines").first()
    if invoice is None:
        raise Http404("no such invoice")
    return invoice


def portal_open_invoices(*, customer: Customer) -> QuerySet[Invoice]:
    """What the customer itself owes (a child account's own invoices are the child's to pay)."""
    return portal_invoices(customer=customer).filter(customer=customer, status__in=PAYABLE_STATUSES, amount_due__gt=0)


def portal_amount_due(*, customer: Customer) -> dict[str, Any]:
    """Amount due per currency (most customers have one)."""
    totals: dict[str, Any] = {}
    for currency, amount in portal_open_invoices(customer=customer).values_list("currency", "amount_due"):
        totals[currency] = totals.get(currency, 0) + amount
    return totals


def portal_credit_notes(*, customer: Customer) -> QuerySet[CreditNote]:
    return (
        CreditNote.objects.filter(customer=customer, invoice__customer=customer)
        .select_related("invoice")
        .only("pk", "number", "issue_date", "reason", "currency", "total", "customer", "invoice__number")
        .order_by("-issue_date", "-pk")
    )


def portal_credit_note_get(*, customer: Customer, number: str) -> CreditNote:
    credit_note = portal_credit_notes(customer=customer).filter(number=number).first()
    if credit_note is None:
        raise Http404("no such credit note")
    return credit_note


def invoice_is_payable(invoice: Invoice) -> bool:
    return invoice.status in PAYABLE_STATUSES and invoice.amount_due > 0


def status_label(status: str) -> str:
    return str(STATUS_LABELS.get(status, status))


def invoice_row(invoice: Invoice, *, customer: Customer | None = None) -> dict[str, Any]:
    """``customer``: the portal's; a child account's invoice it sees is shown, not offered for payment."""
    own = customer is None or invoice.customer_id == customer.pk
    return {
        "invoice": invoice,
        "status_label": status_label(invoice.status),
        "total": money(invoice.total, invoice.currency),
        "amount_due": money(invoice.amount_due, invoice.currency),
        "payable": own and invoice_is_payable(invoice),
    }


def invoice_rows(invoices: Iterable[Invoice], *, customer: Customer) -> list[dict[str, Any]]:
    """The rows of a portal invoice table (``invoice_row``); in a parent's portal a child account's invoice also
    names the child (``account``): one query for the children on the page, none when there are none."""
    invoices = list(invoices)
    children = {invoice.customer_id for invoice in invoices} - {customer.pk}
    names = (
        dict(Customer.objects.filter(pk__in=children, parent_id=customer.pk).values_list("pk", "name"))
        if children
        else {}
    )
    return [
        {**invoice_row(invoice, customer=customer), "account": names.get(invoice.customer_id, "")}
        for invoice in invoices
    ]


def money(amount: Any, currency: str) -> str:
    from django.utils.translation import get_language

    return fmt.money(amount, currency, fmt.document_language(get_language()))


# --- views ----------------------------------------------------------------------------------------------


class InvoiceListView(PortalView):
    nav = "invoices"

    def get(self, request: HttpRequest) -> HttpResponse:
        status = request.GET.get("status", "")
        if status not in PORTAL_STATUSES:
            status = ""
        page = Paginator(
            portal_invoices(customer=self.customer, status=status or None), settings.PORTAL_INVOICES_PER_PAGE
        ).get_page(request.GET.get("page"))
        rows = invoice_rows(page.object_list, customer=self.customer)
        statuses = [(value, status_label(value)) for value in PORTAL_STATUSES]
        return self.render(
            request,
            "portal/invoicing/invoice_list.html",
            {"page": page, "rows": rows, "status": status, "statuses": statuses},
        )


# Notes a higher app adds under an invoice's heading (payments: "will be debited on or after …"): callables
# ``(invoice) -> list[str]``, registered in its AppConfig.ready(); each runs a bounded number of queries.
INVOICE_NOTE_PROVIDERS: list[Any] = []


def invoice_note_register(provider: Any) -> None:
    if provider not in INVOICE_NOTE_PROVIDERS:
        INVOICE_NOTE_PROVIDERS.append(provider)


class InvoiceDetailView(PortalView):
    nav = "invoices"
    link_allowed = True

    def get(self, request: HttpRequest, number: str) -> HttpResponse:
        invoice = portal_invoice_get(customer=self.customer, number=number, only_invoice_id=self.access.invoice_id)
        document = invoice_context(invoice=invoice, lines=list(invoice.lines.all()))
        return self.render(
            request,
            "portal/invoicing/invoice_detail.html",
            {
                "invoice": invoice,
                "status_label": status_label(invoice.status),
                "doc": document,
                "payable": invoice.customer_id == self.customer.pk and invoice_is_payable(invoice),
                "amount_due": money(invoice.amount_due, invoice.currency),
                # the archived original and any later rendering (a template fix): all stay downloadable
                "earlier_versions": document_versions(DocumentPdf.objects.filter(invoice=invoice).first())[:-1],
                "einvoice_label": format_label(invoice) if not einvoice_in_pdf(invoice) else "",
                "notes": [note for provider in INVOICE_NOTE_PROVIDERS for note in provider(invoice)],
            },
        )


class InvoicePdfView(PortalView):
    link_allowed = True

    def get(self, request: HttpRequest, number: str) -> HttpResponse:
        invoice = portal_invoice_get(customer=self.customer, number=number, only_invoice_id=self.access.invoice_id)
        filename, content = invoice_pdf_bytes(invoice_id=invoice.pk, version=_version(request))
        return pdf_response(filename, content)


class InvoiceEInvoiceView(PortalView):
    """The invoice's e-invoice XML (XRechnung, Peppol; a Factur-X invoice's XML is inside its PDF)."""

    link_allowed = True

    def get(self, request: HttpRequest, number: str) -> HttpResponse:
        invoice = portal_invoice_get(customer=self.customer, number=number, only_invoice_id=self.access.invoice_id)
        found = invoice_einvoice_file(invoice)
        if found is None:
            raise Http404("this invoice has no e-invoice")
        return download_response(*found, content_type="application/xml")


class CreditNoteListView(PortalView):
    nav = "credit_notes"

    def get(self, request: HttpRequest) -> HttpResponse:
        page = Paginator(portal_credit_notes(customer=self.customer), settings.PORTAL_INVOICES_PER_PAGE).get_page(
            request.GET.get("page")
        )
        rows = [{"note": note, "total": money(note.total, note.currency)} for note in page.object_list]
        return self.render(request, "portal/invoicing/credit_note_list.html", {"page": page, "rows": rows})


class CreditNotePdfView(PortalView):
    def get(self, request: HttpRequest, number: str) -> HttpResponse:
        credit_note = portal_credit_note_get(customer=self.customer, number=number)
        filename, content = credit_note_pdf_bytes(credit_note_id=credit_note.pk, version=_version(request))
        return pdf_response(filename, content)


def _version(request: HttpRequest) -> int | None:
    """``?version=1`` downloads the archived original; without it, the newest version."""
    value = request.GET.get("version", "")
    if not value:
        return None
    if not value.isdigit() or not 1 <= int(value) <= 1000:
        raise InvalidInput("version: a version number such as 1", field="version")
    return int(value)


def pdf_response(filename: str, content: bytes) -> HttpResponse:
    return download_response(filename, content, content_type="application/pdf")


def download_response(filename: str, content: bytes, *, content_type: str) -> HttpResponse:
    response = HttpResponse(content, content_type=content_type)
    safe_name = "".join(char for char in filename if char.isalnum() or char in "._-") or "document"
    response["Content-Disposition"] = f'attachment; filename="{safe_name}"'
    response["Cache-Control"] = "private, no-store"
    return response


def invoice_link(request: HttpRequest, token: str) -> HttpResponse:
    """A signed link from an e-mail: verify it, remember that one invoice for this browser, show it. A signed-in
    portal user of the same customer simply goes to the invoice; nothing else is unlocked by a link."""
    try:
        link = invoice_link_verify(token)
    except InvalidLink:
        return render(request, "portal/link_invalid.html", status=404)
    invoice = Invoice.objects.finalized().filter(pk=link.invoice_id).only("pk", "number", "customer_id").first()
    if invoice is None:
        return render(request, "portal/link_invalid.html", status=404)
    access = portal_access(request)
    if access is None or access.is_link or access.customer.pk != invoice.customer_id:
        if access is not None and not access.is_link:
            request.session.flush()  # signed in as another customer: a link never mixes two customers
        portal_link_grant(request, invoice_id=invoice.pk, customer_id=invoice.customer_id)
    target = reverse("portal:invoice_detail", args=[invoice.number])
    if link.purpose == "pay":
        target = reverse("portal:invoice_pay", args=[invoice.number])
    elif link.purpose == "authenticate":
        target = reverse("portal:invoice_authenticate", args=[invoice.number])
    return redirect(target)


# --- quotes (invoicing/quotes.py) -----------------------------------------------------------------------


def portal_quotes(*, customer: Customer) -> QuerySet[Quote]:
    """The customer's sent quotes (never drafts), newest first."""
    return Quote.objects.filter(customer=customer).exclude(status=QuoteStatus.DRAFT).order_by("-quote_date", "-pk")


def portal_quote_get(*, customer: Customer, number: str) -> Quote:
    quote = portal_quotes(customer=customer).filter(number=number).select_related("customer").first()
    if quote is None:
        raise Http404("no such quote")
    return quote


QUOTE_STATUS_LABELS: dict[str, Any] = {
    QuoteStatus.SENT: _("Awaiting your answer"),
    QuoteStatus.ACCEPTED: _("Accepted"),
    QuoteStatus.CONVERTED: _("Accepted"),
    QuoteStatus.DECLINED: _("Declined"),
    QuoteStatus.CANCELED: _("Withdrawn"),
}


def quote_status_label(quote: Quote) -> str:
    if quote_is_expired(quote):
        return str(_("Expired"))
    return str(QUOTE_STATUS_LABELS.get(quote.status, quote.status))


class QuoteDeclineForm(forms.Form):
    reason = forms.CharField(
        label=_("Why not? (optional)"), required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 3})
    )


class QuoteListView(PortalView):
    nav = "subscriptions"

    def get(self, request: HttpRequest) -> HttpResponse:
        quotes = list(portal_quotes(customer=self.customer)[:100])
        rows = [
            {
                "number": quote.number,
                "date": quote.quote_date,
                "valid_until": quote.valid_until,
                "status": quote_status_label(quote),
                "total": money(quote.first_total or 0, quote.currency),
            }
            for quote in quotes
        ]
        return self.render(request, "portal/invoicing/quote_list.html", {"rows": rows})


class QuoteDetailView(PortalView):
    """A quote to read, download and accept (or decline): signed-in portal users of the customer only, so the
    acceptance records who accepted it."""

    nav = "subscriptions"

    def _page(self, request: HttpRequest, quote: Quote, form: QuoteDeclineForm, status: int = 200) -> HttpResponse:
        return self.render(
            request,
            "portal/invoicing/quote_detail.html",
            {
                "quote": quote,
                "status_label": quote_status_label(quote),
                "answerable": quote.status == QuoteStatus.SENT and not quote_is_expired(quote),
                "doc": quote_context(quote=quote),
                "first_total": money(quote.first_total or 0, quote.currency),
                "decline_form": form,
            },
            status=status,
        )

    def get(self, request: HttpRequest, number: str) -> HttpResponse:
        return self._page(request, portal_quote_get(customer=self.customer, number=number), QuoteDeclineForm())

    def post(self, request: HttpRequest, number: str) -> HttpResponse:
        quote = portal_quote_get(customer=self.customer, number=number)
        portal_user = self.access.portal_user
        if portal_user is None:  # link visitors never reach this view (link_allowed is False)
            raise Http404
        if request.POST.get("action") == "accept":
            if not request.POST.get("agree"):
                messages.error(request, gettext("Tick the box to confirm that you accept the quote."))
                return self._page(request, quote, QuoteDeclineForm(), status=400)
            quote = quote_accept(quote=quote, accepted_by=portal_user.email, ip=client_ip(request))
            done = (
                gettext("Thank you: you accepted the quote and your subscription is set up.")
                if quote.status == QuoteStatus.CONVERTED
                else gettext("Thank you: you accepted the quote. We will set up your subscription.")
            )
            messages.success(request, done)
            return redirect("portal:quote_detail", number=quote.number)
        if request.POST.get("action") != "decline":
            return self._page(request, quote, QuoteDeclineForm(), status=400)
        form = QuoteDeclineForm(request.POST)
        if not form.is_valid():
            return self._page(request, quote, form, status=400)
        quote_decline(quote=quote, reason=form.cleaned_data["reason"])
        messages.info(request, gettext("You declined the quote. Thank you for letting us know."))
        return redirect("portal:quote_detail", number=quote.number)


class QuotePdfView(PortalView):
    def get(self, request: HttpRequest, number: str) -> HttpResponse:
        quote = portal_quote_get(customer=self.customer, number=number)
        return pdf_response(f"{quote.number}.pdf", render_quote_pdf(quote=quote))
