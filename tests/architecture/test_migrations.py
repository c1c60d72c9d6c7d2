"""Migrations from the previous main keep every row: a database populated at the state before the layered
redesign (outbox and dunning inside invoicing) is migrated forward, and every row is read back through the models
of the apps that own them now, with the permissions of the staff groups still attached to them.

The database from before the redesign is built as one was: an empty database of its own migrated forward from
zero to that state (only the migrations it needs), not the test database migrated backwards from today's state:
the test took twice as long that way (≈ 100 s against ≈ 50 s in the suite on 2 cores), and migrating backwards is
no part of what it proves."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from dunning.models import CustomerDunningSettings, DunningAction, DunningPolicy
from notifications.models import EmailAddressStatus, EmailEvent, OutboundEmail
from tests.databases import create_empty, drop, use_database

BEFORE_REDESIGN = [("invoicing", "0006_billing_run_chunk"), ("payments", "0001_initial")]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_populated_database_from_before_the_redesign_migrates_forward_with_every_row() -> None:
    name = f"{connection.settings_dict['NAME']}_before_redesign"
    create_empty(name)
    try:
        with use_database(name):
            _populate_before_the_redesign_migrate_and_check()
    finally:
        drop(name)


def _populate_before_the_redesign_migrate_and_check() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE_REDESIGN)
    old = executor.loader.project_state(BEFORE_REDESIGN).apps
    now = dt.datetime(2026, 3, 1, 9, tzinfo=dt.UTC)
    customer = old.get_model("customers", "Customer").objects.create(
        name="Müller GmbH", email="billing@mueller.example", country="DE", currency="EUR"
    )
    invoice = old.get_model("invoicing", "Invoice").objects.create(customer=customer, currency="EUR")
    email = old.get_model("invoicing", "OutboundEmail").objects.create(
        kind="invoice",
        idempotency_key="invoice:1",
        customer=customer,
        invoice=invoice,
        from_email="billing@example.com",
        to_emails=["billing@mueller.example"],
        subject="Invoice",
        body_text="Hello",
        template="invoice",
        status="sent",
        queued_at=now,
    )
    old.get_model("invoicing", "EmailEvent").objects.create(
        event_id="esp:1", outbound_email=email, esp_name="test", event_type="delivered", received_at=now
    )
    old.get_model("invoicing", "EmailAddressStatus").objects.create(email="bounce@example.com", bounced_at=now)
    # created by invoicing 0004's data migration, as on the databases of the previous main
    policy = old.get_model("invoicing", "DunningPolicy").objects.get(is_default=True)
    step = policy.steps.get(offset_days=1)
    old.get_model("invoicing", "DunningAction").objects.create(
        invoice=invoice, step=step, action="email", as_of=now.date(), at=now, outbound_email=email
    )
    old.get_model("invoicing", "CustomerDunningSettings").objects.create(customer=customer, hold_reminders=True)
    content_type = old.get_model("contenttypes", "ContentType").objects.get_or_create(
        app_label="invoicing", model="dunningaction"
    )[0]
    permission = old.get_model("auth", "Permission").objects.get_or_create(
        content_type=content_type, codename="add_dunningaction", defaults={"name": "Can add dunning action"}
    )[0]
    clerk = old.get_model("auth", "Group").objects.get_or_create(name="Billing clerk")[0]
    clerk.permissions.add(permission)

    call_command("migrate", verbosity=0)

    moved = OutboundEmail.objects.get()
    assert (moved.pk, moved.customer_id, moved.invoice_id, moved.status) == (email.pk, customer.pk, invoice.pk, "sent")
    assert EmailEvent.objects.get().outbound_email_id == email.pk
    assert EmailAddressStatus.objects.get().email == "bounce@example.com"
    assert DunningPolicy.objects.get(is_default=True).steps.count() == 6
    action = DunningAction.objects.get()
    assert (action.invoice_id, action.step_id, action.outbound_email_id) == (invoice.pk, step.pk, email.pk)
    assert CustomerDunningSettings.objects.get(customer_id=customer.pk).hold_reminders is True
    # the permission row kept its id and now belongs to the dunning app, so the group keeps it
    from django.contrib.auth.models import Group, Permission

    permission_now = Permission.objects.get(pk=permission.pk)
    assert permission_now.content_type.app_label == "dunning"
    assert Group.objects.get(name="Billing clerk").permissions.filter(pk=permission.pk).exists()
