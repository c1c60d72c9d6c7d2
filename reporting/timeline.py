"""A customer's timeline: what happened to the account, newest first — invoice status changes (InvoiceEvent),
subscription status changes (SubscriptionEvent), payments and refunds, e-mails with their delivery state, and the
audited changes (core/audit.py) of the customer and of every audited row that points at it (subscriptions, draft
invoices, payments, cards, dunning settings). It reads five apps, so it lives in reporting.

Bounded: one query per source, each cut at ``limit``, merged in Python (``TIMELINE_QUERIES`` of them).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.utils.html import format_html, format_html_join

from core import formatting
from core.audit import (
    ACTOR_CUSTOMER,
    ACTOR_STAFF,
    ACTOR_SYSTEM,
    NEEDS_POSTGRESQL,
    audit_enabled,
    audit_rows_referencing,
    changes_html,
    when_text,
)
from customers.models import Customer
from invoicing.models import InvoiceEvent
from notifications.models import OutboundEmail
from payments.models import Payment, Refund
from subscriptions.models import SubscriptionEvent

TIMELINE_SHOWN = 50
TIMELINE_QUERIES = 6  # one per source; the audit's money on invoice lines may add one


@dataclass(frozen=True)
class TimelineItem:
    at: dt.datetime
    kind: str  # invoice, subscription, payment, refund, e-mail, change
    title: str
    actor_kind: str  # staff, customer, system, "" (not recorded)
    actor: str
    detail: str  # HTML (escaped)


def _user(user: Any) -> tuple[str, str]:
    return (ACTOR_STAFF, user.get_username()) if user is not None else (ACTOR_SYSTEM, "system")


def _money(amount: Any, currency: str) -> str:
    return formatting.money(amount, currency, "en")


def customer_timeline(*, customer: Customer, limit: int = TIMELINE_SHOWN) -> list[TimelineItem]:
    """The customer's domain events and audited changes, newest first, at most ``limit``."""
    items: list[TimelineItem] = []
    for event in (
        InvoiceEvent.objects.filter(invoice__customer=customer)
        .select_related("invoice", "actor")
        .order_by("-at", "-pk")[:limit]
    ):
        invoice = event.invoice
        items.append(
            TimelineItem(
                at=event.at,
                kind="invoice",
                title=f"Invoice {invoice.number or f'draft #{invoice.pk}'}: "
                f"{event.get_from_status_display()} → {event.get_to_status_display()}",
                actor_kind=_user(event.actor)[0],
                actor=_user(event.actor)[1],
                detail=format_html("{} {}", _money(invoice.total, invoice.currency), event.reason),
            )
        )
    for status_change in (
        SubscriptionEvent.objects.filter(subscription__customer=customer)
        .select_related("actor")
        .order_by("-at", "-pk")[:limit]
    ):
        items.append(
            TimelineItem(
                at=status_change.at,
                kind="subscription",
                title=f"Subscription #{status_change.subscription_id}: "
                f"{status_change.get_from_status_display()} → {status_change.get_to_status_display()}",
                actor_kind=_user(status_change.actor)[0],
                actor=_user(status_change.actor)[1],
                detail=format_html("{}", status_change.reason),
            )
        )
    for payment in (
        Payment.objects.filter(customer=customer).select_related("created_by").order_by("-created_at")[:limit]
    ):
        items.append(
            TimelineItem(
                at=payment.created_at,
                kind="payment",
                title=f"Payment #{payment.pk} {payment.get_status_display().lower()}: "
                f"{_money(payment.amount, payment.currency)}",
                actor_kind=_user(payment.created_by)[0],
                actor=_user(payment.created_by)[1],
                detail=format_html(
                    "{} · received {} · {}", payment.get_method_display(), payment.received_on, payment.reference
                ),
            )
        )
    for refund in Refund.objects.filter(customer=customer).select_related("created_by").order_by("-created_at")[:limit]:
        items.append(
            TimelineItem(
                at=refund.created_at,
                kind="refund",
                title=f"Refund #{refund.pk} {refund.get_status_display().lower()}: "
                f"{_money(refund.amount, refund.currency)}",
                actor_kind=_user(refund.created_by)[0],
                actor=_user(refund.created_by)[1],
                detail=format_html("{}", refund.reason),
            )
        )
    for email in OutboundEmail.objects.filter(customer=customer).order_by("-queued_at", "-pk")[:limit]:
        items.append(
            TimelineItem(
                at=email.queued_at,
                kind="e-mail",
                title=f"E-mail “{email.subject}”: {email.get_status_display().lower()}",
                actor_kind=ACTOR_SYSTEM,
                actor="outbox",
                detail=format_html("to {} · {}", ", ".join(email.to_emails), email.get_kind_display()),
            )
        )
    for entry in audit_rows_referencing(customer, limit=limit):
        items.append(
            TimelineItem(
                at=entry.at,
                kind="change",
                title=f"{entry.what} {entry.operation}",
                actor_kind=entry.actor_kind,
                actor=entry.actor,
                detail=changes_html(entry),
            )
        )
    items.sort(key=lambda item: item.at, reverse=True)
    return items[:limit]


_KIND_LABEL = {
    "invoice": "invoice status",
    "subscription": "subscription status",
    "payment": "payment",
    "refund": "refund",
    "e-mail": "e-mail",
    "change": "audited change",
}
_ACTOR_KIND_LABEL = {ACTOR_STAFF: "staff user", ACTOR_CUSTOMER: "customer (portal)", ACTOR_SYSTEM: "system"}


def customer_timeline_html(customer: Customer) -> str:
    items = customer_timeline(customer=customer)
    note = "" if audit_enabled() else NEEDS_POSTGRESQL.format(vendor="sqlite")
    if not items:
        return note or "Nothing has happened on this account yet."
    return format_html(
        '{}<table class="audit-trail timeline"><thead><tr><th>When</th><th>What</th><th>Who</th><th>Details</th>'
        "</tr></thead><tbody>{}</tbody></table>",
        format_html("<p>{}</p>", note) if note else "",
        format_html_join(
            "",
            "<tr><td>{}</td><td>{}<br><small>{}</small></td><td>{}<br><small>{}</small></td><td>{}</td></tr>",
            (
                (
                    when_text(item.at),
                    item.title,
                    _KIND_LABEL.get(item.kind, item.kind),
                    item.actor,
                    _ACTOR_KIND_LABEL.get(item.actor_kind, "not recorded"),
                    item.detail,
                )
                for item in items
            ),
        ),
    )
