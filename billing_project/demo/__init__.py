"""Demo data for ``manage.py seed_demo``: one module per app, each idempotent (keyed records, created only when
missing), run in app order by ``seed_all``."""

from __future__ import annotations

from collections.abc import Callable

from billing_project.demo.calendar import bill_up_to_today, remind_today
from billing_project.demo.customers import DEMO_STAFF, DemoStaff, seed_customers, seed_staff
from billing_project.demo.history import pay_history, seed_history
from billing_project.portal import seed_portal
from dunning.services import seed_dunning
from invoicing.demo import seed_one_off_invoices, seed_tax_rates_and_series
from payments.demo import seed_payments
from subscriptions.demo import seed_catalog_and_subscriptions

# (label, step) in dependency order; later apps append their steps here.
SEED_STEPS: list[tuple[str, Callable[[], object]]] = [
    ("staff users", seed_staff),
    ("customers", seed_customers),
    ("catalog and subscriptions", seed_catalog_and_subscriptions),
    ("number series and tax rates", seed_tax_rates_and_series),
    ("earlier customers: a year of subscriptions, changes and invoices, replayed", seed_history),
    ("invoices: a billing run for each billing date up to today", bill_up_to_today),
    ("one-off invoices", seed_one_off_invoices),
    ("payments: cards, payments, credit, failed attempts", seed_payments),
    ("earlier customers' bank transfers", pay_history),
    ("dunning policy", seed_dunning),
    ("today's payment reminders (e-mails)", remind_today),
    ("portal user", lambda: _count_created(seed_portal, "customers.PortalUser")),
]


def _count_created(step: Callable[[], object], model_label: str) -> int:
    from django.apps import apps

    model = apps.get_model(model_label)
    before = model._default_manager.count()
    step()
    return model._default_manager.count() - before


def seed_all(log: Callable[[str], None] = print) -> None:
    for label, step in SEED_STEPS:
        result = step()
        log(f"  {label}: {result if isinstance(result, int) else 'ok'} created")


__all__ = ["DEMO_STAFF", "SEED_STEPS", "DemoStaff", "seed_all"]
