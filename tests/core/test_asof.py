"""One parser for the dates jobs are given (core/asof.py): every command's --as-of/--from/--to and every task's
as_of go through it, and a bad date is refused with a message naming the option."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pytest
import time_machine
from django.core.management import CommandError, call_command

from core.asof import InvalidDate, parse_as_of, parse_date_option
from core.errors import InvalidInput
from dunning.tasks import send_reminders
from invoicing.billing_tasks import billing_run_chunk_task, run_billing
from payments.tasks import collect_invoice, retry_payments

ROOT = Path(__file__).resolve().parents[2]


def test_an_as_of_date_is_yyyy_mm_dd_or_today_in_the_billing_timezone(settings: pytest.FixtureRequest) -> None:
    assert parse_as_of("2026-03-01") == dt.date(2026, 3, 1)
    assert parse_as_of(dt.date(2026, 3, 1)) == dt.date(2026, 3, 1)
    settings.BILLING_TIMEZONE = "Europe/Berlin"  # type: ignore[attr-defined]
    with time_machine.travel(dt.datetime(2026, 1, 31, 23, 30, tzinfo=dt.UTC), tick=False):
        assert parse_as_of(None) == parse_as_of("") == dt.date(2026, 2, 1)  # already the 1st in Berlin


@pytest.mark.parametrize("value", ["2026-02-30", "2026-13-01", "31.12.2026", "tomorrow", "2026-03-01\x00", ""])
def test_a_bad_date_is_refused_naming_the_option(value: str) -> None:
    with pytest.raises(InvalidDate) as caught:
        parse_date_option(value, option="--to")
    error = caught.value
    assert error.message == f"--to: '{value}' is not a date in the form YYYY-MM-DD"
    assert error.field == "--to"
    assert isinstance(error, InvalidInput) and isinstance(error, ValueError)  # as the old parsers raised


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        ("billing_run", ["--as-of", "2026-02-30"], "--as-of: '2026-02-30' is not a date in the form YYYY-MM-DD"),
        ("send_reminders", ["--as-of", "01/03/2026"], "--as-of: '01/03/2026' is not a date in the form YYYY-MM-DD"),
        ("retry_payments", ["--as-of", "soon"], "--as-of: 'soon' is not a date in the form YYYY-MM-DD"),
        (
            "export_accounting",
            ["--from", "2026-03-01", "--to", "2026-04-31"],
            "--to: '2026-04-31' is not a date in the form YYYY-MM-DD",
        ),
        (
            "export_accounting",
            ["--from", "1.3.2026", "--to", "2026-04-30"],
            "--from: '1.3.2026' is not a date in the form YYYY-MM-DD",
        ),
    ],
)
def test_every_command_refuses_a_bad_date_with_the_same_message(command: str, args: list[str], message: str) -> None:
    with pytest.raises(CommandError) as caught:
        call_command(command, *args, stdout=io.StringIO(), stderr=io.StringIO())
    assert str(caught.value) == message


def test_every_task_refuses_a_bad_as_of_naming_it() -> None:
    calls = [
        lambda: run_billing("2026-02-30"),
        lambda: billing_run_chunk_task(1, [1], "2026-02-30"),
        lambda: send_reminders("2026-02-30"),
        lambda: retry_payments("2026-02-30"),
        lambda: collect_invoice(1, "2026-02-30"),
    ]
    for call in calls:
        with pytest.raises(InvalidDate, match=r"^as_of: '2026-02-30' is not a date in the form YYYY-MM-DD$"):
            call()


def test_no_command_or_task_parses_a_date_itself() -> None:
    """The one parser is core.asof: a command or a task that calls fromisoformat/strptime has grown its own."""
    sources = [
        *ROOT.glob("*/management/commands/*.py"),
        *ROOT.glob("*/tasks.py"),
        *ROOT.glob("*/*_tasks.py"),
    ]
    assert len(sources) > 10
    offenders = [
        str(path.relative_to(ROOT))
        for path in sources
        if ".venv" not in path.parts and ("fromisoformat" in path.read_text() or "strptime" in path.read_text())
    ]
    assert offenders == []
