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

from core.errors import ApplicationError

__all__ = ("BaseCommand", "CommandError")


class BaseCommand(DjangoBaseCommand):
    def execute(self, *args: Any, **options: Any) -> str | None:
        # execute() is what both `manage.py <command>` and call_command() go through.
        try:
            return super().execute(*args, **options)
        except ApplicationError as exc:
            raise CommandError(exc.for_display()) from exc
