"""Staff groups and what each may do. The groups are created by a migration (customers 0002); their
permissions are (re)applied after every ``migrate`` because permissions of models added by later
migrations only exist once those have run. Later apps extend ``GROUP_PERMISSIONS``."""

from __future__ import annotations

from typing import Any

BILLING_ADMIN = "Billing admin"
BILLING_CLERK = "Billing clerk"
AUDITOR = "Auditor (read-only)"
STAFF_GROUPS = (BILLING_ADMIN, BILLING_CLERK, AUDITOR)

# app label -> actions. "*" = every model of the app. Billing admins may do everything in the billing apps
# and the schedules; clerks do the daily work but delete nothing; auditors only look.
_BILLING_APPS = ("customers", "subscriptions", "invoicing", "payments")
GROUP_PERMISSIONS: dict[str, dict[str, tuple[str, ...]]] = {
    BILLING_ADMIN: dict.fromkeys((*_BILLING_APPS, "django_celery_beat"), ("add", "change", "delete", "view")),
    BILLING_CLERK: {
        **dict.fromkeys(_BILLING_APPS, ("add", "change", "view")),
        "django_celery_beat": ("view",),
    },
    AUDITOR: dict.fromkeys((*_BILLING_APPS, "django_celery_beat"), ("view",)),
}


def sync_staff_group_permissions(sender: Any = None, **kwargs: Any) -> None:
    from django.contrib.auth.models import Group, Permission

    using = kwargs.get("using", "default")
    for group_name, rules in GROUP_PERMISSIONS.items():
        group = Group.objects.using(using).filter(name=group_name).first()
        if group is None:  # the migration that creates them has not run on this database yet
            continue
        wanted = []
        for app_label, actions in rules.items():
            codename_prefixes = tuple(f"{action}_" for action in actions)
            for perm in Permission.objects.using(using).filter(content_type__app_label=app_label):
                if perm.codename.startswith(codename_prefixes):
                    wanted.append(perm)
        group.permissions.set(wanted)
