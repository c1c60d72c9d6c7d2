"""core.queries.values_in: a long list of values as one parameter gives the rows of the plain IN list."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.queries import VALUES_AS_ONE_PARAMETER, values_in
from customers.models import Customer
from tests.factories.customers import CustomerFactory

pytestmark = pytest.mark.django_db


def _external_ids(count: int) -> list[str]:
    # text the server must split exactly: commas, quotes, backslashes, braces, non-ASCII
    odd = ["a,b", 'quote"d', "back\\slash", "{brace}", "ünï ✓", "x'y"]
    return [odd[n] if n < len(odd) else f"EXT-{n:04d}" for n in range(count)]


def test_a_long_list_of_text_and_of_ids_travels_as_one_parameter_and_finds_the_same_rows():
    ids = _external_ids(VALUES_AS_ONE_PARAMETER + 20)
    customers = [CustomerFactory.build(external_id=external_id) for external_id in ids]
    Customer.objects.bulk_create(customers)
    CustomerFactory(external_id="not-asked")
    wanted = ids[:3] + ids[10:]  # long enough for one parameter
    with CaptureQueriesContext(connection) as queries:
        found = dict(Customer.objects.filter(values_in("external_id", wanted)).values_list("external_id", "pk"))
    assert sorted(found) == sorted(wanted)
    (query,) = queries.captured_queries
    assert "json_array_elements_text" in query["sql"] and "EXT-0100" not in query["sql"].split("::json")[1]

    pks = list(found.values())
    with CaptureQueriesContext(connection) as queries:
        by_pk = set(Customer.objects.filter(values_in("pk", pks)).values_list("external_id", flat=True))
    assert by_pk == set(wanted)
    assert "string_to_array" in queries.captured_queries[0]["sql"]


def test_a_short_list_is_a_plain_in_list_and_booleans_are_not_ids():
    CustomerFactory(external_id="one")
    with CaptureQueriesContext(connection) as queries:
        found = list(
            Customer.objects.filter(values_in("external_id", ["one", "two"])).values_list("external_id", flat=True)
        )
    assert found == ["one"]
    assert "IN ('one', 'two')" in queries.captured_queries[0]["sql"]
    # True is an int to Python but not an id: a list of them goes as text (as ids, the cast would fail)
    flags = [True] * (VALUES_AS_ONE_PARAMETER + 1)
    assert not Customer.objects.filter(values_in("external_id", flags)).exists()
