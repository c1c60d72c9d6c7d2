"""Helpers shared by the security tests (tests/reliability/test_security_*.py). Not a conftest plugin: the test
modules import what they need from here, so nothing leaks into other folders.

``db_digest()`` fingerprints every table of the database (one md5 over its rows, in a stable order), so a test can
say "this request changed nothing" without naming the tables a future feature might write to.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from django.db import connection
from django.test import Client

# Sessions change on every request that touches them (that is how sign-in and deep links work); what a request
# must not change is business data.
VOLATILE_TABLES = frozenset({"django_session"})


def db_digest(*, exclude: Iterable[str] = VOLATILE_TABLES) -> dict[str, str]:
    """``{table: md5 of all its rows}`` for every table of the default database."""
    skipped = set(exclude)
    digest: dict[str, str] = {}
    with connection.cursor() as cursor:
        for table in sorted(connection.introspection.table_names(cursor)):
            if table in skipped:
                continue
            quoted = connection.ops.quote_name(table)
            cursor.execute(f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {quoted} t")  # noqa: S608
            digest[table] = cursor.fetchone()[0]
    return digest


def changed_tables(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(table for table in before.keys() | after.keys() if before.get(table) != after.get(table))


def database_text() -> str:
    """Every row of every table as text, plus the decoded session payloads (Django stores them signed and
    compressed, so a raw search of the table would miss a value inside)."""
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session

    parts: list[str] = []
    with connection.cursor() as cursor:
        for table in sorted(connection.introspection.table_names(cursor)):
            quoted = connection.ops.quote_name(table)
            cursor.execute(f"SELECT t::text FROM {quoted} t")  # noqa: S608
            parts.extend(row[0] for row in cursor.fetchall())
    for session in Session.objects.all():
        parts.append(repr(SessionStore().decode(session.session_data)))
    return "\n".join(parts)


def basic_auth(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


def csrf_client_with_token(client: Client, url: str) -> str:
    """GET ``url`` with ``client`` and return the CSRF token its cookie now holds."""
    client.get(url)
    return str(client.cookies["csrftoken"].value)


def response_text(response: Any) -> str:
    content = getattr(response, "content", b"")
    return content.decode("utf-8", "replace") if isinstance(content, bytes) else str(content)


ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_HOST = "billing.example.com"
_PRODUCTION_PRELUDE = """
import json, django
django.setup()
from django.test import Client
client = Client(raise_request_exception=False, HTTP_HOST="billing.example.com")
"""


def run_under_production(code: str, env: dict[str, str] | None = None) -> Any:
    """Run ``code`` in a fresh interpreter under ``billing_project.settings_production`` (with a strong random
    SECRET_KEY and none of the test process's service or secret variables); it has ``client`` (a Django test
    client for https://billing.example.com) and must print one JSON value as its last line, which is returned."""
    inherited = ("DATABASE_URL", "CELERY_", "ANYMAIL", "PAYMENTS_", "STRIPE_", "DJANGO_", "SECRET_KEY", "EMAIL_")
    clean = {key: value for key, value in os.environ.items() if not key.startswith(inherited)}
    clean.update(
        {
            "DJANGO_SETTINGS_MODULE": "billing_project.settings_production",
            "SECRET_KEY": secrets.token_urlsafe(60),
            "ALLOWED_HOSTS": PRODUCTION_HOST,
            "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres",
            "PAYMENTS_DEFAULT_GATEWAY": "stripe",
            "CACHE_URL": "redis://127.0.0.1:6379/14",
            **(env or {}),
        }
    )
    result = subprocess.run(
        [sys.executable, "-c", _PRODUCTION_PRELUDE + code],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])
