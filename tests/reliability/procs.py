"""Real processes for the fault tests: Celery workers on the Redis broker (to be killed with SIGKILL), a
publisher that starts an asynchronous billing run, and helpers to find a process's PostgreSQL backend.

Isolation. Every test gets a ``Broker`` with a queue name *and* a Redis key prefix of its own (kombu's
``global_keyprefix``): the unacked-message index that a worker scans to hand out a dead worker's messages again
is one key per Redis database, so without the prefix a worker with a short visibility timeout would also
re-deliver the in-flight messages of other test runs on the same Redis.

The subprocesses run this module (``python -m tests.reliability.procs worker|billing-run …``): it loads the
test settings, adds the key prefix to the broker options (``settings_test`` resets them) and starts the worker
or the run. Everything else — the visibility timeout (``BROKER_VISIBILITY_TIMEOUT_SECONDS``), late acks,
prefetch — is the product's own configuration.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Broker:
    queue: str = field(default_factory=lambda: f"faults-{uuid.uuid4().hex[:10]}")
    keyprefix: str = ""

    def __post_init__(self) -> None:
        self.keyprefix = self.keyprefix or f"{self.queue}:"

    def purge(self) -> int:
        """Delete every Redis key of this test (messages left by a killed worker, the unacked index)."""
        import redis
        from django.conf import settings

        client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        keys = list(client.scan_iter(match=f"{self.keyprefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
        return len(keys)


def database_url(settings_dict: dict[str, Any], application_name: str) -> str:
    """The URL of the test database a subprocess must use, naming the connection so that the test can find
    the process's backend in ``pg_stat_activity``."""
    host = settings_dict["HOST"] or "127.0.0.1"
    port = settings_dict["PORT"] or 5432
    return (
        f"postgres://{settings_dict['USER']}@{host}:{port}/{settings_dict['NAME']}?application_name={application_name}"
    )


def _env(*, broker: Broker, settings_dict: dict[str, Any], application_name: str, extra: dict[str, str]) -> dict:
    from django.conf import settings

    return {
        **os.environ,
        # the test's media folder: what a worker stores (PDFs) is where the test and verify_integrity read it
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "DJANGO_SETTINGS_MODULE": "billing_project.settings_test",
        "DATABASE_URL": database_url(settings_dict, application_name),
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "CELERY_TASK_DEFAULT_QUEUE": broker.queue,
        "FAULTS_BROKER_KEYPREFIX": broker.keyprefix,
        # billing is under test; the PDFs and e-mails of the new invoices are not
        "BILLING_AFTER_FINALIZE_HOOKS": "false",
        **extra,
    }


@dataclass
class Worker:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no warm shutdown, no acknowledgement, no rollback sent to PostgreSQL — a power cut."""
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def start_worker(
    *,
    name: str,
    broker: Broker,
    settings_dict: dict[str, Any],
    log: Path,
    env: dict[str, str] | None = None,
) -> Worker:
    """One Celery worker (solo pool: the worker is one process, so SIGKILL kills all of it) consuming only the
    test's queue. Its PostgreSQL connection is named ``name``."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.reliability.procs",
            "worker",
            "--pool=solo",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-Q",
            broker.queue,
            "-n",
            f"{name}@%h",
            "--loglevel=INFO",
        ],
        cwd=ROOT,
        env=_env(broker=broker, settings_dict=settings_dict, application_name=name, extra=env or {}),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return Worker(name=name, process=process, log=log)


def publish_billing_run(
    *, broker: Broker, settings_dict: dict[str, Any], as_of: str, chunk_size: int, env: dict[str, str] | None = None
) -> int:
    """Start an asynchronous billing run the way the beat task does (``billing_run_async``) from a separate
    process on the test's broker keys; returns the run's id."""
    args = ["billing-run", as_of, str(chunk_size)]
    return int(run_command(broker=broker, settings_dict=settings_dict, args=args, env=env))


def run_command(
    *, broker: Broker, settings_dict: dict[str, Any], args: list[str], env: dict[str, str] | None = None
) -> str:
    """Run ``python -m tests.reliability.procs <args>`` (a publisher on the test's broker keys); its output."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.reliability.procs", *args],
        cwd=ROOT,
        env=_env(broker=broker, settings_dict=settings_dict, application_name="faults-publisher", extra=env or {}),
        capture_output=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stdout.decode() + result.stderr.decode())
    return result.stdout.decode().strip().splitlines()[-1]


def wait_for(condition: Callable[[], Any], *, timeout: float, interval: float = 0.2, message: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s: {message}")


def backend_in_chunk_transaction(cursor: Any, application_name: str) -> int | None:
    """The backend pid of ``application_name`` while it is inside a billing-run chunk's transaction *after*
    writing invoices: it holds the row-exclusive lock on the invoice table that only the chunk's COPY takes and
    that is released only at commit or rollback."""
    cursor.execute(
        """
        SELECT a.pid FROM pg_stat_activity a
        JOIN pg_locks l ON l.pid = a.pid
        JOIN pg_class c ON c.oid = l.relation
        WHERE a.application_name = %s AND c.relname = 'invoicing_invoice' AND l.mode = 'RowExclusiveLock'
          AND l.granted AND a.xact_start IS NOT NULL
        """,
        [application_name],
    )
    row = cursor.fetchone()
    return row[0] if row else None


def backends(cursor: Any, application_name: str) -> list[int]:
    cursor.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", [application_name])
    return [row[0] for row in cursor.fetchall()]


class ScriptedEmailBackend:
    """A stand-in for the e-mail provider, usable across processes: ``FAULTS_EMAIL_SCRIPT`` names a JSON file
    ``{"recipient@example": [500, 503, ...]}``; each send to that recipient answers the next HTTP status as
    anymail would raise it, and once the list is used up the message is accepted. Every call is appended to
    ``FAULTS_EMAIL_LOG`` as one JSON line (time, recipient, answer, subject, attachment names)."""

    def __init__(self, fail_silently: bool = False, **kwargs: Any) -> None:
        self.fail_silently = fail_silently

    def open(self) -> None:
        return None

    def close(self) -> None:
        return None

    def send_messages(self, messages: list[Any]) -> int:
        import json

        from anymail.exceptions import AnymailAPIError

        script_path = Path(os.environ["FAULTS_EMAIL_SCRIPT"])
        for message in messages:
            script = json.loads(script_path.read_text())
            recipient = message.to[0]
            pending = script.get(recipient, [])
            answer = pending.pop(0) if pending else 202
            script_path.write_text(json.dumps(script))
            entry = {
                "at": time.time(),
                "to": recipient,
                "answer": answer,
                "subject": message.subject,
                "attachments": [attachment[0] for attachment in message.attachments],
            }
            with Path(os.environ["FAULTS_EMAIL_LOG"]).open("a") as log:
                log.write(json.dumps(entry) + "\n")
            if answer >= 400:
                raise AnymailAPIError(f"provider answered HTTP {answer}", status_code=answer)
        return len(messages)


def email_log(path: Path) -> list[dict[str, Any]]:
    import json

    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _configure() -> Any:
    import django

    django.setup()
    from django.conf import settings

    from billing_project.celery import app

    if os.environ.get("FAULTS_EMAIL_SCRIPT"):
        settings.EMAIL_BACKEND = "tests.reliability.procs.ScriptedEmailBackend"

    options = dict(app.conf.broker_transport_options or {})
    options["global_keyprefix"] = os.environ["FAULTS_BROKER_KEYPREFIX"]
    app.conf.broker_transport_options = options
    return app


def main(argv: list[str]) -> None:
    command, *rest = argv
    app = _configure()
    if command == "worker":
        app.worker_main(["worker", *rest])
    elif command == "billing-run":
        import datetime as dt

        from invoicing.billing_tasks import billing_run_async

        as_of, chunk_size = rest
        run = billing_run_async(as_of=dt.date.fromisoformat(as_of), chunk_size=int(chunk_size))
        print(run.pk)
    elif command == "queue-invoice-email":
        from invoicing import delivery

        (invoice_id,) = rest
        email = delivery.invoice_email_on_finalize(invoice_id=int(invoice_id))
        print(email.pk if email else "")
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
