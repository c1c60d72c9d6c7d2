"""Celery task of reporting: thin, call one service (docs/STYLE.md)."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from reporting.forecast import forecast_store
from reporting.integrity import integrity_check_record, integrity_verify
from reporting.metrics import metrics_refresh


@shared_task(name="reporting.verify_integrity", acks_late=True)
def verify_integrity() -> dict[str, Any]:
    """The nightly job "Integrity check": its result is stored and shown on the admin dashboard."""
    report = integrity_verify()
    check = integrity_check_record(report=report, triggered_by="schedule")
    return {"check": check.pk, "ok": report.ok, "problems": check.problem_count}


@shared_task(name="reporting.refresh_metrics", acks_late=True)
def refresh_metrics() -> dict[str, Any]:
    """The job "Metrics refresh": rebuild the snapshot the dashboard and the reports read."""
    refresh = metrics_refresh(triggered_by="schedule")
    return {
        "as_of": refresh.as_of.isoformat(),
        "lines_read": refresh.lines_read,
        "open_invoices_read": refresh.open_invoices_read,
    }


@shared_task(name="reporting.store_forecast", acks_late=True)
def store_forecast() -> dict[str, Any]:
    """The job "Forecast snapshot": today's 90-day forecast summary, for the forecast-vs-actual comparison."""
    return {"days": forecast_store(days=90)}
