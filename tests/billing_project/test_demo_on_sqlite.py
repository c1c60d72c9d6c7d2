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
# Both tests on one worker (`make test` runs xdist with --dist loadgroup), so the database is migrated once.
pytestmark = pytest.mark.xdist_group("sqlite")


@pytest.fixture(scope="module")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated as `make demo` migrates it (``manage.py migrate`` in a process of its own), once
    for the module: each test works on a copy of it. Migrating SQLite takes most of these tests' time."""
    folder = tmp_path_factory.mktemp("sqlite-migrated")
    database = folder / "migrated.sqlite3"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "billing_project.settings",
        "DEBUG": "1",
        "DATABASE_URL": f"sqlite:///{database}",
        "CELERY_BROKER_URL": "memory://",
        "MEDIA_ROOT": str(folder / "media"),
        "EMAIL_FILE_PATH": str(folder / "mail"),
        "LOG_LEVEL": "WARNING",
        "OTP_REQUIRED": "false",
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    return database


def _copy(source: Path, target: Path) -> None:
    """SQLite's own backup (a consistent copy whatever its journal mode)."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()


@pytest.mark.slow
def test_the_demo_seeds_on_sqlite(tmp_path: Path, migrated_sqlite: Path) -> None:
    database = tmp_path / "demo.sqlite3"
    _copy(migrated_sqlite, database)
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
    for command in (["migrate", "--noinput", "-v", "0"], ["seed_demo"]):  # migrate: nothing left but the check
        done = subprocess.run(
            [sys.executable, "manage.py", *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, (command, done.stdout[-3000:], done.stderr[-3000:])
    with sqlite3.connect(database) as db:
        (issued,) = db.execute("SELECT count(*) FROM invoicing_invoice WHERE status != 'draft'").fetchone()
        (runs,) = db.execute("SELECT count(*) FROM invoicing_billingrun WHERE status = 'succeeded'").fetchone()
    assert issued > 100 and runs > 10


_AUDIT_PAGES_ON_SQLITE = """
from django.contrib.auth.models import User
from django.test import Client
from customers.models import Customer
user = User.objects.create_superuser("root", "root@example.com", "pw")
client = Client(HTTP_HOST="127.0.0.1")
client.force_login(user)
customer = Customer.objects.create(name="Demo GmbH", email="demo@example.com", country="DE", currency="EUR")
edit = client.post(f"/admin/customers/customer/{customer.pk}/change/", {})  # a write request: the middleware runs
pages = [client.get("/admin/core/auditevent/"), client.get(f"/admin/customers/customer/{customer.pk}/change/")]
explained = ["PostgreSQL triggers" in page.content.decode() for page in pages]
print(edit.status_code, *(page.status_code for page in pages), *explained)
"""


@pytest.mark.slow
def test_the_audit_pages_explain_on_sqlite_that_the_trail_needs_postgresql(
    tmp_path: Path, migrated_sqlite: Path
) -> None:
    """pgtrigger installs nothing on SQLite: the audit list and the customer timeline say so instead of failing."""
    _copy(migrated_sqlite, tmp_path / "demo.sqlite3")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "billing_project.settings",
        "DEBUG": "1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        "CELERY_BROKER_URL": "memory://",
        "LOG_LEVEL": "WARNING",
        "OTP_REQUIRED": "false",
    }
    for command in (["migrate", "--noinput", "-v", "0"], ["shell", "-c", _AUDIT_PAGES_ON_SQLITE]):
        done = subprocess.run(
            [sys.executable, "manage.py", *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, (command, done.stdout[-3000:], done.stderr[-3000:])
    assert done.stdout.strip().splitlines()[-1].split() == ["200", "200", "200", "True", "True"]
