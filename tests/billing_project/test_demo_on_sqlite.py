"""`make demo` runs on SQLite (no server needed) while the suite runs on PostgreSQL: this seeds the demo the way
the Makefile does, on a SQLite file, so SQL that only PostgreSQL understands cannot break the demo unseen."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_demo_seeds_on_sqlite(tmp_path: Path) -> None:
    database = tmp_path / "demo.sqlite3"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "billing_project.settings",
        "DEBUG": "1",
        "DATABASE_URL": f"sqlite:///{database}",
        "CELERY_BROKER_URL": "memory://",
        "CELERY_TASK_ALWAYS_EAGER": "true",
        "MEDIA_ROOT": str(tmp_path / "media"),
        "EMAIL_FILE_PATH": str(tmp_path / "mail"),
        "LOG_LEVEL": "WARNING",
        "OTP_REQUIRED": "false",
    }
    for command in (["migrate", "--noinput", "-v", "0"], ["seed_demo"]):
        done = subprocess.run(
            [sys.executable, "manage.py", *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, (command, done.stdout[-3000:], done.stderr[-3000:])
    with sqlite3.connect(database) as db:
        (issued,) = db.execute("SELECT count(*) FROM invoicing_invoice WHERE status != 'draft'").fetchone()
        (runs,) = db.execute("SELECT count(*) FROM invoicing_billingrun WHERE status = 'succeeded'").fetchone()
    assert issued > 100 and runs > 10
