"""``manage.py check --deploy``: what billing_project/deployment.py refuses, reported under any settings module."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register

from billing_project import deployment


@register(Tags.security, deploy=True)
def deployment_checks(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    problem = deployment.secret_key_problem(settings.SECRET_KEY)
    if problem:
        errors.append(
            Error(problem, hint="python -c 'import secrets; print(secrets.token_urlsafe(64))'", id="billing.E001")
        )
    if settings.SETTINGS_MODULE == deployment.BASE_SETTINGS_MODULE:
        errors.append(
            Error(
                f"{deployment.BASE_SETTINGS_MODULE} is the development profile",
                hint=f"DJANGO_SETTINGS_MODULE={deployment.PRODUCTION_SETTINGS_MODULE}",
                id="billing.E002",
            )
        )
    problem = deployment.cache_problem(settings.CACHES)
    if problem:
        errors.append(Error(problem, id="billing.E003"))
    if settings.PAYMENTS_DEFAULT_GATEWAY == "sandbox" and not settings.PAYMENTS_ALLOW_SANDBOX:
        errors.append(
            Error(
                "PAYMENTS_DEFAULT_GATEWAY is 'sandbox': customers could pay with test cards",
                hint="PAYMENTS_DEFAULT_GATEWAY=stripe, or PAYMENTS_ALLOW_SANDBOX=true on a staging deployment",
                id="billing.E004",
            )
        )
    if not getattr(settings, "ANYMAIL", {}).get("WEBHOOK_SECRET"):
        errors.append(
            Error(
                "ANYMAIL_WEBHOOK_SECRET is not set: anyone may post e-mail tracking events (bounces, complaints)",
                hint="ANYMAIL_WEBHOOK_SECRET=user:password as configured at the provider",
                id="billing.E005",
            )
        )
    problem = deployment.ledger_token_key_problem(settings.LEDGER_TOKEN_KEY, settings.LEDGER_PROVIDERS)
    if problem:
        errors.append(
            Error(
                problem,
                hint="python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'",
                id="billing.E006",
            )
        )
    return errors
