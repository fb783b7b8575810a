"""HTTP requests to URLs that users control (webhooks, media to send), guarded against SSRF.

A URL is refused when its host, or ANY address its name resolves to, is loopback,
private (RFC 1918), link-local, CGNAT, unique-local or site-local IPv6, multicast,
unspecified, reserved or documentation space, an IPv4 address embedded in IPv6 (mapped,
6to4, NAT64, Teredo) that is any of those, or a cloud metadata endpoint. The check runs
inside the connector, on the very addresses it then connects to, on every new
connection: a name that resolves to a public address when a webhook is configured and to
127.0.0.1 later (DNS rebinding) is refused on that later connect. aiohttp never consults
a resolver for an IP literal, so resolving in the connector (not in a resolver) is the one
place that sees both.

Redirects: `follow_redirects=0` (webhooks) answers a 3xx as it is; otherwise at most that
many hops, each to the same scheme-or-upgrade, host and port only, each hop checked again.
Bodies are read up to a cap and the connection aborted beyond it; one total timeout
bounds the whole exchange. Proxies from the environment are ignored (`trust_env=False`):
a proxy would connect on our behalf to addresses we never checked.

Development: `OUTBOUND_ALLOW_HOSTS` (comma-separated host names, IP addresses or CIDRs)
lets a local receiver through; cloud metadata addresses are refused even then.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from multidict import CIMultiDictProxy
from yarl import URL

from services.common.errors import ChatbotError, InvalidInputError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOW_HOSTS_ENV = "OUTBOUND_ALLOW_HOSTS"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
READ_CHUNK = 64 * 1024

# Names that reach a cloud provider's instance metadata service from inside the cloud.
METADATA_HOSTS = frozenset(
    {"metadata.google.internal", "metadata", "instance-data", "instance-data.ec2.internal"}
)
METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack, …
        ipaddress.ip_address("169.254.170.2"),  # AWS ECS task metadata
        ipaddress.ip_address("fd00:ec2::254"),  # AWS IMDS over IPv6
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    }
)

# Checked in order, so the most telling reason is the one reported.
_FORBIDDEN: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(cidr), reason)
    for cidr, reason in (
        ("0.0.0.0/8", "unspecified"),
        ("127.0.0.0/8", "loopback"),
        ("10.0.0.0/8", "private (RFC 1918)"),
        ("172.16.0.0/12", "private (RFC 1918)"),
        ("192.168.0.0/16", "private (RFC 1918)"),
        ("100.64.0.0/10", "carrier-grade NAT (RFC 6598)"),
        ("169.254.0.0/16", "link-local"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("198.18.0.0/15", "benchmarking"),
        ("192.88.99.0/24", "6to4 relay anycast"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("fc00::/7", "unique-local"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
        ("100::/64", "discard-only"),
        ("2001:db8::/32", "documentation"),
        ("2001:10::/28", "ORCHID"),
        ("64:ff9b:1::/48", "local-use NAT64"),
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class OutboundError(ChatbotError):
    """An outbound request was not made, or not completed, for a reason of this guard."""


class ForbiddenDestinationError(OutboundError, InvalidInputError):
    """The URL points at (or resolves to) an address this system never connects to."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"refused {url!r}: {reason}")
        self.url = url
        self.reason = reason


class UnresolvableHostError(OutboundError, InvalidInputError):
    """The URL's host name does not resolve (checked when a URL is configured)."""


class RedirectRefusedError(OutboundError):
    """A redirect to another host, or more hops than allowed."""

    def __init__(self, url: str, location: str, reason: str) -> None:
        super().__init__(f"redirect from {url!r} to {location!r} refused: {reason}")
        self.url = url
        self.location = location
        self.reason = reason


class ResponseTooLargeError(OutboundError):
    """The response body exceeded the cap; the connection was aborted."""

    def __init__(self, url: str, cap: int) -> None:
        super().__init__(f"the response of {url!r} exceeds {cap} bytes")
        self.url = url
        self.cap = cap


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client's address
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_refusal(address: IPAddress) -> str | None:
    """Why a connection to `address` is refused, or None when it is a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        # A scope id (fe80::1%eth0) does not change which network the address is in.
        address = ipaddress.IPv6Address(address.packed)
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner = address_refusal(embedded)
            if inner is not None:
                return f"{inner} (embedded in IPv6 {address})"
    if address in METADATA_ADDRESSES:
        return "cloud metadata endpoint"
    for network, reason in _FORBIDDEN:
        if address.version == network.version and address in network:
            return reason
    if not address.is_global:
        return "not globally routable"
    return None


def _normal_host(host: str) -> str:
    return host.rstrip(".").lower()


@dataclass(frozen=True)
class OutboundPolicy:
    """Which destinations are allowed beyond the public internet (development only)."""

    allow_hosts: frozenset[str] = frozenset()
    allow_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OutboundPolicy:
        env = os.environ if env is None else env
        return cls.parse(env.get(ALLOW_HOSTS_ENV, ""))

    @classmethod
    def parse(cls, text: str) -> OutboundPolicy:
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in text.split(","):
            entry = raw.strip().strip("[]")
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            if "/" in entry or ":" in entry or " " in entry:
                raise InvalidInputError(
                    f"{ALLOW_HOSTS_ENV}: {entry!r} is neither a host name nor an IP/CIDR"
                )
            hosts.add(_normal_host(entry))
        return cls(frozenset(hosts), tuple(networks))

    def refusal(self, host: str, address: IPAddress) -> str | None:
        """Why connecting to `address` (which `host` resolved to) is refused, or None."""
        plain = (
            ipaddress.IPv6Address(address.packed)
            if isinstance(address, ipaddress.IPv6Address)
            else address
        )
        if plain in METADATA_ADDRESSES:
            return "cloud metadata endpoint"
        if _normal_host(host) in self.allow_hosts:
            return None
        if any(
            plain.version == network.version and plain in network for network in self.allow_networks
        ):
            return None
        return address_refusal(plain)

    def host_refusal(self, host: str) -> str | None:
        """Refusals known from the name alone (before any resolution)."""
        name = _normal_host(host)
        if name in METADATA_HOSTS:
            return "cloud metadata endpoint"
        if not name:
            return "no host"
        if name in self.allow_hosts:
            return None
        if name == "localhost" or name.endswith(".localhost"):
            # RFC 6761: always loopback, whatever a resolver says.
            return "loopback name"
        return None


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


class GuardedConnector(aiohttp.TCPConnector):
    """A TCPConnector that checks every address it is about to connect to."""

    def __init__(
        self, policy: OutboundPolicy, resolver: AbstractResolver | None = None, **kwargs: Any
    ) -> None:
        super().__init__(resolver=resolver, **kwargs)
        self._policy = policy

    async def _resolve_host(
        self, host: str, port: int, traces: Sequence[Any] | None = None
    ) -> list[ResolveResult]:
        refusal = self._policy.host_refusal(host)
        if refusal is not None:
            raise ForbiddenDestinationError(host, refusal)
        results = await super()._resolve_host(host, port, traces)
        for result in results:
            address = ipaddress.ip_address(result["host"])
            refusal = self._policy.refusal(host, address)
            if refusal is not None:
                # ANY forbidden address refuses the name: connection attempts fall back
                # from one address to the next, so one bad address is enough to reach it.
                raise ForbiddenDestinationError(host, f"resolves to {address}: {refusal}")
        return results


def check_url_syntax(url: str, policy: OutboundPolicy) -> URL:
    """http(s), a host, no credentials; an IP literal is checked here already."""
    try:
        parsed = URL(url)
    except (ValueError, TypeError) as error:
        raise InvalidInputError(f"not a URL: {url!r}: {error}") from None
    if parsed.scheme not in ("http", "https"):
        raise InvalidInputError(f"only http:// and https:// URLs are allowed, got {url!r}")
    host = parsed.raw_host
    if not host:
        raise InvalidInputError(f"the URL has no host: {url!r}")
    if parsed.user is not None or parsed.password is not None:
        raise InvalidInputError("credentials in the URL are not allowed; use headers")
    refusal = policy.host_refusal(host)
    literal = _literal(host)
    if refusal is None and literal is not None:
        refusal = policy.refusal(host, literal)
    if refusal is not None:
        raise ForbiddenDestinationError(url, refusal)
    return parsed


async def check_url(
    url: str, policy: OutboundPolicy, resolver: AbstractResolver | None = None
) -> None:
    """Refuses a URL now (when it is configured), as a connect would later: every address
    its host resolves to is checked. Connects re-check, as DNS answers change."""
    parsed = check_url_syntax(url, policy)
    host = parsed.raw_host
    assert host is not None
    if _literal(host) is not None:
        return
    own = resolver is None
    active = resolver if resolver is not None else aiohttp.ThreadedResolver()
    try:
        try:
            results = await active.resolve(host, parsed.port or 0, socket.AF_UNSPEC)
        except OSError as error:
            raise UnresolvableHostError(f"{host!r} does not resolve: {error}") from None
        for result in results:
            address = ipaddress.ip_address(result["host"])
            refusal = policy.refusal(host, address)
            if refusal is not None:
                raise ForbiddenDestinationError(url, f"resolves to {address}: {refusal}")
    finally:
        if own:
            await active.close()


@dataclass(frozen=True)
class OutboundResponse:
    status: int
    headers: CIMultiDictProxy[str]
    url: str
    body: bytes = field(repr=False)


async def read_capped(response: aiohttp.ClientResponse, cap: int) -> bytes:
    """The body, or ResponseTooLargeError (connection closed, not drained) beyond `cap`."""
    declared = response.content_length
    if declared is not None and declared > cap:
        response.close()
        raise ResponseTooLargeError(str(response.url), cap)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(READ_CHUNK):
        size += len(chunk)
        if size > cap:
            response.close()
            raise ResponseTooLargeError(str(response.url), cap)
        chunks.append(chunk)
    return b"".join(chunks)


def _same_origin(origin: URL, target: URL) -> bool:
    schemes_ok = target.scheme == origin.scheme or (
        origin.scheme == "http" and target.scheme == "https"
    )
    same_port = target.port == origin.port or (
        origin.scheme == "http" and target.scheme == "https" and target.is_default_port()
    )
    return (
        schemes_ok
        and _normal_host(target.raw_host or "") == _normal_host(origin.raw_host or "")
        and same_port
    )


class OutboundClient:
    """One aiohttp session whose every connection passes the guard. `async with` or
    `close()`; safe to share between tasks."""

    def __init__(
        self,
        policy: OutboundPolicy,
        *,
        resolver: AbstractResolver | None = None,
        limit: int = 100,
    ) -> None:
        self.policy = policy
        self._session = aiohttp.ClientSession(
            connector=GuardedConnector(policy, resolver, limit=limit),
            trust_env=False,
        )

    async def __aenter__(self) -> OutboundClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._session.close()

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        *,
        timeout_seconds: float,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        follow_redirects: int = 0,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The response after at most `follow_redirects` same-host hops, body unread
        (read it with `read_capped`). The timeout bounds everything up to the exit."""
        current = check_url_syntax(url, self.policy)
        timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        hops = 0
        async with asyncio.timeout(timeout_seconds):
            while True:
                response = await self._session.request(
                    method,
                    current,
                    data=data,
                    headers=dict(headers or {}),
                    timeout=timeout,
                    allow_redirects=False,
                )
                try:
                    location = response.headers.get("Location")
                    if (
                        follow_redirects == 0
                        or response.status not in REDIRECT_STATUSES
                        or not location
                    ):
                        yield response
                        return
                    target = current.join(URL(location))
                    if not _same_origin(current, target):
                        raise RedirectRefusedError(str(current), location, "another host")
                    hops += 1
                    if hops > follow_redirects:
                        raise RedirectRefusedError(
                            str(current), location, f"more than {follow_redirects} redirects"
                        )
                    check_url_syntax(str(target), self.policy)
                    if response.status == 303 or (
                        response.status in (301, 302) and method.upper() == "POST"
                    ):
                        method, data = "GET", None
                    current = target
                finally:
                    response.release()

    async def request(
        self,
        method: str,
        url: str,
        *,
        timeout_seconds: float,
        max_body_bytes: int,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        follow_redirects: int = 0,
    ) -> OutboundResponse:
        async with self.stream(
            method,
            url,
            timeout_seconds=timeout_seconds,
            data=data,
            headers=headers,
            follow_redirects=follow_redirects,
        ) as response:
            body = await read_capped(response, max_body_bytes)
            return OutboundResponse(response.status, response.headers, str(response.url), body)
