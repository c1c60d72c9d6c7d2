"""The invoice change page's buttons (object tools) that invoicing owns, and the screens behind them: Finalize,
Send / Resend e-mail, Create credit note, Void, Mark uncollectible, Download PDF, Open as the customer sees it.

Each button is shown only where the user's role and the invoice's state allow it, and its URL checks the same
again (403 otherwise). Each screen shows what will happen first; its POST calls one service of
``invoicing.services`` / ``invoicing.delivery`` with the acting user, which writes the ``InvoiceEvent``; the view
adds the admin log entry (``log_change``) and a message naming the amounts as money. The payments app adds
Record payment, Apply customer credit and Charge saved card now to the same page (``payments/admin.py``)."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import translation

from core import formatting as fmt
from core.admin_pages import ObjectTool, date_text, money_text, object_action_page
from core.dates import billing_today
from invoicing import delivery
from invoicing.admin.common import _actor
from invoicing.documents import invoice_context
from invoicing.einvoice.service import einvoice_in_pdf, format_label, invoice_einvoice_file
from invoicing.models import Invoice, InvoiceStatus
from invoicing.portal import download_response, invoice_is_payable, status_label
from invoicing.services import due_date_for, invoice_finalize, invoice_mark_uncollectible, invoice_void
from notifications.models import EmailKind, OutboundEmail

S = InvoiceStatus
EMAILED_STATUSES = (S.OPEN, S.PAID, S.UNCOLLECTIBLE)
PAYABLE_STATUSES = (S.OPEN, S.UNCOLLECTIBLE)
CREDITABLE_STATUSES = (S.OPEN, S.PAID)

# The permission each button needs (codenames as in billing_project/staff_groups.py). Buttons that only read
# (PDF, customer view) are for staff who work on invoices; an auditor reads the same through the "documents" row.
INVOICE_TOOL_PERMISSIONS: dict[str, str] = {
    "finalize": "invoicing.finalize_invoice",
    "send_email": "notifications.add_outboundemail",
    "credit_note": "invoicing.add_creditnote",
    "void": "invoicing.void_invoice",
    "mark_uncollectible": "invoicing.mark_uncollectible_invoice",
    "pdf": "invoicing.change_invoice",
    "einvoice": "invoicing.change_invoice",
    "portal_preview": "invoicing.change_invoice",
}


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=500, help_text="Kept with the invoice's status history.")


class SendEmailForm(forms.Form):
    request_key = forms.CharField(widget=forms.HiddenInput)
    mode = forms.ChoiceField(choices=[("first", "first"), ("resend", "resend")], widget=forms.HiddenInput)


def _invoice_url(invoice: Invoice) -> str:
    return reverse("admin:invoicing_invoice_change", args=[invoice.pk])


def invoice_email_sent_before(invoice: Invoice) -> bool:
    return OutboundEmail.objects.filter(
        invoice_id=invoice.pk, kind__in=(EmailKind.INVOICE, EmailKind.INVOICE_RESEND)
    ).exists()


class InvoicePageMixin:
    """Mixed into ``InvoiceAdmin``. Apps above extend ``get_object_tools`` and ``get_urls`` the same way."""

    admin_site: admin.AdminSite
    model: type[Invoice]
    log_change: Any  # ModelAdmin's, later in the MRO
    has_view_permission: Any

    # --- buttons ---

    def may(self, request: HttpRequest, tool: str) -> bool:
        return bool(request.user.has_perm(INVOICE_TOOL_PERMISSIONS[tool]))

    def get_object_tools(self, request: HttpRequest, invoice: Invoice) -> list[ObjectTool]:
        tools: list[ObjectTool] = []

        def add(name: str, label: str, url_name: str, kind: str = "action") -> None:
            tools.append(ObjectTool(name, label, reverse(f"admin:{url_name}", args=[invoice.pk]), kind))

        if invoice.status == S.DRAFT and self.may(request, "finalize"):
            add("finalize", "Finalize", "invoicing_invoice_finalize")
        if invoice.status in EMAILED_STATUSES and self.may(request, "send_email"):
            label = "Resend e-mail" if invoice_email_sent_before(invoice) else "Send e-mail"
            add("send_email", label, "invoicing_invoice_send_email")
        if invoice.status in CREDITABLE_STATUSES and self.may(request, "credit_note"):
            add("credit_note", "Create credit note", "invoicing_invoice_credit_note")
        if (
            invoice.status in PAYABLE_STATUSES
            and invoice.amount_paid == 0
            and invoice.amount_credited == 0
            and self.may(request, "void")
        ):
            add("void", "Void", "invoicing_invoice_void")
        if invoice.status == S.OPEN and self.may(request, "mark_uncollectible"):
            add("mark_uncollectible", "Mark uncollectible", "invoicing_invoice_mark_uncollectible")
        if self.may(request, "pdf"):
            add("pdf", "Download PDF", "invoicing_invoice_pdf", kind="view")
        if (
            invoice.is_finalized
            and format_label(invoice)
            and not einvoice_in_pdf(invoice)
            and self.may(request, "einvoice")
        ):
            add("einvoice", f"Download e-invoice ({format_label(invoice)})", "invoicing_invoice_einvoice", kind="view")
        if invoice.is_finalized and self.may(request, "portal_preview"):
            add("portal_preview", "Open as the customer sees it", "invoicing_invoice_portal_preview", kind="view")
        return tools

    def invoice_page_urls(self) -> list[Any]:
        def route(suffix: str, view: Any, name: str) -> Any:
            return path(f"<int:invoice_id>/{suffix}/", self.admin_site.admin_view(view), name=name)

        return [
            route("finalize", self.finalize_view, "invoicing_invoice_finalize"),
            route("send-email", self.send_email_view, "invoicing_invoice_send_email"),
            route("void", self.void_view, "invoicing_invoice_void"),
            route("mark-uncollectible", self.mark_uncollectible_view, "invoicing_invoice_mark_uncollectible"),
            route("as-customer", self.portal_preview_view, "invoicing_invoice_portal_preview"),
            route("einvoice", self.einvoice_view, "invoicing_invoice_einvoice"),
        ]

    def einvoice_view(self, request: HttpRequest, invoice_id: int) -> HttpResponse:
        invoice = self.invoice_for_tool(request, invoice_id, "einvoice")
        found = invoice_einvoice_file(invoice)
        if found is None:
            raise Http404("this invoice has no e-invoice")
        return download_response(*found, content_type="application/xml")

    def invoice_for_tool(self, request: HttpRequest, invoice_id: int, tool: str) -> Invoice:
        if not self.may(request, tool):
            raise PermissionDenied
        return get_object_or_404(Invoice.objects.select_related("customer", "subscription"), pk=invoice_id)

    def refuse(self, request: HttpRequest, invoice: Invoice, message: str, *, title: str = "") -> HttpResponse:
        """The invoice's state does not allow the action (a stale page, a double click): a POST goes back to the
        invoice with the reason; a GET shows the reason on the action's own page."""
        if request.method == "POST":
            messages.error(request, f"{invoice}: {message}")
            return HttpResponseRedirect(_invoice_url(invoice))
        return object_action_page(
            self,  # type: ignore[arg-type]
            request,
            original=invoice,
            title=title or f"{invoice}: not possible now",
            subject_rows=self.invoice_rows(invoice),
            refusal=f"{invoice}: {message}",
            submit_label="",
        )

    def invoice_rows(self, invoice: Invoice) -> list[tuple[str, Any]]:
        return [
            ("Invoice", str(invoice)),
            ("Customer", invoice.customer.name),
            ("Status", invoice.get_status_display()),
            ("Total", money_text(invoice.total, invoice.currency)),
            ("Amount due", money_text(invoice.amount_due, invoice.currency)),
        ]

    # --- Finalize ---

    def finalize_view(self, request: HttpRequest, invoice_id: int) -> HttpResponse:
        invoice = self.invoice_for_tool(request, invoice_id, "finalize")
        if invoice.status != S.DRAFT:
            return self.refuse(request, invoice, f"not finalized — it is {invoice.get_status_display().lower()}")
        if request.method == "POST":
            finalized = invoice_finalize(invoice=invoice, actor=_actor(request))
            finalized.refresh_from_db()  # the settle phase (credit, card) ran after commit
            text = (
                f"Finalized {finalized}: total {money_text(finalized.total, finalized.currency)}, "
                f"due {date_text(finalized.due_date)}; "
                f"amount due {money_text(finalized.amount_due, finalized.currency)}."
            )
            self.log_change(request, finalized, text)
            messages.success(request, text)
            return HttpResponseRedirect(_invoice_url(finalized))
        lines = list(invoice.lines.order_by("position", "pk"))
        today = billing_today()
        subscription = invoice.subscription
        due = due_date_for(
            issue_date=today,
            subscription_days_until_due=subscription.days_until_due if subscription is not None else None,
            customer_payment_terms_days=invoice.customer.payment_terms_days,
        )
        emailed = delivery.invoice_is_emailed_on_finalize(invoice)
        return object_action_page(
            self,  # type: ignore[arg-type]
            request,
            original=invoice,
            title=f"Finalize {invoice}",
            intro="Finalizing gives the invoice the next number of its series and freezes it: lines, amounts and the "
            "customer's details cannot change afterwards (corrections are credit notes). Taxes are worked out again "
            "as of today. " + ("The invoice is then e-mailed to the customer." if emailed else ""),
            subject_rows=[
                ("Customer", invoice.customer.name),
                ("Number series", str(invoice.number_series or "the default invoice series")),
                ("Issue date", date_text(today)),
                ("Due date", date_text(due)),
                ("Total (provisional)", money_text(invoice.total, invoice.currency)),
            ],
            preview={
                "title": "Lines",
                "headers": ["Description", "Quantity", "Unit amount", "Total"],
                "rows": [
                    [
                        line.description,
                        fmt.quantity(line.quantity, "en"),
                        fmt.unit_price(line.unit_amount, invoice.currency, "en"),
                        money_text(line.total_amount, invoice.currency),
                    ]
                    for line in lines
                ],
                "empty": "No lines: add a line before finalizing.",
                "footer": ["", "", "Total", money_text(invoice.total, invoice.currency)],
            },
            submit_label="Finalize invoice",
        )

    # --- Send / Resend e-mail ---

    def send_email_view(self, request: HttpRequest, invoice_id: int) -> HttpResponse:
        invoice = self.invoice_for_tool(request, invoice_id, "send_email")
        if invoice.status not in EMAILED_STATUSES:
            return self.refuse(request, invoice, f"not e-mailed — it is {invoice.get_status_display().lower()}")
        form = SendEmailForm(
            request.POST or None,
            initial={
                "request_key": uuid.uuid4().hex,
                "mode": "resend" if invoice_email_sent_before(invoice) else "first",
            },
        )
        if request.method == "POST" and form.is_valid():
            resend = form.cleaned_data["mode"] == "resend"
            email, queued = delivery.invoice_email_send(
                invoice=invoice, request_key=form.cleaned_data["request_key"] if resend else None
            )
            recipients = ", ".join([*email.to_emails, *email.cc_emails])
            if queued:
                text = (
                    f"Queued the invoice e-mail of {invoice} ({money_text(invoice.amount_due, invoice.currency)} due) "
                    f"to {recipients}."
                )
                self.log_change(
                    request, invoice, f"{'Resent' if resend else 'Sent'} the invoice e-mail to {recipients}."
                )
                messages.success(request, text)
            else:
                messages.info(request, f"The invoice e-mail of {invoice} was already queued: nothing sent again.")
            return HttpResponseRedirect(_invoice_url(invoice))
        to, cc = invoice.customer.email, ", ".join(invoice.customer.cc_email_list)
        mode = form["mode"].value()
        return object_action_page(
            self,  # type: ignore[arg-type]
            request,
            original=invoice,
            title=f"{'Resend' if mode == 'resend' else 'Send'} the e-mail of {invoice}",
            intro="The invoice e-mail with its PDF attached, in the customer's language. Its delivery shows under "
            "“e-mail history” on the invoice and on the customer's page.",
            subject_rows=[*self.invoice_rows(invoice), ("To", to), ("Cc", cc or "—")],
            form=form,
            submit_label="Resend e-mail" if mode == "resend" else "Send e-mail",
        )

    # --- Void / Mark uncollectible ---

    def void_view(self, request: HttpRequest, invoice_id: int) -> HttpResponse:
        invoice = self.invoice_for_tool(request, invoice_id, "void")
        if invoice.status not in PAYABLE_STATUSES:
            return self.refuse(request, invoice, f"not voided — it is {invoice.get_status_display().lower()}")
        form = ReasonForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            due = invoice.amount_due
            voided = invoice_void(invoice=invoice, actor=_actor(request), reason=form.cleaned_data["reason"])
            text = f"Voided {voided}: {money_text(due, voided.currency)} is no longer due."
            self.log_change(request, voided, f"{text} Reason: {form.cleaned_data['reason']}")
            messages.success(request, text)
            return HttpResponseRedirect(_invoice_url(voided))
        return object_action_page(
            self,  # type: ignore[arg-type]
            request,
            original=invoice,
            title=f"Void {invoice}",
            intro="Voiding cancels the invoice: it keeps its number and amounts, nothing is due any more, reminders "
            "stop. An invoice with payments or credit notes is corrected with a credit note instead.",
            subject_rows=self.invoice_rows(invoice),
            form=form,
            submit_label="Void invoice",
        )

    def mark_uncollectible_view(self, request: HttpRequest, invoice_id: int) -> HttpResponse:
        invoice = self.invoice_for_tool(request, invoice_id, "mark_uncollectible")
        if invoice.status != S.OPEN:
            return self.refuse(request, invoice, f"not written off — it is {invoice.get_status_display().lower()}")
        form = ReasonForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            marked = invoice_mark_uncollectible(
                invoice=invoice, actor=_actor(request), reason=form.cleaned_data["reason"]
            )
            text = (
                f"Marked {marked} uncollectible: {money_text(marked.amount_due, marked.currency)} written off "
                "(a payment can still settle it)."
            )
            self.log_change(request, marked, f"{text} Reason: {form.cleaned_data['reason']}")
            messages.success(request, text)
            return HttpResponseRedirect(_invoice_url(marked))
        return object_action_page(
            self,  # type: ignore[arg-type]
            request,
            original=invoice,
            title=f"Mark {invoice} uncollectible",
            intro="The amount due is written off as bad debt: the invoice leaves the receivables and reminders stop. "
            "It still takes a payment if one comes in.",
            subject_rows=self.invoice_rows(invoice),
            form=form,
            submit_label="Mark uncollectible",
        )

    # --- Open as the customer sees it ---

    def portal_preview_view(self, request: HttpRequest, invoice_id: int) -> HttpResponse:
        """The portal's invoice page, rendered for staff by the portal's own template and document context.

        Staff are never signed in as the customer and no signed link is minted: a link or a portal session is a
        credential of the customer (it would open the pay page and the customer's other pages, and outlive this
        visit). Here nothing of the customer's access is created; the page is read under the admin's own
        sign-in and view permission, marked as a staff preview, in the customer's language."""
        invoice = get_object_or_404(Invoice.objects.select_related("customer"), pk=invoice_id)
        if not self.has_view_permission(request, invoice):
            raise PermissionDenied
        if not invoice.is_finalized:
            raise Http404("drafts are not shown to customers")
        language = fmt.document_language(invoice.customer.language)
        with translation.override(language):
            document = invoice_context(invoice=invoice, lines=list(invoice.lines.order_by("position", "pk")))
            response = TemplateResponse(
                request,
                "admin/invoicing/invoice/portal_preview.html",
                {
                    # as a deep-link visitor sees the page: no portal navigation, no sign-out
                    "access": SimpleNamespace(is_link=True, customer=invoice.customer),
                    "customer": invoice.customer,
                    "invoice": invoice,
                    "status_label": status_label(invoice.status),
                    "doc": document,
                    "payable": invoice_is_payable(invoice),
                    "amount_due": fmt.money(invoice.amount_due, invoice.currency, language),
                    "admin_url": _invoice_url(invoice),
                },
            )
            response.render()
        response["Cache-Control"] = "private, no-store"
        response["X-Robots-Tag"] = "noindex"
        return response
