"""Demo data for ``manage.py seed_demo``: one module per app, each idempotent (keyed records, created only when
missing), run in app order by ``seed_all``.

The seed runs the Celery tasks it causes (PDFs, e-mails, automatic charges) in this process, as the worker
would, so the demo is complete when the server starts: the worker begins with an empty queue, and a newcomer's
first look at the portal is not changed under them by a backlog being worked off. The last step renders every
issued invoice's and credit note's PDF that is missing."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from api.demo import seed_api_keys
from billing_project.demo.calendar import bill_up_to_today, remind_today
from billing_project.demo.customers import DEMO_STAFF, DemoStaff, seed_customers, seed_staff
from billing_project.demo.exchange_rates import seed_exchange_rates
from billing_project.demo.history import pay_history, seed_history
from billing_project.demo.jobs import seed_job_runs
from billing_project.demo.portal_customer import seed_portal_customer
from billing_project.demo.quotes_and_vat import seed_quotes, seed_vat_checks
from billing_project.demo.seller import seed_seller
from billing_project.portal import seed_portal
from dunning.services import seed_dunning
from invoicing.demo import seed_mixed_vat_invoice, seed_one_off_invoices, seed_tax_rates_and_series
from invoicing.documents import pdfs_render
from payments.demo import seed_cards, seed_payments, seed_wallets
from reporting.metrics import metrics_refresh
from subscriptions.demo import seed_catalog_and_subscriptions, seed_parent_accounts
from webhooks.demo import seed_webhooks


def render_pdfs() -> str:
    """Every issued invoice and credit note with its current PDF (what the "Render missing PDFs" job does)."""
    outcome = pdfs_render(only_missing=True)
    failed = f", {len(outcome.failed)} failed (see the log; `manage.py render_pdfs --missing` retries)"
    return f"{outcome.rendered} rendered{failed if outcome.failed else ''}"


def refresh_metrics() -> str:
    """The dashboard's and reports' figures as of today (what the "Metrics refresh" job does)."""
    refresh = metrics_refresh(triggered_by="demo")
    return f"as of {refresh.as_of.isoformat()}"


# (label, step) in dependency order; later apps append their steps here. A step returns how many records it
# created, or a short description of what it did.
SEED_STEPS: list[tuple[str, Callable[[], object]]] = [
    ("seller profile (Nordlicht Software GmbH)", seed_seller),
    ("staff users", seed_staff),
    ("customers", seed_customers),
    ("exchange rates (ECB-style, a year of weekdays)", seed_exchange_rates),
    ("saved test cards", seed_cards),
    ("catalog and subscriptions", seed_catalog_and_subscriptions),
    ("a parent account with three child accounts on one consolidated invoice", seed_parent_accounts),
    ("number series and tax rates", seed_tax_rates_and_series),
    ("earlier customers: a year of subscriptions, changes and invoices, replayed", seed_history),
    ("invoices: a billing run for each billing date up to today", bill_up_to_today),
    ("one-off invoices", seed_one_off_invoices),
    ("an invoice with mixed VAT rates (19 % + 7 % + exempt)", seed_mixed_vat_invoice),
    ("payments: payments, credit, failed attempts", seed_payments),
    ("earlier customers' bank transfers", pay_history),
    ("a wallet: free credits, a paid top-up, credits used by a usage invoice", seed_wallets),
    ("portal customer: a credit note and an invoice to pay", seed_portal_customer),
    ("dunning policy", seed_dunning),
    ("today's payment reminders (e-mails)", remind_today),
    ("portal user", lambda: _count_created(seed_portal, "customers.PortalUser")),
    ("quotes (one sent to the portal customer, one draft)", seed_quotes),
    ("VAT number checks (VIES is not asked in the demo)", seed_vat_checks),
    ("PDFs of issued invoices and credit notes", render_pdfs),
    ("metrics for the dashboard and the reports", refresh_metrics),
    ("periodic jobs: a first run of the integrity check and the sweeps", seed_job_runs),
    ("API key (Demo integration)", seed_api_keys),
    ("webhook endpoints and their delivery log", seed_webhooks),
]


def _count_created(step: Callable[[], object], model_label: str) -> int:
    from django.apps import apps

    model = apps.get_model(model_label)
    before = model._default_manager.count()
    step()
    return model._default_manager.count() - before


@contextmanager
def tasks_in_process() -> Iterator[None]:
    """Run the Celery tasks the services hand off (after commit) right here instead of queueing them."""
    from billing_project.celery import app

    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        yield
    finally:
        app.conf.task_always_eager = before


class _MissingGlyphs(logging.Filter):
    """Collects xhtml2pdf's "no font can draw 'x'" warnings — one per character and document, a wall of them for
    a name in a script no embedded font covers — so the seed can say it once."""

    PREFIX = "No font this document has can draw"

    def __init__(self) -> None:
        super().__init__()
        self.characters: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if not message.startswith(self.PREFIX):
            return True
        code_point = re.search(r"\(U\+([0-9A-F]+)\)", message)
        self.characters.add(code_point.group(1) if code_point else message)
        return False


@contextmanager
def _missing_glyphs_counted() -> Iterator[_MissingGlyphs]:
    logger = logging.getLogger("xhtml2pdf.context")
    glyphs = _MissingGlyphs()
    logger.addFilter(glyphs)
    try:
        yield glyphs
    finally:
        logger.removeFilter(glyphs)


def seed_all(log: Callable[[str], None] = print) -> None:
    with tasks_in_process(), _missing_glyphs_counted() as glyphs:
        for label, step in SEED_STEPS:
            started = time.monotonic()
            result = step()
            outcome = result if isinstance(result, str) else f"{result if isinstance(result, int) else 'ok'} created"
            log(f"  {label}: {outcome} ({time.monotonic() - started:.1f} s)")
    if glyphs.characters:
        log(
            f"  note: {len(glyphs.characters)} characters print as boxes in PDFs: no embedded font "
            "(INVOICE_PDF_FONT_DIR, invoicing.documents.FONT_FACES) has them"
        )


__all__ = ["DEMO_STAFF", "SEED_STEPS", "DemoStaff", "seed_all"]
