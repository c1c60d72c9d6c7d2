"""Where a webhook may be sent (SSRF): only to public addresses, unless ``WEBHOOKS_ALLOW_PRIVATE_URLS``.

An endpoint's URL is checked when it is saved and again at every send, after DNS resolution — a name that
resolved to a public address yesterday may resolve to 169.254.169.254 today. The sender then connects to the
address it checked (``PinnedHTTPConnection``), never resolving the name a second time, so a DNS answer that
changes between the check and the connection (rebinding) cannot slip through. Refused: loopback, private
(10/8, 172.16/12, 192.168/16, fc00::/7), link-local (169.254/16 — the cloud metadata address —, fe80::/10),
shared (100.64/10), multicast, reserved and unspecified addresses, IPv4 addresses mapped into IPv6, and the names
``localhost`` / ``*.localhost``."""

from __future__ import annotations

import http.client
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from core.errors import InvalidInput

SCHEMES = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Target:
    """A URL taken apart, with the addresses its host resolved to (all of them allowed)."""

    scheme: str
    host: str
    port: int
    path: str  # with the query string
    addresses: tuple[str, ...]


def private_urls_allowed() -> bool:
    return bool(getattr(settings, "WEBHOOKS_ALLOW_PRIVATE_URLS", False))


def address_refusal(address: str) -> str:
    """Why ``address`` may not receive webhooks, or "" when it may."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_private or not ip.is_global:
        return "a private or reserved address"
    return ""


def url_parse(url: str, *, field: str = "url") -> tuple[str, str, int, str]:
    """(scheme, host, port, path?query) of an http(s) URL, or ``InvalidInput`` naming ``field``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(f"{field}: {exc}", field=field) from exc
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise InvalidInput(f"{field}: only http and https URLs can receive webhooks", field=field)
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise InvalidInput(f"{field}: the URL has no host", field=field)
    if parts.username or parts.password:
        raise InvalidInput(
            f"{field}: credentials in the URL are not allowed; the signature authenticates us", field=field
        )
    path = parts.path or "/"
    if parts.query:
        path += f"?{parts.query}"
    return scheme, host, port or SCHEMES[scheme], path


def _literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (``socket.gaierror`` when it does not)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def url_check(url: str, *, field: str = "url", require_resolution: bool = True) -> Target:
    """The URL's target when every address its host resolves to may receive webhooks; ``InvalidInput`` naming
    ``field`` otherwise. ``require_resolution=False`` (saving an endpoint) accepts a name that does not resolve
    yet — the send-time check refuses it then — but never one that resolves to a refused address."""
    scheme, host, port, path = url_parse(url, field=field)
    allow_private = private_urls_allowed()
    if not allow_private and (host == "localhost" or host.endswith(".localhost")):
        raise InvalidInput(f"{field}: {host} is a loopback name; webhooks go to public addresses only", field=field)
    literal = _literal(host)
    if literal is not None:
        addresses: Sequence[str] = [literal]
    else:
        try:
            addresses = resolve(host, port)
        except (socket.gaierror, UnicodeError) as exc:
            if require_resolution:
                raise InvalidInput(f"{field}: {host} does not resolve ({exc})", field=field) from exc
            addresses = []
    if not allow_private:
        for address in addresses:
            reason = address_refusal(address)
            if reason:
                raise InvalidInput(
                    f"{field}: {host} resolves to {address}, {reason}; webhooks go to public addresses only",
                    field=field,
                )
    return Target(scheme=scheme, host=host, port=port, path=path, addresses=tuple(addresses))


class PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to ``address`` (checked) for ``host`` (the Host header)."""

    def __init__(self, host: str, port: int, *, address: str, **kwargs: Any) -> None:
        super().__init__(host, port, **kwargs)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """An HTTPS connection to ``address`` (checked); TLS still verifies the certificate for ``host`` (SNI)."""

    def __init__(self, host: str, port: int, *, address: str, **kwargs: Any) -> None:
        super().__init__(host, port, **kwargs)
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def connection_for(target: Target, *, timeout: float) -> http.client.HTTPConnection:
    """A connection to the first checked address of ``target``."""
    if not target.addresses:
        raise InvalidInput(f"url: {target.host} does not resolve", field="url")
    cls = PinnedHTTPSConnection if target.scheme == "https" else PinnedHTTPConnection
    return cls(target.host, target.port, address=target.addresses[0], timeout=timeout)
