"""The outbound guard against real sockets on 127.0.0.x: addresses, DNS rebinding,
redirects, the allowed networks, and the engine's two users (HTTP tools, the OpenAI SDK)."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest
from aiohttp import web

from tests.fakes import FakeOpenAI, FakeReply
from tests.voice.doubles import FakeLLM, FakeSTT, words
from tests.voice.harness import make_config, start, until
from tests.voice.tool_server import tool_server
from voice.config import LLMConfig, ToolConfig, ToolKind
from voice.netguard import (
    GuardedAsyncClient,
    OutboundPolicy,
    OutboundRefused,
    guarded_async_client,
    is_public,
    refusal_in,
    resolve_checked,
    url_refusal,
)
from voice.providers.base import Message, ProviderError, ToolCall, ToolCallsRequested
from voice.providers.openai_llm import OpenAILLM
from voice.tools import DigitCollector, ToolRunner

REFUSED = [
    "127.0.0.1",
    "127.9.9.9",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "100.64.0.1",  # CGNAT
    "169.254.169.254",  # cloud metadata
    "0.0.0.0",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.2.1",
    "198.18.0.1",
    "::1",
    "::",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "ff02::1",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2001:db8::1",
]


@pytest.mark.parametrize("address", REFUSED)
def test_private_and_special_addresses_are_refused(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert not is_public(ip)
    assert not OutboundPolicy().allows(ip)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert OutboundPolicy().allows(ipaddress.ip_address(address))


def test_allowed_networks_allow_exactly_those() -> None:
    policy = OutboundPolicy.from_strings(["10.0.0.0/8", "127.0.0.1/32"])
    assert policy.allows(ipaddress.ip_address("10.20.30.40"))
    assert policy.allows(ipaddress.ip_address("127.0.0.1"))
    assert policy.allows(ipaddress.ip_address("::ffff:127.0.0.1"))
    assert not policy.allows(ipaddress.ip_address("127.0.0.2"))
    assert not policy.allows(ipaddress.ip_address("192.168.0.1"))
    assert not policy.allows(ipaddress.ip_address("169.254.169.254"))
    with pytest.raises(ValueError, match="not-a-network"):
        OutboundPolicy.from_strings(["not-a-network"])


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://127.1/x",
        "http://2130706433/x",
        "http://0x7f000001/x",
        "http://[::1]:8080/x",
        "http://[::ffff:169.254.169.254]/latest",
        "http://localhost:8000/",
        "http://api.localhost/",
        "http://169.254.169.254/latest/meta-data/",
        "ftp://example.com/x",
        "http:///nohost",
    ],
)
def test_url_refusal_judges_literal_addresses_and_loopback_names(url: str) -> None:
    assert url_refusal(OutboundPolicy(), url) is not None


def test_url_refusal_passes_names_and_public_literals() -> None:
    policy = OutboundPolicy()
    assert url_refusal(policy, "https://tools.example.com/lookup") is None
    assert url_refusal(policy, "http://8.8.8.8/") is None
    assert url_refusal(OutboundPolicy.from_strings(["127.0.0.1/32"]), "http://127.0.0.1/") is None


# --- real sockets -------------------------------------------------------------------------


@dataclass
class Site:
    url: str
    hits: list[str] = field(default_factory=list)


@asynccontextmanager
async def site(host: str, redirect_to: Callable[[], str] | None = None) -> AsyncIterator[Site]:
    """A tiny HTTP server on ``host``: answers JSON, or redirects when told where."""
    state = Site("")

    async def handle(request: web.Request) -> web.StreamResponse:
        state.hits.append(request.host)
        if redirect_to is not None:
            raise web.HTTPFound(redirect_to())
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    tcp = web.TCPSite(runner, host, 0)
    await tcp.start()
    state.url = f"http://{host}:{runner.addresses[0][1]}"
    try:
        yield state
    finally:
        await runner.cleanup()


def flipping_resolver(*answers: str) -> Callable[[str, int], object]:
    """DNS that answers each lookup with the next address: public first, then loopback."""
    remaining = list(answers)

    async def resolve(host: str, port: int) -> list[str]:
        return [remaining.pop(0) if len(remaining) > 1 else remaining[0]]

    return resolve


async def test_dns_rebinding_to_loopback_is_refused_at_connect_time() -> None:
    policy = OutboundPolicy()
    resolver = flipping_resolver("93.184.215.14", "127.0.0.1")
    async with site("127.0.0.1") as server:
        port = server.url.rsplit(":", 1)[1]
        url = f"http://rebind.test:{port}/tool"
        # "when saved": the name is fine and resolves to a public address
        assert url_refusal(policy, url) is None
        assert await resolve_checked(policy, "rebind.test", 80, resolver=resolver) == [
            "93.184.215.14"
        ]
        # "when called": the same name now resolves to 127.0.0.1
        async with GuardedAsyncClient(policy, resolver=resolver) as client:
            with pytest.raises(httpx.ConnectError) as caught:
                await client.post(url, json={})
    refusal = refusal_in(caught.value)
    assert isinstance(refusal, OutboundRefused)
    assert "127.0.0.1" in str(refusal)
    assert server.hits == []


async def test_literal_loopback_forms_are_refused_at_connect_time() -> None:
    async with site("127.0.0.1") as server, GuardedAsyncClient(OutboundPolicy()) as client:
        port = server.url.rsplit(":", 1)[1]
        for url in (server.url, f"http://[::ffff:127.0.0.1]:{port}/", f"http://127.1:{port}/"):
            with pytest.raises(httpx.ConnectError):
                await client.get(url)
    assert server.hits == []


async def test_allowed_networks_let_a_named_private_server_through() -> None:
    async def to_loopback(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    async with (
        site("127.0.0.1") as server,
        guarded_async_client(["127.0.0.1/32"], resolver=to_loopback) as client,
    ):
        port = server.url.rsplit(":", 1)[1]
        response = await client.get(f"http://ollama.lan:{port}/v1/models")
    assert response.json() == {"ok": True}
    # the name went to the server (Host header) while the socket went to the checked IP
    assert server.hits == [f"ollama.lan:{port}"]


async def test_a_redirect_to_a_private_address_is_refused() -> None:
    inner_url = ""
    async with (
        site("127.0.0.2") as inner,
        site("127.0.0.1", redirect_to=lambda: f"{inner_url}/secret") as outer,
    ):
        inner_url = inner.url
        # Only the first hop is allowed: following the redirect needs a new connection
        async with guarded_async_client(["127.0.0.1/32"], follow_redirects=True) as client:
            with pytest.raises(httpx.ConnectError) as caught:
                await client.get(f"{outer.url}/start")
        assert "127.0.0.2" in str(refusal_in(caught.value))
        assert outer.hits and inner.hits == []
        # with the target's network allowed too, the same redirect is followed
        async with guarded_async_client(["127.0.0.0/8"], follow_redirects=True) as client:
            response = await client.get(f"{outer.url}/start")
    assert response.json() == {"ok": True}
    assert len(inner.hits) == 1


# --- the engine's users --------------------------------------------------------------------


async def _run_tool(
    tool: ToolConfig, *, allowed: tuple[str, ...], http: httpx.AsyncClient
) -> tuple[bool, str]:
    runner = ToolRunner(
        make_config(tools=(tool,), allowed_networks=allowed),
        http=http,
        digits=DigitCollector(),
        clock=time.monotonic,
    )
    outcome = await runner.run(ToolCall("c1", tool.name, '{"city": "Oslo"}'), turn_index=0)
    return outcome.record.ok, outcome.result


async def test_http_tool_to_a_private_address_is_refused_even_with_an_unguarded_client() -> None:
    async with tool_server() as server:
        tool = ToolConfig("weather", "", ToolKind.HTTP, url=f"{server.base_url}/weather")
        async with httpx.AsyncClient() as plain:
            ok, result = await _run_tool(tool, allowed=(), http=plain)
        assert not ok and "address not allowed" in result
        async with guarded_async_client([]) as guarded:
            ok, result = await _run_tool(tool, allowed=(), http=guarded)
        assert not ok and "address not allowed" in result
        assert server.requests == []
        # OUTBOUND_ALLOWED_NETWORKS, carried by the call config, lets it through
        async with guarded_async_client(["127.0.0.1/32"]) as guarded:
            ok, result = await _run_tool(tool, allowed=("127.0.0.1/32",), http=guarded)
        assert ok and "sunny" in result
        assert len(server.requests) == 1


def _llm(url: str, *, tenant: bool, allowed: tuple[str, ...] = (), **kw: object) -> OpenAILLM:
    config = LLMConfig(
        provider="openai",
        model="gpt-test",
        api_key="sk-test",
        base_url=url,
        tenant_url=tenant,
        allowed_networks=allowed,
    )
    return OpenAILLM(config, **kw)  # type: ignore[arg-type]


async def _reply(llm: OpenAILLM) -> str:
    try:
        chunks = [c async for c in llm.stream(messages=[Message("user", "hi")], tools=())]
    finally:
        await llm.aclose()
    return "".join(getattr(c, "text", "") for c in chunks)


async def test_openai_llm_with_a_tenant_base_url_reaches_only_allowed_addresses() -> None:
    fake = FakeOpenAI(api_key="sk-test", responder=lambda m, t: FakeReply("Hello."))
    async with fake:
        with pytest.raises(ProviderError, match="base URL refused"):
            await _reply(_llm(fake.url, tenant=True))

        async def rebound(host: str, port: int) -> list[str]:
            return ["127.0.0.1"]

        port = fake.url.split(":")[2].split("/")[0]
        with pytest.raises(ProviderError, match="base URL refused"):
            await _reply(_llm(f"http://llm.example.com:{port}/v1", tenant=True, resolver=rebound))
        assert fake.requests == []
        # allowed network: through; the operator's own base URL (not a tenant's): trusted
        assert await _reply(_llm(fake.url, tenant=True, allowed=("127.0.0.0/8",))) == "Hello."
        assert await _reply(_llm(fake.url, tenant=False)) == "Hello."
    assert len(fake.requests) == 2


async def test_a_call_cannot_reach_a_private_tool_url() -> None:
    # Through the engine as it is: the conversation's own client, the call's policy.
    async with tool_server() as server:
        tool = ToolConfig("weather", "", ToolKind.HTTP, url=f"{server.base_url}/weather")
        llm = FakeLLM([[ToolCallsRequested([ToolCall("a", "weather", "{}")])], words("Sorry.")])
        config = make_config(tools=(tool,), allowed_networks=())
        call = await start(config, stt=FakeSTT(["Weather please"]), llm=llm)
        await until(lambda: len(call.sink.timelines) == 1)
        await call.caller.speak(300)
        await until(lambda: len(call.sink.timelines) == 2)
        await call.hang_up()
    results = [m.content for m in llm.requests[1] if m.role == "tool"]
    assert results == ["Error: the weather tool could not be reached (address not allowed)."]
    assert server.requests == []
