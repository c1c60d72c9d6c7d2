"""Row locks in one fixed order — customer → subscription → invoice → payment — so that two services touching
the same rows can never wait for each other in a cycle (a deadlock). Each level is taken with
``order_by("pk").select_for_update()`` for the same reason. Callers must be inside ``transaction.atomic``.

This is shared plumbing; it lives here until another app needs it (then: ``billing_project/lib/locks.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

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
    customer = Customer.objects.select_for_update().get(pk=customer_id)
    subscription_pks = sorted({pk for pk in subscription_ids if pk is not None})
    invoice_pks = sorted(set(invoice_ids))
    payment_pks = sorted(set(payment_ids))
    locked = Locked(customer=customer)
    if subscription_pks:
        locked.subscriptions = {
            s.pk: s for s in Subscription.objects.filter(pk__in=subscription_pks).order_by("pk").select_for_update()
        }
    if invoice_pks:
        locked.invoices = {
            i.pk: i for i in Invoice.objects.filter(pk__in=invoice_pks).order_by("pk").select_for_update(of=("self",))
        }
    if payment_pks:
        locked.payments = {
            p.pk: p for p in Payment.objects.filter(pk__in=payment_pks).order_by("pk").select_for_update(of=("self",))
        }
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
