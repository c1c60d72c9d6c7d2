"""factory_boy factories for dunning (dunning). Re-exported by tests.factories once registered there."""

from __future__ import annotations

import factory

from dunning.models import CustomerDunningSettings, DunningActionKind, DunningPolicy, DunningStep, ReminderTemplate
from tests.factories.customers import CustomerFactory


class DunningPolicyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DunningPolicy

    name = factory.Sequence(lambda n: f"Policy {n}")
    is_default = False


class DunningStepFactory(factory.django.DjangoModelFactory):
    """An e-mail reminder by default; traits for the other actions."""

    class Meta:
        model = DunningStep

    policy = factory.SubFactory(DunningPolicyFactory)
    offset_days = 1
    action = DunningActionKind.EMAIL
    template = ReminderTemplate.REMINDER

    class Params:
        friendly = factory.Trait(offset_days=-3, template=ReminderTemplate.FRIENDLY)
        final = factory.Trait(template=ReminderTemplate.FINAL)
        pause = factory.Trait(action=DunningActionKind.SUBSCRIPTION_PAUSE, template="")
        past_due = factory.Trait(action=DunningActionKind.SUBSCRIPTION_PAST_DUE, template="")
        cancel = factory.Trait(action=DunningActionKind.SUBSCRIPTION_CANCEL, template="")
        uncollectible = factory.Trait(action=DunningActionKind.INVOICE_UNCOLLECTIBLE, template="")
        late_fee_percent_of = factory.Trait(action=DunningActionKind.LATE_FEE, template="")


class CustomerDunningSettingsFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CustomerDunningSettings
        django_get_or_create = ("customer",)

    customer = factory.SubFactory(CustomerFactory)
    policy = None
    hold_reminders = False
