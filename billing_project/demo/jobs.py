"""The demo's first runs of the periodic jobs that beat repeats all day, so the "Periodic jobs" page has a last run
(when, how long, result) to show before the worker's beat sends them (billing_project/jobs.py)."""

from __future__ import annotations

# Quick, and safe to run at any time: each is idempotent and reads or sweeps what is left over.
DEMO_JOBS = ("Integrity check", "Domain events", "E-mail sweep", "Stale work sweeper")


def seed_job_runs() -> int:
    """Each of ``DEMO_JOBS`` once, through its Celery task in this process with the job's name in the message
    headers (the task signals record the run). A job with a recorded run is left alone: running the seed again
    changes nothing."""
    from billing_project.celery import app
    from billing_project.models import JobRun
    from billing_project.schedules import job_schedules

    app.loader.import_default_modules()
    ran = 0
    for job in job_schedules():
        if job.name not in DEMO_JOBS or JobRun.objects.filter(job_name=job.name).exists():
            continue
        app.tasks[job.task].apply(headers={"periodic_task_name": job.name}, throw=False)
        ran += 1
    return ran
