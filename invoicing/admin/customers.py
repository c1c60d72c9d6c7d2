"""Invoicing's part of the customer page: the open invoices, the subscriptions, the e-mails sent with their
delivery state and the billing address's deliverability; the quick actions "New subscription" and "New one-off
invoice". Each block reads the newest ``ACCOUNT_ROWS`` rows in one or two queries and links to the full list."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Prefetch
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from core.admin_pages import ObjectTool, date_text, money_text
from core.dates import billing_today
from invoicing.models import Invoice, InvoiceStatus
from notifications.admin import BillingEmailBouncedFilter
from notifications.models import EmailAddressStatus, EmailEvent, OutboundEmail
from subscriptions.models import Subscription, SubscriptionItem

ACCOUNT_ROWS = 10
OPEN_STATUSES = (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE)


def see_all(url: str, text: str) -> str:
    return format_html('<p class="see-all"><a href="{}">{}</a></p>', url, text)


def account_table(headers: list[str], rows: list[tuple[Any, ...]], row_html: str, empty: str) -> str:
    if not rows:
        return format_html('<p class="account-empty">{}</p>', empty)
    return format_html(
        '<table class="account-table"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>',
        format_html_join("", "<th>{}</th>", ((header,) for header in headers)),
        format_html_join("", row_html, rows),
    )


def _subscription_items(subscription: Subscription) -> str:
    items = getattr(subscription, "current_items", [])
    return (
        ", ".join(f"{item.price.display_name}{f' × {item.quantity}' if item.quantity != 1 else ''}" for item in items)
        or "—"
    )


def _email_state(email: OutboundEmail) -> str:
    when = email.bounced_at or email.delivered_at or email.sent_at or email.failed_at
    state = email.get_status_display()
    if email.opened_at:
        state += ", opened"
    return f"{state} {when:%Y-%m-%d %H:%M}" if when else state


def _extend_customer_admin() -> None:
    from customers.models import Customer

    base: Any = type(admin.site._registry[Customer])

    class CustomerBouncedFilter(BillingEmailBouncedFilter):
        email_path = "email"

    class CustomerAdmin(base):  # type: ignore[valid-type, misc]
        list_filter = (CustomerBouncedFilter, *base.list_filter)
        account_fields = (
            *base.account_fields,
            "open_invoices_display",
            "subscriptions_display",
            "emails_display",
            "billing_email_status",
        )

        def get_object_tools(self, request: HttpRequest, customer: Any) -> list[ObjectTool]:
            tools = super().get_object_tools(request, customer)
            if request.user.has_perm("subscriptions.add_subscription"):
                url = reverse("admin:subscriptions_subscription_add") + f"?customer={customer.pk}"
                tools.append(ObjectTool("new_subscription", "New subscription", url, order=10))
            if request.user.has_perm("invoicing.add_invoice"):
                url = reverse("admin:invoicing_invoice_add") + f"?customer={customer.pk}"
                tools.append(ObjectTool("new_invoice", "New one-off invoice", url, order=20))
            if request.user.has_perm("subscriptions.change_subscription"):
                url = reverse("admin:customers_customer_bill_now", args=[customer.pk])
                tools.append(ObjectTool("bill_now", "Bill now", url, order=25))
            return tools

        @admin.display(description="open invoices")
        def open_invoices_display(self, obj: Any) -> str:
            today = billing_today()
            invoices = list(
                Invoice.objects.filter(customer=obj, status__in=OPEN_STATUSES, amount_due__gt=0)
                .only("pk", "number", "status", "issue_date", "due_date", "currency", "total", "amount_due")
                .order_by("-issue_date", "-pk")[: ACCOUNT_ROWS + 1]
            )
            rows = [
                (
                    reverse("admin:invoicing_invoice_change", args=[invoice.pk]),
                    invoice.number,
                    date_text(invoice.issue_date),
                    date_text(invoice.due_date),
                    "overdue" if invoice.due_date and invoice.due_date < today else invoice.get_status_display(),
                    money_text(invoice.total, invoice.currency),
                    money_text(invoice.amount_due, invoice.currency),
                )
                for invoice in invoices[:ACCOUNT_ROWS]
            ]
            table = account_table(
                ["Invoice", "Issued", "Due", "Status", "Total", "Amount due"],
                rows,
                '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td class="money">{}</td>'
                '<td class="money">{}</td></tr>',
                "No open invoices.",
            )
            url = reverse("admin:invoicing_invoice_changelist") + f"?customer__id__exact={obj.pk}"
            more = "See all open invoices" if len(invoices) > ACCOUNT_ROWS else "All invoices of this customer"
            link = f"{url}&status__in=open,uncollectible" if len(invoices) > ACCOUNT_ROWS else url
            return format_html("{}{}", table, see_all(link, more))

        @admin.display(description="subscriptions")
        def subscriptions_display(self, obj: Any) -> str:
            items = SubscriptionItem.objects.filter(removed_on__isnull=True).select_related("price__product")
            subscriptions = list(
                Subscription.objects.filter(customer=obj)
                .prefetch_related(Prefetch("items", queryset=items, to_attr="current_items"))
                .order_by("-pk")[:ACCOUNT_ROWS]
            )
            rows = [
                (
                    reverse("admin:subscriptions_subscription_change", args=[subscription.pk]),
                    f"#{subscription.pk}",
                    _subscription_items(subscription),
                    subscription.get_status_display()
                    + (" (cancels at period end)" if subscription.cancel_at_period_end else ""),
                    date_text(subscription.next_billing_date),
                    subscription.get_collection_method_display(),
                )
                for subscription in subscriptions
            ]
            table = account_table(
                ["Subscription", "Items", "Status", "Next invoice", "Collection"],
                rows,
                '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>',
                "No subscriptions.",
            )
            url = reverse("admin:subscriptions_subscription_changelist") + f"?customer__id__exact={obj.pk}"
            return format_html("{}{}", table, see_all(url, "All subscriptions of this customer"))

        @admin.display(description="e-mails sent")
        def emails_display(self, obj: Any) -> str:
            events = EmailEvent.objects.order_by("-occurred_at", "-pk").only(
                "pk", "outbound_email_id", "event_type", "occurred_at", "description"
            )
            emails = list(
                OutboundEmail.objects.filter(customer=obj)
                .defer("body_text", "body_html")
                .prefetch_related(Prefetch("events", queryset=events))
                .order_by("-queued_at", "-pk")[:ACCOUNT_ROWS]
            )
            rows = []
            for email in emails:
                last_event = next(iter(email.events.all()), None)
                rows.append(
                    (
                        reverse("admin:notifications_outboundemail_change", args=[email.pk]),
                        f"{email.queued_at:%Y-%m-%d %H:%M}",
                        email.get_kind_display(),
                        email.subject,
                        ", ".join(email.to_emails),
                        email.status,
                        _email_state(email),
                        f"{last_event.event_type}: {last_event.description}".rstrip(": ") if last_event else "—",
                    )
                )
            table = account_table(
                ["Queued", "Kind", "Subject", "To", "Delivery", "Last provider event"],
                rows,
                '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td>'
                '<td><span class="email-status email-status-{}">{}</span></td><td>{}</td></tr>',
                "No e-mails sent yet.",
            )
            url = reverse("admin:notifications_outboundemail_changelist") + f"?customer__id__exact={obj.pk}"
            return format_html("{}{}", table, see_all(url, "All e-mails to this customer"))

        @admin.display(description="billing e-mail")
        def billing_email_status(self, obj: Any) -> str:
            status = EmailAddressStatus.objects.filter(email=obj.email.lower()).first()
            if status is None or not (status.bounced_at or status.complained_at):
                return "delivering (no bounce or complaint recorded)"
            what = "BOUNCED" if status.bounced_at else "COMPLAINED (marked as spam)"
            when = status.bounced_at or status.complained_at
            return format_html("<strong>{}</strong> on {} — {}", what, f"{when:%Y-%m-%d %H:%M}", status.reason or "")

    admin.site.unregister(Customer)
    admin.site.register(Customer, CustomerAdmin)


_extend_customer_admin()
