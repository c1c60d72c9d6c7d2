"""The Celery application. Workers: ``celery -A billing_project worker``; beat: ``celery -A billing_project beat``."""

from __future__ import annotations

import os
from pathlib import Path

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_project.settings")

app = Celery("billing_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# The billing run's tasks live beside the service they call (invoicing/billing_tasks.py).
app.autodiscover_tasks(lambda: ["invoicing"], related_name="billing_tasks")


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
