"""Celery tasks of the site layer: thin, call one service (docs/STYLE.md)."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from billing_project.sweeper import stale_work_sweep


@shared_task(name="billing_project.sweep_stale", acks_late=True)
def sweep_stale() -> dict[str, Any]:
    """The periodic job "Stale work sweeper" (what ``manage.py sweep_stale`` does)."""
    return stale_work_sweep().as_dict()
