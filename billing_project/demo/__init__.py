"""Demo data for ``manage.py seed_demo``: one module per app, each idempotent (keyed records, created only when
missing), run in app order by ``seed_all``."""

from __future__ import annotations

from collections.abc import Callable

from billing_project.demo.calendar import bill_up_to_today
from billing_project.demo.customers import DEMO_STAFF, DemoStaff, seed_customers, seed_staff
from billing_project.portal import seed_portal
from invoicing.demo import seed_invoicing
from invoicing.dunning import seed_dunning
from payments.demo import seed_payments
from subscriptions.demo import seed_catalog_and_subscriptions

# (label, step) in dependency order; later apps append their steps here.
SEED_STEPS: list[tuple[str, Callable[[], object]]] = [
    ("staff users", seed_staff),
    ("customers", seed_customers),
    ("catalog and subscriptions", seed_catalog_and_subscriptions),
    ("number series, tax rates, one-off invoices", seed_invoicing),
    ("payments: cards, payments, credit, failed attempts", seed_payments),
    ("dunning policy", seed_dunning),
    ("invoices: billing runs up to today, then today's reminders", bill_up_to_today),
    ("portal user", seed_portal),
]


def seed_all(log: Callable[[str], None] = print) -> None:
    for label, step in SEED_STEPS:
        result = step()
        log(f"  {label}: {result if isinstance(result, int) else 'ok'} created")


__all__ = ["DEMO_STAFF", "SEED_STEPS", "DemoStaff", "seed_all"]
