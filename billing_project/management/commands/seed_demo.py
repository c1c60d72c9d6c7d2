from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from billing_project.demo import DEMO_STAFF, seed_all


class Command(BaseCommand):
    help = "Load realistic demo data (idempotent: running it again changes nothing)."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write("Seeding demo data (records that already exist are kept as they are):")
        seed_all(log=self.stdout.write)
        self.stdout.write("Staff logins (demo only):")
        for member in DEMO_STAFF:
            role = "superuser" if member.superuser else member.group
            self.stdout.write(f"  {member.username} / {member.password}  ({role})")
