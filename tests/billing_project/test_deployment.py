"""A deployment refuses what the code publishes (billing_project/deployment.py): the example and default secret
keys, the development settings module with DEBUG off, a per-process cache; and ``check --deploy`` names each."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from billing_project import deployment

ROOT = Path(__file__).resolve().parents[2]


def _env(**values: str) -> dict[str, str]:
    """This process's environment without the test settings, services and secrets, plus ``values``."""
    dropped = ("DJANGO_", "DATABASE_URL", "CELERY_", "SECRET_KEY", "CACHE_URL", "PAYMENTS_", "ANYMAIL", "DEBUG")
    env = {key: value for key, value in os.environ.items() if not key.startswith(dropped)}
    env.update(values)
    return env


def _production(**values: str) -> dict[str, str]:
    defaults = {
        "DJANGO_SETTINGS_MODULE": "billing_project.settings_production",
        "SECRET_KEY": secrets.token_urlsafe(60),
        "ALLOWED_HOSTS": "billing.example.com",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres",
        "PAYMENTS_DEFAULT_GATEWAY": "stripe",
        "CACHE_URL": "redis://127.0.0.1:6379/14",
    }
    return _env(**{**defaults, **values})


def _run(command: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def test_every_secret_key_published_in_the_repository_is_in_the_refused_list() -> None:
    """The list is what production refuses where the docs are not deployed; a new snippet must join it."""
    found = deployment.secret_keys_in_files(ROOT / name for name in deployment.PUBLISHED_FILES)
    found.add(deployment.DEMO_SECRET_KEY)
    assert ".env.example" and "change-me-to-a-random-string-of-at-least-50-characters" in found
    assert found <= deployment.PUBLISHED_SECRET_KEYS, found - deployment.PUBLISHED_SECRET_KEYS


@pytest.mark.parametrize("key", sorted(deployment.published_secret_keys()))
def test_production_refuses_to_start_with_any_published_secret_key(key: str) -> None:
    result = _run([sys.executable, "manage.py", "check"], _production(SECRET_KEY=key))
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr  # one clear line, not a stack


def test_production_refuses_placeholder_keys_of_any_length() -> None:
    for key in ("change-me-" + secrets.token_urlsafe(60), "INSECURE" + secrets.token_urlsafe(60)):
        assert deployment.secret_key_problem(key) == "SECRET_KEY looks like a placeholder"
    assert deployment.secret_key_problem(secrets.token_urlsafe(60)) is None


@pytest.mark.parametrize("cache_url", ["locmemcache://", "dummycache://"])
def test_production_refuses_a_cache_local_to_each_process(cache_url: str) -> None:
    refused = _run([sys.executable, "manage.py", "check"], _production(CACHE_URL=cache_url))
    assert refused.returncode != 0
    assert "CACHE_URL" in refused.stderr and "shared cache" in refused.stderr


def test_production_starts_with_a_shared_cache() -> None:
    accepted = _run([sys.executable, "manage.py", "check"], _production())
    assert accepted.returncode == 0, accepted.stderr


DEVELOPMENT_WITHOUT_DEBUG = {"DEBUG": "false", "CELERY_BROKER_URL": "memory://"}


def test_wsgi_refuses_the_development_settings_when_debug_is_off() -> None:
    refused = _run([sys.executable, "-c", "import billing_project.wsgi"], _env(**DEVELOPMENT_WITHOUT_DEBUG))
    assert refused.returncode != 0
    assert "ImproperlyConfigured" in refused.stderr and "billing_project.settings_production" in refused.stderr
    allowed = _run(
        [sys.executable, "-c", "import billing_project.wsgi"], _env(DEBUG="1", CELERY_BROKER_URL="memory://")
    )
    assert allowed.returncode == 0, allowed.stderr


def test_manage_refuses_the_development_settings_when_debug_is_off() -> None:
    refused = _run([sys.executable, "manage.py", "check"], _env(**DEVELOPMENT_WITHOUT_DEBUG))
    assert refused.returncode != 0
    assert "billing_project.settings_production" in refused.stderr and "DEBUG" in refused.stderr
    named = _run(
        [sys.executable, "manage.py", "check"],
        _env(DJANGO_SETTINGS_MODULE="billing_project.settings", **DEVELOPMENT_WITHOUT_DEBUG),
    )
    assert named.returncode != 0 and "billing_project.settings_production" in named.stderr
    allowed = _run([sys.executable, "manage.py", "check"], _env(DEBUG="1", CELERY_BROKER_URL="memory://"))
    assert allowed.returncode == 0, allowed.stderr


@pytest.mark.parametrize("program", ["worker", "beat"])
def test_celery_worker_and_beat_refuse_the_development_settings_when_debug_is_off(program: str, tmp_path: Path) -> None:
    celery = str(Path(sys.executable).with_name("celery"))
    extra = ["--pool=solo"] if program == "worker" else ["--scheduler=celery.beat:PersistentScheduler"]
    command = [celery, "-A", "billing_project", program, *extra, "--loglevel=WARNING"]
    if program == "beat":
        command.append(f"--schedule={tmp_path / 'beat-schedule'}")
    try:
        result = _run(command, _env(**DEVELOPMENT_WITHOUT_DEBUG), timeout=40)
    except subprocess.TimeoutExpired:
        pytest.fail(f"celery {program} started with the development settings and DEBUG off")
    assert result.returncode != 0
    assert "billing_project.settings_production" in result.stdout + result.stderr


def test_check_deploy_names_each_problem_of_the_development_profile() -> None:
    result = _run([sys.executable, "manage.py", "check", "--deploy"], _env(DEBUG="1", CELERY_BROKER_URL="memory://"))
    assert result.returncode != 0
    for check_id in ("billing.E001", "billing.E002", "billing.E003", "billing.E004", "billing.E005"):
        assert check_id in result.stderr, (check_id, result.stderr)


def test_check_deploy_names_a_published_key_under_any_settings_module() -> None:
    key = "change-me-to-a-random-string-of-at-least-50-characters"
    result = _run(
        [sys.executable, "manage.py", "check", "--deploy"],
        _env(DEBUG="1", CELERY_BROKER_URL="memory://", SECRET_KEY=key, CACHE_URL="redis://127.0.0.1:6379/14"),
    )
    assert "billing.E001" in result.stderr and "published" in result.stderr
    assert "billing.E003" not in result.stderr


def test_check_deploy_names_a_ledger_client_id_without_a_token_key() -> None:
    env = _env(DEBUG="1", CELERY_BROKER_URL="memory://", LEDGER_XERO_CLIENT_ID="xero-app", LEDGER_TOKEN_KEY="")
    result = _run([sys.executable, "manage.py", "check", "--deploy"], env)
    assert "billing.E006" in result.stderr and "LEDGER_TOKEN_KEY is not set, but xero" in result.stderr
