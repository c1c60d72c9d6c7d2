"""Reading uploaded CSV files (customer, usage and bank imports): one decoding rule, one dialect guess, one way
to name a problem. Imports validate every row before writing anything; their errors name row and column."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import IO, Any


@dataclass
class RowError:
    """A problem in an imported file: ``row`` is the line number (the header is line 1)."""

    row: int
    column: str
    message: str

    def __str__(self) -> str:
        return f"row {self.row}, column '{self.column}': {self.message}"


def decode_text(raw: bytes | str, *, max_bytes: int) -> str:
    """UTF-8 text (a BOM is fine); raises ``ValueError`` with a message for the person who uploaded it."""
    if isinstance(raw, str):
        return raw.lstrip("\ufeff")
    if len(raw) > max_bytes:
        raise ValueError(f"the file is larger than {max_bytes // (1024 * 1024)} MB")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"the file is not UTF-8 text (byte {exc.start})") from exc


def read_csv(stream: IO[bytes] | IO[str] | bytes | str, *, max_bytes: int) -> tuple[list[str], list[dict[str, str]]]:
    """(header, rows) of a comma-, semicolon- or tab-separated file; header names are stripped."""
    raw = stream if isinstance(stream, bytes | str) else stream.read()
    text = decode_text(raw, max_bytes=max_bytes)
    dialect: Any
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    header = [name.strip() for name in (reader.fieldnames or [])]
    reader.fieldnames = header
    return header, list(reader)
