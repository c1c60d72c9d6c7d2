"""Reporting's own rows: the results of the integrity check (reporting/integrity.py)."""

from __future__ import annotations

from django.db import models


class IntegrityCheck(models.Model):
    """One run of ``verify_integrity`` (the nightly job or the command): how many rows each check read and every
    broken row it found (model, id, what is wrong, expected and found; the first 1,000 are stored)."""

    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    ok = models.BooleanField(help_text="No problem found.")
    problem_count = models.PositiveIntegerField(default=0)
    checked = models.JSONField(default=dict, blank=True, help_text="Rows read per check.")
    problems = models.JSONField(default=list, blank=True)
    triggered_by = models.CharField(max_length=40, help_text="command or schedule")

    class Meta:
        ordering = ["-started_at", "-pk"]
        indexes = [models.Index(fields=["-started_at"], name="integrity_check_started_idx")]

    def __str__(self) -> str:
        outcome = "clean" if self.ok else f"{self.problem_count} problem(s)"
        return f"Integrity check {self.started_at:%Y-%m-%d %H:%M}: {outcome}"
