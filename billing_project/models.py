"""The site's own models: the audit trail of the schedules, and the runs of the periodic jobs.

django-celery-beat's periodic tasks belong to no billing app and their migrations are not ours, so the triggers hang
on a proxy model here (django-pgtrigger puts a proxy's triggers into the proxy's app). Beat bumps ``last_run_at``
and ``total_run_count`` on every run: not audited. The same proxy is the admin's "Periodic jobs" page
(billing_project/admin.py) and carries its "Run now" permission."""

from __future__ import annotations

import pgtrigger
from django.conf import settings
from django.db import models
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from core.audit import audited


@audited(exclude=("last_run_at", "total_run_count", "date_changed"))
class Schedule(PeriodicTask):
    class Meta:
        proxy = True
        verbose_name = "periodic job"
        verbose_name_plural = "periodic jobs"
        permissions = (("run_schedule", "Can run a periodic job now"),)

    def __str__(self) -> str:
        return self.name


class JobRunState(models.TextChoices):
    QUEUED = "queued", "Queued"  # sent by "Run now", not started yet
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    RETRIED = "retried", "Failed, retried"  # the task asked Celery to run it again


class JobTrigger(models.TextChoices):
    BEAT = "beat", "Scheduled"
    STAFF = "staff", "Run now"
    OTHER = "other", "Sent by code"  # a task call outside beat and the jobs page (celery call, a service)


# Runs that staff started are audited with their actor (the insert by "Run now" and its outcome); the runs beat
# starts every few minutes are not — their row is the record.
_STAFF_RUN = pgtrigger.Q(new__requested_by__isnull=False)


@audited(
    insert_when=_STAFF_RUN,
    update_when=_STAFF_RUN,
    delete_when=pgtrigger.Q(old__requested_by__isnull=False),
)
class JobRun(models.Model):
    """One run of a periodic job's Celery task: when, how long, with what result or error. Written by the task
    signals (billing_project/jobs.py) for the tasks of the schedule table and every task beat sends, and by "Run
    now" before it sends the task (state ``queued``)."""

    job_name = models.CharField(max_length=200, help_text="The periodic task's name (the job).")
    task = models.CharField(max_length=200, help_text="The Celery task.")
    task_id = models.CharField(max_length=255, unique=True)
    trigger = models.CharField(max_length=10, choices=JobTrigger.choices, default=JobTrigger.OTHER)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    state = models.CharField(max_length=10, choices=JobRunState.choices, default=JobRunState.QUEUED)
    queued_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration = models.DurationField(null=True, blank=True)
    result = models.TextField(blank=True, help_text="What the task returned (its summary), shortened.")
    error = models.TextField(blank=True, help_text="The exception and the end of its traceback.")

    class Meta:
        indexes = [models.Index(fields=["job_name", "-queued_at"], name="jobrun_job_latest")]
        constraints = [
            models.CheckConstraint(condition=models.Q(state__in=JobRunState.values), name="jobrun_state_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.job_name} at {self.queued_at:%Y-%m-%d %H:%M}"
