"""The "Periodic jobs" page's cells (templates/admin/billing_project/schedule/jobs.html; billing_project/jobs.py)."""

from __future__ import annotations

import datetime as dt

from django import template
from django.utils.safestring import SafeString

from billing_project import jobs
from billing_project.models import JobRun
from core.admin_lists import badge, status_badge

register = template.Library()


@register.simple_tag
def job_badge(word: str) -> SafeString:
    return badge(word, "muted")


@register.simple_tag
def run_badge(run: JobRun) -> SafeString:
    return status_badge(run.state, run.get_state_display())


@register.simple_tag
def run_when(run: JobRun) -> str:
    return jobs.local_time_text(run.started_at or run.queued_at)


@register.simple_tag
def run_trigger(run: JobRun) -> str:
    return jobs.run_trigger_text(run)


@register.simple_tag
def run_duration(run: JobRun) -> str:
    return jobs.duration_text(run.duration)


@register.simple_tag
def run_outcome(run: JobRun) -> str:
    return jobs.run_outcome_html(run)


@register.simple_tag
def local_time(at: dt.datetime) -> str:
    return jobs.local_time_text(at)
