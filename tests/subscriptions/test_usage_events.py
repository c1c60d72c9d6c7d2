"""Usage events and billable metrics: each aggregation with property filters, duplicates, late events as an
adjustment line, refusals naming the event and field, and the COPY import (all or nothing per file)."""

import datetime as dt
import json
from decimal import Decimal

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import ProgrammingError, transaction
from django.urls import reverse
from djmoney.money import Money

from core.dates import billing_tz
from core.queries import VALUES_AS_ONE_PARAMETER
from subscriptions import services
from subscriptions.charges import charges_due
from subscriptions.models import SubscriptionItem, UsageEvent
from subscriptions.selectors import usage_current
from subscriptions.services import UsageEventsRejected, usage_events_ingest
from subscriptions.usage_schema import UsageEventIn
from tests.factories.customers import CustomerFactory
from tests.factories.subscriptions import BillableMetricFactory, PriceFactory, SubscriptionFactory
from tests.subscriptions.conftest import bill

pytestmark = pytest.mark.django_db
D = dt.date


def at(day: dt.date, hour: int = 12) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=billing_tz())


def event(tid: str, day: dt.date, code: str = "tokens", customer: str = "acme", **properties) -> UsageEventIn:
    return UsageEventIn(
        transaction_id=tid, code=code, timestamp=at(day), external_customer_id=customer, properties=properties
    )


def metered(aggregation: str, *, field_name: str = "tokens", filters=None, unit: str = "1.00"):
    metric = BillableMetricFactory(code="tokens", aggregation=aggregation, field_name=field_name, filters=filters or {})
    price = PriceFactory(metered=True, metric=metric, unit_amount=Money(unit, "EUR"), product__name="Tokens")
    customer = CustomerFactory(external_id="acme")
    subscription = SubscriptionFactory(customer=customer, price=price, quantity=0, start_date=D(2026, 3, 1))
    bill(subscription, D(2026, 3, 1))  # metered only: nothing in advance
    return subscription


MARCH = [
    # (transaction id, day, region, tokens, user)
    ("e1", D(2026, 3, 2), "eu", 5, "ann"),
    ("e2", D(2026, 3, 3), "us", 100, "bob"),  # filtered out: not eu
    ("e3", D(2026, 3, 9), "eu", 9, "bob"),
    ("e4", D(2026, 3, 20), "eu", 3, "ann"),  # the latest eu event
    ("e5", D(2026, 3, 15), "eu", 2, "cat"),
]


@pytest.mark.parametrize(
    ("aggregation", "field_name", "quantity", "amount"),
    [
        ("sum", "tokens", Decimal(19), Money("9.50", "EUR")),
        ("count", "", Decimal(4), Money("2.00", "EUR")),
        ("max", "tokens", Decimal(9), Money("4.50", "EUR")),
        ("unique_count", "user", Decimal(3), Money("1.50", "EUR")),
        ("latest", "tokens", Decimal(3), Money("1.50", "EUR")),
    ],
)
def test_each_aggregation_with_a_property_filter_is_exact(aggregation, field_name, quantity, amount):
    subscription = metered(aggregation, field_name=field_name, filters={"region": ["eu"]}, unit="0.50")
    usage_events_ingest(
        events=[event(tid, day, region=region, tokens=tokens, user=user) for tid, day, region, tokens, user in MARCH]
    )
    (period,) = charges_due(subscription=subscription, as_of=D(2026, 4, 1))
    (line,) = period.lines
    assert (line.kind, line.quantity, line.amount) == ("usage", quantity, amount)
    assert (line.period_start, line.period_end) == (D(2026, 3, 1), D(2026, 4, 1))
    (current,) = usage_current(customer_id=subscription.customer_id, as_of=D(2026, 3, 31))
    assert (current.metric_code, current.quantity, current.events) == ("tokens", quantity, 4)


def test_a_filter_with_several_values_and_numbers_as_text():
    subscription = metered("sum", filters={"region": ["eu", "us"], "tier": [2]})
    usage_events_ingest(
        events=[
            event("a", D(2026, 3, 2), region="eu", tier=2, tokens=10),
            event("b", D(2026, 3, 2), region="us", tier=2, tokens=20),
            event("c", D(2026, 3, 2), region="us", tier=1, tokens=40),  # tier 1: out
            event("d", D(2026, 3, 2), region="ap", tier=2, tokens=80),  # ap: out
        ]
    )
    (period,) = charges_due(subscription=subscription, as_of=D(2026, 4, 1))
    assert (period.lines[0].quantity, period.lines[0].amount) == (Decimal(30), Money("30.00", "EUR"))


def test_a_duplicate_transaction_id_is_ignored_and_counted():
    subscription = metered("sum")
    first = usage_events_ingest(
        events=[
            event("x1", D(2026, 3, 2), tokens=10),
            event("x2", D(2026, 3, 3), tokens=5),
            event("x1", D(2026, 3, 2), tokens=10),
        ]
    )
    assert (first.accepted, first.duplicates) == (2, 1)
    again = usage_events_ingest(events=[event("x1", D(2026, 3, 2), tokens=10), event("x3", D(2026, 3, 4), tokens=1)])
    assert (again.accepted, again.duplicates) == (1, 1)
    assert UsageEvent.objects.count() == 3
    (period,) = charges_due(subscription=subscription, as_of=D(2026, 4, 1))
    assert period.lines[0].amount == Money("16.00", "EUR")


def test_a_re_sent_event_of_an_invoiced_period_is_a_duplicate_not_a_late_event():
    subscription = metered("sum")
    usage_events_ingest(events=[event("m1", D(2026, 3, 2), tokens=10)])
    bill(subscription, D(2026, 4, 1))
    result = usage_events_ingest(events=[event("m1", D(2026, 3, 2), tokens=10)])
    assert (result.accepted, result.duplicates) == (0, 1)
    assert bill(subscription, D(2026, 5, 1)) == []


def test_late_events_are_billed_on_the_next_invoice_as_an_adjustment_of_what_the_period_costs_now():
    subscription = metered("max", unit="2.00")
    usage_events_ingest(events=[event("a", D(2026, 3, 2), tokens=5), event("b", D(2026, 3, 9), tokens=9)])
    (march,) = bill(subscription, D(2026, 4, 1))
    assert [(line.kind, line.amount) for line in march.lines] == [("usage", Money("18.00", "EUR"))]
    # After March was invoiced: a late peak of 12 (3 more than billed), a late 4 (below the peak: changes nothing).
    usage_events_ingest(
        events=[
            event("late-peak", D(2026, 3, 20), tokens=12),
            event("late-low", D(2026, 3, 21), tokens=4),
            event("april", D(2026, 4, 2), tokens=7),
        ]
    )
    late = UsageEvent.objects.get(transaction_id="late-peak")
    assert (late.usage_date, late.billing_date) == (D(2026, 3, 20), D(2026, 4, 1))
    (april,) = bill(subscription, D(2026, 5, 1))
    usage, adjustment = april.lines
    assert (usage.kind, usage.quantity, usage.amount) == ("usage", Decimal(7), Money("14.00", "EUR"))
    assert (usage.period_start, usage.period_end) == (D(2026, 4, 1), D(2026, 5, 1))
    assert (adjustment.kind, adjustment.quantity, adjustment.unit_amount, adjustment.amount) == (
        "adjustment",
        Decimal(3),
        Money("2.00", "EUR"),
        Money("6.00", "EUR"),
    )
    assert (adjustment.period_start, adjustment.period_end) == (D(2026, 3, 1), D(2026, 4, 1))
    assert adjustment.description == "Tokens × 3 — late usage of 1 Mar 2026 – 31 Mar 2026"
    assert april.subtotal == Money("20.00", "EUR")
    # Another late event of March, after April was invoiced too: only its own difference, once.
    usage_events_ingest(events=[event("later", D(2026, 3, 25), tokens=15)])
    (may,) = bill(subscription, D(2026, 6, 1))
    (adjustment,) = may.lines
    assert (adjustment.kind, adjustment.quantity, adjustment.amount) == ("adjustment", Decimal(3), Money("6.00", "EUR"))
    assert bill(subscription, D(2026, 7, 1)) == []


@pytest.mark.parametrize(
    ("bad", "field_name", "message"),
    [
        (event("b", D(2026, 3, 3), code="nope", tokens=1), "code", "no billable metric 'nope'"),
        (event("b", D(2026, 3, 3), customer="ghost", tokens=1), "external_customer_id", "no customer 'ghost'"),
        (event("b", D(2026, 3, 3), tokens=-1), "properties.tokens", "not a non-negative number"),
        (event("b", D(2026, 3, 3), tokens="many"), "properties.tokens", "not a number"),
        (event("b", D(2026, 3, 3)), "properties.tokens", "required by the metric 'tokens'"),
        (event("b", D(2026, 2, 27), tokens=1), "timestamp", "before the subscription started"),
    ],
)
def test_a_bad_event_refuses_the_whole_batch_naming_its_index_and_field(bad, field_name, message):
    metered("sum")
    with pytest.raises(UsageEventsRejected) as refused:
        usage_events_ingest(events=[event("good", D(2026, 3, 2), tokens=1), bad])
    ((index, field, text),) = refused.value.errors
    assert (index, field) == (1, field_name)
    assert message in text
    assert not UsageEvent.objects.exists()


def test_a_customer_with_two_subscriptions_of_the_metric_must_name_one():
    subscription = metered("sum")
    second = SubscriptionFactory(
        customer=subscription.customer, price=subscription.items.get().price, quantity=0, start_date=D(2026, 3, 1)
    )
    with pytest.raises(UsageEventsRejected, match="2 subscriptions of customer 'acme' bill 'tokens'"):
        usage_events_ingest(events=[event("a", D(2026, 3, 2), tokens=1)])
    named = UsageEventIn(
        transaction_id="a",
        code="tokens",
        timestamp=at(D(2026, 3, 2)),
        subscription_id=second.pk,
        properties={"tokens": 4},
    )
    assert usage_events_ingest(events=[named]).accepted == 1
    assert UsageEvent.objects.get().subscription_item.subscription_id == second.pk


# --- import_usage_events (COPY) ---


def _ndjson(tmp_path, events, name="events.ndjson"):
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n", encoding="utf-8")
    return path


def _raw(tid, day, **properties):
    return {
        "transaction_id": tid,
        "code": "tokens",
        "timestamp": f"{day.isoformat()}T10:00:00+01:00",
        "external_customer_id": "acme",
        "properties": properties,
    }


def test_import_usage_events_is_all_or_nothing_per_file_and_names_line_and_field(tmp_path, capsys):
    metered("sum")
    bad = _ndjson(
        tmp_path,
        [
            _raw("i1", D(2026, 3, 2), tokens=5),
            {**_raw("i2", D(2026, 3, 2), tokens=5), "timestamp": 17},
            _raw("i3", D(2026, 3, 2), tokens=-2),
            {**_raw("i4", D(2026, 3, 2), tokens=1), "code": "nope"},
        ],
    )
    with pytest.raises(CommandError, match="3 error"):
        call_command("import_usage_events", str(bad))
    err = capsys.readouterr().err
    assert "row 2, column 'timestamp'" in err
    assert "row 3, column 'properties.tokens': not a non-negative number" in err
    assert "row 4, column 'code': no billable metric 'nope'" in err
    assert not UsageEvent.objects.exists()


def test_import_usage_events_stores_ndjson_and_csv_and_counts_duplicates(tmp_path, capsys, monkeypatch):
    subscription = metered("sum")
    monkeypatch.setattr("subscriptions.services.EVENT_IMPORT_CHUNK", 2)  # several COPY chunks, one transaction
    good = _ndjson(tmp_path, [_raw(f"n{i}", D(2026, 3, 2 + i), tokens=i + 1) for i in range(5)])
    call_command("import_usage_events", str(good))
    assert "Stored 5 usage event(s); ignored 0" in capsys.readouterr().out
    csv_file = tmp_path / "events.csv"
    csv_file.write_text(
        "transaction_id,code,timestamp,external_customer_id,subscription_id,properties\n"
        'n0,tokens,2026-03-02T10:00:00Z,acme,,"{""tokens"": 1}"\n'
        f'c1,tokens,2026-03-10T10:00:00Z,,{subscription.pk},"{{""tokens"": 2.5}}"\n',
        encoding="utf-8",
    )
    call_command("import_usage_events", str(csv_file), "--json")
    report = json.loads(capsys.readouterr().out)
    assert (report["ok"], report["counts"]) == (True, {"accepted": 1, "duplicates": 1})
    (period,) = charges_due(subscription=subscription, as_of=D(2026, 4, 1))
    assert (period.lines[0].quantity, period.lines[0].amount) == (Decimal("17.5"), Money("17.50", "EUR"))


def test_csv_timestamps_keep_their_offset_and_an_offset_with_seconds_is_refused(tmp_path, capsys):
    """CSV timestamps are read by Python (which takes offsets like +05:30:15), NDJSON's by RFC 3339: the COPY
    text writes offsets in whole minutes, so a CSV offset with seconds is refused, not shifted."""
    metered("sum")
    csv_file = tmp_path / "events.csv"
    header = "transaction_id,code,timestamp,external_customer_id,properties\n"
    csv_file.write_text(
        header + 'k1,tokens,2026-03-02T23:30:00.25-05:30,acme,"{""tokens"": 1}"\n'
        'k2,tokens,2026-03-02T10:00:00+05:30:15,acme,"{""tokens"": 1}"\n',
        encoding="utf-8",
    )
    with pytest.raises(CommandError, match="1 error"):
        call_command("import_usage_events", str(csv_file))
    assert "row 3, column 'timestamp': the time zone offset must be whole minutes" in capsys.readouterr().err
    csv_file.write_text(header + 'k1,tokens,2026-03-02T23:30:00.25-05:30,acme,"{""tokens"": 1}"\n', encoding="utf-8")
    call_command("import_usage_events", str(csv_file))
    stored = UsageEvent.objects.get()
    assert stored.timestamp == dt.datetime(2026, 3, 3, 5, 0, 0, 250000, tzinfo=dt.UTC)
    assert stored.usage_date == stored.timestamp.astimezone(billing_tz()).date()


def test_a_bad_row_after_chunks_were_written_rolls_the_whole_file_back(tmp_path, capsys, monkeypatch):
    """Chunks are written while later ones are checked; a bad row in the last chunk still leaves nothing."""
    metered("sum")
    monkeypatch.setattr("subscriptions.services.EVENT_IMPORT_CHUNK", 2)
    events = [_raw(f"w{i}", D(2026, 3, 2 + i), tokens=i + 1) for i in range(6)]
    events.append({**_raw("w6", D(2026, 3, 9), tokens=1), "external_customer_id": "ghost"})
    with pytest.raises(CommandError, match="1 error"):
        call_command("import_usage_events", str(_ndjson(tmp_path, events)))
    assert "row 7, column 'external_customer_id': no customer 'ghost'" in capsys.readouterr().err
    assert not UsageEvent.objects.exists()
    call_command("import_usage_events", str(_ndjson(tmp_path, events[:6], name="good.ndjson")))
    assert "Stored 6 usage event(s); ignored 0" in capsys.readouterr().out
    assert sorted(UsageEvent.objects.values_list("value", flat=True)) == [Decimal(n) for n in range(1, 7)]


def test_import_usage_events_stores_text_that_copy_must_escape_exactly(tmp_path, capsys, monkeypatch):
    """The COPY text is built by hand: tabs, newlines, backslashes and quotes in ids and properties arrive as
    sent; a blank line is skipped, a duplicate in a later chunk is counted, not stored twice."""
    metered("sum")
    monkeypatch.setattr("subscriptions.services.EVENT_IMPORT_CHUNK", 2)
    hostile = 'tab\there\\back\\slash "quoted" \\N line\nbreak \r ünïcødé'
    path = tmp_path / "events.ndjson"
    lines = [
        json.dumps(_raw(hostile, D(2026, 3, 2), tokens=1, note=hostile, nested={"a": [hostile, None, 1.5]})),
        "",
        json.dumps(_raw("plain", D(2026, 3, 3), tokens=2)),
        json.dumps(_raw(hostile, D(2026, 3, 4), tokens=99)),  # same id, third chunk: a duplicate
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    call_command("import_usage_events", str(path), "--json")
    report = json.loads(capsys.readouterr().out)
    assert (report["rows"], report["counts"]) == (3, {"accepted": 2, "duplicates": 1})
    stored = UsageEvent.objects.get(transaction_id=hostile)
    assert stored.value == Decimal(1)
    assert stored.properties == {"tokens": 1, "note": hostile, "nested": {"a": [hostile, None, 1.5]}}
    assert UsageEvent.objects.get(transaction_id="plain").value == Decimal(2)


class _RecordingWriter(services._EventWriter):
    """The import's writer, remembered so a test can see which way each chunk went."""

    made: list["_RecordingWriter"] = []

    def __init__(self, raw_connection) -> None:
        super().__init__(raw_connection)
        self.ways: list[str] = []
        _RecordingWriter.made.append(self)

    def write(self, text: str, rows: int) -> int:
        way, fallbacks = ("copy" if self.optimistic else "staged"), self.fallbacks
        written = super().write(text, rows)
        self.ways.append("copy→staged" if self.fallbacks > fallbacks else way)
        return written


def test_chunks_are_copied_straight_in_and_a_chunk_meeting_a_stored_or_repeated_id_is_staged(
    tmp_path, capsys, monkeypatch
):
    """Optimistic COPY per chunk; a chunk whose id is already stored (or repeated in the file, in an earlier
    chunk or its own) is rolled back to its savepoint and inserted with ON CONFLICT DO NOTHING: duplicates are
    counted, the first occurrence is what is stored, the chunk after a duplicate is staged, and a clean staged
    chunk switches back to COPY."""
    metered("sum")
    usage_events_ingest(events=[event("stored", D(2026, 3, 2), tokens=50)])
    monkeypatch.setattr("subscriptions.services.EVENT_IMPORT_CHUNK", 2)
    monkeypatch.setattr("subscriptions.services._EventWriter", _RecordingWriter)
    _RecordingWriter.made.clear()
    chunks = [
        [("a1", 1), ("a2", 2)],  # new: COPY
        [("stored", 99), ("a3", 3)],  # meets a stored id: rolled back, staged
        [("a4", 4), ("a5", 5)],  # staged (after a duplicate), none: back to COPY next
        [("a1", 98), ("a6", 6)],  # a1 again (an earlier chunk of this file): rolled back, staged
        [("a7", 7), ("a7", 97)],  # repeated within the chunk: staged
        [("a8", 8), ("a9", 9)],  # staged, clean
        [("a10", 10)],  # COPY again
    ]
    events = [_raw(tid, D(2026, 3, 3), tokens=tokens) for chunk in chunks for tid, tokens in chunk]
    call_command("import_usage_events", str(_ndjson(tmp_path, events)), "--json")
    report = json.loads(capsys.readouterr().out)
    assert (report["rows"], report["counts"]) == (13, {"accepted": 10, "duplicates": 3})
    (writer,) = _RecordingWriter.made
    assert writer.ways == ["copy", "copy→staged", "staged", "copy→staged", "staged", "staged", "copy"]
    stored = dict(UsageEvent.objects.values_list("transaction_id", "value"))
    assert stored == {"stored": Decimal(50), **{f"a{n}": Decimal(n) for n in range(1, 11)}}
    assert UsageEvent.objects.filter(transaction_id="a1", properties={"tokens": 1}).exists()

    # The same file again: every chunk a duplicate — one failed COPY (of its first row), then staged.
    _RecordingWriter.made.clear()
    call_command("import_usage_events", str(_ndjson(tmp_path, events, name="again.ndjson")), "--json")
    report = json.loads(capsys.readouterr().out)
    assert report["counts"] == {"accepted": 0, "duplicates": 13}
    assert _RecordingWriter.made[0].ways == ["copy→staged"] + ["staged"] * 6
    assert UsageEvent.objects.count() == 11


def test_a_bad_line_after_copied_and_staged_chunks_leaves_nothing_and_names_line_and_field(
    tmp_path, capsys, monkeypatch
):
    metered("sum")
    usage_events_ingest(events=[event("stored", D(2026, 3, 2), tokens=50)])
    monkeypatch.setattr("subscriptions.services.EVENT_IMPORT_CHUNK", 2)
    events = [
        _raw("b1", D(2026, 3, 3), tokens=1),
        _raw("b2", D(2026, 3, 3), tokens=2),  # chunk 1: COPY
        _raw("stored", D(2026, 3, 3), tokens=3),
        _raw("b3", D(2026, 3, 3), tokens=3),  # chunk 2: staged
        _raw("b4", D(2026, 3, 3), tokens=4),
        _raw("b5", D(2026, 3, 3), tokens="12.0000001"),  # line 6: seven decimals
    ]
    with pytest.raises(CommandError, match="1 error"):
        call_command("import_usage_events", str(_ndjson(tmp_path, events)))
    assert "row 6, column 'properties.tokens': " in capsys.readouterr().err
    assert list(UsageEvent.objects.values_list("transaction_id", flat=True)) == ["stored"]


def test_an_import_reads_what_its_chunks_name_once_and_resolves_later_names_and_metrics(
    tmp_path, capsys, monkeypatch, django_assert_num_queries
):
    """The import keeps what its chunks read (``_Lookups``) for the rest of the file: a chunk naming only what
    earlier chunks read runs no query, and one naming a new customer, subscription or metric reads just those —
    each event still lands on the item that bills it."""
    subscription = metered("sum")
    pages = BillableMetricFactory(code="pages", aggregation="sum", field_name="pages")
    pages_item = SubscriptionItem.objects.create(
        subscription=subscription,
        price=PriceFactory(metered=True, metric=pages, unit_amount=Money("0.10", "EUR"), product__name="Pages"),
        quantity=0,
    )
    other = SubscriptionFactory(
        customer=CustomerFactory(external_id="globex"),
        price=subscription.items.get(price__metric__code="tokens").price,
        quantity=0,
        start_date=D(2026, 3, 1),
    )
    lookups = services._Lookups()
    with transaction.atomic():
        services._usage_event_rows([event("q1", D(2026, 3, 2), tokens=1)], lookups=lookups)
        with django_assert_num_queries(0):  # the same customer and metric, another day
            (row,) = services._usage_event_rows([event("q2", D(2026, 3, 9), tokens=2)], lookups=lookups)
        assert row[4].item == subscription.items.get(price__metric__code="tokens").pk
        # a new metric of a customer already read: the metric and its items, nothing else
        with django_assert_num_queries(2):
            (row,) = services._usage_event_rows([event("q3", D(2026, 3, 9), code="pages", pages=7)], lookups=lookups)
        assert (row[1], row[4].item) == (Decimal(7), pages_item.pk)

    monkeypatch.setattr("subscriptions.services.EVENT_IMPORT_CHUNK", 2)
    events = [
        _raw("f1", D(2026, 3, 2), tokens=1),
        _raw("f2", D(2026, 3, 3), tokens=2),  # chunk 1: acme, tokens
        _raw("f3", D(2026, 3, 4), tokens=3),
        {**_raw("f4", D(2026, 3, 4), pages=40), "code": "pages"},  # chunk 2: a new metric
        {**_raw("f5", D(2026, 3, 5), tokens=5), "external_customer_id": "globex"},
        {**_raw("f6", D(2026, 3, 5), tokens=6), "external_customer_id": None, "subscription_id": other.pk},
    ]
    call_command("import_usage_events", str(_ndjson(tmp_path, events)), "--json")
    assert json.loads(capsys.readouterr().out)["counts"] == {"accepted": 6, "duplicates": 0}
    stored = {
        e.transaction_id: (e.subscription_item.subscription_id, e.metric.code, e.value)
        for e in UsageEvent.objects.all()
    }
    assert stored == {
        "f1": (subscription.pk, "tokens", Decimal(1)),
        "f2": (subscription.pk, "tokens", Decimal(2)),
        "f3": (subscription.pk, "tokens", Decimal(3)),
        "f4": (subscription.pk, "pages", Decimal(40)),
        "f5": (other.pk, "tokens", Decimal(5)),
        "f6": (other.pk, "tokens", Decimal(6)),
    }


def test_an_import_naming_more_customers_than_an_in_list_takes_reads_them_as_one_parameter(
    tmp_path, capsys, monkeypatch
):
    """Past ``VALUES_AS_ONE_PARAMETER`` names, the look-ups pass customers, subscriptions and items as one
    parameter each: every event still lands on its customer's item, with its value."""
    first = metered("sum")
    price = first.items.get().price
    count = VALUES_AS_ONE_PARAMETER + 10
    subscriptions = [first] + [
        SubscriptionFactory(
            customer=CustomerFactory(external_id=f"cust-{n}"), price=price, quantity=0, start_date=D(2026, 3, 1)
        )
        for n in range(1, count)
    ]
    monkeypatch.setattr("subscriptions.services.EVENT_IMPORT_CHUNK", count * 2)  # one chunk names them all
    events = [
        {**_raw(f"m{n}-{day}", D(2026, 3, day), tokens=n), "external_customer_id": s.customer.external_id}
        for n, s in enumerate(subscriptions)
        for day in (2, 3)
    ]
    call_command("import_usage_events", str(_ndjson(tmp_path, events)), "--json")
    assert json.loads(capsys.readouterr().out)["counts"] == {"accepted": 2 * count, "duplicates": 0}
    stored = {
        (item, value)
        for item, value in UsageEvent.objects.filter(transaction_id__endswith="-3").values_list(
            "subscription_item__subscription_id", "value"
        )
    }
    assert stored == {(s.pk, Decimal(n)) for n, s in enumerate(subscriptions)}


def test_a_re_sent_event_of_an_ended_subscription_does_not_make_its_customer_ambiguous(tmp_path, capsys):
    """An event naming an ended subscription by id (already stored: a re-send) is a duplicate; the customer's
    other events, sent by external id, still go to the one subscription that runs."""
    ended = metered("sum")
    usage_events_ingest(events=[event("old", D(2026, 3, 2), tokens=1)])
    services.subscription_cancel(subscription=ended, as_of=D(2026, 3, 10))
    bill(ended, D(2026, 3, 10))  # the final invoice: the subscription has ended
    ended.refresh_from_db()
    assert ended.next_billing_date is None
    running = SubscriptionFactory(
        customer=ended.customer, price=ended.items.get().price, quantity=0, start_date=D(2026, 3, 10)
    )
    events = [
        {**_raw("old", D(2026, 3, 2), tokens=1), "external_customer_id": None, "subscription_id": ended.pk},
        _raw("new", D(2026, 3, 12), tokens=4),
    ]
    call_command("import_usage_events", str(_ndjson(tmp_path, events)), "--json")
    assert json.loads(capsys.readouterr().out)["counts"] == {"accepted": 1, "duplicates": 1}
    assert UsageEvent.objects.get(transaction_id="new").subscription_item.subscription_id == running.pk


def test_a_subscription_item_cannot_be_deleted_in_the_database():
    """Usage events have no database foreign key to their item; items keep their rows for good instead."""
    subscription = metered("sum")
    item = subscription.items.get()
    with pytest.raises(ProgrammingError, match="Cannot delete rows"), transaction.atomic():
        SubscriptionItem.objects.filter(pk=item.pk).delete()
    assert SubscriptionItem.objects.filter(pk=item.pk).exists()


def test_the_subscription_page_shows_the_current_usage(admin_client):
    subscription = metered("unique_count", field_name="user")
    usage_events_ingest(events=[event(f"u{n}", D(2026, 3, 2 + n), user=f"user-{n % 3}") for n in range(5)])
    with time_machine.travel(dt.datetime(2026, 3, 20, 12, tzinfo=billing_tz()), tick=False):
        page = admin_client.get(reverse("admin:subscriptions_subscription_change", args=[subscription.pk]))
    html = page.content.decode()
    assert page.status_code == 200 and "Current usage" in html
    assert "<td>Tokens (tokens)</td><td>unique count</td><td>1 Mar 2026 – 20 Mar 2026</td><td>3</td><td>5</td>" in html
