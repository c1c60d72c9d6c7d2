from django.apps import AppConfig


class CoreConfig(AppConfig):
    """The lowest layer: domain events and their dispatcher. Imports no other app of the project; the apps
    register their handlers here in their own ``AppConfig.ready()``."""

    name = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from core.admin_lists import readable_booleans

        readable_booleans()  # yes/no words instead of the admin's ✔/✖ icons, in every admin
