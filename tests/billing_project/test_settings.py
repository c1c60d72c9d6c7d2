import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

_PRINT_SETTINGS = """
import json, django
django.setup()
from django.conf import settings as s
print(json.dumps({
    "db_engine": s.DATABASES["default"]["ENGINE"], "db_name": str(s.DATABASES["default"]["NAME"]),
    "db_host": s.DATABASES["default"].get("HOST", ""),
    "broker": s.CELERY_BROKER_URL, "email": s.EMAIL_BACKEND, "tz": s.BILLING_TIMEZONE,
    "currency": s.DEFAULT_CURRENCY, "has_seller": hasattr(s, "SELLER"), "debug": s.DEBUG, "hosts": s.ALLOWED_HOSTS,
    "use_tz": s.USE_TZ, "beat": s.CELERY_BEAT_SCHEDULER, "acks_late": s.CELERY_TASK_ACKS_LATE,
}))
"""


def _settings_under(env: dict[str, str], module: str = "billing_project.settings") -> dict:
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "CELERY_", "SELLER_"))}
    clean_env.update({"DJANGO_SETTINGS_MODULE": module, **env})
    out = subprocess.run(
        [sys.executable, "-c", _PRINT_SETTINGS],
        cwd=ROOT,
        env=clean_env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_settings_are_read_from_the_environment():
    values = _settings_under(
        {
            "DATABASE_URL": "postgres://billing:pw@db.internal:5433/billing_prod",
            "CELERY_BROKER_URL": "redis://cache.internal:6379/2",
            "EMAIL_BACKEND": "anymail.backends.postmark.EmailBackend",
            "BILLING_TIMEZONE": "America/New_York",
            "DEFAULT_CURRENCY": "USD",
            "DEBUG": "true",
            "ALLOWED_HOSTS": "billing.acme.test,portal.acme.test",
        }
    )
    assert values["db_engine"] == "django.db.backends.postgresql"
    assert values["db_name"] == "billing_prod"
    assert values["db_host"] == "db.internal"
    assert values["broker"] == "redis://cache.internal:6379/2"
    assert values["email"] == "anymail.backends.postmark.EmailBackend"
    assert values["tz"] == "America/New_York"
    assert values["currency"] == "USD"
    # the seller is data (customers.SellerProfile, edited in the admin), not configuration
    assert values["has_seller"] is False
    assert values["debug"] is True
    assert values["hosts"] == ["billing.acme.test", "portal.acme.test"]


def test_embedded_defaults_need_no_server():
    values = _settings_under({"DEBUG": "false"})
    assert values["db_engine"] == "django.db.backends.sqlite3"
    assert values["db_name"].endswith("var/demo.sqlite3")
    assert values["broker"] == "filesystem://"
    assert values["email"] == "django.core.mail.backends.filebased.EmailBackend"
    assert values["use_tz"] is True
    assert values["beat"] == "django_celery_beat.schedulers:DatabaseScheduler"
    assert values["acks_late"] is True


def _production_env() -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "billing_project.settings_production",
        "SECRET_KEY": secrets.token_urlsafe(60),
        "ALLOWED_HOSTS": "billing.example.com",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres",
        "PAYMENTS_DEFAULT_GATEWAY": "stripe",
        "CACHE_URL": "redis://127.0.0.1:6379/14",
    }


def test_check_deploy_is_clean_under_production_settings():
    env = {**os.environ, **_production_env()}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "DEBUG"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "System check identified no issues (0 silenced)." in result.stdout


@pytest.mark.parametrize("secret", ["", "insecure-demo-key-change-me-" + "x" * 40, "short"])
def test_production_refuses_a_weak_or_missing_secret_key(secret):
    env = {**os.environ, **_production_env(), "SECRET_KEY": secret}
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_production_refuses_the_sandbox_gateway_unless_a_staging_deployment_allows_it():
    env = {**os.environ, **_production_env(), "PAYMENTS_DEFAULT_GATEWAY": "sandbox"}
    env.pop("PAYMENTS_ALLOW_SANDBOX", None)
    refused = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert refused.returncode != 0
    assert "PAYMENTS_DEFAULT_GATEWAY is 'sandbox'" in refused.stderr
    env["PAYMENTS_ALLOW_SANDBOX"] = "true"
    allowed = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert allowed.returncode == 0, allowed.stderr
