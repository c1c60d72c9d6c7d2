"""Running duplicates at the same moment, each on its own PostgreSQL connection (shared by test_duplicates.py and
the race tests of the security and money probes)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.db import connection


def concurrently(*calls: Callable[[], Any], timeout: float = 180) -> list[Any]:
    """Run each call in its own thread (its own database connection), all released at the same moment by a
    barrier. Returns each call's result, or the exception it raised."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = call()
        except BaseException as exc:  # reported to the test, which decides
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n, call)) for n, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not any(thread.is_alive() for thread in threads), "a duplicate hung (deadlock?)"
    return results


def raised(results: list[Any]) -> list[BaseException]:
    return [result for result in results if isinstance(result, BaseException)]
