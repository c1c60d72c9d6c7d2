from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "E-mail"

    def ready(self) -> None:
        from notifications import webhooks

        webhooks.connect()
