"""The one lock order (core.locks): customer → subscription → invoice → payment, refused when broken."""

from __future__ import annotations

import pytest
from django.db import transaction

from core.locks import LockOrder, LockOrderViolation
from customers.models import Customer
from invoicing.models import Invoice
from subscriptions.models import Subscription
from tests.factories import CustomerFactory


@pytest.mark.django_db
def test_locks_follow_the_order_and_a_lock_against_it_is_refused() -> None:
    first, second = CustomerFactory(), CustomerFactory()
    with transaction.atomic():
        order = LockOrder()
        locked = order.lock(Customer.objects.all(), [second.pk, first.pk, None])
        assert [c.pk for c in locked] == sorted([first.pk, second.pk])  # by primary key
        assert order.lock(Invoice.objects.all(), []) == []
        with pytest.raises(LockOrderViolation, match=r"subscriptions\.Subscription locked after invoicing\.Invoice"):
            order.lock(Subscription.objects.all(), [1])
