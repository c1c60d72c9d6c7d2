"""Admin registrations of the composition layer: django-celery-beat's periodic tasks, with permissions on their
actions.

django-celery-beat's own ``PeriodicTaskAdmin`` declares no permission on its actions (enable, disable, toggle,
run now), and Django offers an action without declared permissions to everyone who may open the changelist —
which includes the read-only auditors and the clerks, who may only view the schedules. One POST would switch off
the daily billing run or start any job. Here each action needs the change permission on periodic tasks
(billing admins, ``billing_project.staff_groups``). This module is autodiscovered after django_celery_beat's
(INSTALLED_APPS order), so it replaces that registration.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django_celery_beat.admin import PeriodicTaskAdmin as CeleryBeatPeriodicTaskAdmin
from django_celery_beat.models import PeriodicTask

from core.audit import AuditTrailMixin


class PeriodicTaskAdmin(AuditTrailMixin, CeleryBeatPeriodicTaskAdmin):
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
