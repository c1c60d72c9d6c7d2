"""``manage.py create_api_key --name NAME --scope read|write``: prints the new key once; only its hash is kept."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from api.keys import api_key_create
from api.models import ApiScope
from core.commands import BaseCommand


class Command(BaseCommand):
    help = "Create an API key and print it (once: only its hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="Who uses the key, e.g. 'CRM sync'.")
        parser.add_argument("--scope", required=True, help=f"One of: {', '.join(ApiScope.values)}.")

    def handle(self, *args: Any, **options: Any) -> None:
        new = api_key_create(name=options["name"], scope=options["scope"])
        self.stdout.write(
            f"Created API key {new.api_key.name!r} (scope {new.api_key.scope}, prefix {new.api_key.prefix})."
        )
        self.stdout.write("Store it now; it is not shown again:")
        self.stdout.write(new.key)
