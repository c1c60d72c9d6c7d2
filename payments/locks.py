"""The payments app's locks: a customer with some of its subscriptions, invoices and payments, taken in the
product's one lock order (``core.locks``). Callers must be inside ``transaction.atomic``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from core.locks import LockOrder
from customers.models import Customer
from invoicing.models import Invoice
from payments.models import Payment
from subscriptions.models import Subscription


@dataclass
class Locked:
    customer: Customer
    subscriptions: dict[int, Subscription] = field(default_factory=dict)
    invoices: dict[int, Invoice] = field(default_factory=dict)
    payments: dict[int, Payment] = field(default_factory=dict)


def lock_in_order(
    *,
    customer_id: int,
    subscription_ids: Iterable[int | None] = (),
    invoice_ids: Iterable[int] = (),
    payment_ids: Iterable[int] = (),
) -> Locked:
    """Lock the rows (customer first) and return them as read under the lock."""
    order = LockOrder()
    customers = order.lock(Customer.objects.all(), [customer_id])
    if not customers:
        raise Customer.DoesNotExist(f"customer {customer_id} does not exist")
    locked = Locked(customer=customers[0])
    locked.subscriptions = {s.pk: s for s in order.lock(Subscription.objects.all(), subscription_ids)}
    locked.invoices = {i.pk: i for i in order.lock(Invoice.objects.all(), invoice_ids, of_self=True)}
    locked.payments = {p.pk: p for p in order.lock(Payment.objects.all(), payment_ids, of_self=True)}
    return locked


def subscription_ids_of(invoice_ids: Iterable[int]) -> list[int]:
    """The subscriptions of some invoices (read without a lock: an invoice never changes its subscription)."""
    return [
        pk
        for pk in Invoice.objects.filter(pk__in=list(invoice_ids), subscription__isnull=False)
        .values_list("subscription_id", flat=True)
        .distinct()
        if pk is not None
    ]
