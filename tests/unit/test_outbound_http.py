"""The SSRF guard against real local HTTP servers: forbidden destinations are refused
before any byte reaches them, the development allow-list lets a local server through,
redirects never leave the host, bodies are capped, and a name that resolves to a public
address when checked and to 127.0.0.1 when connecting (DNS rebinding) is refused."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from services.common.errors import InvalidInputError
from services.common.outbound_http import (
    ForbiddenDestinationError,
    OutboundClient,
    OutboundPolicy,
    RedirectRefusedError,
    ResponseTooLargeError,
    UnresolvableHostError,
    address_refusal,
    check_url,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# A public address (a root name server) that tests resolve names to; never connected to.
PUBLIC = "198.41.0.4"


class MapResolver(AbstractResolver):
    """Names to addresses from a table; each name's answers are used in turn, so a name
    can change its answer between resolutions (DNS rebinding)."""

    def __init__(self, table: dict[str, list[list[str]]]) -> None:
        self.table = table
        self.calls: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.calls.append(host)
        answers = self.table.get(host)
        if not answers:
            raise OSError(f"{host} does not resolve")
        addresses = answers.pop(0) if len(answers) > 1 else answers[0]
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
            for address in addresses
        ]

    async def close(self) -> None:
        pass


class Server:
    def __init__(self) -> None:
        self.hits: list[str] = []
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@asynccontextmanager
async def serve(routes: dict[str, Handler]) -> AsyncIterator[Server]:
    server = Server()

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        server.hits.append(request.path)
        return await handler(request)

    app = web.Application(middlewares=[count])
    for path, handler in routes.items():
        app.router.add_route("*", path, handler)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.port = runner.addresses[0][1]
    try:
        yield server
    finally:
        await runner.cleanup()


async def ok(_: web.Request) -> web.Response:
    return web.Response(text="hello")


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "[::1]",
        "[fd00::1]",
        "[fe80::1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:10.0.0.1]",
        "[64:ff9b::a00:1]",
        "[fd00:ec2::254]",
        "0.0.0.0",
        "224.0.0.1",
        "metadata.google.internal",
        "localhost.",
    ],
)
async def test_forbidden_destinations_are_refused_before_connecting(host: str) -> None:
    async with serve({"/": ok}) as server, OutboundClient(OutboundPolicy()) as client:
        # The local server's port: a connection would show up as a hit.
        url = f"http://{host}:{server.port}/"
        with pytest.raises(ForbiddenDestinationError):
            await check_url(url, OutboundPolicy())
        with pytest.raises(ForbiddenDestinationError):
            await client.request("GET", url, timeout_seconds=5, max_body_bytes=1000)
        assert server.hits == []


async def test_a_name_resolving_to_loopback_is_refused_on_connect() -> None:
    resolver = MapResolver({"hook.example.test": [["127.0.0.1"]]})
    async with (
        serve({"/": ok}) as server,
        OutboundClient(OutboundPolicy(), resolver=resolver) as client,
    ):
        url = f"http://hook.example.test:{server.port}/"
        with pytest.raises(ForbiddenDestinationError, match=r"127\.0\.0\.1"):
            await client.request("POST", url, timeout_seconds=5, max_body_bytes=1000, data=b"x")
        assert resolver.calls == ["hook.example.test"]
        assert server.hits == []


async def test_dns_rebinding_is_refused_at_connect_time() -> None:
    # Public when the webhook is configured, loopback when the relay connects.
    resolver = MapResolver({"rebind.example.test": [[PUBLIC], ["127.0.0.1"]]})
    async with (
        serve({"/": ok}) as server,
        OutboundClient(OutboundPolicy(), resolver=resolver) as client,
    ):
        url = f"http://rebind.example.test:{server.port}/"
        await check_url(url, OutboundPolicy(), resolver)
        with pytest.raises(ForbiddenDestinationError, match="loopback"):
            await client.request("GET", url, timeout_seconds=5, max_body_bytes=1000)
        assert server.hits == []


async def test_one_private_address_among_public_ones_refuses_the_name() -> None:
    resolver = MapResolver({"mixed.example.test": [[PUBLIC, "10.0.0.7"]]})
    with pytest.raises(ForbiddenDestinationError, match=r"10\.0\.0\.7"):
        await check_url("https://mixed.example.test/hook", OutboundPolicy(), resolver)


async def test_public_destinations_pass_the_check() -> None:
    resolver = MapResolver({"hooks.example.test": [[PUBLIC, "2001:4860:4860::8888"]]})
    await check_url("https://hooks.example.test/in", OutboundPolicy(), resolver)
    await check_url(f"http://{PUBLIC}:8080/x", OutboundPolicy())
    assert address_refusal(ipaddress.ip_address(PUBLIC)) is None


async def test_unresolvable_names_and_bad_urls_are_refused_with_clear_errors() -> None:
    resolver = MapResolver({})
    with pytest.raises(UnresolvableHostError):
        await check_url("https://nowhere.example.test/", OutboundPolicy(), resolver)
    for bad in ("ftp://example.test/", "http:///path", "https://user:pw@example.test/", "x"):
        with pytest.raises(InvalidInputError):
            await check_url(bad, OutboundPolicy(), resolver)


@pytest.mark.parametrize("allow", ["127.0.0.1", "127.0.0.0/8", "localhost"])
async def test_the_allow_list_lets_a_local_server_through(allow: str) -> None:
    policy = OutboundPolicy.from_env({"OUTBOUND_ALLOW_HOSTS": f" {allow} , other.test"})
    host = "localhost" if allow == "localhost" else "127.0.0.1"
    async with serve({"/": ok}) as server, OutboundClient(policy) as client:
        url = f"http://{host}:{server.port}/"
        await check_url(url, policy)
        response = await client.request("GET", url, timeout_seconds=5, max_body_bytes=100)
        assert (response.status, response.body) == (200, b"hello")
        assert server.hits == ["/"]


async def test_metadata_is_refused_even_when_allow_listed() -> None:
    policy = OutboundPolicy.parse("169.254.0.0/16,fd00::/8,metadata.google.internal")
    for url in (
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://metadata.google.internal/computeMetadata/v1/",
    ):
        with pytest.raises(ForbiddenDestinationError, match="metadata"):
            await check_url(url, policy)
    # The rest of the allowed network is allowed.
    await check_url("http://169.254.10.10/", policy)


def test_a_malformed_allow_list_fails_fast() -> None:
    with pytest.raises(InvalidInputError, match="OUTBOUND_ALLOW_HOSTS"):
        OutboundPolicy.parse("10.0.0.0/33")


async def test_redirects_to_another_host_are_refused() -> None:
    policy = OutboundPolicy.parse("127.0.0.1")

    async def to_metadata(_: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect("http://169.254.169.254/latest/meta-data/")

    async def to_localhost(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://localhost:{request.url.port}/")

    async with (
        serve({"/": ok, "/meta": to_metadata, "/loop": to_localhost}) as server,
        OutboundClient(policy) as client,
    ):
        for path in ("/meta", "/loop"):
            with pytest.raises(RedirectRefusedError, match="another host"):
                await client.request(
                    "GET",
                    server.url + path,
                    timeout_seconds=5,
                    max_body_bytes=100,
                    follow_redirects=3,
                )
        assert server.hits == ["/meta", "/loop"]
        # Not followed at all (webhooks): the 3xx is the answer.
        response = await client.request(
            "POST", server.url + "/meta", timeout_seconds=5, max_body_bytes=100, data=b"x"
        )
        assert response.status == 307


async def test_same_host_redirects_are_followed_a_bounded_number_of_times() -> None:
    policy = OutboundPolicy.parse("127.0.0.1")

    async def hop(request: web.Request) -> web.Response:
        left = int(request.match_info["n"])
        raise web.HTTPFound("/" if left == 0 else f"/hop/{left - 1}")

    async with (
        serve({"/": ok, "/hop/{n}": hop}) as server,
        OutboundClient(policy) as client,
    ):
        response = await client.request(
            "GET",
            server.url + "/hop/2",
            timeout_seconds=5,
            max_body_bytes=100,
            follow_redirects=3,
        )
        assert (response.status, response.body) == (200, b"hello")
        with pytest.raises(RedirectRefusedError, match="more than 3"):
            await client.request(
                "GET",
                server.url + "/hop/5",
                timeout_seconds=5,
                max_body_bytes=100,
                follow_redirects=3,
            )


@pytest.mark.parametrize("declared", [True, False])
async def test_bodies_beyond_the_cap_are_aborted(declared: bool) -> None:
    chunk = b"x" * 65536

    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        if declared:
            response.content_length = len(chunk) * 64
        await response.prepare(request)
        for _ in range(64):
            await response.write(chunk)
        return response

    policy = OutboundPolicy.parse("127.0.0.1")
    async with serve({"/big": big}) as server, OutboundClient(policy) as client:
        with pytest.raises(ResponseTooLargeError):
            await client.request(
                "GET", server.url + "/big", timeout_seconds=5, max_body_bytes=100_000
            )
        response = await client.request(
            "GET", server.url + "/big", timeout_seconds=5, max_body_bytes=len(chunk) * 64
        )
        assert len(response.body) == len(chunk) * 64


async def test_one_timeout_bounds_the_whole_exchange() -> None:
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"first")
        await release.wait()  # never set: the body never ends
        return response

    policy = OutboundPolicy.parse("127.0.0.1")
    async with serve({"/slow": slow}) as server, OutboundClient(policy) as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            await client.request(
                "GET", server.url + "/slow", timeout_seconds=0.5, max_body_bytes=1000
            )
        assert loop.time() - started < 3
