"""Browser plumbing shared by the browser tests' conftests (tests/portal, tests/admin_browser): Debian's Chromium
and Django's async-safety switch (docs/GOTCHAS.md §9). A conftest imports these names to use them."""

from __future__ import annotations

import os
from typing import Any

import pytest

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ASYNC_UNSAFE = "DJANGO_ALLOW_ASYNC_UNSAFE"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    return {**browser_type_launch_args, "executable_path": "/usr/bin/chromium", "headless": True, "args": CHROMIUM_ARGS}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Any:
    """Playwright's sync API runs an event loop in the test thread, so Django refuses ORM calls there unless
    DJANGO_ALLOW_ASYNC_UNSAFE is set (docs/GOTCHAS.md §9). It is set from each browser test's set-up to the end of
    its tear-down (the transactional flush runs after every fixture), not with os.environ.setdefault at import:
    a process-wide value leaks into other tests' `manage.py check --deploy` subprocesses (async.E001). These
    per-item hooks run only for items under the folder whose conftest imports them."""
    os.environ[ASYNC_UNSAFE] = "true"
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    try:
        return (yield)
    finally:
        os.environ.pop(ASYNC_UNSAFE, None)
