from django.apps import AppConfig


class ReportingConfig(AppConfig):
    name = "reporting"
    verbose_name = "Reports"

    def ready(self) -> None:
        from notifications.sending import register_attachment_provider
        from reporting import statements

        # the statement of account's PDF, rendered when its e-mail is sent
        register_attachment_provider(statements.statement_email_attachment)
        from reporting import datev
        from reporting.exports import FILE_WRITERS, ExportFormat

        # the DATEV files of the accounting export (they read the export's selectors)
        FILE_WRITERS[ExportFormat.DATEV] = datev.datev_bookings_write
        FILE_WRITERS[ExportFormat.DATEV_DEBITORS] = datev.datev_debitors_write
