"""Reads on customers that mean something (docs/STYLE.md)."""

from __future__ import annotations

from django.db.models import ManyToOneRel

from customers.models import Customer

# Relations that are part of the customer itself, not billing history; and relations implied by another one:
# a usage event is always of a subscription's item (so ``subscriptions`` answers), and the event table has no
# index on its customer column (docs/decisions/usage-events.md) — looking there would scan it.
_NOT_HISTORY = {"portal_users", "login_tokens", "usage_events"}


def customer_has_billing_history(*, customer: Customer) -> bool:
    """True when anything billing-related (subscriptions, invoices, payments, …) points at the customer.

    It looks at every reverse foreign key, so models added by later apps count without changes here.
    """
    for relation in Customer._meta.related_objects:
        if not isinstance(relation, ManyToOneRel) or relation.get_accessor_name() in _NOT_HISTORY:
            continue
        related_model = relation.related_model
        assert not isinstance(related_model, str)
        if related_model._default_manager.filter(**{relation.field.name: customer}).exists():
            return True
    return False
