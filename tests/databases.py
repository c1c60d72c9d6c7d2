"""PostgreSQL databases the suite copies instead of building again (docs/PERFORMANCE.md, "Test suite").

``migrated_template()``: the project's migrations applied once to a template database, named after a fingerprint
of every migration file and every installed package version. Each test process's database (one per xdist
worker, the e2e process) and the load test's database are ``CREATE DATABASE … TEMPLATE`` copies of it — a file
copy instead of sixty migrations; Django's ``migrate`` still runs on the copy (nothing left to apply; its
post-migrate handlers run as on a fresh database). The first process to need the template builds it under a
PostgreSQL advisory lock, the others wait for it; a template of other migrations is dropped then.

``create_copy()`` / ``use_database()``: a database of the process's own, copied from the template, that the
default connection can be pointed at for a while (the demo seeded once per process, tests/conftest.py).

Not a conftest plugin: tests/conftest.py and tests/reliability/test_load.py import what they need.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _settings_dict() -> dict[str, Any]:
    from django.conf import settings

    return dict(settings.DATABASES["default"])


def _maintenance_connection() -> Any:
    import psycopg

    db = _settings_dict()
    return psycopg.connect(
        host=db.get("HOST") or "127.0.0.1",
        port=db.get("PORT") or 5432,
        user=db.get("USER") or "postgres",
        password=db.get("PASSWORD") or None,
        dbname="postgres",
        autocommit=True,
    )


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _fingerprint() -> str:
    """What a migrated database depends on: the migration files (ours and the installed packages') and the
    versions of the installed packages."""
    digest = hashlib.sha256()
    for path in sorted(ROOT.glob("*/migrations/*.py")) + sorted(ROOT.glob("*/*/migrations/*.py")):
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    versions = sorted(f"{dist.metadata['Name']}=={dist.version}" for dist in importlib.metadata.distributions())
    digest.update("\n".join(versions).encode())
    digest.update(sys.version.encode())
    return digest.hexdigest()[:12]


def template_base() -> str:
    """The test database's name before the xdist suffix (``test_billing`` or TEST_DATABASE_NAME)."""
    return os.environ.get("TEST_DATABASE_NAME", "test_billing")


def _database_url(name: str) -> str:
    db = _settings_dict()
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host, port = db.get("HOST") or "127.0.0.1", db.get("PORT") or 5432
    return f"postgres://{db.get('USER') or 'postgres'}{password}@{host}:{port}/{name}"


def migrated_template() -> str:
    """The name of the migrated template database, built first if it does not exist yet."""
    base = template_base()
    name = f"{base}_tmpl_{_fingerprint()}"
    import psycopg

    with _maintenance_connection() as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", [f"{base}_tmpl"])
        try:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                return name
            building = f"{name}_build"
            conn.execute(f"DROP DATABASE IF EXISTS {_quote(building)} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {_quote(building)}")
            env = {
                **os.environ,
                "DJANGO_SETTINGS_MODULE": "billing_project.settings_test",
                "DATABASE_URL": _database_url(building),
            }
            done = subprocess.run(
                [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=1200,
                check=False,
            )
            if done.returncode != 0:
                conn.execute(f"DROP DATABASE IF EXISTS {_quote(building)} WITH (FORCE)")
                raise RuntimeError(f"migrating the template failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
            conn.execute(f"ALTER DATABASE {_quote(building)} RENAME TO {_quote(name)}")
            stale = conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s AND datname <> %s",
                [f"{base}\\_tmpl\\_%", name],
            ).fetchall()
            for (old,) in stale:
                # in use by a run of other migrations (it is dropped by a later run)
                with suppress(psycopg.errors.ObjectInUse):
                    conn.execute(f"DROP DATABASE IF EXISTS {_quote(old)}")
            return name
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", [f"{base}_tmpl"])


def create_copy(name: str, *, template: str) -> None:
    """(Re-)create database ``name`` as a copy of ``template``."""
    with _maintenance_connection() as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {_quote(name)} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {_quote(name)} TEMPLATE {_quote(template)}")


def create_empty(name: str) -> None:
    """(Re-)create database ``name`` empty (no migration applied)."""
    with _maintenance_connection() as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {_quote(name)} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {_quote(name)}")


def drop(name: str) -> None:
    with _maintenance_connection() as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {_quote(name)} WITH (FORCE)")


@contextmanager
def use_database(name: str) -> Iterator[None]:
    """Point Django's default connection at database ``name`` until the block ends."""
    from django.db import connections

    connection = connections["default"]
    original = connection.settings_dict["NAME"]
    connection.close()
    connection.settings_dict["NAME"] = name
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict["NAME"] = original


@contextmanager
def rolled_back_on(name: str) -> Iterator[None]:
    """The default connection on database ``name`` inside a transaction that is rolled back when the block ends:
    each test inside runs in a savepoint of it (pytest-django's ``db``), nothing outlives the block."""
    from django.db import transaction

    with use_database(name):
        outer = transaction.atomic()
        outer.__enter__()
        try:
            yield
        finally:
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)


def _delete_all_sql(tables: list[str]) -> str:
    """One statement that empties ``tables`` with DELETE, every trigger off for the transaction (foreign keys
    included: every table goes, so none is left pointing at a deleted row; the audit trail's triggers neither
    record nor refuse the deletions, as with TRUNCATE)."""
    # Django's own table names, each quoted as an SQL string literal; the loop quotes it as an identifier
    names = ", ".join("'" + table.replace("'", "''") + "'" for table in tables)
    loop = f"FOREACH t IN ARRAY ARRAY[{names}]::text[] LOOP EXECUTE 'DELETE FROM ' || quote_ident(t); END LOOP;"  # noqa: S608
    return f"DO $flush$ DECLARE t text; BEGIN SET LOCAL session_replication_role = replica; {loop} END $flush$;"


def flush_with_delete() -> None:
    """The transactional tests' flush (Django's ``flush`` after each one) with DELETE instead of TRUNCATE.

    TRUNCATE gives each of the ~120 tables and its indexes new files: 0.7 s a flush on a quiet 2-core machine and
    2.5–3 s while the suite runs, after each of the ~80 transactional tests; DELETE of the few rows a test left
    takes a few milliseconds. The same rows go (every table Django flushes, no sequence reset, as TRUNCATE without
    RESTART IDENTITY); a flush that resets sequences or cascades, or a database user who may not turn triggers
    off (``session_replication_role`` needs a superuser), keeps Django's TRUNCATE. Test processes only: this
    replaces the method on PostgreSQL's DatabaseOperations in the process that calls it."""
    from django.db.backends.postgresql.operations import DatabaseOperations

    truncate = DatabaseOperations.sql_flush
    if getattr(truncate, "deletes", False):
        return

    def sql_flush(
        self: DatabaseOperations, style: Any, tables: Any, *, reset_sequences: bool = False, allow_cascade: bool = False
    ) -> list[str]:
        if tables and not reset_sequences and not allow_cascade and _may_disable_triggers(self.connection):
            return [_delete_all_sql(list(tables))]
        return truncate(self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade)

    sql_flush.deletes = True  # type: ignore[attr-defined]
    DatabaseOperations.sql_flush = sql_flush  # type: ignore[method-assign]


def _may_disable_triggers(connection: Any) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        row = cursor.fetchone()
    return bool(row and row[0])
