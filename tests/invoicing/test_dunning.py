"""Dunning: each step once, in order, caught up without a burst; holds; late fees; the e-mail; the command."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from django.core import mail
from django.core.management import call_command
from django.db import IntegrityError, transaction

from core.links import invoice_link_verify
from dunning import services as dunning
from dunning.models import DunningAction, DunningActionKind, DunningPolicy
from invoicing.billing_run import billing_run
from invoicing.models import BillingReason, Invoice, InvoiceStatus
from invoicing.services import invoice_apply_payment
from notifications.models import EmailKind, OutboundEmail
from subscriptions.models import SubscriptionStatus
from tests.factories import CustomerFactory, InvoiceFactory, SubscriptionFactory
from tests.factories.dunning import CustomerDunningSettingsFactory, DunningPolicyFactory, DunningStepFactory

D = Decimal
ISSUE = dt.date(2026, 3, 2)  # the factory's issue date; 14 days' terms → due 16 March
DUE = dt.date(2026, 3, 16)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _setup(series, vat_de):
    """Number series, German VAT, and the default policy (created by the migration; seeded again in case a
    transactional test flushed it)."""
    dunning.seed_dunning()


def _invoice(**kwargs) -> Invoice:
    return InvoiceFactory(finalized=ISSUE, **kwargs)


def _reminders(invoice: Invoice) -> list[tuple[dt.date, str]]:
    """(run date, template) of each reminder e-mail of ``invoice``, in order."""
    return [
        (action.as_of, action.outbound_email.template)
        for action in DunningAction.objects.filter(invoice=invoice, outbound_email__isnull=False)
        .select_related("outbound_email")
        .order_by("at", "pk")
    ]


def _day(offset: int) -> dt.date:
    return DUE + dt.timedelta(days=offset)


def test_default_policy_is_the_issue_s_steps_and_seeding_is_idempotent():
    policy = DunningPolicy.objects.get(is_default=True)
    steps = [(s.offset_days, s.action, s.template) for s in policy.steps.order_by("offset_days")]
    assert steps == [
        (-3, "email", "reminders/friendly"),
        (1, "email", "reminders/reminder"),
        (7, "email", "reminders/reminder"),
        (14, "email", "reminders/final"),
        (30, "subscription_pause", ""),
        (60, "invoice_uncollectible", ""),
    ]
    assert dunning.seed_dunning() == 0
    assert DunningPolicy.objects.count() == 1


def test_each_step_is_sent_on_its_day_and_a_second_run_the_same_day_sends_nothing():
    invoice = _invoice()
    for day in (_day(-4), _day(-3), _day(-3), _day(0), _day(1), _day(1), _day(6), _day(7), _day(7)):
        dunning.send_reminders(as_of=day)
    assert _reminders(invoice) == [
        (_day(-3), "reminders/friendly"),
        (_day(1), "reminders/reminder"),
        (_day(7), "reminders/reminder"),
    ]
    keys = set(OutboundEmail.objects.filter(kind=EmailKind.REMINDER).values_list("idempotency_key", flat=True))
    steps = DunningAction.objects.filter(invoice=invoice).values_list("step_id", flat=True)
    assert keys == {f"reminder:{invoice.pk}:{step_id}" for step_id in steps}


def test_a_run_after_missed_days_sends_only_the_latest_reminder_and_supersedes_the_others():
    invoice = _invoice()
    dunning.send_reminders(as_of=_day(-5))
    result = dunning.send_reminders(as_of=_day(17))  # down since before the friendly notice

    assert result.emails == 1
    assert _reminders(invoice) == [(_day(17), "reminders/final")]
    statuses = list(
        DunningAction.objects.filter(invoice=invoice)
        .order_by("step__offset_days")
        .values_list("step__offset_days", "status")
    )
    assert statuses == [(-3, "superseded"), (1, "superseded"), (7, "superseded"), (14, "done")]
    # the superseded steps never fire later
    for offset in range(18, 29):
        assert dunning.send_reminders(as_of=_day(offset)).emails == 0


def test_after_ten_missed_days_one_email_but_the_other_actions_still_apply():
    """Down from day +2 to day +32: the +7 and +14 e-mails collapse into one, the +30 suspension happens."""
    subscription = SubscriptionFactory(start_date=ISSUE)
    billing_run(as_of=ISSUE)
    invoice = Invoice.objects.get(subscription=subscription)
    assert invoice.due_date == DUE
    dunning.send_reminders(as_of=_day(1))

    result = dunning.send_reminders(as_of=_day(32))

    assert result.emails == 1
    assert [template for _, template in _reminders(invoice)] == ["reminders/reminder", "reminders/final"]
    subscription.refresh_from_db()
    assert subscription.status == SubscriptionStatus.PAUSED


def test_friendly_notice_is_not_sent_once_the_invoice_is_overdue():
    invoice = _invoice()
    policy = DunningPolicyFactory()
    DunningStepFactory(policy=policy, friendly=True)
    CustomerDunningSettingsFactory(customer=invoice.customer, policy=policy)
    dunning.send_reminders(as_of=_day(2))
    assert _reminders(invoice) == []
    assert DunningAction.objects.get(invoice=invoice).status == "superseded"


def test_paid_void_and_held_invoices_are_skipped():
    paid = _invoice()
    invoice_apply_payment(invoice=paid, amount=paid.amount_due)
    held = _invoice()
    dunning.invoice_hold_reminders_set(invoice=held, hold=True)
    customer_held = _invoice()
    CustomerDunningSettingsFactory(customer=customer_held.customer, hold_reminders=True)
    chased = _invoice()

    dunning.send_reminders(as_of=_day(1))

    assert set(DunningAction.objects.values_list("invoice_id", flat=True)) == {chased.pk}


def test_releasing_a_hold_catches_up_with_one_reminder():
    invoice = _invoice()
    dunning.invoice_hold_reminders_set(invoice=invoice, hold=True)
    for offset in range(-3, 10):
        dunning.send_reminders(as_of=_day(offset))
    assert _reminders(invoice) == []
    dunning.invoice_hold_reminders_set(invoice=invoice, hold=False)
    dunning.send_reminders(as_of=_day(10))
    assert _reminders(invoice) == [(_day(10), "reminders/reminder")]


def test_the_database_refuses_a_step_twice():
    invoice = _invoice()
    dunning.send_reminders(as_of=_day(1))
    done = DunningAction.objects.filter(invoice=invoice).first()
    assert done is not None
    duplicate = DunningAction(
        invoice=invoice, step=done.step, action=done.action, as_of=_day(1), at=done.at, status="done"
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        duplicate.save()


def test_an_overlapping_run_with_a_stale_plan_does_nothing_twice():
    """Run B plans before run A commits: B's claim conflicts and B sends nothing."""
    invoice = _invoice()
    step = DunningPolicy.objects.get(is_default=True).steps.get(offset_days=1)
    first = dunning._execute_step(invoice=invoice, step=step, as_of=_day(1))
    second = dunning._execute_step(invoice=invoice, step=step, as_of=_day(1))
    assert (first[0], second[0]) == ("sent", "already_done")
    assert OutboundEmail.objects.filter(kind=EmailKind.REMINDER).count() == 1


def test_a_payment_between_planning_and_the_step_stops_it():
    invoice = _invoice()
    step = DunningPolicy.objects.get(is_default=True).steps.get(offset_days=1)
    invoice_apply_payment(invoice=invoice, amount=invoice.amount_due)
    assert dunning._execute_step(invoice=invoice, step=step, as_of=_day(1))[0] == "stopped"
    assert not DunningAction.objects.exists()


def test_reminder_email_has_amount_days_overdue_pdf_and_a_signed_pay_link(django_capture_on_commit_callbacks):
    invoice = _invoice(customer=CustomerFactory(language="de"))
    with django_capture_on_commit_callbacks(execute=True):
        dunning.send_reminders(as_of=_day(7))

    [message] = mail.outbox
    assert message.subject == f"Zahlungserinnerung: Rechnung {invoice.number} ist seit 7 Tagen überfällig"
    assert "119,00\xa0€" in message.body
    assert "seit 7 Tagen überfällig" in message.body
    [pay_url] = [line for line in message.body.splitlines() if "/portal/link/" in line]
    link = invoice_link_verify(pay_url.rstrip("/").rsplit("/", 1)[1])
    assert (link.invoice_id, link.purpose) == (invoice.pk, "pay")
    [(filename, content, mimetype)] = message.attachments
    assert filename.endswith(".pdf") and content.startswith(b"%PDF") and mimetype == "application/pdf"
    assert message.alternatives and pay_url.replace("&", "&amp;") in message.alternatives[0][0]
    email = OutboundEmail.objects.get(kind=EmailKind.REMINDER)
    assert (email.status, email.invoice_id, email.language) == ("sent", invoice.pk, "de")


def test_spanish_reminder_speaks_spanish_with_spanish_money_and_dates(django_capture_on_commit_callbacks):
    invoice = _invoice(customer=CustomerFactory(language="es"))
    with django_capture_on_commit_callbacks(execute=True):
        dunning.send_reminders(as_of=_day(7))

    [message] = mail.outbox
    assert message.subject == f"Recordatorio de pago: la factura {invoice.number} tiene 7 días de retraso"
    assert message.body.startswith("Hola, ")
    assert f"la factura {invoice.number}, vencida el 16 mar 2026, sigue pendiente: 119,00\xa0€ con 7 días" in (
        message.body
    )
    assert "Atentamente," in message.body and "Hello" not in message.body and "€119.00" not in message.body
    html = message.alternatives[0][0]
    assert '<html lang="es">' in html and "Pagar en línea" in html and "Pay online" not in html
    assert OutboundEmail.objects.get(kind=EmailKind.REMINDER).language == "es"


def test_french_friendly_notice_counts_the_days_until_due():
    invoice = _invoice(customer=CustomerFactory(language="fr"))
    dunning.send_reminders(as_of=_day(-3))
    email = OutboundEmail.objects.get(invoice=invoice, kind=EmailKind.REMINDER)
    assert email.subject == f"La facture {invoice.number} arrive à échéance le 16 mars 2026"
    assert "119,00\xa0€" in email.body_text and "dans 3 jours" in email.body_text


def test_english_friendly_notice_counts_the_days_until_due():
    invoice = _invoice()
    dunning.send_reminders(as_of=_day(-3))
    email = OutboundEmail.objects.get(invoice=invoice, kind=EmailKind.REMINDER)
    assert email.subject == f"Invoice {invoice.number} is due on Mar 16, 2026"
    assert "€119.00" in email.body_text and "in 3 days" in email.body_text


def test_late_fee_is_a_separate_finalized_invoice_once_and_never_on_itself():
    invoice = _invoice()
    policy = DunningPolicyFactory()
    DunningStepFactory(policy=policy, offset_days=10, late_fee_percent_of=True, late_fee_percent=D("5"))
    CustomerDunningSettingsFactory(customer=invoice.customer, policy=policy)

    dunning.send_reminders(as_of=_day(10))
    dunning.send_reminders(as_of=_day(10))

    action = DunningAction.objects.get(invoice=invoice, action=DunningActionKind.LATE_FEE)
    fee = action.late_fee_invoice
    assert fee is not None
    assert (fee.status, fee.billing_reason, fee.issue_date) == (InvoiceStatus.OPEN, BillingReason.ONE_OFF, _day(10))
    assert invoice.number in fee.memo and invoice.number in fee.lines.get().description
    assert fee.subtotal == D("5.95")  # 5 % of 119.00, rounded half up (+ VAT as resolved for the customer)
    # the fee invoice is chased like any invoice, but never charged a fee itself
    fee_due = fee.due_date
    assert fee_due is not None
    dunning.send_reminders(as_of=fee_due + dt.timedelta(days=11))
    fee_actions = DunningAction.objects.filter(invoice=fee, action=DunningActionKind.LATE_FEE)
    assert {a.status for a in fee_actions} == {"skipped"}
    assert Invoice.objects.filter(billing_reason=BillingReason.ONE_OFF).count() == 1


def test_fixed_late_fee_in_another_currency_is_skipped_and_recorded():
    invoice = _invoice()
    policy = DunningPolicyFactory()
    DunningStepFactory(
        policy=policy, offset_days=5, late_fee_percent_of=True, late_fee_amount=D("10"), late_fee_currency="USD"
    )
    CustomerDunningSettingsFactory(customer=invoice.customer, policy=policy)
    dunning.send_reminders(as_of=_day(5))
    action = DunningAction.objects.get(invoice=invoice)
    assert action.status == "skipped" and "USD" in action.detail


def test_subscription_steps_skip_invoices_without_a_subscription():
    invoice = _invoice()
    dunning.send_reminders(as_of=_day(30))
    assert DunningAction.objects.get(invoice=invoice, step__offset_days=30).status == "skipped"


def test_send_reminder_now_sends_the_current_stage_once_per_click():
    invoice = _invoice()
    first = dunning.dunning_reminder_send_now(invoice=invoice, as_of=_day(3))
    second = dunning.dunning_reminder_send_now(invoice=invoice, as_of=_day(3))
    assert first.outbound_email.template == "reminders/reminder"
    assert first.outbound_email_id != second.outbound_email_id
    # the schedule is unaffected
    dunning.send_reminders(as_of=_day(3))
    assert DunningAction.objects.filter(invoice=invoice, step__offset_days=1, status="done").exists()
    invoice_apply_payment(invoice=invoice, amount=invoice.amount_due)
    with pytest.raises(dunning.DunningError):
        dunning.dunning_reminder_send_now(invoice=invoice, as_of=_day(4))


def test_command_dry_run_writes_nothing_and_reports_json(capsys):
    _invoice()
    call_command("send_reminders", "--as-of", _day(20).isoformat(), "--dry-run", "--json")
    output = json.loads(capsys.readouterr().out)
    assert output["dry_run"] is True and output["emails"] == 1
    assert output["outcomes"] == {"would_send": 1, "would_supersede": 3}
    assert not DunningAction.objects.exists() and not OutboundEmail.objects.exists()
    call_command("send_reminders", "--as-of", _day(20).isoformat())
    assert "sent 1 e-mail(s)" in capsys.readouterr().out


def test_command_refuses_a_bad_date():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("send_reminders", "--as-of", "20-03-2026")


def test_no_n_plus_one_for_200_overdue_invoices(django_assert_max_num_queries):
    customer = CustomerFactory()
    invoices = [InvoiceFactory(customer=customer, finalized=ISSUE) for _ in range(200)]
    # Writing is per invoice by design (one transaction per step): 10 statements each, whatever the batch —
    # superseded rows, lock, claim check, the e-mail row (its savepoint), the step row, this test's savepoint.
    with django_assert_max_num_queries(200 * 10 + 10):
        result = dunning.send_reminders(as_of=_day(1), batch_size=100)
    assert result.emails == 200 and result.invoices_seen == 200
    # nothing left to do: reading is a fixed number of queries, whatever the number of invoices
    with django_assert_max_num_queries(8):
        again = dunning.send_reminders(as_of=_day(1), batch_size=100)
    assert again.emails == 0 and again.invoices_seen == len(invoices)
