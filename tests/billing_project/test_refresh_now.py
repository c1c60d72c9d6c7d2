""" "Refresh now" on the dashboard and the snapshot reports: the "Metrics refresh" job's Run now of the periodic jobs
page (same permission, POST with CSRF, audited with the actor, the beat's task), back to the page it was pressed on
with the new as-of time."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import time_machine
from django.contrib.admin.models import LogEntry
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from billing_project.models import JobRun, JobRunState, JobTrigger
from billing_project.staff_groups import BILLING_ADMIN, BILLING_CLERK
from reporting import metrics
from reporting.models import MetricsRefresh
from tests.factories import StaffUserFactory

pytestmark = pytest.mark.django_db
MONDAY = dt.datetime(2026, 5, 18, 8, tzinfo=dt.UTC)
TUESDAY = dt.datetime(2026, 5, 19, 8, 30, tzinfo=dt.UTC)


@pytest.fixture
def job() -> PeriodicTask:
    call_command("setup_schedules", verbosity=0)
    with time_machine.travel(MONDAY, tick=False):
        metrics.metrics_refresh(triggered_by="schedule")
    return PeriodicTask.objects.get(task="reporting.refresh_metrics")


def _client(group: str) -> tuple[Client, Any]:
    user = StaffUserFactory(group=group)
    client = Client()
    client.force_login(user)
    return client, user


def test_a_billing_admin_refreshes_the_metrics_from_a_report_and_sees_the_new_as_of_time(
    job: PeriodicTask, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    settings.DASHBOARD_CACHE_SECONDS = 60
    client, admin_user = _client(BILLING_ADMIN)
    run_url = reverse("admin:billing_project_schedule_run", args=[job.pk])
    with time_machine.travel(TUESDAY, tick=False):
        report = client.get("/admin/reports/mrr/").content.decode()
        dashboard = client.get("/admin/").content.decode()
        for html in (report, dashboard):
            assert f'action="{run_url}"' in html and ">Refresh now</button>" in html
            assert 'name="csrfmiddlewaretoken"' in html
        assert "metrics as of 2026-05-18" in report
        assert "Business figures and receivables as of 2026-05-18" in dashboard

        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(run_url, {"_confirm": "Run now", "next": "/admin/reports/mrr/?currency=EUR"})
        assert response.status_code == 302 and response["Location"] == "/admin/reports/mrr/?currency=EUR"

        # the beat's task ran (eagerly here, on a worker in production): a new snapshot as of today
        latest = metrics.latest_refresh()
        assert latest is not None and latest.as_of == dt.date(2026, 5, 19) and MetricsRefresh.objects.count() == 2
        assert "metrics as of 2026-05-19, refreshed 2026-05-19" in client.get(response["Location"]).content.decode()
        # the dashboard shows the new snapshot at once, although its figures are cached for a minute
        assert "Business figures and receivables as of 2026-05-19" in client.get("/admin/").content.decode()

    run = JobRun.objects.get()
    assert (run.job_name, run.task, run.trigger, run.requested_by, run.state) == (
        "Metrics refresh",
        "reporting.refresh_metrics",
        JobTrigger.STAFF,
        admin_user,
        JobRunState.SUCCEEDED,
    )
    entry = LogEntry.objects.get(user=admin_user, object_id=str(job.pk))
    assert entry.get_change_message() == f"Run now (task reporting.refresh_metrics, run {run.task_id})."


def test_a_clerk_without_the_run_permission_sees_no_button_and_is_refused(
    job: PeriodicTask, django_capture_on_commit_callbacks: Any
) -> None:
    client, clerk = _client(BILLING_CLERK)
    assert not clerk.has_perm("billing_project.run_schedule") and clerk.has_perm("invoicing.view_invoice")
    run_url = reverse("admin:billing_project_schedule_run", args=[job.pk])
    for page in ("/admin/", "/admin/reports/mrr/", "/admin/reports/ageing/"):
        html = client.get(page).content.decode()
        assert "metrics as of 2026-05-18" in html or "as of 2026-05-18" in html, page
        assert "Refresh now" not in html and run_url not in html, page
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(run_url, {"_confirm": "Run now", "next": "/admin/"})
    assert response.status_code == 403
    assert MetricsRefresh.objects.count() == 1 and not JobRun.objects.exists() and not LogEntry.objects.exists()


def test_refresh_now_needs_a_post_with_a_csrf_token(job: PeriodicTask) -> None:
    user = StaffUserFactory(group=BILLING_ADMIN)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post(reverse("admin:billing_project_schedule_run", args=[job.pk]), {"next": "/admin/"})
    assert response.status_code == 403 and b"CSRF" in response.content
    assert MetricsRefresh.objects.count() == 1 and not JobRun.objects.exists()


def test_it_returns_only_to_a_page_of_this_site(job: PeriodicTask, django_capture_on_commit_callbacks: Any) -> None:
    client, _user = _client(BILLING_ADMIN)
    run_url = reverse("admin:billing_project_schedule_run", args=[job.pk])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(run_url, {"_confirm": "Run now", "next": "https://evil.example.com/"})
    assert response["Location"] == reverse("admin:billing_project_schedule_changelist")


def test_no_button_when_the_job_is_not_set_up(admin_client: Any) -> None:
    metrics.metrics_refresh()
    assert not PeriodicTask.objects.filter(task="reporting.refresh_metrics").exists()
    assert "Refresh now" not in admin_client.get("/admin/reports/mrr/").content.decode()
