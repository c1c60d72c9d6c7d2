"""SSRF: webhooks go to public addresses only — checked when an endpoint is saved and again at each send, after
DNS resolution — unless WEBHOOKS_ALLOW_PRIVATE_URLS (docs/WEBHOOKS.md)."""

from __future__ import annotations

import socket

import pytest
from django.utils import timezone

from core.errors import InvalidInput
from webhooks import addresses, services
from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint

REFUSED = [
    "http://127.0.0.1/hooks",
    "http://127.8.9.10:8080/hooks",
    "http://10.0.0.5/hooks",
    "https://10.200.1.1/hooks",
    "http://172.16.4.2/",
    "http://192.168.1.20/",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1/",
    "http://0.0.0.0/",
    "http://[::1]/hooks",
    "http://[fe80::1]/hooks",
    "http://[fd00::1]/hooks",
    "http://[::ffff:127.0.0.1]/hooks",
    "http://[::ffff:169.254.169.254]/",
    "http://localhost/hooks",
    "http://api.localhost/hooks",
]


@pytest.mark.parametrize("url", REFUSED)
def test_private_loopback_and_link_local_urls_are_refused_by_default(url, settings):
    settings.WEBHOOKS_ALLOW_PRIVATE_URLS = False
    with pytest.raises(InvalidInput) as refused:
        addresses.url_check(url, require_resolution=False)
    assert refused.value.field == "url"
    assert "public addresses only" in refused.value.message


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["http://127.0.0.1/hooks", "http://10.1.2.3/x", "http://169.254.169.254/"])
def test_saving_an_endpoint_to_a_private_address_writes_nothing(url, settings):
    settings.WEBHOOKS_ALLOW_PRIVATE_URLS = False
    with pytest.raises(InvalidInput, match="url: "):
        services.endpoint_create(url=url)
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/x", "only http and https"),
        ("http:///nohost", "no host"),
        ("https://user:pw@example.com/", "credentials"),
        ("http://example.com:99999/", "url: "),
    ],
)
def test_malformed_urls_are_refused_naming_the_field(url, message):
    with pytest.raises(InvalidInput, match=message) as refused:
        addresses.url_check(url, require_resolution=False)
    assert refused.value.field == "url"


def test_a_name_is_checked_after_dns_resolution(monkeypatch, settings):
    settings.WEBHOOKS_ALLOW_PRIVATE_URLS = False
    answers = {"hooks.example.com": ["93.184.215.14", "10.0.0.7"], "ok.example.com": ["93.184.215.14"]}
    monkeypatch.setattr(addresses, "resolve", lambda host, port: answers[host])
    with pytest.raises(InvalidInput, match=r"hooks.example.com resolves to 10.0.0.7, a private"):
        addresses.url_check("https://hooks.example.com/cadence")
    target = addresses.url_check("https://ok.example.com/cadence?x=1")
    assert (target.scheme, target.host, target.port, target.path, target.addresses) == (
        "https",
        "ok.example.com",
        443,
        "/cadence?x=1",
        ("93.184.215.14",),
    )


def test_the_setting_allows_private_addresses(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE_URLS = True
    assert addresses.url_check("http://127.0.0.1:9000/h").addresses == ("127.0.0.1",)
    assert addresses.url_check("http://10.0.0.5/h").addresses == ("10.0.0.5",)


@pytest.mark.django_db
def test_a_name_that_turns_private_after_saving_is_refused_at_send_time(monkeypatch, settings):
    """DNS rebinding: public when saved, 169.254.169.254 when sent. The attempt is refused without a connection."""
    settings.WEBHOOKS_ALLOW_PRIVATE_URLS = False
    answer = {"hooks.example.com": ["93.184.215.14"]}
    monkeypatch.setattr(addresses, "resolve", lambda host, port: answer[host])
    endpoint = services.endpoint_create(url="https://hooks.example.com/cadence").endpoint
    from core import events

    with events.handlers_replaced():
        from django.db import transaction

        with transaction.atomic():
            event = events.event_record("invoice.issued", subject_type="invoice", subject_id=None, payload={})
    services.deliveries_create_for_event(event)
    delivery = WebhookDelivery.objects.get()

    answer["hooks.example.com"] = ["169.254.169.254"]
    connected: list[object] = []
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: connected.append(a))
    assert services.delivery_send(delivery_id=delivery.pk, now=timezone.now()) == DeliveryStatus.PENDING
    delivery.refresh_from_db()
    assert connected == []
    assert delivery.last_error.startswith("refused: url: hooks.example.com resolves to 169.254.169.254, a link-local")
    assert delivery.response_status is None
    assert endpoint.pk == delivery.endpoint_id


@pytest.mark.django_db
def test_the_connection_goes_to_the_checked_address_not_a_second_lookup(monkeypatch, settings):
    settings.WEBHOOKS_ALLOW_PRIVATE_URLS = False
    monkeypatch.setattr(addresses, "resolve", lambda host, port: ["93.184.215.14"])
    target = addresses.url_check("http://hooks.example.com:8080/x")
    connection = addresses.connection_for(target, timeout=1)
    seen: list[tuple] = []

    def fake_create_connection(address, timeout=None, *args):
        seen.append(address)
        raise ConnectionRefusedError("test: no network")

    monkeypatch.setattr(socket, "create_connection", fake_create_connection)
    with pytest.raises(ConnectionRefusedError):
        connection.connect()
    assert seen == [("93.184.215.14", 8080)]
    assert connection.host == "hooks.example.com"  # the Host header and TLS name stay the name
