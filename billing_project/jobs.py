"""The periodic jobs for people: each job's schedule in words, its last run (when, how long, result, errors), its next
run, and "Run now" — the admin's "Periodic jobs" page (billing_project/admin.py, docs/ARCHITECTURE.md "Periodic
jobs page").

Runs are recorded by Celery's task signals (``job_run_started`` / ``job_run_finished``, connected in
``BillingProjectConfig.ready``) for every task beat sends (its ``periodic_task_name`` header) and for the tasks of
the schedule table (``billing_project.schedules``) however they are sent: one ``JobRun`` row per run, kept
``JOB_RUNS_KEEP_DAYS`` days (the runs staff started for good). Monitoring is cross-cutting, so a signal is the place
(docs/DESIGN.md); Celery logs and swallows an exception of a signal receiver, so a failed write here never fails
the job.

"Run now" sends what beat would send: the same task with the same arguments and options (queue, routing, priority,
expiry, headers), built by django-celery-beat's own ``ModelEntry`` from the row — not the management command, so
it runs on a worker with the worker's settings, as the scheduled run does.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
import traceback
import uuid
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone
from django.utils.html import format_html
from django_celery_beat.models import PeriodicTask

from billing_project.models import JobRun, JobRunState, JobTrigger
from core.errors import InvalidInput

logger = logging.getLogger(__name__)

JOB_RUNS_KEEP_DAYS = 30
RESULT_CHARS = 2000
ERROR_CHARS = 4000
DAY_NAMES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")  # crontab: 0 = Sunday
PERIOD_WORDS = {"days": "day", "hours": "hour", "minutes": "minute", "seconds": "second", "microseconds": "microsecond"}


# --- schedule in words ------------------------------------------------------------------------------------


def _at(hour: str, minute: str, zone: str) -> str:
    return f"at {int(hour):02d}:{int(minute):02d} {zone}"


def crontab_in_words(
    *, minute: str, hour: str, day_of_week: str, day_of_month: str, month_of_year: str, zone: str
) -> str:
    """``every day at 05:00 Europe/Berlin``, ``every Monday, Thursday at 09:30 UTC``, ``every 15 minutes``; a
    crontab these words do not cover is shown as it is (``cron "0 5 1-7 * 1" (Europe/Berlin)``)."""
    every_day = day_of_week == day_of_month == month_of_year == "*"
    if minute.isdigit() and hour.isdigit():
        at = _at(hour, minute, zone)
        if every_day:
            return f"every day {at}"
        if day_of_month == month_of_year == "*":
            if day_of_week == "1-5":
                return f"every weekday (Monday to Friday) {at}"
            if re.fullmatch(r"[0-6](,[0-6])*", day_of_week):
                return f"every {', '.join(DAY_NAMES[int(day)] for day in day_of_week.split(','))} {at}"
        if day_of_week == month_of_year == "*" and day_of_month.isdigit():
            return f"on day {int(day_of_month)} of every month {at}"
    if every_day and hour == "*":
        if minute.isdigit():
            return f"every hour at minute {int(minute)} ({zone})"
        if minute == "*":
            return "every minute"
        step = re.fullmatch(r"\*/(\d+)", minute)
        if step:
            return f"every {int(step.group(1))} minutes"
    return f'cron "{minute} {hour} {day_of_month} {month_of_year} {day_of_week}" ({zone})'


def interval_in_words(every: int, period: str) -> str:
    unit = PERIOD_WORDS.get(period, period)
    return f"every {unit}" if every == 1 else f"every {every} {unit}s"


def schedule_in_words(task: PeriodicTask) -> str:
    """How often a periodic task runs, as people say it."""
    if task.crontab is not None:
        crontab = task.crontab
        words = crontab_in_words(
            minute=crontab.minute,
            hour=crontab.hour,
            day_of_week=crontab.day_of_week,
            day_of_month=crontab.day_of_month,
            month_of_year=crontab.month_of_year,
            zone=str(crontab.timezone),
        )
    elif task.interval is not None:
        words = interval_in_words(task.interval.every, task.interval.period)
    elif task.solar is not None:
        words = f"at {task.solar.get_event_display().lower()} ({task.solar.latitude}, {task.solar.longitude})"
    elif task.clocked is not None:
        return f"once, at {local_time_text(task.clocked.clocked_time)}"
    else:
        return "no schedule"
    return f"{words}, once" if task.one_off else words


# --- times ------------------------------------------------------------------------------------------------


def _zone() -> ZoneInfo:
    return ZoneInfo(settings.BILLING_TIMEZONE)


def local_time_text(at: dt.datetime) -> str:
    """``Fri 04 Dec 2026 05:00`` in BILLING_TIMEZONE (the zone the daily jobs are scheduled in)."""
    return at.astimezone(_zone()).strftime("%a %d %b %Y %H:%M")


def duration_text(duration: dt.timedelta | None) -> str:
    """``< 0.1 s``, ``0.4 s``, ``12 s``, ``3 min 05 s``, ``1 h 02 min``."""
    if duration is None:
        return "—"
    seconds = duration.total_seconds()
    if seconds < 0.1:
        return "< 0.1 s"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{round(seconds)} s"
    minutes, seconds = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def next_run_at(task: PeriodicTask, *, now: dt.datetime) -> dt.datetime | None:
    """When beat will next send the task: None when disabled, a one-off that ran, or a clocked time past. As beat
    counts it: from the last run (or, never run, from when the entry was last changed)."""
    if not task.enabled or (task.one_off and task.total_run_count):
        return None
    if task.clocked is not None:
        return task.clocked.clocked_time if task.clocked.clocked_time >= now else None
    if task.crontab is None and task.interval is None and task.solar is None:
        return None
    last = task.last_run_at or task.date_changed or now
    if task.start_time and task.start_time > now:
        last = max(last, task.start_time)
    remaining = task.schedule.remaining_estimate(last)
    # The schedule counts from its own "now", a moment after ours: to the second, so 05:00 does not read 04:59.
    return (now + max(remaining, dt.timedelta(0)) + dt.timedelta(milliseconds=500)).replace(microsecond=0)


# --- the page's rows --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobRow:
    task: PeriodicTask
    schedule: str
    next_run: dt.datetime | None
    last_run: JobRun | None
    last_failure: JobRun | None  # when it is not the last run itself


def jobs_overview(*, now: dt.datetime | None = None) -> list[JobRow]:
    """Every periodic task with its schedule, last run, last failure and next run: two queries whatever the number
    of jobs and runs (the runs' index on job and time)."""
    now = now or timezone.now()
    runs = JobRun.objects.filter(job_name=OuterRef("name")).order_by("-queued_at", "-pk")
    tasks = list(
        PeriodicTask.objects.select_related("crontab", "interval", "solar", "clocked")
        .annotate(
            last_run_id=Subquery(runs.values("pk")[:1]),
            last_failure_id=Subquery(runs.filter(state=JobRunState.FAILED).values("pk")[:1]),
        )
        .order_by("name")
    )
    wanted = {pk for task in tasks for pk in (task.last_run_id, task.last_failure_id) if pk}  # type: ignore[attr-defined]
    found = JobRun.objects.select_related("requested_by").in_bulk(wanted) if wanted else {}
    rows = []
    for task in tasks:
        last_run = found.get(task.last_run_id)  # type: ignore[attr-defined]
        last_failure = found.get(task.last_failure_id)  # type: ignore[attr-defined]
        rows.append(
            JobRow(
                task=task,
                schedule=schedule_in_words(task),
                next_run=next_run_at(task, now=now),
                last_run=last_run,
                last_failure=last_failure if last_failure is not None and last_failure != last_run else None,
            )
        )
    return rows


def job_runs_recent(*, job_name: str, limit: int = 20) -> list[JobRun]:
    return list(
        JobRun.objects.filter(job_name=job_name).select_related("requested_by").order_by("-queued_at", "-pk")[:limit]
    )


# --- what the page shows of a run -------------------------------------------------------------------------


def run_trigger_text(run: JobRun) -> str:
    if run.trigger == JobTrigger.STAFF:
        return f"Run now by {run.requested_by.get_username() if run.requested_by else 'a removed user'}"
    return run.get_trigger_display()


def run_outcome_html(run: JobRun) -> str:
    """The result summary, or the error's first line with the traceback folded under it."""
    if run.error:
        first, _, rest = run.error.partition("\n")
        if not rest.strip():
            return format_html('<span class="job-error">{}</span>', first)
        return format_html(
            '<details class="job-error"><summary>{}</summary><pre>{}</pre></details>', first, rest.strip()
        )
    return format_html('<span class="job-result">{}</span>', run.result or "—")


# --- run now ----------------------------------------------------------------------------------------------


def job_run_now(*, periodic_task: PeriodicTask, actor: Any) -> JobRun:
    """Send the job's task now, as beat would (see the module doc), and record the run as the actor's (audited:
    the insert names them). The task is sent after the transaction commits; a broker that refuses it marks the run
    failed with the reason."""
    from django_celery_beat.schedulers import ModelEntry

    from billing_project.celery import app

    for field in ("args", "kwargs", "headers"):
        try:
            json.loads(getattr(periodic_task, field) or "{}")
        except ValueError as exc:
            raise InvalidInput(f"The job's {field} are not valid JSON: {exc}", field=field) from exc
    app.loader.import_default_modules()
    task = app.tasks.get(periodic_task.task)
    if task is None:
        raise InvalidInput(f"No Celery task named {periodic_task.task!r}: check the job's task.", field="task")
    entry = ModelEntry(periodic_task, app=app)  # what beat builds from the row: arguments and send options
    task_id = str(uuid.uuid4())
    with transaction.atomic():
        run = JobRun.objects.create(
            job_name=periodic_task.name,
            task=periodic_task.task,
            task_id=task_id,
            trigger=JobTrigger.STAFF,
            requested_by=actor,
            state=JobRunState.QUEUED,
        )

        def send() -> None:
            try:
                task.apply_async(entry.args, entry.kwargs, task_id=task_id, **entry.options)
            except Exception as exc:  # the broker is down: say so on the page instead of a run queued forever
                logger.exception("Run now of %s could not be sent", periodic_task.name)
                JobRun.objects.filter(pk=run.pk, state=JobRunState.QUEUED).update(
                    state=JobRunState.FAILED, finished_at=timezone.now(), error=f"Not sent: {exc}"[:ERROR_CHARS]
                )

        transaction.on_commit(send)
    return run


def run_now_url(*, task: str, user: Any) -> str | None:
    """The "Run now" of the periodic job of ``task`` (the jobs page's: same permission, audit and sending) for a
    user who may run jobs; None for others or when the job is not set up (``manage.py setup_schedules``)."""
    from django.urls import reverse

    if not user.has_perm("billing_project.run_schedule"):
        return None
    pk = PeriodicTask.objects.filter(task=task).order_by("pk").values_list("pk", flat=True).first()
    return reverse("admin:billing_project_schedule_run", args=[pk]) if pk is not None else None


METRICS_REFRESH_TASK = "reporting.refresh_metrics"


def metrics_refresh_now_url(user: Any) -> str | None:
    """ "Refresh now" on the dashboard and the snapshot reports: the "Metrics refresh" job run now."""
    return run_now_url(task=METRICS_REFRESH_TASK, user=user)


# --- recording runs (Celery task signals) -------------------------------------------------------------------


def _request_value(task: Any, name: str) -> Any:
    """A custom message header: an attribute of the request on a worker, in ``request.headers`` when eager."""
    request = getattr(task, "request", None)
    value = getattr(request, name, None)
    if value is None:
        value = (getattr(request, "headers", None) or {}).get(name)
    return value


def _job_name(task: Any) -> str | None:
    from billing_project.schedules import job_schedules

    name = _request_value(task, "periodic_task_name")
    if name:
        return str(name)
    return next((job.name for job in job_schedules() if job.task == getattr(task, "name", None)), None)


def _result_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        text = ", ".join(f"{key} {item}" for key, item in value.items())
    else:
        try:
            text = json.dumps(value, default=str)
        except (TypeError, ValueError):
            text = repr(value)
    return text[:RESULT_CHARS]


def _error_text(exc: Any) -> str:
    if not isinstance(exc, BaseException):
        return str(exc)[:ERROR_CHARS]
    head = f"{type(exc).__name__}: {exc}"
    trace = "".join(traceback.format_exception(exc))
    return (head + "\n\n" + trace[-(ERROR_CHARS - len(head) - 2) :])[:ERROR_CHARS] if trace else head[:ERROR_CHARS]


def job_run_started(sender: Any = None, task_id: str | None = None, task: Any = None, **kwargs: Any) -> None:
    """task_prerun: the run of a job starts (the row "Run now" wrote, or a new one)."""
    if task is None or task_id is None:
        return
    job_name = _job_name(task)
    if job_name is None:
        return
    now = timezone.now()
    if JobRun.objects.filter(task_id=task_id).update(state=JobRunState.RUNNING, started_at=now):
        return
    trigger = JobTrigger.BEAT if _request_value(task, "celery_beat_task") else JobTrigger.OTHER
    JobRun.objects.create(
        job_name=job_name,
        task=task.name,
        task_id=task_id,
        trigger=trigger,
        state=JobRunState.RUNNING,
        queued_at=now,
        started_at=now,
    )


def job_run_finished(
    sender: Any = None, task_id: str | None = None, retval: Any = None, state: str | None = None, **kwargs: Any
) -> None:
    """task_postrun: how long, and the result or the error. Old unattended runs of the same job go."""
    if task_id is None:
        return
    run = JobRun.objects.filter(task_id=task_id).only("pk", "job_name", "started_at").first()
    if run is None:
        return
    now = timezone.now()
    fields: dict[str, Any] = {"finished_at": now, "duration": now - run.started_at if run.started_at else None}
    if state == "SUCCESS":
        fields.update(state=JobRunState.SUCCEEDED, result=_result_text(retval))
    elif state == "RETRY":
        fields.update(state=JobRunState.RETRIED, error=_error_text(retval))
    else:
        # An eager task whose error propagates to its caller (task_eager_propagates) passes no retval: this
        # receiver then runs in the tracer's ``finally`` while the exception is raised, so it is the current one.
        error = retval if isinstance(retval, BaseException) else sys.exc_info()[1]
        fields.update(state=JobRunState.FAILED, error=_error_text(error) if error is not None else "")
    JobRun.objects.filter(pk=run.pk).update(**fields)
    JobRun.objects.filter(
        job_name=run.job_name, requested_by__isnull=True, queued_at__lt=now - dt.timedelta(days=JOB_RUNS_KEEP_DAYS)
    ).delete()


def connect_signals() -> None:
    from celery.signals import task_postrun, task_prerun

    task_prerun.connect(job_run_started, dispatch_uid="billing_project.jobs.started", weak=False)
    task_postrun.connect(job_run_finished, dispatch_uid="billing_project.jobs.finished", weak=False)
