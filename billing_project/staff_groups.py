"""Staff groups and what each may do. The groups are created by a migration (customers 0002); their
permissions are (re)applied after every ``migrate`` because permissions of models added by later
migrations only exist once those have run. Later apps extend ``GROUP_PERMISSIONS``."""

from __future__ import annotations

from typing import Any

BILLING_ADMIN = "Billing admin"
BILLING_CLERK = "Billing clerk"
AUDITOR = "Auditor (read-only)"
STAFF_GROUPS = (BILLING_ADMIN, BILLING_CLERK, AUDITOR)

CRUD = ("add", "change", "delete", "view")
# Rules are (app label, model name or "*", actions); an action is a codename prefix, so "void" grants
# "void_invoice". A more specific rule (a named model) replaces the app-wide one for that model.
Rule = tuple[str, str, tuple[str, ...]]
_BILLING_APPS = ("notifications", "customers", "subscriptions", "invoicing", "payments", "dunning")

GROUP_PERMISSIONS: dict[str, list[Rule]] = {
    # Billing admins may do everything in the billing apps and edit the schedules.
    BILLING_ADMIN: [
        *((app, "*", CRUD) for app in _BILLING_APPS),
        ("invoicing", "invoice", (*CRUD, "finalize", "void", "mark_uncollectible")),
        ("payments", "payment", (*CRUD, "refund")),
        ("payments", "wallet", (*CRUD, "grant", "top_up", "refund")),
        ("django_celery_beat", "*", CRUD),
        # the "Periodic jobs" page, and its "Run now"
        ("billing_project", "schedule", ("view", "run")),
        ("reporting", "integritycheck", ("view",)),
        ("core", "auditevent", ("view",)),
        # API keys (api app) are a billing admin's alone: a key can do what the API can, for anyone holding it.
        ("api", "apikey", ("add", "change", "view")),
        # Outgoing webhooks: endpoints and their secrets, resending deliveries (docs/WEBHOOKS.md).
        ("webhooks", "webhookendpoint", (*CRUD, "rotate_secret")),
        ("webhooks", "webhookdelivery", ("view", "resend")),
        ("accounting", "*", CRUD),
        # the ledger sync (docs/decisions/ledger-sync.md): connect Xero / QuickBooks, run it, retry failed records
        ("accounting", "ledgerconnection", (*CRUD, "connect")),
        ("accounting", "syncrecord", ("view", "retry")),
    ],
    # Clerks do the daily work — customers, subscriptions, drafts, finalizing, credit notes — but delete
    # nothing, cannot void or write off, and only look at tax rates, number series and schedules.
    BILLING_CLERK: [
        *((app, "*", ("add", "change", "view")) for app in _BILLING_APPS),
        ("invoicing", "invoice", ("add", "change", "view", "finalize")),
        # wallets: clerks grant promotions and top up; refunding paid credits is an admin's
        ("payments", "wallet", ("add", "change", "view", "grant", "top_up")),
        ("invoicing", "taxrate", ("view",)),
        ("invoicing", "numberseries", ("view",)),
        ("customers", "sellerprofile", ("view",)),
        ("invoicing", "billingrun", ("view",)),
        ("django_celery_beat", "*", ("view",)),
        ("billing_project", "schedule", ("view",)),
        ("reporting", "integritycheck", ("view",)),
        ("core", "auditevent", ("view",)),
        ("webhooks", "*", ("view",)),
        ("accounting", "*", ("view",)),
    ],
    AUDITOR: [
        *(
            (app, "*", ("view",))
            for app in (*_BILLING_APPS, "django_celery_beat", "reporting", "webhooks", "accounting")
        ),
        ("billing_project", "schedule", ("view",)),
        ("core", "auditevent", ("view",)),
    ],
}


def _actions_by_model(rules: list[Rule]) -> tuple[dict[str, tuple[str, ...]], dict[tuple[str, str], tuple[str, ...]]]:
    per_app: dict[str, tuple[str, ...]] = {}
    per_model: dict[tuple[str, str], tuple[str, ...]] = {}
    for app_label, model, actions in rules:
        if model == "*":
            per_app[app_label] = actions
        else:
            per_model[(app_label, model)] = actions
    return per_app, per_model


def sync_staff_group_permissions(sender: Any = None, **kwargs: Any) -> None:
    from django.contrib.auth.models import Group, Permission

    using = kwargs.get("using", "default")
    all_permissions = list(Permission.objects.using(using).select_related("content_type"))
    for group_name, rules in GROUP_PERMISSIONS.items():
        group = Group.objects.using(using).filter(name=group_name).first()
        if group is None:  # the migration that creates them has not run on this database yet
            continue
        per_app, per_model = _actions_by_model(rules)
        wanted = []
        for perm in all_permissions:
            app_label, model = perm.content_type.app_label, perm.content_type.model
            actions = per_model.get((app_label, model), per_app.get(app_label))
            if actions and perm.codename.startswith(tuple(f"{action}_" for action in actions)):
                wanted.append(perm)
        group.permissions.set(wanted)
