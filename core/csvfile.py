"""Reading uploaded CSV files (customer, usage and bank imports): one decoding rule, one delimiter rule, one way
to name a problem. Imports validate every row before writing anything; their errors name row and column.

The rules (docs/RELIABILITY.md, "bad input"):

- The file is UTF-8 (a byte-order mark is fine). Latin-1/Windows-1252 bytes, UTF-16 and NUL characters are
  refused with the line they are on, never guessed at.
- The delimiter is a comma, a semicolon or a tab — whichever the header line uses (outside quotes). Quotes are
  the standard double quotes; a quoted value may hold delimiters and line breaks. A quote that is never closed
  is an error, not a value that swallows the rest of the file.
- ``row`` numbers count records as a spreadsheet shows them: the header is row 1, a value with a line break
  does not shift later rows, blank lines keep their number (they are skipped, not renumbered).
- Every record must have as many cells as the header (extra cells that are empty are tolerated: many banks end
  each line with a delimiter). A column name may appear once.
- Size limits are checked before any row is validated: ``max_bytes`` (reading stops there, so a huge upload is
  never held in memory) and ``max_rows``.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass
from typing import IO

from django.conf import settings

from core.errors import InvalidInput

# csv.Error messages are terse; past this many structural problems the rest of the file is not worth reading.
MAX_REPORTED_PROBLEMS = 100
_QUOTED = re.compile(r'"[^"]*"')


@dataclass
class RowError:
    """A problem in an imported file: ``row`` is the record number (the header is row 1)."""

    row: int
    column: str
    message: str

    def __str__(self) -> str:
        return f"row {self.row}, column '{self.column}': {self.message}"


class CsvFileError(InvalidInput, ValueError):
    """The file cannot be read as a table; ``errors`` name each problem by row and column."""

    def __init__(self, errors: list[RowError]):
        super().__init__("; ".join(str(error) for error in errors[:5]) + (" …" if len(errors) > 5 else ""))
        self.errors = errors


class CsvRow(dict[str, str]):
    """One record as {column: value}; ``row`` is its number in the file (the header is row 1)."""

    row: int

    def __init__(self, values: dict[str, str], row: int):
        super().__init__(values)
        self.row = row


def format_size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.0f} MB" if size % (1024 * 1024) == 0 else f"{size / (1024 * 1024):.1f} MB"
    if size >= 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size} bytes"


def upload_size_problem(size: int) -> str | None:
    """Why an upload of ``size`` bytes is refused before it is read (over ``IMPORT_MAX_BYTES``), else ``None``."""
    if size > settings.IMPORT_MAX_BYTES:
        return (
            f"The file is {format_size(size)}; the limit is {format_size(settings.IMPORT_MAX_BYTES)}. "
            "Split it into smaller files."
        )
    return None


def read_limited(stream: IO[bytes] | IO[str] | bytes | str, *, max_bytes: int) -> bytes | str:
    """The content of an upload, reading at most one byte more than allowed (enough to know it is too big)."""
    if isinstance(stream, bytes | str):
        return stream
    return stream.read(max_bytes + 1)


def _line_of(text: bytes | str, index: int) -> int:
    newline = b"\n" if isinstance(text, bytes) else "\n"
    return text.count(newline, 0, index) + 1  # type: ignore[arg-type]


def decode_text(raw: bytes | str, *, max_bytes: int) -> str:
    """UTF-8 text (a BOM is fine); raises ``ValueError`` with a message for the person who uploaded it."""
    if isinstance(raw, bytes):
        if len(raw) > max_bytes:
            raise ValueError(f"the file is larger than the limit of {format_size(max_bytes)}; split it")
        if raw.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
            raise ValueError("the file is UTF-32 text; save it as UTF-8 (“CSV UTF-8” in Excel)")
        if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            raise ValueError("the file is UTF-16 text; save it as UTF-8 (“CSV UTF-8” in Excel)")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"the file is not UTF-8 text: line {_line_of(raw, exc.start)} has the byte "
                f"0x{raw[exc.start]:02X} (Latin-1 or Windows-1252?); save it as UTF-8 (“CSV UTF-8” in Excel)"
            ) from exc
    else:
        text = raw.lstrip("\ufeff")
    nul = text.find("\x00")
    if nul >= 0:
        # PostgreSQL text columns cannot store NUL; it is also the sign of UTF-16 saved without a byte-order mark.
        raise ValueError(
            f"line {_line_of(text, nul)} contains a NUL character: this is not a text CSV file "
            "(UTF-16 without a byte-order mark?); save it as UTF-8"
        )
    return text


def _delimiter(text: str) -> str:
    """The delimiter the header line uses: the most frequent of comma, semicolon and tab outside quotes."""
    first_line = _QUOTED.sub("", text.split("\n", 1)[0])
    counts = {delimiter: first_line.count(delimiter) for delimiter in (",", ";", "\t")}
    best = max(counts, key=lambda delimiter: counts[delimiter])
    return best if counts[best] else ","


def read_csv(
    stream: IO[bytes] | IO[str] | bytes | str, *, max_bytes: int, max_rows: int | None = None
) -> tuple[list[str], list[CsvRow]]:
    """(header, rows) of a comma-, semicolon- or tab-separated file; header names are stripped.

    Raises ``ValueError`` for a file that is not UTF-8 text or too large, and ``CsvFileError`` (a ``ValueError``
    listing row/column problems) for a file that is not a well-formed table. An empty file is ``([], [])``.
    """
    text = decode_text(read_limited(stream, max_bytes=max_bytes), max_bytes=max_bytes)
    if not text.strip():
        return [], []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text), strict=True)
    problems: list[RowError] = []
    header: list[str] = []
    rows: list[CsvRow] = []
    number = 0
    try:
        for number, record in enumerate(reader, start=1):
            if number == 1:
                header = [name.strip() for name in record]
                seen: set[str] = set()
                for name in header:
                    if name and name in seen:
                        problems.append(RowError(1, name, "the column appears more than once"))
                    seen.add(name)
                if problems:
                    raise CsvFileError(problems)
                continue
            if not any(cell.strip() for cell in record):
                continue  # a blank line: skipped, and the rows after it keep their numbers
            if max_rows is not None and len(rows) >= max_rows:
                raise CsvFileError(
                    [
                        RowError(
                            number,
                            "(file)",
                            f"the file has more than {max_rows:,} data rows, the limit per import; split it",
                        )
                    ]
                )
            if len(record) < len(header) or any(cell.strip() for cell in record[len(header) :]):
                problems.append(
                    RowError(
                        number,
                        "(row)",
                        f"{len(record)} cells, but the header has {len(header)} "
                        + ("(a missing delimiter?)" if len(record) < len(header) else "(an unquoted delimiter?)"),
                    )
                )
                if len(problems) >= MAX_REPORTED_PROBLEMS:
                    break
                continue
            rows.append(CsvRow({name: value for name, value in zip(header, record, strict=False) if name}, number))
    except csv.Error as exc:
        detail = str(exc)
        if "unexpected end of data" in detail:
            detail = "a quoted value is never closed (a stray double quote?)"
        problems.append(RowError(number + 1 if number else 1, "(file)", f"not a well-formed CSV file: {detail}"))
    if problems:
        raise CsvFileError(problems)
    return header, rows
