from __future__ import annotations

from typing import Any

from billing_project.demo import DEMO_STAFF, seed_all
from core.commands import BaseCommand


class Command(BaseCommand):
    help = "Load realistic demo data (idempotent: running it again changes nothing)."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write("Seeding demo data (records that already exist are kept as they are):")
        seed_all(log=self.stdout.write)
        self.stdout.write(f"Staff logins (demo only): {', '.join(f'{m.username}/{m.password}' for m in DEMO_STAFF)}")
