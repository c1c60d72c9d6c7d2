"""The admin walked in a browser: Debian's Chromium and the async-safety switch (tests/browser.py)."""

from __future__ import annotations

import pytest

from tests.browser import browser_type_launch_args, pytest_runtest_setup, pytest_runtest_teardown  # noqa: F401
from tests.invoicing.conftest import series, vat_de  # noqa: F401 - the invoice series and German VAT


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    """On a failure, a screenshot of every open page beside the test's other screenshots (``--basetemp``)."""
    report = yield
    if report.when == "call" and report.failed:
        browser = item.funcargs.get("browser")  # type: ignore[attr-defined]
        folder = item.funcargs.get("tmp_path")  # type: ignore[attr-defined]
        if browser is not None and folder is not None:
            for n, context in enumerate(browser.contexts):
                for m, page in enumerate(context.pages):
                    page.screenshot(path=str(folder / f"failure-{n}-{m}.png"), full_page=True)
    return report
