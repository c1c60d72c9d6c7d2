"""Test plumbing: real PostgreSQL and Redis (REQUIRE_SERVICES=1 turns their absence into a failure), and no
network beyond loopback."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

import pytest

_REAL_CONNECT = socket.socket.connect
_REAL_CONNECT_EX = socket.socket.connect_ex


def _is_loopback(address: Any) -> bool:
    if isinstance(address, str | bytes):  # unix socket path
        return True
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    if not _is_loopback(address):
        raise ConnectionRefusedError(f"tests may not reach the network: {address!r}")
    return _REAL_CONNECT(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> Any:
    if not _is_loopback(address):
        raise ConnectionRefusedError(f"tests may not reach the network: {address!r}")
    return _REAL_CONNECT_EX(self, address)


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _service_address(url_env: str, default_host: str, default_port: int) -> tuple[str, int]:
    from urllib.parse import urlparse

    url = os.environ.get(url_env)
    if not url:
        return default_host, default_port
    parsed = urlparse(url)
    return parsed.hostname or default_host, parsed.port or default_port


def pytest_configure(config: pytest.Config) -> None:
    # pytest-xdist registers its marker itself; `-p no:xdist` (a single process) must know it too
    config.addinivalue_line(
        "markers",
        "xdist_group(name): tests sharing a per-process fixture (the seeded demo, a migrated SQLite) run on one "
        "xdist worker (`make test` distributes with --dist loadgroup)",
    )


def _django_order(item: pytest.Item) -> int:
    """pytest-django's order of a test (its pytest_collection_modifyitems): 0 database, 1 transactional, 2 no
    database."""
    from django.test import TestCase, TransactionTestCase
    from pytest_django.fixtures import validate_django_db

    test_cls = getattr(item, "cls", None)
    if test_cls and issubclass(test_cls, TransactionTestCase):
        return 0 if issubclass(test_cls, TestCase) else 1
    marker = item.get_closest_marker("django_db")
    transactional, uses_db = False, False
    if marker:
        transaction, reset_sequences, *_ = validate_django_db(marker)
        transactional, uses_db = bool(transaction or reset_sequences), True
    fixtures = getattr(item, "fixturenames", ())
    transactional = transactional or "transactional_db" in fixtures or "live_server" in fixtures
    uses_db = uses_db or "db" in fixtures
    return 1 if transactional else 0 if uses_db else 2


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    required = os.environ.get("REQUIRE_SERVICES") == "1"
    pg_ok = _reachable(*_service_address("DATABASE_URL", "127.0.0.1", 5432))
    redis_ok = _reachable(*_service_address("CELERY_BROKER_URL", "127.0.0.1", 6379))
    missing = [name for name, ok in (("PostgreSQL", pg_ok), ("Redis", redis_ok)) if not ok]
    if missing and required:
        raise pytest.UsageError(f"REQUIRE_SERVICES=1 but unreachable: {', '.join(missing)}")
    for item in items:
        needs_db = item.get_closest_marker("django_db") or "django_db_setup" in getattr(item, "fixturenames", ())
        if not pg_ok and needs_db:
            item.add_marker(pytest.mark.skip(reason="PostgreSQL is not reachable"))
        if not redis_ok and item.get_closest_marker("redis"):
            item.add_marker(pytest.mark.skip(reason="Redis is not reachable"))
    # The long tests first (docs/PERFORMANCE.md, "Test suite"): xdist hands tests out in this order, so the two
    # workers do not end with one of them still running a long test alone. Only within pytest-django's order
    # (database tests, then transactional ones, then the rest), which this keeps: a transactional test's flush
    # deletes what the data migrations created (the staff groups, the dunning policy), so no database test may
    # follow one on the same worker. Stable: otherwise a module's tests stay in order.
    items.sort(key=lambda item: (_django_order(item), not item.get_closest_marker("slow")))
    # Browser tests are end-to-end tests: `make test` runs them after the parallel part, in a process of their own.
    for item in items:
        if item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.e2e)
    # Browser tests last: Playwright's session-scoped sync API leaves an event loop running in the main thread,
    # and Django refuses database calls under a running loop (SynchronousOnlyOperation) in every later
    # transactional test's set-up and flush. pytest-django (tryfirst) has ordered the items already; its order
    # is kept, the browser items just move behind the rest.
    items[:] = [item for item in items if not item.get_closest_marker("browser")] + [
        item for item in items if item.get_closest_marker("browser")
    ]
    _name_xdist_groups(config, items)


def _name_xdist_groups(config: pytest.Config, items: list[pytest.Item]) -> None:
    """What pytest-xdist 3.8's loadgroup does on a worker — ``<nodeid>@<group>``, so that its scheduler sends a
    group to one worker — for pytest 9, which keeps a node's id in ``_id`` where xdist still sets ``_nodeid``
    (without this every test is scheduled on its own and each worker seeds the demo)."""
    if not getattr(config.option, "loadgroup", False):
        return
    from _pytest.nodeid import coerce_node_id

    for item in items:
        names = sorted(
            {str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in item.iter_markers("xdist_group")}
        )
        if names and item.nodeid.rfind("@") <= item.nodeid.rfind("]"):
            item._id = coerce_node_id(f"{item.nodeid}@{'_'.join(names)}")  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    """The cache (dashboard figures, portal rate limits) never carries one test's data into the next."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _fresh_sandbox_gateway() -> Iterator[None]:
    """The sandbox gateway's remembered answers (per idempotency key) never carry one test's charge into the next:
    with the slow tests first, a test in tests/api met a failed answer an earlier test had left for the same key."""
    from payments.gateways.sandbox import SandboxGateway

    SandboxGateway.reset()
    yield
    SandboxGateway.reset()


@pytest.fixture(autouse=True)
def _media_root(settings: Any, tmp_path: Any) -> Iterator[None]:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    yield


@pytest.fixture(autouse=True)
def seller(request: pytest.FixtureRequest) -> Any:
    """Every test that uses the database sells as the same German GmbH (the seller profile is a row, like any
    data): ``tests.factories.customers.SELLER`` — tests that need another seller change the row."""
    marker = request.node.get_closest_marker("django_db")
    names = set(request.fixturenames)
    if marker is not None and marker.kwargs.get("databases") == []:
        return None
    if marker is None and not names & {"db", "transactional_db", "django_db_reset_sequences", "live_server"}:
        return None
    transactional = bool(marker and marker.kwargs.get("transaction")) or bool(
        names & {"transactional_db", "live_server"}
    )
    request.getfixturevalue("transactional_db" if transactional else "db")
    from tests.factories.customers import seller_profile_create

    return seller_profile_create()


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None) -> None:
    """Each test process's database is a copy of one migrated template (tests/databases.py), not migrated again."""
    from django.conf import settings

    from tests.databases import flush_with_delete, migrated_template

    settings.DATABASES["default"]["TEST"]["TEMPLATE"] = migrated_template()
    flush_with_delete()


@dataclass(frozen=True)
class SeededDemo:
    database: str
    media: Path


@pytest.fixture(scope="session")
def seeded_demo(django_db_setup: None, django_db_blocker: Any, tmp_path_factory: Any) -> Iterator[SeededDemo]:
    """The demo, seeded once per test process as `make demo` seeds it — `seed_demo` on a freshly migrated
    database with real commits, so the after-commit hooks (PDFs, e-mails, automatic charges) run where they
    would — in a database of its own (``<test database>_demo``, a copy of the migrated template) with its
    PDFs in a folder of its own. The tests that need the whole demo (tests/billing_project/test_seed_demo.py,
    tests/reliability/test_security_admin.py, tests/reporting/test_integrity.py) run on it inside a transaction
    rolled back at their module's end (``tests.databases.rolled_back_on``) and share the xdist group "demo", so
    one worker seeds it once. Seeding took 20–45 s; it was done five times."""
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test import override_settings

    from tests.databases import create_copy, drop, migrated_template, use_database

    name = f"{connection.settings_dict['NAME']}_demo"
    media = tmp_path_factory.mktemp("demo-media")
    template = settings.DATABASES["default"]["TEST"].get("TEMPLATE") or migrated_template()
    create_copy(name, template=template)
    with django_db_blocker.unblock(), use_database(name), override_settings(MEDIA_ROOT=str(media)):
        call_command("seed_demo", stdout=StringIO())
    yield SeededDemo(database=name, media=media)
    drop(name)


@pytest.fixture(scope="module")
def demo_media(seeded_demo: SeededDemo, tmp_path_factory: Any) -> Path:
    """A copy of the seeded demo's PDFs for one module: what a test does to a file stays in its module."""
    import shutil

    folder = tmp_path_factory.mktemp("demo-module-media")
    shutil.copytree(seeded_demo.media, folder, dirs_exist_ok=True)
    return folder
