"""The audit trail (core/audit.py, docs/decisions/audit.md): PostgreSQL triggers record old → new values of every
write to the billing models — admin edits, portal edits, ``QuerySet.update()``, the billing run's COPY writes,
Celery tasks, commands — each with its actor: a staff user, the customer, or the job."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.urls import reverse
from djmoney.money import Money

from billing_project.staff_groups import BILLING_ADMIN
from core.audit import AuditEntry, audit_as_job, audit_as_staff, audit_rows_for, audit_rows_referencing
from customers.models import Customer
from invoicing.billing_run import billing_run
from invoicing.models import Invoice, InvoiceLine
from payments.models import PaymentMethod
from subscriptions.models import Price, Subscription
from tests.billing_project.test_audit import _change_form_data
from tests.factories import CustomerFactory, PriceFactory, StaffUserFactory, SubscriptionFactory
from tests.factories.invoicing import NumberSeriesFactory, TaxRateFactory
from tests.portal.conftest import Account, signed_in_client

pytestmark = pytest.mark.django_db
JAN_1 = dt.date(2026, 1, 1)


@pytest.fixture
def billing(db: Any) -> None:
    NumberSeriesFactory(default_invoices=True)
    NumberSeriesFactory(default_credit_notes=True)
    TaxRateFactory(country="DE", percentage=Decimal("19"))


def _changes(entry: AuditEntry) -> dict[str, tuple[str, str]]:
    return {change.field: (change.old, change.new) for change in entry.changes}


def _latest(obj: Any) -> AuditEntry:
    return audit_rows_for(obj)[0]


def test_queryset_update_is_recorded_with_old_and_new_values_and_no_actor_outside_a_context():
    customer = CustomerFactory(name="Old Name GmbH", city="Berlin")

    Customer.objects.filter(pk=customer.pk).update(name="New Name GmbH", city="Hamburg")

    entries = audit_rows_for(customer)
    assert [entry.operation for entry in entries] == ["changed", "created"]
    assert _changes(entries[0]) == {"name": ("Old Name GmbH", "New Name GmbH"), "city": ("Berlin", "Hamburg")}
    assert (entries[0].actor_kind, entries[0].actor) == ("", "unknown (no actor context)")


def test_an_update_that_changes_nothing_but_the_timestamp_is_not_recorded():
    customer = CustomerFactory()
    customer.save()
    assert [entry.operation for entry in audit_rows_for(customer)] == ["created"]


def test_staff_edit_in_the_admin_names_the_user_and_the_old_and_new_values(client):
    user = StaffUserFactory(group=BILLING_ADMIN, username="bea")
    client.force_login(user)
    customer = CustomerFactory(name="Old Name GmbH", email="old@customer.example")
    url = reverse("admin:customers_customer_change", args=[customer.pk])
    data = _change_form_data(client.get(url))

    response = client.post(url, {**data, "name": "New Name GmbH", "email": "new@customer.example"})

    assert response.status_code == 302
    entry = _latest(customer)
    assert (entry.operation, entry.actor_kind, entry.actor) == ("changed", "staff", "bea")
    assert _changes(entry) == {
        "name": ("Old Name GmbH", "New Name GmbH"),
        "billing e-mail": ("old@customer.example", "new@customer.example"),
    }
    page = client.get(url).content.decode()
    block = page[page.index("Timeline") :]  # the customer page shows its audit rows in the timeline
    assert "bea" in block and "staff user" in block
    assert "name: Old Name GmbH → New Name GmbH" in block
    assert 'name="audit_trail"' not in page


def test_portal_billing_details_edit_is_audited_with_the_customer_as_actor(billing, client):
    account = Account("Alpha")
    # The same browser is signed in to the admin too: the portal's writes are still the customer's.
    client.force_login(StaffUserFactory(group=BILLING_ADMIN, username="bea"))
    portal = signed_in_client(account.portal_user)
    portal.cookies.update(client.cookies)
    session = portal.session
    session["portal_user_id"] = account.portal_user.pk
    session.save()

    response = portal.post(
        reverse("portal:billing_details"),
        {"legal_name": "Alpha Holding GmbH", "email": "ap@alpha.example", "country": "DE", "city": "Köln"},
    )

    assert response.status_code == 302
    entry = _latest(account.customer)
    assert (entry.actor_kind, entry.actor) == ("customer", "Alpha")
    assert _changes(entry)["city"][1] == "Köln"
    assert _changes(entry)["legal name"][1] == "Alpha Holding GmbH"


def test_portal_card_changes_are_audited_with_the_customer_as_actor(billing):
    account = Account("Alpha")
    card = account.payment_method
    portal = signed_in_client(account.portal_user)

    portal.post(reverse("portal:payment_method_remove", args=[card.pk]))

    card.refresh_from_db()
    assert not card.is_active
    entry = _latest(card)
    assert (entry.operation, entry.actor_kind, entry.actor) == ("changed", "customer", "Alpha")
    assert _changes(entry)["is active"] == ("yes", "no")
    # the gateway token is never copied into the audit
    assert "token" not in {change.field for e in audit_rows_for(card) for change in e.changes}
    assert PaymentMethod._meta.get_field("token")


def test_billing_run_writes_name_the_run_including_drafts_written_by_copy(billing):
    price = PriceFactory(unit_amount=Money(Decimal("31.00"), "EUR"))
    reviewed = SubscriptionFactory(price=price, start_date=JAN_1, customer=CustomerFactory(review_invoices=True))
    issued = SubscriptionFactory(price=price, start_date=JAN_1)

    run = billing_run(as_of=JAN_1)

    assert (run.invoices_created, run.drafts_created) == (1, 1)
    draft = Invoice.objects.get(subscription=reviewed)
    entry = _latest(draft)
    assert (entry.operation, entry.actor_kind, entry.actor) == ("created", "system", f"billing run #{run.pk}")
    assert ("total", "€36.89") in {(change.field, change.new) for change in entry.changes}
    advanced = _latest(Subscription.objects.get(pk=issued.pk))
    assert (advanced.actor, _changes(advanced)["next billing date"]) == (
        f"billing run #{run.pk}",
        ("2026-01-01", "2026-02-01"),
    )
    # Issued invoices and the run's lines are not audited row by row (InvoiceEvent records issuing).
    assert audit_rows_for(Invoice.objects.get(subscription=issued)) == []
    assert audit_rows_for(InvoiceLine.objects.filter(invoice=draft).first()) == []


def test_draft_changes_are_audited_until_finalized_and_line_edits_show_money(billing):
    from invoicing.services import invoice_finalize
    from tests.factories import InvoiceFactory

    user = StaffUserFactory(username="clara")
    with audit_as_staff(user):
        invoice = InvoiceFactory(lines=[{"description": "Consulting", "unit_amount": Decimal("100.00")}])
        InvoiceLine.objects.filter(invoice=invoice).update(unit_amount=Decimal("120.00"))
        invoice_finalize(invoice=invoice, issue_date=JAN_1, actor=user)
        Invoice.objects.filter(pk=invoice.pk).update(hold_reminders=True)  # issued: InvoiceEvent's, not audited

    entries = audit_rows_referencing(invoice)
    line_changes = [
        _changes(e) for e in entries if e.model_label == "invoicing.InvoiceLine" and e.operation == "changed"
    ]
    assert {"unit amount": ("€100.00", "€120.00")} in line_changes
    finalized = next(e for e in entries if e.model_label == "invoicing.Invoice" and e.operation == "changed")
    assert _changes(finalized)["status"] == ("Draft", "Open") and finalized.actor == "clara"
    assert ("hold reminders", "yes") not in {(change.field, change.new) for e in entries for change in e.changes}


def test_celery_task_writes_name_the_task_and_a_nested_job_gives_the_actor_back(settings):
    from core.tasks import process_event_batch  # any task: the actor comes from Celery's task signals

    customer = CustomerFactory()
    user = StaffUserFactory(username="bea")

    @__import__("celery").shared_task(name="tests.rename_customer")
    def rename_customer(customer_id: int, name: str) -> None:
        Customer.objects.filter(pk=customer_id).update(name=name)

    with audit_as_staff(user):
        rename_customer.delay(customer.pk, "Renamed by a task")  # eager in tests
        Customer.objects.filter(pk=customer.pk).update(city="Bonn")

    task_entry, staff_entry = audit_rows_for(customer)[1], audit_rows_for(customer)[0]
    assert (task_entry.actor_kind, task_entry.actor) == ("system", "celery task tests.rename_customer (started by bea)")
    assert (staff_entry.actor_kind, staff_entry.actor) == ("staff", "bea")
    assert process_event_batch.name


def test_jobs_name_themselves_and_a_run_started_by_a_command_says_so(billing):
    customer = CustomerFactory(is_archived=False)
    with audit_as_job("nightly clean-up"):
        Customer.objects.filter(pk=customer.pk).update(is_archived=True)
    assert (_latest(customer).actor_kind, _latest(customer).actor) == ("system", "nightly clean-up")

    subscription = SubscriptionFactory(start_date=JAN_1)
    call_command("billing_run", "--as-of", "2026-01-01", verbosity=0)

    from invoicing.models import BillingRun

    run = BillingRun.objects.get()
    advanced = _latest(Subscription.objects.get(pk=subscription.pk))
    assert advanced.actor == f"billing run #{run.pk} (started by command billing_run)"


def test_price_money_is_shown_as_money():
    price = PriceFactory(unit_amount=Money(Decimal("10.00"), "EUR"))
    Price.objects.filter(pk=price.pk).update(unit_amount=Decimal("12.50"))
    assert _changes(_latest(price))["unit amount"] == ("€10.00", "€12.50")


def test_audit_rows_cannot_be_changed_or_deleted():
    from customers.models import CustomerAudit  # type: ignore[attr-defined]

    CustomerFactory()
    with pytest.raises(DatabaseError), transaction.atomic():
        CustomerAudit.objects.update(name="rewritten")
    with pytest.raises(DatabaseError), transaction.atomic():
        CustomerAudit.objects.all().delete()
    assert connection.vendor == "postgresql"
