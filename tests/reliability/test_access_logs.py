"""Access logs never hold portal link secrets: gunicorn's (the real server, its access log file, with the
project's gunicorn.conf.py) and runserver's (the django.server logger)."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
SIGN_IN_SECRET = "SiGnInSeCrEt0123456789abcdefghijklmnopqrstu"
LINK_SECRET = "eyJpIjoxLCJwIjoidmlldyJ9:1vAbCd:DeEpLiNkSeCrEt0123456789"
REFERER_SECRET = "ReFeReRsEcReT0123456789abcdefghijklmnopqrs"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str, **headers: str) -> int:
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=20) as response:  # noqa: S310 - loopback
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@pytest.mark.slow
@pytest.mark.django_db
def test_gunicorns_access_log_redacts_sign_in_and_deep_link_secrets(tmp_path: Path) -> None:
    port = _free_port()
    access_log = tmp_path / "access.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "billing_project.settings_test",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{connection.settings_dict['NAME']}",
    }
    # cwd is the project folder: gunicorn reads ./gunicorn.conf.py as a deployment would.
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "billing_project.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", "1", "--access-logfile", str(access_log), "--error-logfile", str(tmp_path / "error.log")],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                _get(f"{base}/portal/login/")
                break
            except OSError:
                time.sleep(0.3)
        _get(f"{base}/portal/login/{SIGN_IN_SECRET}/")
        _get(f"{base}/portal/link/{LINK_SECRET}/?utm=x", Referer=f"{base}/portal/login/{REFERER_SECRET}/")
        time.sleep(0.5)
    finally:
        server.terminate()
        server.wait(timeout=30)
    log = access_log.read_text()
    assert "/portal/login/[redacted]/" in log and "/portal/link/[redacted]/" in log, log
    for secret in (SIGN_IN_SECRET, LINK_SECRET, REFERER_SECRET, "DeEpLiNkSeCrEt"):
        assert secret not in log, log


def test_runservers_access_log_redacts_link_secrets(settings: Any) -> None:
    from logging.config import dictConfig

    dictConfig(settings.LOGGING)
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger("django.server")
    keep = Keep()
    logger.addHandler(keep)
    try:
        # what django.core.servers.basehttp.WSGIRequestHandler.log_message writes for each request
        logger.info('"%s" %s %s', f"POST /portal/login/{SIGN_IN_SECRET}/ HTTP/1.1", "302", "0")
        logger.info('"%s" %s %s', f"GET /portal/link/{LINK_SECRET}/ HTTP/1.1", "302", "0")
    finally:
        logger.removeHandler(keep)
    assert records == [
        '"POST /portal/login/[redacted]/ HTTP/1.1" 302 0',
        '"GET /portal/link/[redacted]/ HTTP/1.1" 302 0',
    ]
