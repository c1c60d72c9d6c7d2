"""Quotes (invoicing/quotes.py): staff draft a quote from catalog prices, see what it offers (computed by the
billing run's code), send it, and follow it to the subscription it became."""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from core import formatting as fmt
from core.admin_lists import QuickActionCheckbox, badge
from core.admin_pages import ObjectTool, object_action_page
from core.errors import ApplicationError
from invoicing import documents
from invoicing.models import Quote, QuoteItem, QuoteStatus
from invoicing.quotes import (
    quote_convert,
    quote_is_expired,
    quote_offer_preview,
    quote_send,
    quote_withdraw,
)

STATUS_TONES = {
    QuoteStatus.DRAFT: "neutral",
    QuoteStatus.SENT: "info",
    QuoteStatus.ACCEPTED: "warning",
    QuoteStatus.CONVERTED: "success",
    QuoteStatus.DECLINED: "muted",
    QuoteStatus.CANCELED: "muted",
}
EDITABLE = ("customer", "title", "valid_until", "start_date", "trial_days", "coupon", "memo")


class QuoteItemInline(admin.TabularInline):
    model = QuoteItem
    extra = 1
    fields = ("price", "quantity")
    autocomplete_fields = ("price",)

    def _draft(self, obj: Quote | None) -> bool:
        return obj is None or obj.status == QuoteStatus.DRAFT

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._draft(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._draft(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._draft(obj) and super().has_delete_permission(request, obj)


def _money(value: Any, currency: str) -> str:
    return fmt.money(value, currency, fmt.DEFAULT_LANGUAGE) if value is not None else "—"


@admin.register(Quote)
class QuoteAdmin(QuickActionCheckbox, admin.ModelAdmin):
    list_display = ("number_display", "customer", "status_display", "first_total_display", "valid_until", "quote_date")
    list_filter = ("status", "currency", "quote_date")
    search_fields = ("=number", "customer__name", "customer__email")
    list_select_related = ("customer",)
    autocomplete_fields = ("customer", "coupon")
    show_full_result_count = False
    list_per_page = 50
    inlines: ClassVar[list[Any]] = [QuoteItemInline]
    fieldsets = (
        (None, {"fields": ("customer", "title", ("valid_until", "start_date"), ("trial_days", "coupon"), "memo")}),
        ("What it offers", {"fields": ("offer_display",)}),
        (
            "Status",
            {
                "fields": (
                    "status_display",
                    "number",
                    "quote_date",
                    "accepted_display",
                    "decline_display",
                    "subscription",
                    "conversion_error",
                )
            },
        ),
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Quote | None = None) -> Any:
        computed = (
            "offer_display",
            "status_display",
            "number",
            "quote_date",
            "accepted_display",
            "decline_display",
            "subscription",
            "conversion_error",
        )
        if obj is not None and obj.status != QuoteStatus.DRAFT:
            return (*EDITABLE, *computed)
        return computed

    @admin.display(description="number", ordering="number")
    def number_display(self, obj: Quote) -> str:
        return obj.number or f"(draft {obj.pk})"

    @admin.display(description="status", ordering="status")
    def status_display(self, obj: Quote) -> str:
        if obj.pk is None:
            return "—"
        if quote_is_expired(obj):
            return badge("Expired", "muted", title=f"valid until {obj.valid_until}")
        return badge(obj.get_status_display(), STATUS_TONES.get(QuoteStatus(obj.status), "neutral"))

    @admin.display(description="first invoice", ordering="first_total")
    def first_total_display(self, obj: Quote) -> str:
        return _money(obj.first_total, obj.currency)

    @admin.display(description="accepted")
    def accepted_display(self, obj: Quote) -> str:
        if obj.accepted_at is None:
            return "—"
        return f"{obj.accepted_at:%Y-%m-%d %H:%M} by {obj.accepted_by or '?'} from {obj.accepted_ip or '?'}"

    @admin.display(description="declined")
    def decline_display(self, obj: Quote) -> str:
        if obj.declined_at is None:
            return "—"
        return f"{obj.declined_at:%Y-%m-%d %H:%M}: {obj.decline_reason or '(no reason given)'}"

    @admin.display(description="first invoice and renewal")
    def offer_display(self, obj: Quote) -> str:
        """The frozen offer of a sent quote; for a draft, what it would offer today (the billing run's code)."""
        if obj.pk is None:
            return "Save the draft with its prices to see what it offers."
        offer = obj.offer
        if obj.status == QuoteStatus.DRAFT:
            try:
                offer = quote_offer_preview(quote=obj)
            except ApplicationError as exc:
                return format_html('<span class="errornote">{}</span>', exc.for_display())
        first = (offer or {}).get("first")
        if not first:
            return "Nothing billed at the start (a trial): the first invoice comes at its end."
        currency = obj.currency
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td class='num'>{}</td><td class='num'>{}</td><td class='num'>{}</td></tr>",
            (
                (line["description"], line["quantity"], line["tax_percentage"] + " %", _money(line["total"], currency))
                for line in first["lines"]
            ),
        )
        renewal = offer.get("renewal")
        renewal_text = f"Renews at {_money(renewal['total'], currency)} on {renewal['date']}." if renewal else ""
        return format_html(
            "<table class='offer'><thead><tr><th>Line</th><th>Qty</th><th>Tax</th><th>Total</th></tr></thead>"
            "<tbody>{}</tbody></table><p><b>First invoice {}</b> (net {}, tax {}), issued {}. {}</p>",
            rows,
            _money(first["total"], currency),
            _money(first["subtotal"], currency),
            _money(first["tax_total"], currency),
            first["issue_date"],
            renewal_text,
        )

    def has_delete_permission(self, request: HttpRequest, obj: Quote | None = None) -> bool:
        # a sent quote has a number of its gapless series: it is withdrawn, never deleted
        if obj is not None and obj.status != QuoteStatus.DRAFT:
            return False
        return super().has_delete_permission(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        super().delete_queryset(request, queryset.filter(status=QuoteStatus.DRAFT))

    def save_model(self, request: HttpRequest, obj: Quote, form: Any, change: bool) -> None:
        obj.currency = obj.customer.currency  # a quote is in its customer's currency, like the subscription
        super().save_model(request, obj, form, change)

    # --- the buttons ---

    def get_object_tools(self, request: HttpRequest, quote: Quote) -> list[ObjectTool]:
        tools = []
        can_change = request.user.has_perm("invoicing.change_quote")
        if can_change and quote.status in (QuoteStatus.DRAFT, QuoteStatus.SENT):
            label = "Send to customer" if quote.status == QuoteStatus.DRAFT else "Send again"
            tools.append(ObjectTool("send", label, reverse("admin:invoicing_quote_send", args=[quote.pk]), order=10))
            tools.append(
                ObjectTool("withdraw", "Withdraw", reverse("admin:invoicing_quote_withdraw", args=[quote.pk]), order=80)
            )
        if can_change and quote.status == QuoteStatus.ACCEPTED:
            url = reverse("admin:invoicing_quote_convert", args=[quote.pk])
            tools.append(ObjectTool("convert", "Create the subscription", url, order=20))
        if quote.number:
            url = reverse("admin:invoicing_quote_pdf", args=[quote.pk])
            tools.append(ObjectTool("pdf", "PDF", url, kind="view", order=30))
        return tools

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        quote = Quote.objects.filter(pk=object_id).first() if object_id.isdigit() else None
        tools = self.get_object_tools(request, quote) if quote is not None else []
        extra_context = {**(extra_context or {}), "object_tools": sorted(tools, key=lambda tool: tool.order)}
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        return [
            path("<int:quote_id>/send/", view(self.send_view), name="invoicing_quote_send"),
            path("<int:quote_id>/withdraw/", view(self.withdraw_view), name="invoicing_quote_withdraw"),
            path("<int:quote_id>/convert/", view(self.convert_view), name="invoicing_quote_convert"),
            path("<int:quote_id>/pdf/", view(self.pdf_view), name="invoicing_quote_pdf"),
            *super().get_urls(),
        ]

    def _quote(self, request: HttpRequest, quote_id: int, perm: str = "invoicing.change_quote") -> Quote:
        if not request.user.has_perm(perm):
            raise PermissionDenied
        return get_object_or_404(Quote.objects.select_related("customer"), pk=quote_id)

    def _back(self, quote: Quote) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:invoicing_quote_change", args=[quote.pk]))

    def _act(self, request: HttpRequest, quote: Quote, work: Any, done: str) -> HttpResponse:
        try:
            result = work()
        except ApplicationError as exc:
            self.message_user(request, exc.for_display(), messages.ERROR)
            return self._back(quote)
        self.log_change(request, result, done.format(quote=result))
        self.message_user(request, done.format(quote=result), messages.SUCCESS)
        return self._back(result)

    def send_view(self, request: HttpRequest, quote_id: int) -> HttpResponse:
        quote = self._quote(request, quote_id)
        resend = quote.status == QuoteStatus.SENT
        if request.method == "POST":
            return self._act(
                request,
                quote,
                lambda: quote_send(quote=quote, resend=resend),
                "Sent quote {quote} to " + quote.customer.email + ".",
            )
        refusal = "" if quote.status in (QuoteStatus.DRAFT, QuoteStatus.SENT) else "Only a draft or sent quote is sent."
        return object_action_page(
            self,
            request,
            original=quote,
            title=f"Send {quote} to {quote.customer}",
            intro="Numbers the quote (the quote series), freezes what it offers and e-mails the customer a link to it "
            "in the portal, where they can download it and accept it."
            if not resend
            else "E-mails the customer the link to the quote again (same number, same offer).",
            subject_rows=[
                ("Customer", quote.customer),
                ("E-mail", quote.customer.email),
                ("Valid until", quote.valid_until),
            ],
            submit_label="Send again" if resend else "Send",
            refusal=refusal,
        )

    def withdraw_view(self, request: HttpRequest, quote_id: int) -> HttpResponse:
        quote = self._quote(request, quote_id)
        if request.method == "POST":
            return self._act(request, quote, lambda: quote_withdraw(quote=quote), "Withdrew quote {quote}.")
        return object_action_page(
            self,
            request,
            original=quote,
            title=f"Withdraw {quote}",
            intro="The customer can no longer accept it. Its number stays used.",
            submit_label="Withdraw",
            refusal="" if quote.status in (QuoteStatus.DRAFT, QuoteStatus.SENT) else "Only a draft or sent quote.",
        )

    def convert_view(self, request: HttpRequest, quote_id: int) -> HttpResponse:
        quote = self._quote(request, quote_id)
        if request.method == "POST":
            return self._act(
                request, quote, lambda: quote_convert(quote=quote), "Created the subscription of quote {quote}."
            )
        return object_action_page(
            self,
            request,
            original=quote,
            title=f"Create the subscription of {quote}",
            intro="The customer accepted the quote but its subscription could not be created then: "
            f"{quote.conversion_error or '—'} Fix the cause (e.g. the price), then create it.",
            submit_label="Create the subscription",
            refusal="" if quote.status == QuoteStatus.ACCEPTED else "Only an accepted quote is converted.",
        )

    def pdf_view(self, request: HttpRequest, quote_id: int) -> HttpResponse:
        quote = self._quote(request, quote_id, perm="invoicing.view_quote")
        if not quote.number:
            raise PermissionDenied
        response = HttpResponse(documents.render_quote_pdf(quote=quote), content_type="application/pdf")
        response["Content-Disposition"] = f'inline; filename="{quote.number}.pdf"'
        return response
