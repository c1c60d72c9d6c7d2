"""CSV cells that a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab, carriage return) are
prefixed with a single quote (OWASP "CSV injection"). Every CSV the back-office writes goes through here, so a
customer name such as ``=HYPERLINK(...)`` stays text in Excel and LibreOffice.

Numbers are written as they are: a negative amount (``-12.50``) is data, not a formula, and quoting it would
turn it into text in the spreadsheet. Only ``str`` values are neutralised."""

from __future__ import annotations

from typing import Any

_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> str:
    """The text of one CSV cell: ``None`` → "", strings starting with a formula character get a leading ``'``."""
    if value is None:
        return ""
    if not isinstance(value, str):
        return str(value)
    if value.startswith(_FORMULA_PREFIXES):
        return "'" + value
    return value
