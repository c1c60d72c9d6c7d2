"""The site's own models: the audit trail of the schedules. django-celery-beat's periodic tasks belong to no billing
app and their migrations are not ours, so the triggers hang on a proxy model here (django-pgtrigger puts a proxy's
triggers into the proxy's app). Beat bumps ``last_run_at`` and ``total_run_count`` on every run: not audited."""

from __future__ import annotations

from django_celery_beat.models import PeriodicTask

from core.audit import audited


@audited(exclude=("last_run_at", "total_run_count", "date_changed"))
class Schedule(PeriodicTask):
    class Meta:
        proxy = True
        verbose_name = "schedule (periodic task)"
