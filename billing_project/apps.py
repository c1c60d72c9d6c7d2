from django.apps import AppConfig


class BillingProjectConfig(AppConfig):
    name = "billing_project"
    verbose_name = "Billing"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from billing_project import checks  # noqa: F401 - registers the deploy checks (billing.E001 …)
        from billing_project.celery import ensure_broker_folders
        from billing_project.jobs import connect_signals as connect_job_run_signals
        from billing_project.staff_groups import sync_staff_group_permissions

        ensure_broker_folders()
        # The runs of the periodic jobs (when, how long, result) for the "Periodic jobs" page.
        connect_job_run_signals()
        # Permissions only exist after migrate has created them; keep the staff groups in step each time.
        post_migrate.connect(sync_staff_group_permissions, dispatch_uid="sync_staff_group_permissions")
