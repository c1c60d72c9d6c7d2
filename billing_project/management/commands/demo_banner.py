from __future__ import annotations

from typing import Any

from django.conf import settings

from billing_project.demo import DEMO_STAFF
from core.commands import BaseCommand


class Command(BaseCommand):
    help = "Print how to log in to the demo (used by `make demo`)."

    def handle(self, *args: Any, **options: Any) -> None:
        line = "=" * 72
        self.stdout.write(line)
        self.stdout.write(f"{settings.PRODUCT_NAME} demo — http://127.0.0.1:8000/admin/")
        self.stdout.write("Staff logins:")
        for member in DEMO_STAFF:
            role = "superuser" if member.superuser else member.group
            self.stdout.write(f"  user {member.username!r:10} password {member.password!r:10} {role}")
        self.stdout.write("Customer portal: http://127.0.0.1:8000/portal/ — sign in as portal@demo.example;")
        self.stdout.write(f"  the sign-in link is e-mailed, i.e. written as a file under {settings.EMAIL_FILE_PATH}/")
        self.stdout.write(f"E-mails (invoices, reminders, sign-in links) are written to {settings.EMAIL_FILE_PATH}/")
        self.stdout.write(line)
