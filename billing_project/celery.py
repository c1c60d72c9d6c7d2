"""The Celery application. Workers: ``celery -A billing_project worker``; beat: ``celery -A billing_project beat``."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import beat_init, task_postrun, task_prerun, worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_project.settings")

app = Celery("billing_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# The billing run's tasks live beside the service they call (invoicing/billing_tasks.py).
app.autodiscover_tasks(lambda: ["invoicing"], related_name="billing_tasks")


@worker_init.connect
@beat_init.connect
def _refuse_development_settings_without_debug(**kwargs: object) -> None:
    """A worker or beat started without DJANGO_SETTINGS_MODULE would run the development profile (sandbox
    gateway, public key) against the production database and broker: refuse (billing_project/deployment.py)."""
    from django.core.exceptions import ImproperlyConfigured

    from billing_project.deployment import refuse_base_settings_without_debug

    try:
        refuse_base_settings_without_debug()
    except ImproperlyConfigured as exc:
        # Celery logs and swallows an Exception raised by a signal handler; SystemExit stops the process.
        raise SystemExit(f"ImproperlyConfigured: {exc}") from exc


@app.on_after_configure.connect
def _broker_visibility_timeout(sender: Celery, **kwargs: object) -> None:
    """Redis has no acknowledgements of its own: kombu keeps a taken message aside and hands it out again once
    it is older than ``visibility_timeout``. With late acks that is how the chunk of a killed worker is billed
    after all, so the timeout is a setting (``BROKER_VISIBILITY_TIMEOUT_SECONDS``, default an hour, as kombu's)
    (docs/RELIABILITY.md)."""
    from django.conf import settings

    if not str(sender.conf.broker_url or "").startswith(("redis://", "rediss://", "sentinel://")):
        return
    options = dict(sender.conf.broker_transport_options or {})
    options.setdefault("visibility_timeout", settings.BROKER_VISIBILITY_TIMEOUT_SECONDS)
    sender.conf.broker_transport_options = options


def ensure_broker_folders() -> None:
    """The filesystem transport needs its folders before the first ``delay()`` (docs/GOTCHAS.md §10)."""
    options = app.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        folder = options.get(key)
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)


# --- the audit trail's actor for work done by tasks ---------------------------------------------------------

_task_actors: dict[str, contextlib.ExitStack] = {}


@task_prerun.connect
def _audit_actor_enter(task_id: str | None = None, task: Any = None, **kwargs: object) -> None:
    """Every audited write of a task names it ("celery task invoicing.send_reminders"); a task run eagerly inside a
    request names the request's actor as ``started_by`` (core/audit.py)."""
    from core.audit import audit_as_job

    stack = contextlib.ExitStack()
    stack.enter_context(audit_as_job(f"celery task {getattr(task, 'name', '?')}", task_id=task_id))
    _task_actors[str(task_id)] = stack


@task_postrun.connect
def _audit_actor_exit(task_id: str | None = None, **kwargs: object) -> None:
    stack = _task_actors.pop(str(task_id), None)
    if stack is not None:
        stack.close()
