"""setup_schedules: the beat entries of every periodic job, once, in BILLING_TIMEZONE, never overwriting staff."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from billing_project.schedules import job_schedules

pytestmark = pytest.mark.django_db

TASKS = {
    "invoicing.run_billing",
    "invoicing.progressive_billing",
    "payments.retry_payments",
    "payments.card_expiry_notices",
    "billing_project.sweep_stale",
    "reporting.verify_integrity",
    "invoicing.send_reminders",
    "invoicing.render_missing_pdfs",
    "invoicing.sweep_emails",
    "core.process_events",
    "reporting.refresh_metrics",
    "reporting.store_forecast",
    "api.purge_idempotency_keys",
    "webhooks.send_due",
    "accounting.load_exchange_rates",
    "accounting.sync_ledger",
    "customers.recheck_vat_numbers",
    "payments.expire_wallet_credits",
}


def test_three_runs_create_each_schedule_once(capsys):
    for _ in range(3):
        call_command("setup_schedules")
    assert sorted(PeriodicTask.objects.values_list("task", flat=True)) == sorted(TASKS)
    assert PeriodicTask.objects.count() == len(job_schedules()) == len(TASKS)
    assert CrontabSchedule.objects.count() == 9  # nine daily jobs at nine different times
    assert "kept" in capsys.readouterr().out


def test_daily_jobs_run_at_local_time_in_the_billing_timezone():
    call_command("setup_schedules")
    reminders = PeriodicTask.objects.select_related("crontab").get(task="invoicing.send_reminders")
    assert (reminders.crontab.hour, reminders.crontab.minute) == ("9", "0")
    assert str(reminders.crontab.timezone) == "Europe/Berlin"
    billing = PeriodicTask.objects.select_related("crontab").get(task="invoicing.run_billing")
    assert billing.crontab.hour not in ("2", "3")  # hours a DST switch skips or repeats
    pdfs = PeriodicTask.objects.select_related("interval").get(task="invoicing.render_missing_pdfs")
    assert (pdfs.interval.every, pdfs.interval.period) == (30, "minutes")


def test_a_time_and_flag_staff_changed_are_kept():
    call_command("setup_schedules")
    task = PeriodicTask.objects.get(task="invoicing.send_reminders")
    task.crontab = CrontabSchedule.objects.create(minute="30", hour="10", timezone="Europe/Berlin")
    task.enabled = False
    task.save()
    call_command("setup_schedules")
    task.refresh_from_db()
    assert (task.crontab.hour, task.crontab.minute, task.enabled) == ("10", "30", False)
    assert PeriodicTask.objects.filter(task="invoicing.send_reminders").count() == 1


def test_a_renamed_task_path_is_corrected_but_nothing_is_deleted():
    call_command("setup_schedules")
    PeriodicTask.objects.filter(name="Payment reminders (dunning)").update(task="invoicing.old_name")
    PeriodicTask.objects.create(
        name="Staff's own job", task="invoicing.run_billing", interval=None, crontab=CrontabSchedule.objects.first()
    )
    call_command("setup_schedules")
    assert PeriodicTask.objects.get(name="Payment reminders (dunning)").task == "invoicing.send_reminders"
    assert PeriodicTask.objects.filter(name="Staff's own job").exists()


def test_schedules_name_tasks_that_exist():
    from billing_project.celery import app

    app.loader.import_default_modules()
    for job in job_schedules():
        assert job.task in app.tasks, job.task


def test_the_payment_recovery_entry_of_an_earlier_release_is_disabled_not_deleted(capsys):
    """Its work is part of the "Stale work sweeper" now: both running would only re-send attempts twice as often."""
    from django_celery_beat.models import IntervalSchedule

    every_10 = IntervalSchedule.objects.create(every=10, period=IntervalSchedule.MINUTES)
    PeriodicTask.objects.create(name="Payment recovery", task="payments.recover_attempts", interval=every_10)
    call_command("setup_schedules")
    old = PeriodicTask.objects.get(name="Payment recovery")
    assert not old.enabled
    assert PeriodicTask.objects.get(name="Stale work sweeper").task == "billing_project.sweep_stale"
    assert "retired  Payment recovery" in capsys.readouterr().out
