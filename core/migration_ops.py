"""Operations that migrations of several apps share. Migrations import this module, so what it does must not
change once a migration uses it."""

from __future__ import annotations

from typing import Any

from django.db import migrations


def move_content_types(*, from_app: str, to_app: str, models: tuple[str, ...]) -> migrations.RunPython:
    """When models move to another app by state only: re-label their existing content types, so permissions, staff
    groups and admin history follow them (a fresh database has none yet; the new ones are made after migrate)."""

    def forward(apps: Any, schema_editor: Any) -> None:
        content_type = apps.get_model("contenttypes", "ContentType")
        content_type.objects.filter(app_label=from_app, model__in=models).update(app_label=to_app)

    def backward(apps: Any, schema_editor: Any) -> None:
        content_type = apps.get_model("contenttypes", "ContentType")
        content_type.objects.filter(app_label=to_app, model__in=models).update(app_label=from_app)

    return migrations.RunPython(forward, backward)
