#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_project.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    from billing_project.deployment import refuse_base_settings_without_debug

    # The development profile with DEBUG off is a deployment that forgot DJANGO_SETTINGS_MODULE: stop, and say so.
    try:
        refuse_base_settings_without_debug()
    except ImproperlyConfigured as exc:
        sys.exit(f"ImproperlyConfigured: {exc}")
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
