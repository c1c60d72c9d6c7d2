from __future__ import annotations

from typing import Any

from billing_project.schedules import job_schedules, schedules_setup
from core.commands import BaseCommand


class Command(BaseCommand):
    help = (
        "Create the django-celery-beat entries of every periodic job (billing run, payment retries, reminders, "
        "PDF rendering) in BILLING_TIMEZONE. Idempotent: existing entries keep what staff changed; none is deleted."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        jobs = {job.name: job for job in job_schedules()}
        for outcome in schedules_setup():
            if options["verbosity"] < 1:
                continue
            job = jobs.get(outcome.name)
            if job is None:  # a retired job, disabled
                self.stdout.write(f"{outcome.outcome:>7}  {outcome.name} (disabled: its work moved to another job)")
            else:
                self.stdout.write(f"{outcome.outcome:>7}  {job.name} ({job.task}, {job.when})")
