"""The "Periodic jobs" page (billing_project/jobs.py, ScheduleAdmin): schedules in words, runs recorded by the task
signals, the next run as beat counts it, and "Run now" — the beat's task with the beat's arguments, audited with the
actor, refused to the roles without ``billing_project.run_schedule``."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine
from django.apps import apps
from django.contrib.admin.models import LogEntry
from django.core.management import call_command
from django.urls import reverse
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask
from django_celery_beat.schedulers import ModelEntry

from billing_project import jobs
from billing_project.celery import app
from billing_project.models import JobRun, JobRunState, JobTrigger
from billing_project.schedules import job_schedules
from billing_project.staff_groups import AUDITOR, BILLING_ADMIN, BILLING_CLERK
from tests.factories import StaffUserFactory

pytestmark = pytest.mark.django_db

JOBS_URL = "admin:billing_project_schedule_changelist"


@pytest.fixture
def schedules() -> None:
    call_command("setup_schedules", verbosity=0)


@pytest.fixture
def sent(monkeypatch: Any) -> list[tuple[str, tuple, dict, dict]]:
    """What is handed to the broker: (task name, args, kwargs, options) per send; nothing runs."""
    from celery.app.task import Task

    calls: list[tuple[str, tuple, dict, dict]] = []

    def apply_async(self: Task, args: Any = None, kwargs: Any = None, **options: Any) -> None:
        calls.append((self.name, tuple(args or ()), dict(kwargs or {}), options))

    monkeypatch.setattr(Task, "apply_async", apply_async)
    return calls


def _client(client: Any, group: str) -> Any:
    client.force_login(StaffUserFactory(group=group))
    return client


# --- schedule in words -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        (("0", "5", "*", "*", "*"), "every day at 05:00 Europe/Berlin"),
        (("30", "9", "1,4", "*", "*"), "every Monday, Thursday at 09:30 Europe/Berlin"),
        (("0", "7", "1-5", "*", "*"), "every weekday (Monday to Friday) at 07:00 Europe/Berlin"),
        (("15", "6", "*", "1", "*"), "on day 1 of every month at 06:15 Europe/Berlin"),
        (("5", "*", "*", "*", "*"), "every hour at minute 5 (Europe/Berlin)"),
        (("*/15", "*", "*", "*", "*"), "every 15 minutes"),
        (("0", "5", "1", "1-7", "*"), 'cron "0 5 1-7 * 1" (Europe/Berlin)'),
    ],
)
def test_a_crontab_reads_as_words(fields: tuple[str, ...], words: str) -> None:
    minute, hour, day_of_week, day_of_month, month_of_year = fields
    assert (
        jobs.crontab_in_words(
            minute=minute,
            hour=hour,
            day_of_week=day_of_week,
            day_of_month=day_of_month,
            month_of_year=month_of_year,
            zone="Europe/Berlin",
        )
        == words
    )


def test_intervals_read_as_words() -> None:
    assert jobs.interval_in_words(10, IntervalSchedule.MINUTES) == "every 10 minutes"
    assert jobs.interval_in_words(1, IntervalSchedule.HOURS) == "every hour"
    assert jobs.interval_in_words(2, IntervalSchedule.DAYS) == "every 2 days"


def test_the_page_shows_every_job_with_its_schedule_in_words(client: Any, schedules: None) -> None:
    response = _client(client, AUDITOR).get(reverse(JOBS_URL))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Billing run" in page and "every day at 05:00 Europe/Berlin" in page
    assert "Integrity check" in page and "every day at 04:30 Europe/Berlin" in page
    assert "Domain events" in page and "every 5 minutes" in page
    assert "every 30 minutes" in page  # render missing PDFs
    assert page.count('data-job="') == PeriodicTask.objects.count() == len(job_schedules())
    assert "Run now" not in page  # an auditor only looks


def test_a_disabled_job_says_so_and_has_no_next_run(client: Any, schedules: None) -> None:
    PeriodicTask.objects.filter(name="Billing run").update(enabled=False)
    page = _client(client, BILLING_ADMIN).get(reverse(JOBS_URL)).content.decode()
    row = page[page.index('data-job="Billing run"') :]
    row = row[: row.index("</tr>")]
    assert '<span class="badge badge-muted">disabled</span>' in row
    assert 'class="job-next-run"><span class="job-meta">—</span>' in row


# --- next run --------------------------------------------------------------------------------------------


def test_the_next_run_of_a_daily_job_is_its_next_local_time(schedules: None) -> None:
    billing = PeriodicTask.objects.select_related("crontab").get(name="Billing run")
    billing.last_run_at = dt.datetime(2026, 3, 10, 4, 0, 3, tzinfo=dt.UTC)  # 05:00 in Berlin (CET)
    now = dt.datetime(2026, 3, 10, 10, 0, tzinfo=dt.UTC)
    with time_machine.travel(now, tick=False):
        assert jobs.next_run_at(billing, now=now) == dt.datetime(2026, 3, 11, 4, 0, tzinfo=dt.UTC)
        # after the switch to summer time 05:00 in Berlin is 03:00 UTC
        billing.last_run_at = dt.datetime(2026, 3, 29, 3, 0, 2, tzinfo=dt.UTC)
        later = dt.datetime(2026, 3, 29, 12, 0, tzinfo=dt.UTC)
        with time_machine.travel(later, tick=False):
            assert jobs.next_run_at(billing, now=later) == dt.datetime(2026, 3, 30, 3, 0, tzinfo=dt.UTC)


def test_the_next_run_of_an_interval_job_counts_from_its_last_run(schedules: None) -> None:
    sweep = PeriodicTask.objects.select_related("interval").get(name="E-mail sweep")  # every 10 minutes
    now = dt.datetime(2026, 3, 10, 10, 0, tzinfo=dt.UTC)
    sweep.last_run_at = now - dt.timedelta(minutes=4)
    with time_machine.travel(now, tick=False):
        assert jobs.next_run_at(sweep, now=now) == now + dt.timedelta(minutes=6)
    sweep.enabled = False
    assert jobs.next_run_at(sweep, now=now) is None


# --- runs recorded by the task signals -----------------------------------------------------------------------


def test_a_run_beat_sends_is_recorded_with_its_duration_and_result(schedules: None) -> None:
    result = app.tasks["core.process_events"].apply(
        kwargs={"limit": 10}, headers={"periodic_task_name": "Domain events", "celery_beat_task": True}
    )
    assert result.state == "SUCCESS"
    run = JobRun.objects.get(task_id=result.id)
    assert (run.job_name, run.task, run.trigger, run.state) == (
        "Domain events",
        "core.process_events",
        JobTrigger.BEAT,
        JobRunState.SUCCEEDED,
    )
    assert run.started_at is not None and run.finished_at is not None
    assert run.duration == run.finished_at - run.started_at
    assert run.result == "processed 0, pending 0, failed 0"
    assert run.error == ""


def test_a_failed_run_keeps_the_error_and_shows_it_on_the_page(client: Any, schedules: None, monkeypatch: Any) -> None:
    from core import events

    def broken(**kwargs: Any) -> None:
        raise RuntimeError("the outbox table is locked")

    monkeypatch.setattr(events, "events_sweep", broken)
    with pytest.raises(RuntimeError):  # eager tasks raise in the test settings; the signals ran before
        app.tasks["core.process_events"].apply(headers={"periodic_task_name": "Domain events"})
    run = JobRun.objects.get(job_name="Domain events")
    assert run.state == JobRunState.FAILED and run.trigger == JobTrigger.OTHER
    assert run.error.startswith("RuntimeError: the outbox table is locked\n")
    assert "Traceback" in run.error
    page = _client(client, BILLING_CLERK).get(reverse(JOBS_URL)).content.decode()
    assert "RuntimeError: the outbox table is locked" in page
    assert '<span class="badge badge-danger">Failed</span>' in page


def test_a_task_of_the_schedule_table_is_recorded_without_beat_header_and_other_tasks_are_not(
    schedules: None,
) -> None:
    recorded = app.tasks["core.process_events"].apply(kwargs={"limit": 1})
    assert JobRun.objects.get(task_id=recorded.id).job_name == "Domain events"
    unrelated = app.tasks["core.process_event_batch"].apply(args=([],))
    assert not JobRun.objects.filter(task_id=unrelated.id).exists()


def test_old_unattended_runs_are_pruned_but_staff_runs_are_kept(schedules: None) -> None:
    staff = StaffUserFactory()
    old = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    JobRun.objects.create(job_name="Domain events", task="core.process_events", task_id="old-beat", queued_at=old)
    JobRun.objects.create(
        job_name="Domain events", task="core.process_events", task_id="old-staff", queued_at=old, requested_by=staff
    )
    with time_machine.travel(dt.datetime(2026, 3, 10, 10, tzinfo=dt.UTC), tick=False):
        app.tasks["core.process_events"].apply(headers={"periodic_task_name": "Domain events"})
    assert set(JobRun.objects.filter(queued_at=old).values_list("task_id", flat=True)) == {"old-staff"}


def test_the_page_reads_jobs_and_runs_in_a_bounded_number_of_queries(
    client: Any, schedules: None, django_assert_max_num_queries: Any
) -> None:
    for job in PeriodicTask.objects.all():
        for n in range(5):
            JobRun.objects.create(
                job_name=job.name,
                task=job.task,
                task_id=f"{job.pk}-{n}",
                state=JobRunState.FAILED if n == 0 else JobRunState.SUCCEEDED,
                error="RuntimeError: x" if n == 0 else "",
            )
    client = _client(client, BILLING_ADMIN)
    with django_assert_max_num_queries(8):  # session, user, permissions, the jobs, their runs
        response = client.get(reverse(JOBS_URL))
    assert response.status_code == 200
    assert response.content.decode().count("Last failure") == len(job_schedules())


# --- run now ----------------------------------------------------------------------------------------------


def test_run_now_sends_exactly_what_beat_sends_and_is_audited_with_the_actor(
    client: Any, schedules: None, sent: list, django_capture_on_commit_callbacks: Any
) -> None:
    job = PeriodicTask.objects.get(name="Domain events")
    job.kwargs = '{"limit": 7}'
    job.queue = "jobs"
    job.priority = 3
    job.save()
    admin_user = StaffUserFactory(username="bea", group=BILLING_ADMIN)
    client.force_login(admin_user)
    url = reverse("admin:billing_project_schedule_run", args=[job.pk])

    page = client.get(url)
    assert page.status_code == 200 and "Run “Domain events” now" in page.content.decode()
    assert sent == [] and not JobRun.objects.exists()  # a GET only shows what will be sent

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"_confirm": "Run now"})
    assert response.status_code == 302 and response["Location"] == reverse(JOBS_URL)

    beat = ModelEntry(PeriodicTask.objects.get(pk=job.pk), app=app)
    run = JobRun.objects.get()
    assert len(sent) == 1
    name, args, kwargs, options = sent[0]
    assert (
        (name, args, kwargs)
        == ("core.process_events", tuple(beat.args), beat.kwargs)
        == (
            "core.process_events",
            (),
            {"limit": 7},
        )
    )
    assert {key: value for key, value in options.items() if key != "task_id"} == beat.options
    assert options["queue"] == "jobs" and options["priority"] == 3
    assert options["headers"] == {"periodic_task_name": "Domain events"}
    assert options["task_id"] == run.task_id
    assert (run.job_name, run.trigger, run.requested_by, run.state) == (
        "Domain events",
        JobTrigger.STAFF,
        admin_user,
        JobRunState.QUEUED,
    )
    audit = apps.get_model("billing_project", "JobRunAudit").objects.get(pgh_obj_id=run.pk, pgh_label="insert")
    assert audit.pgh_context["actor"] == "bea" and audit.pgh_context["actor_kind"] == "staff"
    logged = LogEntry.objects.filter(user=admin_user, object_id=str(job.pk), change_message__startswith="Run now")
    assert logged.exists()
    page = client.get(reverse(JOBS_URL)).content.decode()
    assert "Run now by bea" in page and '<span class="badge badge-info">Queued</span>' in page


def test_a_run_started_by_run_now_is_completed_on_the_same_row(
    client: Any, schedules: None, django_capture_on_commit_callbacks: Any
) -> None:
    """Eagerly (the test settings): the worker's signals find the row "Run now" wrote and finish it."""
    job = PeriodicTask.objects.get(name="Domain events")
    client.force_login(StaffUserFactory(group=BILLING_ADMIN))
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("admin:billing_project_schedule_run", args=[job.pk]), {"_confirm": "Run now"})
    run = JobRun.objects.get()
    assert run.trigger == JobTrigger.STAFF and run.state == JobRunState.SUCCEEDED
    assert run.result == "processed 0, pending 0, failed 0" and run.duration is not None


@pytest.mark.parametrize("role", [BILLING_CLERK, AUDITOR])
def test_roles_without_the_run_permission_get_403_and_nothing_is_sent(
    client: Any, schedules: None, sent: list, role: str, django_capture_on_commit_callbacks: Any
) -> None:
    job = PeriodicTask.objects.get(name="Billing run")
    client = _client(client, role)
    url = reverse("admin:billing_project_schedule_run", args=[job.pk])
    assert client.get(url).status_code == 403
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(url, {"_confirm": "Run now"}).status_code == 403
    assert sent == [] and not JobRun.objects.exists()
    assert client.get(reverse(JOBS_URL)).status_code == 200  # they may look


def test_a_job_page_lists_its_recent_runs(client: Any, schedules: None) -> None:
    job = PeriodicTask.objects.get(name="Integrity check")
    JobRun.objects.create(
        job_name=job.name,
        task=job.task,
        task_id="t1",
        state=JobRunState.SUCCEEDED,
        trigger=JobTrigger.BEAT,
        started_at=dt.datetime(2026, 3, 10, 3, 30, tzinfo=dt.UTC),
        duration=dt.timedelta(seconds=75),
        result="check 7, ok True, problems 0",
    )
    page = _client(client, AUDITOR).get(reverse("admin:billing_project_schedule_change", args=[job.pk]))
    text = page.content.decode()
    assert page.status_code == 200
    assert "every day at 04:30 Europe/Berlin" in text
    assert "Tue 10 Mar 2026 04:30" in text and "1 min 15 s" in text and "check 7, ok True, problems 0" in text
    assert "Scheduled" in text


def test_crontab_of_an_edited_job_shows_in_words(client: Any, schedules: None) -> None:
    job = PeriodicTask.objects.get(name="Payment retries")
    job.crontab = CrontabSchedule.objects.create(minute="45", hour="6", day_of_week="1-5", timezone="Europe/Berlin")
    job.save()
    page = _client(client, BILLING_CLERK).get(reverse(JOBS_URL)).content.decode()
    assert "every weekday (Monday to Friday) at 06:45 Europe/Berlin" in page
