"""Progress bars for management commands: shown on a terminal, silent in logs, cron and tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol


class Progress(Protocol):
    def update(self, n: int = 1) -> Any: ...


class _Silent:
    def update(self, n: int = 1) -> None:
        return None


@contextmanager
def progress_bar(*, total: int, description: str, stream: Any = None) -> Iterator[Progress]:
    stream = stream or sys.stderr
    if not getattr(stream, "isatty", lambda: False)():
        yield _Silent()
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=description, unit="sub", file=stream, dynamic_ncols=True) as bar:
        yield bar
