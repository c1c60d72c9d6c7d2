"""Customer self-service in the portal: change plan or seats among the prices staff mark self-service (a proration
preview, then a confirmation), and every archived document of a year as one zip.

One path per operation: the preview is ``subscription_billing.subscription_change_preview_full`` and the change
``subscription_change_invoice`` — what the admin's "Change items" screen and the API's ``change/preview`` and
``change`` call — with ``always_invoice``: an upgrade's prorations are invoiced at once (then e-mailed or charged
like every invoice), a change that nets to a credit reduces the next invoice. The confirmation recomputes the
preview and applies the change only if it still shows the amounts the customer confirmed, so what is invoiced is
what was shown, to the cent (a new day between preview and confirmation shows the new preview instead).

Ownership as everywhere in the portal: every read starts from the signed-in customer; another customer's
subscription is a 404. Only prices marked self-service (active, licensed, in the subscription's currency) can be
chosen; the quantity is checked against the price's self-service maximum.

These views live in invoicing, not billing_project/portal.py, because the change and the zip need invoicing's
services; billing_project's URLconf mounts them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import messages
from django.core.files.storage import default_storage
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.translation import get_language, gettext
from django.utils.translation import gettext_lazy as _

from core import formatting as fmt
from core.dates import billing_today
from core.errors import ApplicationError, InvalidInput, NotAllowed
from customers.models import Customer
from customers.portal import PortalView
from invoicing.models import DocumentPdf, Invoice
from invoicing.portal import money, portal_credit_notes, portal_invoices
from invoicing.subscription_billing import (
    ChangePreviewFull,
    subscription_change_invoice,
    subscription_change_preview_full,
)
from subscriptions.models import Price as PriceModel
from subscriptions.models import PricingModel, Subscription, SubscriptionItem, SubscriptionStatus, UsageType
from subscriptions.services import MAX_ITEM_QUANTITY, ItemSpec, ProrationBehavior

CHANGEABLE = (SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)


# --- selectors ------------------------------------------------------------------------------------------


def portal_selfservice_prices(*, currency: str) -> list[PriceModel]:
    """The prices a customer may choose in the portal: marked self-service by staff, active, licensed (a metered
    price is billed by usage, not chosen), in the subscription's currency."""
    return list(
        PriceModel.objects.filter(
            self_service=True, active=True, usage_type=UsageType.LICENSED, unit_amount_currency=currency
        )
        .select_related("product")
        .order_by("product__name", "interval", "unit_amount", "pk")
    )


def portal_changeable_subscription(*, customer: Customer, subscription_id: int) -> Subscription:
    """The customer's own subscription (404 for anyone else's: existence does not leak)."""
    subscription = Subscription.objects.filter(customer=customer, pk=subscription_id).first()
    if subscription is None:
        raise Http404("no such subscription")
    return subscription


def portal_plan_item(subscription: Subscription) -> SubscriptionItem | None:
    """The item the portal changes: the subscription's one licensed item (metered items stay as they are). A
    subscription with several licensed items is changed by staff."""
    licensed = [
        item
        for item in subscription.items.filter(removed_on__isnull=True).select_related("price__product")
        if not item.price.is_metered
    ]
    return licensed[0] if len(licensed) == 1 else None


def max_quantity(price: PriceModel) -> int:
    if price.pricing_model == PricingModel.FLAT:
        return 1  # a flat fee does not depend on the quantity
    return min(price.self_service_max_quantity or MAX_ITEM_QUANTITY, MAX_ITEM_QUANTITY)


def portal_change_items(
    *, subscription: Subscription, item: SubscriptionItem, price: PriceModel, quantity: int
) -> list[ItemSpec]:
    """The subscription's items after the customer's choice: ``item`` replaced by ``price`` × ``quantity``, the
    others kept. Refuses (naming the field) a price that is not offered and a quantity out of its limits."""
    if not (price.self_service and price.active and not price.is_metered and price.currency == subscription.currency):
        raise InvalidInput(gettext("This plan cannot be chosen here."), field="price")
    limit = max_quantity(price)
    if not 1 <= quantity <= limit:
        message = (
            gettext("%(plan)s is a flat fee: choose 1 seat.")
            if limit == 1
            else gettext("%(plan)s: choose between 1 and %(max)s seats.")
        )
        raise InvalidInput(
            message % {"plan": price.public_name, "max": fmt.quantity(limit, _language())}, field="quantity"
        )
    if price.pk == item.price_id and quantity == item.quantity:
        raise InvalidInput(gettext("This is your current plan: choose another plan or number of seats."))
    others = [
        ItemSpec(price=other.price, quantity=other.quantity)
        for other in subscription.items.filter(removed_on__isnull=True).exclude(pk=item.pk).select_related("price")
    ]
    return [ItemSpec(price=price, quantity=quantity), *others]


def _language() -> str:
    return fmt.document_language(get_language())


# --- change plan or seats -------------------------------------------------------------------------------


class PlanChangeForm(forms.Form):
    price: forms.ModelChoiceField[PriceModel] = forms.ModelChoiceField(
        queryset=PriceModel.objects.none(), label=_("Plan"), empty_label=None
    )
    quantity = forms.IntegerField(
        label=_("Seats"), min_value=1, max_value=MAX_ITEM_QUANTITY, help_text=_("How many users the plan is for.")
    )

    def __init__(self, *args: Any, prices: list[PriceModel], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["price"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = PriceModel.objects.filter(pk__in=[p.pk for p in prices]).select_related("product")
        language = _language()
        field.choices = [(p.pk, price_label(p, language)) for p in prices]


def price_label(price: PriceModel, language: str | None = None) -> str:
    """ "Pro — €29.99 per seat / month": the product's public name (never staff's nickname) and the price."""
    language = language or _language()
    amount = fmt.unit_price(price.unit_amount.amount, price.currency, language)
    every = {
        "day": gettext("day"),
        "week": gettext("week"),
        "month": gettext("month"),
        "year": gettext("year"),
    }.get(price.interval, price.interval)
    if price.interval_count != 1:
        every = f"{price.interval_count} × {every}"
    if price.pricing_model == PricingModel.FLAT:
        return gettext("%(plan)s — %(amount)s / %(interval)s") % {
            "plan": price.public_name,
            "amount": amount,
            "interval": every,
        }
    if price.pricing_model == PricingModel.PER_UNIT:
        return gettext("%(plan)s — %(amount)s per seat / %(interval)s") % {
            "plan": price.public_name,
            "amount": amount,
            "interval": every,
        }
    return gettext("%(plan)s — by number of seats / %(interval)s") % {"plan": price.public_name, "interval": every}


@dataclass(frozen=True)
class ShownPreview:
    """The preview as the page shows it, and the fingerprint of the amounts the customer confirms."""

    context: dict[str, Any]
    fingerprint: str


def _day(value: dt.date | None) -> str:
    return fmt.date(value, _language()) if value else ""


def preview_for_page(
    preview: ChangePreviewFull, *, subscription: Subscription, price: PriceModel, quantity: int, as_of: dt.date
) -> ShownPreview:
    """Every amount as money in the customer's language; proration lines described from their figures (the
    invoice lines keep the service's own wording)."""
    currency = subscription.currency
    names = {
        p.pk: p.public_name
        for p in PriceModel.objects.filter(pk__in={line.price_id for line in preview.proration_lines}).select_related(
            "product"
        )
    }
    lines = []
    for line in preview.proration_lines:
        values = {
            "plan": names.get(line.price_id, ""),
            "quantity": fmt.quantity(line.quantity, _language()),
            "start": _day(line.period_start),
            "end": _day(line.period_end - dt.timedelta(days=1)),
        }
        label = (
            gettext("Unused time on %(plan)s × %(quantity)s (%(start)s – %(end)s)")
            if line.amount.amount < 0
            else gettext("Remaining time on %(plan)s × %(quantity)s (%(start)s – %(end)s)")
        )
        lines.append({"label": label % values, "amount": money(line.amount.amount, currency)})
    now = None
    if preview.now is not None:
        invoice = preview.now.invoice
        now = {
            "subtotal": money(invoice.subtotal, currency),
            "discount": money(-invoice.discount_total, currency) if invoice.discount_total else "",
            "tax": money(invoice.tax_total, currency),
            "total": money(invoice.total, currency),
            "due_date": _day(preview.now.due_date),
            "held": bool(preview.now.held_reason),
        }
    credit_note = ""
    if preview.now is None and preview.proration_total < 0:
        credit_note = gettext(
            "This change is worth a credit of %(amount)s (before tax): it is deducted from your next invoice."
        ) % {"amount": money(-preview.proration_total, currency)}
    next_invoice = None
    if preview.next_invoice is not None:
        next_invoice = {
            "date": _day(preview.next_invoice.issue_date),
            "total": money(preview.next_invoice.invoice.total, currency),
        }
    context = {
        "plan": price_label(price),
        "quantity": quantity,
        "change_date": _day(as_of),
        "lines": lines,
        "proration_total": money(preview.proration_total, currency),
        "now": now,
        "credit_note": credit_note,
        "next": next_invoice,
        "interval_change": preview.interval_change,
        "new_period": f"{_day(preview.new_period_start)} – {_day(preview.new_period_end - dt.timedelta(days=1))}"
        if preview.interval_change and preview.new_period_start and preview.new_period_end
        else "",
    }
    figures = [
        str(subscription.pk),
        str(price.pk),
        str(quantity),
        as_of.isoformat(),
        *(f"{line.price_id}:{line.amount.amount}" for line in preview.proration_lines),
        str(preview.now.invoice.total if preview.now else ""),
        str(preview.next_invoice.invoice.total if preview.next_invoice else ""),
    ]
    return ShownPreview(context=context, fingerprint=hashlib.sha256("|".join(figures).encode()).hexdigest()[:32])


class SubscriptionChangeView(PortalView):
    """GET: the form. POST ``preview``: the proration preview and a confirmation button. POST ``confirm``: the
    change, if the preview recomputed now is the one confirmed (else the new preview is shown)."""

    nav = "subscriptions"

    def _setup(self, subscription_id: int) -> tuple[Subscription, SubscriptionItem, list[PriceModel]]:
        """The customer's subscription, its plan item and the prices offered; ``NotAllowed`` (409) when the portal
        cannot change it (ended, or nothing to choose from)."""
        subscription = portal_changeable_subscription(customer=self.customer, subscription_id=subscription_id)
        if subscription.status not in CHANGEABLE:
            raise NotAllowed(gettext("This subscription cannot be changed any more."))
        item = portal_plan_item(subscription)
        prices = portal_selfservice_prices(currency=subscription.currency)
        if item is None or not prices:
            raise NotAllowed(gettext("This subscription cannot be changed here; please contact us."))
        return subscription, item, prices

    def _page(self, request: HttpRequest, status: int = 200, **context: Any) -> HttpResponse:
        return self.render(request, "portal/subscription_change.html", context, status=status)

    def get(self, request: HttpRequest, subscription_id: int) -> HttpResponse:
        try:
            subscription, item, prices = self._setup(subscription_id)
        except NotAllowed as exc:  # a page that says why (a GET is not a refused request)
            return self._page(request, unavailable=exc.message)
        initial_price = item.price_id if item.price_id in {p.pk for p in prices} else prices[0].pk
        form = PlanChangeForm(prices=prices, initial={"price": initial_price, "quantity": item.quantity})
        return self._page(request, subscription=subscription, item=item, current=price_label(item.price), form=form)

    def post(self, request: HttpRequest, subscription_id: int) -> HttpResponse:
        subscription, item, prices = self._setup(subscription_id)
        form = PlanChangeForm(request.POST, prices=prices)
        page: dict[str, Any] = {
            "subscription": subscription,
            "item": item,
            "current": price_label(item.price),
            "form": form,
        }
        if not form.is_valid():
            return self._page(request, status=400, **page)
        price, quantity = form.cleaned_data["price"], form.cleaned_data["quantity"]
        as_of = billing_today()
        try:
            items = portal_change_items(subscription=subscription, item=item, price=price, quantity=quantity)
            preview = subscription_change_preview_full(
                subscription=subscription, items=items, as_of=as_of, proration_behavior=ProrationBehavior.ALWAYS_INVOICE
            )
        except ApplicationError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            return self._page(request, status=400, **page)
        shown = preview_for_page(preview, subscription=subscription, price=price, quantity=quantity, as_of=as_of)
        if "confirm" in request.POST:
            if request.POST.get("fingerprint") == shown.fingerprint:
                outcome = subscription_change_invoice(
                    subscription=subscription,
                    items=items,
                    as_of=as_of,
                    proration_behavior=ProrationBehavior.ALWAYS_INVOICE,
                    actor=None,
                    reason=f"changed in the customer portal by {self._who()}",
                )
                self._done_message(request, outcome.invoice)
                return redirect(reverse("portal:subscriptions"))
            messages.warning(request, gettext("The amounts changed since your preview. Please check them again."))
        return self._page(request, preview=shown.context, fingerprint=shown.fingerprint, **page)

    def _who(self) -> str:
        return self.access.portal_user.email if self.access.portal_user is not None else "a portal visitor"

    def _done_message(self, request: HttpRequest, invoice: Invoice | None) -> None:
        if invoice is not None and invoice.number:
            messages.success(
                request,
                gettext("Your plan was changed. Invoice %(number)s of %(amount)s was issued for the change.")
                % {"number": invoice.number, "amount": money(invoice.total, invoice.currency)},
            )
        else:
            messages.success(request, gettext("Your plan was changed."))


# --- a year's documents as one zip ----------------------------------------------------------------------


@dataclass(frozen=True)
class ArchivedDocument:
    folder: str  # "invoices" / "credit-notes"
    number: str
    name: str | None  # the archived file of the newest version; None: not archived yet
    sha256: str


def _safe(number: str) -> str:
    return "".join(char if char.isalnum() or char in "._-" else "-" for char in number) or "document"


def portal_document_years(*, customer: Customer) -> list[int]:
    years = {d.year for d in portal_invoices(customer=customer).values_list("issue_date", flat=True) if d}
    years |= {d.year for d in portal_credit_notes(customer=customer).values_list("issue_date", flat=True) if d}
    return sorted(years, reverse=True)


def portal_year_documents(*, customer: Customer, year: int) -> list[ArchivedDocument]:
    """The customer's issued invoices and credit notes of ``year`` (by issue date) with their archived PDFs — the
    newest version, as the portal's download gives it. A fixed number of queries, whatever their count."""
    invoices = list(
        portal_invoices(customer=customer)
        .filter(issue_date__year=year)
        .order_by("issue_date", "pk")
        .values_list("pk", "number")
    )
    notes = list(
        portal_credit_notes(customer=customer)
        .filter(issue_date__year=year)
        .order_by("issue_date", "pk")
        .values_list("pk", "number")
    )
    pdfs = (
        DocumentPdf.objects.filter(
            Q(invoice_id__in=[pk for pk, _n in invoices]) | Q(credit_note_id__in=[pk for pk, _n in notes])
        )
        .only("pk", "invoice_id", "credit_note_id", "file", "sha256")
        .prefetch_related("versions")
    )
    by_invoice: dict[int, tuple[str, str]] = {}
    by_note: dict[int, tuple[str, str]] = {}
    for pdf in pdfs:
        newest = max(pdf.versions.all(), key=lambda v: v.version, default=None)
        chosen = (newest.file.name, newest.sha256) if newest is not None else (pdf.file.name, pdf.sha256)
        if pdf.invoice_id is not None:
            by_invoice[pdf.invoice_id] = chosen
        elif pdf.credit_note_id is not None:
            by_note[pdf.credit_note_id] = chosen
    documents = []
    for folder, rows, found in (("invoices", invoices, by_invoice), ("credit-notes", notes, by_note)):
        for pk, number in rows:
            name, sha256 = found.get(pk, (None, ""))
            documents.append(ArchivedDocument(folder=folder, number=number, name=name, sha256=sha256))
    return documents


class _Sink:
    """A write-only file for ``zipfile``: what was written since the last ``take()``. Not seekable, so zipfile
    streams (data descriptors) and the zip is sent while it is made, one document in memory at a time."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data, self._chunks = b"".join(self._chunks), []
        return data


def zip_stream(documents: list[ArchivedDocument], *, year: int) -> Iterator[bytes]:
    """The archived bytes, unchanged (stored, not re-rendered), and a list of the files with their SHA-256; a
    document that is not archived yet, or whose file cannot be read, is named in that list instead."""
    sink = _Sink()
    manifest = [f"{year}: {len(documents)} documents", ""]
    with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_STORED) as archive:  # type: ignore[call-overload]
        for document in documents:
            path = f"{document.folder}/{_safe(document.number)}.pdf"
            if document.name is None:
                manifest.append(f"{path}: not archived yet; download it from the portal later")
                continue
            try:
                with default_storage.open(document.name, "rb") as handle:
                    content = handle.read()
            except OSError:
                manifest.append(f"{path}: the archived file cannot be read; please contact us")
                continue
            if hashlib.sha256(content).hexdigest() != document.sha256:
                manifest.append(f"{path}: the archived file does not match its checksum; please contact us")
                continue
            archive.writestr(zipfile.ZipInfo(path, date_time=(year, 1, 1, 0, 0, 0)), content)
            manifest.append(f"{path}  sha256 {document.sha256}")
            yield sink.take()
        archive.writestr(f"documents-{year}.txt", "\n".join(manifest) + "\n")
    yield sink.take()


class DocumentsZipView(PortalView):
    """``?year=2026``: every issued invoice and credit note of that year as one zip; without it, the years."""

    nav = "invoices"

    def get(self, request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
        value = request.GET.get("year", "")
        if not value:
            years = portal_document_years(customer=self.customer)
            return self.render(request, "portal/documents_zip.html", {"years": years})
        if not value.isdigit() or not 2000 <= int(value) <= 2999:
            raise InvalidInput(gettext("year: a year such as 2026"), field="year")
        year = int(value)
        documents = portal_year_documents(customer=self.customer, year=year)
        if not documents:
            raise Http404("no documents that year")
        response = StreamingHttpResponse(zip_stream(documents, year=year), content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="documents-{year}.zip"'
        response["Cache-Control"] = "private, no-store"
        return response
