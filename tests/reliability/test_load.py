"""The portal and the admin under load (wrk against gunicorn on loopback) while billing runs: no request fails and
the billing meanwhile happens exactly once. Latency is measured, not asserted: the figures go to
docs/PERFORMANCE.md ("Load: portal and admin under wrk"); the machine running this also runs the rest of the suite.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.databases import migrated_template

ROOT = Path(__file__).resolve().parents[2]


def _missing_requirement() -> str:
    if shutil.which("wrk") is None:
        return "wrk is not installed"
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=2):
            return ""
    except OSError:
        return "PostgreSQL is not reachable"


@pytest.mark.slow
@pytest.mark.e2e
def test_portal_and_admin_under_wrk_while_billing_answer_every_request_and_bill_exactly_once():
    missing = _missing_requirement()
    if missing:
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(f"REQUIRE_SERVICES=1 but {missing}")
        pytest.skip(missing)
    # 30 s of load in the suite (it asserts correctness under load, no latency); the figures come from bench/load.py
    seconds = int(os.environ.get("LOAD_SECONDS", "30"))
    database = f"{os.environ.get('TEST_DATABASE_NAME', 'test_billing')}_load"
    # a copy of the suite's migrated template (tests/databases.py) instead of migrating an empty database again
    template = migrated_template()
    command = [sys.executable, str(ROOT / "bench" / "load.py"), "--json", "--seconds", str(seconds)]
    completed = subprocess.run(
        [*command, "--database", database, "--template", template],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=seconds + 600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    print(json.dumps(result, indent=2))  # the figures, for the log (-s) and docs/PERFORMANCE.md

    admin, portal = result["surfaces"]["admin"], result["surfaces"]["portal"]
    # every request answered 2xx: no 4xx/5xx, no socket errors, no timeouts, no lost session (redirect to login)
    assert (admin["errors"], portal["errors"]) == (0, 0), result["surfaces"]
    assert (admin["redirects"], portal["redirects"]) == (0, 0), result["surfaces"]
    assert admin["requests"] > 0 and portal["requests"] > 0
    assert result["server"]["log_tracebacks"] == 0
    # the billing that ran meanwhile: one invoice per subscription and month, gapless numbers, every run clean
    billing = result["billing"]
    assert billing["error"] is None, billing["error"]
    assert billing["runs"] >= 1
    assert billing["invoices_found"] == billing["invoices_expected"] == billing["subscriptions"] * billing["months"]
    assert billing["invoices_created_by_runs"] == billing["invoices_expected"]
    assert (billing["duplicate_periods"], billing["number_gaps"], billing["runs_not_succeeded"]) == (0, [], 0)
    assert billing["subscriptions_not_advanced"] == 0
    assert billing["exactly_once"] is True
