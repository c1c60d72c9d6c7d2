"""The API's reference page and the API-key admin in a browser (tests/browser.py)."""

from __future__ import annotations

from tests.browser import browser_type_launch_args, pytest_runtest_setup, pytest_runtest_teardown  # noqa: F401
