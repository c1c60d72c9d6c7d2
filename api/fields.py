"""Input fields the API's request serializers share: amounts (never floats), currencies, ids of rows."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db import models
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.money import amount_limit_problem, minor_units


@extend_schema_field({"type": "string", "pattern": r"^-?\d+(\.\d+)?$", "example": "19.99"})
class AmountIn(serializers.Field):
    """A money amount as a decimal string ("19.99"; a JSON number is read exactly too, never as a float)."""

    default_error_messages = {"invalid": 'Give an amount as a decimal string, e.g. "19.99".'}

    def __init__(self, *, min_value: Decimal | int | None = None, positive: bool = False, **kwargs: Any) -> None:
        self.min_value = min_value
        self.positive = positive
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Decimal:
        if isinstance(data, bool) or not isinstance(data, str | int | Decimal):
            self.fail("invalid")
        try:
            value = Decimal(str(data).strip())
        except InvalidOperation:
            self.fail("invalid")
        if not value.is_finite():
            self.fail("invalid")
        if problem := amount_limit_problem(value):
            raise serializers.ValidationError(problem)
        if self.positive and value <= 0:
            raise serializers.ValidationError("Must be greater than zero.")
        if self.min_value is not None and value < self.min_value:
            raise serializers.ValidationError(f"Must be at least {self.min_value}.")
        return value

    def to_representation(self, value: Any) -> str:
        return str(value)


def check_minor_units(amount: Decimal, currency: str, field: str) -> None:
    """An amount with more decimals than its currency has (19.999 EUR) is refused, never rounded silently."""
    if amount != amount.quantize(Decimal(1).scaleb(-minor_units(currency))):
        raise serializers.ValidationError({field: f"{currency} amounts have {minor_units(currency)} decimals at most."})


@extend_schema_field(OpenApiTypes.STR)
class CurrencyIn(serializers.ChoiceField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=list(settings.CURRENCIES), **kwargs)


@extend_schema_field(OpenApiTypes.INT)
class RowIn(serializers.PrimaryKeyRelatedField):
    """The id of an existing row; an unknown id is a 400 naming the field ("unknown price 99")."""

    default_error_messages = {
        "does_not_exist": "No {model} with id {pk_value}.",
        "incorrect_type": "Give the id (a number), not {data_type}.",
    }

    def __init__(self, queryset: models.QuerySet[Any], **kwargs: Any) -> None:
        self.model_name = queryset.model._meta.verbose_name
        super().__init__(queryset=queryset, **kwargs)

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, bool):
            self.fail("incorrect_type", data_type="a boolean")
        try:
            return self.get_queryset().get(pk=data)
        except self.get_queryset().model.DoesNotExist:
            self.fail("does_not_exist", model=self.model_name, pk_value=data)
        except (TypeError, ValueError):
            self.fail("incorrect_type", data_type=type(data).__name__)
