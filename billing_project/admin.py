"""Admin registrations of the composition layer: django-celery-beat's periodic tasks, with permissions on their
actions, and the "Periodic jobs" page for people (below).

django-celery-beat's own ``PeriodicTaskAdmin`` declares no permission on its actions (enable, disable, toggle,
run now), and Django offers an action without declared permissions to everyone who may open the changelist —
which includes the read-only auditors and the clerks, who may only view the schedules. One POST would switch off
the daily billing run or start any job. Here each action needs the change permission on periodic tasks
(billing admins, ``billing_project.staff_groups``). This module is autodiscovered after django_celery_beat's
(INSTALLED_APPS order), so it replaces that registration.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import url_has_allowed_host_and_scheme
from django_celery_beat.admin import PeriodicTaskAdmin as CeleryBeatPeriodicTaskAdmin
from django_celery_beat.models import PeriodicTask

from billing_project import jobs
from billing_project.models import Schedule
from core.admin_lists import boolean_column, status_badge, yes_no
from core.admin_pages import object_action_page
from core.admin_readonly import ReadOnlyMixin
from core.audit import AuditTrailMixin


class PeriodicTaskAdmin(AuditTrailMixin, CeleryBeatPeriodicTaskAdmin):
    # django-celery-beat's columns, its booleans as words (core.admin_lists)
    list_display = (
        "name",
        boolean_column("enabled", "enabled", no="Disabled", quiet_no=False),
        "scheduler",
        "interval",
        "start_time",
        "last_run_at",
        boolean_column("one_off", "one-off"),
    )

    @admin.action(description="Enable selected tasks", permissions=["change"])
    def enable_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> Any:
        return super().enable_tasks(request, queryset)

    @admin.action(description="Disable selected tasks", permissions=["change"])
    def disable_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> Any:
        return super().disable_tasks(request, queryset)

    @admin.action(description="Toggle activity of selected tasks", permissions=["change"])
    def toggle_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> Any:
        return super().toggle_tasks(request, queryset)

    @admin.action(description="Run selected tasks now", permissions=["change"])
    def run_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> Any:
        return super().run_tasks(request, queryset)


if admin.site.is_registered(PeriodicTask):
    admin.site.unregister(PeriodicTask)
admin.site.register(PeriodicTask, PeriodicTaskAdmin)


# --- the periodic jobs, for people (billing_project/jobs.py) ------------------------------------------------


@admin.register(Schedule)
class ScheduleAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """ "Periodic jobs": each job's schedule in words, last run (when, how long, result, errors), next run and a
    "Run now" button (permission ``billing_project.run_schedule``: billing admins). A job's page lists its recent
    runs. Editing the schedules stays django-celery-beat's "Periodic tasks" (change permission on those)."""

    actions = None
    fields = ("description", "schedule_display", "enabled_words", "task", "args", "kwargs", "runs_display")
    readonly_fields = fields

    def has_run_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("billing_project.run_schedule")

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<path:object_id>/run/",
                self.admin_site.admin_view(self.run_view),
                name="billing_project_schedule_run",
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        now = timezone.now()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Periodic jobs",
            "subtitle": None,
            "jobs": jobs.jobs_overview(now=now),
            "can_run": self.has_run_permission(request),
            "zone": settings.BILLING_TIMEZONE,
            "now": now,
            "can_edit_schedules": request.user.has_perm("django_celery_beat.view_periodictask"),
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/billing_project/schedule/jobs.html", context)

    @admin.display(description="schedule")
    def schedule_display(self, obj: Schedule) -> str:
        next_run = jobs.next_run_at(obj, now=timezone.now())
        when = jobs.local_time_text(next_run) if next_run else "— (not scheduled)"
        return format_html("{} · next run: {} ({})", jobs.schedule_in_words(obj), when, settings.BILLING_TIMEZONE)

    @admin.display(description="enabled")
    def enabled_words(self, obj: Schedule) -> str:
        return yes_no(obj.enabled, yes="Enabled", no="Disabled", quiet_no=False)

    @admin.display(description="recent runs")
    def runs_display(self, obj: Schedule) -> str:
        runs = jobs.job_runs_recent(job_name=obj.name)
        if not runs:
            return "No run recorded yet."
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    jobs.local_time_text(run.started_at or run.queued_at),
                    jobs.run_trigger_text(run),
                    jobs.duration_text(run.duration),
                    status_badge(run.state, run.get_state_display()),
                    jobs.run_outcome_html(run),
                )
                for run in runs
            ),
        )
        return format_html(
            '<table class="job-runs"><thead><tr><th>started</th><th>by</th><th>took</th><th>result</th>'
            "<th>details</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )

    def run_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """ "Run now": what will be sent (GET), then sends it (POST) as the acting user; logged and audited."""
        schedule = get_object_or_404(
            Schedule.objects.select_related("crontab", "interval", "solar", "clocked"), pk=object_id
        )
        if not self.has_run_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            run = jobs.job_run_now(periodic_task=schedule, actor=request.user)
            self.log_change(request, schedule, f"Run now (task {schedule.task}, run {run.task_id}).")
            # "Refresh now" on the dashboard and the reports posts here and goes back to its page
            back = request.POST.get("next", "")
            if not url_has_allowed_host_and_scheme(
                back, allowed_hosts={request.get_host()}, require_https=request.is_secure()
            ):
                back = ""
            self.message_user(
                request,
                f"“{schedule.name}” was sent to the workers; "
                + (
                    "the figures show its new as-of time when it has finished."
                    if back
                    else "its run shows on this page when it starts."
                ),
                messages.SUCCESS,
            )
            return HttpResponseRedirect(back or reverse("admin:billing_project_schedule_changelist"))
        return object_action_page(
            self,
            request,
            original=schedule,
            title=f"Run “{schedule.name}” now",
            submit_label="Run now",
            intro=(
                "Sends the job's task to the workers now, with the same arguments as its scheduled run; the schedule "
                "itself does not change. Every job is idempotent: work already done is not done twice."
            ),
            subject_rows=[
                ("Job", schedule.name),
                ("What it does", schedule.description or "—"),
                ("Schedule", jobs.schedule_in_words(schedule)),
                ("Celery task", schedule.task),
                ("Arguments", f"{schedule.args or '[]'} {schedule.kwargs or '{}'}"),
            ],
        )
