"""Quotes: an offer of a subscription, accepted by the customer in the portal (docs/decisions/quotes.md).

draft → sent → accepted → converted (or declined by the customer, withdrawn by staff; a sent quote past its
``valid_until`` can no longer be accepted). What a quote offers is computed by the billing run's own code: the
subscription it describes is created and billed inside a rolled-back transaction
(``subscription_create_preview``), and the first invoice and the renewal it shows are frozen on the quote when it
is sent — so the first invoice of the converted subscription equals the quote to the cent (for a quote accepted
by its start date).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from core import formatting as fmt
from core.dates import billing_today
from core.errors import ApplicationError, InvalidInput, NotAllowed
from customers.models import Customer
from customers.seller import seller_snapshot
from invoicing.models import NumberSeries, Quote, QuoteItem, QuoteStatus
from invoicing.numbering import number_series_allocate, number_series_default
from invoicing.subscription_billing import InvoicePreview, subscription_create_preview
from notifications.models import EmailKind
from notifications.services import email_queue
from subscriptions.models import Coupon, Subscription
from subscriptions.services import ItemSpec, subscription_create

MAX_VALIDITY_DAYS = 365


class QuoteStateError(NotAllowed):
    """The quote's status does not allow it (the message names the status)."""


def _items(quote: Quote) -> list[ItemSpec]:
    return [ItemSpec(price=item.price, quantity=item.quantity) for item in quote.items.select_related("price")]


def _validate(
    *, customer: Customer, items: Sequence[ItemSpec], valid_until: dt.date, start_date: dt.date | None, today: dt.date
) -> None:
    if customer.is_archived:
        raise InvalidInput(f"customer: {customer} is archived", field="customer")
    if not items:
        raise InvalidInput("items: a quote needs at least one price", field="items")
    for spec in items:
        if spec.quantity < 1:
            raise InvalidInput(f"quantity: must be at least 1 (got {spec.quantity})", field="quantity")
        if spec.price.currency != customer.currency:
            raise InvalidInput(
                f"price: {spec.price.display_name} is in {spec.price.currency}, {customer} is billed in "
                f"{customer.currency}",
                field="price",
            )
        if not spec.price.active:
            raise InvalidInput(f"price: {spec.price.display_name} is archived", field="price")
    if valid_until < today:
        raise InvalidInput(f"valid_until: {valid_until} is in the past", field="valid_until")
    if valid_until > today + dt.timedelta(days=MAX_VALIDITY_DAYS):
        raise InvalidInput(f"valid_until: at most {MAX_VALIDITY_DAYS} days ahead", field="valid_until")
    if start_date is not None and start_date < today:
        raise InvalidInput(f"start_date: {start_date} is in the past", field="start_date")


def quote_create(
    *,
    customer: Customer,
    items: Sequence[ItemSpec],
    valid_until: dt.date,
    start_date: dt.date | None = None,
    trial_days: int | None = None,
    coupon: Coupon | None = None,
    title: str = "",
    memo: str = "",
    as_of: dt.date | None = None,
) -> Quote:
    """A draft quote for ``customer`` of catalog prices; checked as the subscription would be (currency, prices)."""
    today = as_of or billing_today()
    _validate(customer=customer, items=items, valid_until=valid_until, start_date=start_date, today=today)
    with transaction.atomic():
        quote = Quote.objects.create(
            customer=customer,
            currency=customer.currency,
            valid_until=valid_until,
            start_date=start_date,
            trial_days=trial_days,
            coupon=coupon,
            title=title,
            memo=memo,
        )
        QuoteItem.objects.bulk_create(
            QuoteItem(quote=quote, price=spec.price, quantity=spec.quantity, position=index)
            for index, spec in enumerate(items)
        )
        quote_offer_preview(quote=quote, as_of=today)  # the subscription's own checks, before anything is sent
    return quote


def _plain(value: Decimal) -> str:
    return f"{value:f}"


def _invoice_offer(preview: InvoicePreview) -> dict[str, Any]:
    invoice = preview.invoice
    return {
        "issue_date": preview.issue_date.isoformat(),
        "period_start": invoice.period_start.isoformat() if invoice.period_start else None,
        "period_end": invoice.period_end.isoformat() if invoice.period_end else None,
        "lines": [
            {
                "description": line.description,
                "quantity": _plain(line.quantity.normalize()),
                "unit_amount": _plain(line.unit_amount),
                "amount": _plain(line.amount),
                "discount": _plain(line.discount_amount),
                "discount_description": line.discount_description,
                "tax_name": line.tax_name,
                "tax_percentage": _plain(line.tax_percentage.normalize()),
                "tax_amount": _plain(line.tax_amount),
                "total": _plain(line.total_amount),
            }
            for line in preview.lines
        ],
        "subtotal": _plain(invoice.subtotal),
        "discount_total": _plain(invoice.discount_total),
        "tax_total": _plain(invoice.tax_total),
        "total": _plain(invoice.total),
        "tax_summary": invoice.tax_summary,
        "tax_note": invoice.tax_note,
    }


def quote_offer_preview(*, quote: Quote, as_of: dt.date | None = None) -> dict[str, Any]:
    """What the quote offers, computed now by the billing run's code and written nowhere: the first invoice (on
    the start date, or on ``as_of`` for a quote that starts when accepted) and the renewal after it."""
    today = as_of or billing_today()
    start = quote.start_date or today
    preview = subscription_create_preview(
        customer=quote.customer,
        items=_items(quote),
        start_date=start,
        as_of=start,
        trial_days=quote.trial_days,
        coupon=quote.coupon,
    )
    first = preview.first[0] if preview.first else None
    renewal = preview.renewal
    return {
        "start_date": start.isoformat(),
        "starts_on_acceptance": quote.start_date is None,
        "trial_end": preview.trial_end.isoformat() if preview.trial_end else None,
        "first_billing_date": preview.first_billing_date.isoformat() if preview.first_billing_date else None,
        "first": _invoice_offer(first) if first is not None else None,
        "renewal": {
            "date": renewal.issue_date.isoformat(),
            "total": _plain(renewal.invoice.total),
            "period_start": renewal.invoice.period_start.isoformat() if renewal.invoice.period_start else None,
            "period_end": renewal.invoice.period_end.isoformat() if renewal.invoice.period_end else None,
        }
        if renewal is not None
        else None,
    }


def _lock(quote: Quote) -> Quote:
    return Quote.objects.select_for_update().select_related("customer").get(pk=quote.pk)


def quote_is_expired(quote: Quote, *, today: dt.date | None = None) -> bool:
    return quote.status == QuoteStatus.SENT and quote.valid_until < (today or billing_today())


def quote_portal_url(quote: Quote) -> str:
    from django.conf import settings

    return settings.PORTAL_BASE_URL.rstrip("/") + reverse("portal:quote_detail", args=[quote.number])


def quote_send(
    *, quote: Quote, as_of: dt.date | None = None, series: NumberSeries | None = None, resend: bool = False
) -> Quote:
    """Number the draft (the quote series, gapless), freeze its offer and e-mail the customer a link to it in the
    portal. ``resend`` on a sent quote queues the e-mail again — same number, same offer; without it, sending a
    sent quote again sends nothing twice."""
    today = as_of or billing_today()
    with transaction.atomic():
        locked = _lock(quote)
        if locked.status == QuoteStatus.DRAFT:
            if locked.valid_until < today:
                raise QuoteStateError(f"valid_until: the quote expired on {locked.valid_until}; change the date")
            _validate(
                customer=locked.customer,
                items=_items(locked),
                valid_until=locked.valid_until,
                start_date=locked.start_date,
                today=today,
            )
            offer = quote_offer_preview(quote=locked, as_of=today)
            chosen = series or locked.series or number_series_default(kind=NumberSeries.Kind.QUOTE)
            [locked.number] = number_series_allocate(series=chosen, issue_date=today)
            locked.series = chosen
            locked.offer = offer
            locked.first_total = Decimal(offer["first"]["total"]) if offer["first"] else Decimal(0)
            locked.renewal_total = Decimal(offer["renewal"]["total"]) if offer["renewal"] else None
            locked.quote_date = today
            locked.status = QuoteStatus.SENT
            locked.sent_at = timezone.now()
            locked.save()
        elif locked.status != QuoteStatus.SENT:
            raise QuoteStateError(f"quote {locked} is {locked.get_status_display().lower()}; it cannot be sent")
        customer = locked.customer
        lang = fmt.document_language(customer.language)
        email_queue(
            kind=EmailKind.OTHER,
            customer=customer,
            idempotency_key=f"quote:{locked.pk}" + (f":resend:{timezone.now().timestamp()}" if resend else ""),
            template="quote",
            context={
                "customer_name": customer.display_legal_name,
                "number": locked.number,
                "valid_until": fmt.date(locked.valid_until, lang),
                "first_total": fmt.money(locked.first_total or Decimal(0), locked.currency, lang),
                "url": quote_portal_url(locked),
                "seller_name": seller_snapshot().get("legal_name", ""),
            },
        )
    return locked


def quote_accept(*, quote: Quote, accepted_by: str, ip: str | None = None, as_of: dt.date | None = None) -> Quote:
    """The customer accepts a sent, unexpired quote (the portal, signed in): recorded with who and from where,
    then converted into its subscription. If the conversion fails (a price archived since), the quote stays
    accepted with the reason for staff, who convert it from the admin."""
    today = as_of or billing_today()
    with transaction.atomic():
        locked = _lock(quote)
        if locked.status in (QuoteStatus.ACCEPTED, QuoteStatus.CONVERTED):
            return locked  # a double click accepts once
        if locked.status != QuoteStatus.SENT:
            raise QuoteStateError(f"quote {locked} is {locked.get_status_display().lower()}; it cannot be accepted")
        if locked.valid_until < today:
            raise QuoteStateError(f"quote {locked} expired on {locked.valid_until}")
        locked.status = QuoteStatus.ACCEPTED
        locked.accepted_at = timezone.now()
        locked.accepted_by = accepted_by[:254]
        locked.accepted_ip = ip
        locked.save()
    try:
        return quote_convert(quote=locked, as_of=today)
    except ApplicationError as exc:
        Quote.objects.filter(pk=locked.pk).update(conversion_error=exc.for_display()[:2000])
        locked.refresh_from_db()
        return locked


def quote_convert(*, quote: Quote, as_of: dt.date | None = None) -> Quote:
    """Create the accepted quote's subscription (once): its items, coupon and trial, starting on the quote's start
    date or today. The billing run bills it like any other."""
    today = as_of or billing_today()
    with transaction.atomic():
        locked = _lock(quote)
        if locked.status == QuoteStatus.CONVERTED:
            return locked
        if locked.status != QuoteStatus.ACCEPTED:
            raise QuoteStateError(f"quote {locked} is {locked.get_status_display().lower()}; accept it first")
        start = max(locked.start_date or today, today)
        subscription: Subscription = subscription_create(
            customer=locked.customer,
            items=_items(locked),
            start_date=start,
            trial_days=locked.trial_days,
            coupon=locked.coupon,
            metadata={"quote": locked.number},
        )
        locked.subscription = subscription
        locked.status = QuoteStatus.CONVERTED
        locked.conversion_error = ""
        locked.save()
    return locked


def quote_decline(*, quote: Quote, reason: str = "") -> Quote:
    with transaction.atomic():
        locked = _lock(quote)
        if locked.status == QuoteStatus.DECLINED:
            return locked
        if locked.status != QuoteStatus.SENT:
            raise QuoteStateError(f"quote {locked} is {locked.get_status_display().lower()}; it cannot be declined")
        locked.status = QuoteStatus.DECLINED
        locked.declined_at = timezone.now()
        locked.decline_reason = reason.strip()[:2000]
        locked.save()
    return locked


def quote_withdraw(*, quote: Quote) -> Quote:
    """Staff withdraw a draft or sent quote: the customer can no longer accept it (its number stays used)."""
    with transaction.atomic():
        locked = _lock(quote)
        if locked.status not in (QuoteStatus.DRAFT, QuoteStatus.SENT):
            raise QuoteStateError(f"quote {locked} is {locked.get_status_display().lower()}; it cannot be withdrawn")
        locked.status = QuoteStatus.CANCELED
        locked.save()
    return locked
