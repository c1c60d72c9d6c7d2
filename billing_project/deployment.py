"""What a deployment must not run with, in one place: the secret keys published with the code, the development
settings module with DEBUG off, and a cache that each process keeps to itself.

``settings_production`` refuses to start with any of them (``ImproperlyConfigured``); ``manage.py check --deploy``
reports them under any settings module (``billing_project/checks.py``, ids ``billing.E001`` …); ``wsgi.py``,
``manage.py`` and the Celery worker and beat refuse the development module with DEBUG off
(``refuse_base_settings_without_debug``).

This module knows no Django settings at import time: ``settings.py`` and ``settings_production.py`` import it.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Iterable
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
BASE_SETTINGS_MODULE = "billing_project.settings"
PRODUCTION_SETTINGS_MODULE = "billing_project.settings_production"

# The base settings' default key: the demo runs with it, so it is public (it is in this repository).
DEMO_SECRET_KEY = "insecure-demo-key-change-me-" + "x" * 32

# Every SECRET_KEY value published with the code: the base settings' default and the examples in .env.example,
# the README and docs/. Kept as a list so that production refuses them even where the docs are not deployed;
# tests/billing_project/test_deployment.py scans those files and fails when a snippet names a key missing here.
PUBLISHED_SECRET_KEYS = frozenset(
    {
        DEMO_SECRET_KEY,
        "change-me-to-a-random-string-of-at-least-50-characters",  # .env.example
    }
)
# Where examples live (scanned at check time too, so a key added to the docs is refused before the list catches up).
PUBLISHED_FILES = (".env.example", "README.md", "docs")
# Placeholders people leave in, whatever their length.
_PLACEHOLDER_WORDS = ("change-me", "changeme", "change_me", "insecure", "replace-me", "your-secret", "example")
_KEY_IN_TEXT = re.compile(r"""SECRET_KEY\s*(?:=|:)\s*["'`]?([^\s"'`,;)|]+)""")

# Caches local to one process: rate limits (portal sign-in) would count per process, so N web processes allow N
# times the limit, and a restart forgets every count.
PROCESS_LOCAL_CACHES = frozenset(
    {"django.core.cache.backends.locmem.LocMemCache", "django.core.cache.backends.dummy.DummyCache"}
)


def secret_keys_in_files(paths: Iterable[Path]) -> set[str]:
    """The values assigned to SECRET_KEY in these files (folders: their *.md and *.example files)."""
    keys: set[str] = set()
    for path in paths:
        files = sorted(path.rglob("*.md")) + sorted(path.rglob("*.example")) if path.is_dir() else [path]
        for file in files:
            if file.is_file():
                keys.update(_KEY_IN_TEXT.findall(file.read_text(encoding="utf-8", errors="replace")))
    return keys


def published_secret_keys() -> frozenset[str]:
    return PUBLISHED_SECRET_KEYS | secret_keys_in_files(BASE_DIR / name for name in PUBLISHED_FILES)


def secret_key_problem(key: str) -> str | None:
    """Why ``key`` must not sign a production deployment's sessions and links, or None."""
    if not key:
        return "SECRET_KEY is not set"
    if key in published_secret_keys():
        return "SECRET_KEY is an example key published with the code (.env.example, settings.py, README or docs/)"
    lowered = key.lower()
    if any(word in lowered for word in _PLACEHOLDER_WORDS):
        return "SECRET_KEY looks like a placeholder"
    if len(key) < 50 or len(set(key)) < 5:
        return "SECRET_KEY must be a random string of at least 50 characters"
    return None


# The ledger sync's token keys published with the code (settings_test.py): they decrypt nothing in production.
PUBLISHED_LEDGER_TOKEN_KEYS = frozenset({"dGVzdC1sZWRnZXItdG9rZW4ta2V5LTMyLWJ5dGVzLSE="})


def ledger_token_key_problem(keys: str, providers: dict[str, dict[str, object]]) -> str | None:
    """Why LEDGER_TOKEN_KEY cannot protect the Xero / QuickBooks tokens at rest, or None. Without a connected
    provider (no client id) an empty key is fine: there is nothing to encrypt."""
    configured = sorted(name for name, config in providers.items() if config.get("client_id"))
    if not keys.strip():
        if configured:
            return f"LEDGER_TOKEN_KEY is not set, but {', '.join(configured)} is configured (its client id is set)"
        return None
    for key in (part.strip() for part in keys.split(",")):
        if key in PUBLISHED_LEDGER_TOKEN_KEYS:
            return "LEDGER_TOKEN_KEY is a key published with the code (settings_test.py)"
        try:
            raw = base64.urlsafe_b64decode(key.encode("ascii"))
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raw = b""
        if len(raw) != 32:
            return "LEDGER_TOKEN_KEY is not a Fernet key (32 url-safe base64-encoded bytes)"
    return None


def cache_problem(caches: dict[str, dict[str, object]]) -> str | None:
    backend = str(caches.get("default", {}).get("BACKEND", ""))
    if backend in PROCESS_LOCAL_CACHES:
        return (
            f"the default cache ({backend.rsplit('.', 1)[-1]}) is local to each process: rate limits would count per "
            "process. Set CACHE_URL to a shared cache, e.g. redis://127.0.0.1:6379/2"
        )
    return None


def base_settings_problem(*, settings_module: str | None, debug: bool) -> str | None:
    if settings_module == BASE_SETTINGS_MODULE and not debug:
        return (
            f"DJANGO_SETTINGS_MODULE is {BASE_SETTINGS_MODULE} (the development profile: a public SECRET_KEY, the "
            "sandbox gateway, open e-mail webhooks) and DEBUG is off. A deployment uses "
            f"DJANGO_SETTINGS_MODULE={PRODUCTION_SETTINGS_MODULE}; development sets DEBUG=1"
        )
    return None


def refuse_base_settings_without_debug() -> None:
    """Called by wsgi.py, manage.py and the Celery worker and beat before they serve anything. A deployment that
    forgot DJANGO_SETTINGS_MODULE used to fall back to the development settings without a word."""
    from django.conf import settings

    if getattr(settings, "ALLOW_BASE_SETTINGS_WITHOUT_DEBUG", False):
        return  # benchmarks only (bench/load.py): never in a deployment; check --deploy still reports it
    problem = base_settings_problem(
        settings_module=os.environ.get("DJANGO_SETTINGS_MODULE") or settings.SETTINGS_MODULE, debug=settings.DEBUG
    )
    if problem:
        raise ImproperlyConfigured(problem)
