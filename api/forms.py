"""Model validation the API shares with the admin: the admin's own model forms, fed with the JSON body, so a
customer created through the API passes exactly the checks (model ``clean``, validators, constraints) the admin's
customer page applies. Their errors become problem JSON naming the field."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.db import models

from api.problems import ApiProblem
from customers.admin import CustomerAdminForm
from customers.models import Customer

CUSTOMER_FIELDS = (
    "name",
    "legal_name",
    "email",
    "cc_emails",
    "phone",
    "address_line1",
    "address_line2",
    "postal_code",
    "city",
    "region",
    "country",
    "tax_id",
    "tax_status",
    "currency",
    "payment_terms_days",
    "language",
    "notes",
    "external_id",
    "metadata",
    "review_invoices",
    "parent",
    "billing_mode",
)


class CustomerApiForm(CustomerAdminForm):
    class Meta:
        model = Customer
        fields = CUSTOMER_FIELDS

    def clean_external_id(self) -> str:
        # The database's conditional unique constraint would report this without a field; API clients need it.
        external_id = str(self.cleaned_data.get("external_id") or "")
        if external_id and Customer.objects.filter(external_id=external_id).exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError(f"Another customer has the external id {external_id!r}.")
        return external_id


def form_problem(form: forms.BaseForm) -> ApiProblem:
    errors = [
        {"field": "" if field == "__all__" else field, "detail": str(message), "code": "invalid"}
        for field, messages in form.errors.items()
        for message in messages
    ]
    first = errors[0]
    detail = f"{first['field']}: {first['detail']}" if first["field"] else first["detail"]
    if len(errors) > 1:
        detail += f" (and {len(errors) - 1} more)"
    return ApiProblem(400, detail, code="invalid_input", field=first["field"] or None, errors=errors)


def form_data(instance: models.Model, fields: tuple[str, ...], given: dict[str, Any]) -> dict[str, Any]:
    """The form's data: the instance's current values (a partial update; for a new object an unsaved instance, so
    the model's defaults as the admin's add form shows them) overlaid with what was given."""
    data: dict[str, Any] = {}
    for name in fields:
        value = getattr(instance, name)
        data[name] = str(value) if name == "country" else value
    data.update({name: value for name, value in given.items() if name in fields})
    for name in ("metadata",):
        if name in data and not isinstance(data[name], str):
            data[name] = json.dumps(data[name])
    return data


def validated(form: forms.ModelForm) -> forms.ModelForm:
    if not form.is_valid():
        raise form_problem(form)
    return form


def save_model_form(form_class: type[forms.ModelForm], data: dict[str, Any], instance: Any = None) -> Any:
    """Validate with the model form (field validators, model ``clean``, constraints) and save, or raise the
    problem naming the field."""
    form = validated(form_class(data=data, instance=instance))
    return form.save()
