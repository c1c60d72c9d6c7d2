from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from api.demo import DEMO_API_KEY
from billing_project.demo import DEMO_STAFF
from billing_project.portal import DEMO_PORTAL_EMAIL
from core.commands import BaseCommand


def _relative(path: str | Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _serving(host: str, port: int) -> bool:
    """Whether something accepts connections on ``host:port`` (a bare connect: no request in the server's log)."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Command(BaseCommand):
    help = (
        "Print how to use the demo: addresses, logins, where e-mails go (`make demo` runs it once the server "
        "answers, so it is the last thing on the screen)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--wait",
            type=float,
            default=0,
            metavar="SECONDS",
            help="First wait up to SECONDS for the server at PORTAL_BASE_URL to accept connections; "
            "print nothing if it does not.",
        )

    def handle(self, *args: Any, wait: float = 0, **options: Any) -> None:
        base = settings.PORTAL_BASE_URL.rstrip("/")
        if wait:
            address = urlsplit(base)
            deadline = time.monotonic() + wait
            while not _serving(address.hostname or "127.0.0.1", address.port or 80):
                if time.monotonic() > deadline:
                    return
                time.sleep(0.2)
        mail = _relative(settings.EMAIL_FILE_PATH)
        camt = settings.VAR_DIR / "camt053-demo.xml"
        line = "=" * 78
        out = [
            line,
            f"{settings.PRODUCT_NAME} demo is running.",
            "",
            f"  Admin (staff)    {base}/admin/   demo logins (user / password):",
            *(
                f"    {m.username + ' / ' + m.password:<20} {'superuser' if m.superuser else m.group}"
                for m in DEMO_STAFF
            ),
            "    two-factor sign-in is "
            + ("ON: each login sets up an authenticator app first" if settings.OTP_REQUIRED else "off in the demo")
            + " (OTP_REQUIRED, docs/SECURITY.md)",
            f"  Customer portal  {base}/portal/",
            f"    sign in as {DEMO_PORTAL_EMAIL}: the sign-in link is e-mailed, i.e. written to {mail}/",
            f"  E-mails          every e-mail (invoices, reminders, sign-in links) is a file in {mail}/",
        ]
        if camt.exists():
            out += [
                f"  Bank statement   {_relative(camt)} (CAMT.053) pays a few open invoices; import it at",
                f"    {base}/admin/payments/bankstatement/import/",
            ]
        out += [
            f"  REST API         {base}/api/v1/docs/ (reference), key for the demo:",
            f"    {DEMO_API_KEY}",
            f"    curl -H 'Authorization: Bearer {DEMO_API_KEY}' {base}/api/v1/customers",
            "  Worker + beat    log in var/worker.log",
            "",
            "Ctrl-C stops the server and the worker; `make clean` removes the demo data.",
            line,
        ]
        self.stdout.write("\n".join(out))
