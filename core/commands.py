"""The base of every management command: an ``ApplicationError`` becomes a ``CommandError`` with its message.

A command is thin (parse, call one service, report). When the service refuses — a bad ``--as-of``, a file that
does not import, an invoice in the wrong state — the operator sees the message and the command exits with
status 1, instead of a traceback. Errors that are not ``ApplicationError`` (a bug, the database gone) still
raise as they are: those tracebacks are wanted.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand as DjangoBaseCommand
from django.core.management.base import CommandError

from core.audit import audit_as_job
from core.errors import ApplicationError

__all__ = ("BaseCommand", "CommandError")


class BaseCommand(DjangoBaseCommand):
    def execute(self, *args: Any, **options: Any) -> str | None:
        # execute() is what both `manage.py <command>` and call_command() go through.
        # Every audited write of the command names it (core/audit.py): "command billing_run".
        name = type(self).__module__.rsplit(".", 1)[-1]
        try:
            with audit_as_job(f"command {name}"):
                return super().execute(*args, **options)
        except ApplicationError as exc:
            raise CommandError(exc.for_display()) from exc
