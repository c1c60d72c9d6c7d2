from django.apps import AppConfig


class ReportingConfig(AppConfig):
    name = "reporting"
    verbose_name = "Reports"

    def ready(self) -> None:
        from notifications.sending import register_attachment_provider
        from reporting import statements

        # the statement of account's PDF, rendered when its e-mail is sent
        register_attachment_provider(statements.statement_email_attachment)
