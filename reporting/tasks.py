"""Celery task of reporting: thin, call one service (docs/STYLE.md)."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from reporting.integrity import integrity_check_record, integrity_verify


@shared_task(name="reporting.verify_integrity", acks_late=True)
def verify_integrity() -> dict[str, Any]:
    """The nightly job "Integrity check": its result is stored and shown on the admin dashboard."""
    report = integrity_verify()
    check = integrity_check_record(report=report, triggered_by="schedule")
    return {"check": check.pk, "ok": report.ok, "problems": check.problem_count}
