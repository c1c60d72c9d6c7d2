"""The one parser of the dates jobs are given: ``--as-of`` (and ``--from``/``--to``) of every command, the
``as_of`` argument of every Celery task.

Every job takes an explicit as-of date so that staff and tests can run the calendar forward; without one it is
today in ``BILLING_TIMEZONE``. A date is ``YYYY-MM-DD`` (ISO 8601), nothing else: ``31.12.2026`` or ``tomorrow``
is refused with a message that names the option, never guessed at.
"""

from __future__ import annotations

import datetime as dt

from core.dates import billing_today
from core.errors import InvalidInput


class InvalidDate(InvalidInput, ValueError):
    """A date option that is not ``YYYY-MM-DD``; ``field`` is the option (``--as-of``). A ``ValueError`` too, as
    the parsers it replaces raised."""


def parse_date_option(value: str | dt.date, *, option: str) -> dt.date:
    """``value`` (``YYYY-MM-DD``, or already a date) as a date; ``InvalidDate`` naming ``option`` otherwise."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    text = str(value)
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise InvalidDate(f"{option}: '{text}' is not a date in the form YYYY-MM-DD", field=option) from exc


def parse_as_of(value: str | dt.date | None, *, option: str = "--as-of") -> dt.date:
    """The as-of date of a command or task: ``value`` parsed by ``parse_date_option``, or, when it is empty or
    ``None``, today in ``BILLING_TIMEZONE``."""
    if value is None or value == "":
        return billing_today()
    return parse_date_option(value, option=option)
