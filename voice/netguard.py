"""The outbound guard: tenant-supplied URLs reach only public addresses.

A tenant names URLs the platform calls during a call (HTTP tools, an OpenAI-compatible
``base_url``) and after it (webhooks). Without a guard, ``http://169.254.169.254/`` or
``http://10.0.0.5:6379/`` would let a tenant read the platform's own network. Matching
host strings is not enough (``127.1``, ``[::ffff:127.0.0.1]``, a DNS name that resolves to
a public address when the URL is saved and to 127.0.0.1 when it is called), so the check
that counts happens at connect time: the guarded transports resolve the name themselves,
refuse every address the :class:`OutboundPolicy` does not allow, and connect to the
checked IP literal, so nothing resolves the name a second time. Redirects open new
connections, which are checked the same way.

Refused: loopback, RFC 1918, CGNAT (100.64/10), ULA (fc00::/7), link-local (with
169.254.169.254), multicast, unspecified, reserved and documentation ranges, and IPv6
forms that embed one of those IPv4 addresses (IPv4-mapped, NAT64, 6to4, Teredo). A
self-hoster allows exactly the networks they list (``OUTBOUND_ALLOWED_NETWORKS`` on the
Django side), e.g. an Ollama server on ``10.0.0.0/8``.

Pure Python, no Django: the engine builds its clients with :func:`guarded_async_client`
(httpx, HTTP tools) and :func:`guarded_httpx2_transport` (the OpenAI SDK's httpx fork).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpcore2
import httpx
import httpx2

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# (host, port) -> IP address strings. Tests substitute one to simulate DNS rebinding.
Resolver = Callable[[str, int], Awaitable[list[str]]]

RESOLVE_TIMEOUT_S = 5.0
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
# Names that resolve to loopback by definition (RFC 6761), whatever DNS says.
_LOOPBACK_NAMES = ("localhost", "localhost.localdomain")


class OutboundRefused(Exception):
    """A tenant-supplied URL names (or resolves to) an address the policy refuses."""


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDRs (``10.0.0.0/8``, ``127.0.0.1/32``, ``fd00::/8``); a bare address is a /32 or /128.

    Raises ValueError naming the bad entry.
    """
    networks: list[IPNetwork] = []
    for raw in values:
        text = raw.strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError as exc:
            raise ValueError(f"not a network in CIDR form: {text!r}") from exc
    return tuple(networks)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    found: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip in _NAT64:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    return found


def is_public(ip: IPAddress) -> bool:
    """True for a globally routable unicast address (and nothing that embeds a private one)."""
    if (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_unspecified
        or ip.is_reserved
        or not ip.is_global
    ):
        return False
    if isinstance(ip, ipaddress.IPv4Address):
        return ip not in _CGNAT
    return all(is_public(v4) for v4 in _embedded_ipv4(ip))


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    """Which addresses tenant-supplied URLs may reach: public ones plus ``allowed``."""

    allowed: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_strings(cls, networks: Iterable[str]) -> OutboundPolicy:
        return cls(parse_networks(networks))

    def allows(self, ip: IPAddress) -> bool:
        candidates: list[IPAddress] = [ip]
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            candidates.append(ip.ipv4_mapped)
        for candidate in candidates:
            for network in self.allowed:
                if candidate.version == network.version and candidate in network:
                    return True
        return is_public(ip)

    def check_address(self, host: str, address: str) -> None:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
        if not self.allows(ip):
            raise OutboundRefused(
                f"{host} resolves to {ip}, which is not a public address "
                "(allow it with OUTBOUND_ALLOWED_NETWORKS)"
            )


def literal_address(host: str) -> IPAddress | None:
    """The IP a host string denotes without DNS, including the legacy IPv4 spellings
    (``127.1``, ``0x7f000001``, ``2130706433``) that C resolvers still accept."""
    text = host.strip("[]")
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        pass
    if text and all(c in "0123456789abcdefxABCDEFX." for c in text) and text[0].isdigit():
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


async def system_resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


async def resolve_checked(
    policy: OutboundPolicy, host: str, port: int, *, resolver: Resolver = system_resolve
) -> list[str]:
    """The addresses ``host`` may be reached at; raises OutboundRefused when there are none."""
    host = host.strip("[]")
    if host.lower().rstrip(".") in _LOOPBACK_NAMES or host.lower().endswith(".localhost"):
        addresses = ["127.0.0.1"]
    else:
        literal = literal_address(host)
        if literal is not None:
            addresses = [str(literal)]
        else:
            async with asyncio.timeout(RESOLVE_TIMEOUT_S):
                addresses = await resolver(host, port)
    allowed: list[str] = []
    refusal: OutboundRefused | None = None
    for address in addresses:
        try:
            policy.check_address(host, address)
        except OutboundRefused as exc:
            refusal = refusal or exc
        else:
            allowed.append(address)
    if not allowed:
        raise refusal or OutboundRefused(f"{host} does not resolve")
    return allowed


def refusal_in(exc: BaseException) -> OutboundRefused | None:
    """The guard's refusal behind a client library's ConnectError, if that is what it was."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OutboundRefused):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def url_refusal(policy: OutboundPolicy, url: str) -> str | None:
    """Why a URL may not be used, judged without DNS; None when it may (DNS is judged at
    connect time, and by :func:`resolve_checked` where a caller can afford a lookup)."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        return "Use an http(s) URL."
    host = parts.hostname or ""
    if not host:
        return "The URL has no host."
    lowered = host.lower().rstrip(".")
    if lowered in _LOOPBACK_NAMES or lowered.endswith(".localhost"):
        return f"{host} is a loopback name; use a public address."
    literal = literal_address(host)
    if literal is not None and not policy.allows(literal):
        return f"{literal} is not a public address; use a public address."
    return None


class _GuardedBackend:
    """An httpcore(2) network backend that connects only to addresses the policy allows.

    Works for both ``httpcore`` (httpx) and ``httpcore2`` (httpx2, the OpenAI SDK): they
    share the backend interface; ``error`` is the library's ConnectError so the client
    reports a refusal as a connection error.
    """

    def __init__(
        self,
        policy: OutboundPolicy,
        *,
        inner: Any,
        error: type[Exception],
        resolver: Resolver,
    ) -> None:
        self._policy = policy
        self._inner = inner
        self._error = error
        self._resolver = resolver

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's backend interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> Any:
        try:
            addresses = await resolve_checked(self._policy, host, port, resolver=self._resolver)
        except OutboundRefused as exc:
            raise self._error(f"outbound connection refused: {exc}") from exc
        except (OSError, TimeoutError) as exc:
            raise self._error(f"cannot resolve {host}: {exc}") from exc
        last: Exception | None = None
        for address in addresses:
            try:
                stream = await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except Exception as exc:  # the library's ConnectError/ConnectTimeout: next address
                last = exc
                continue
            # Belt and braces: the socket's real peer, whatever the OS did with the literal.
            peer = stream.get_extra_info("server_addr")
            if peer:
                try:
                    self._policy.check_address(host, str(peer[0]))
                except OutboundRefused as exc:
                    await stream.aclose()
                    raise self._error(f"outbound connection refused: {exc}") from exc
            return stream
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's backend interface)
        socket_options: Iterable[Any] | None = None,
    ) -> Any:
        raise self._error("outbound connection refused: unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


# the libraries' own defaults (httpx; the OpenAI SDK's DEFAULT_CONNECTION_LIMITS)
_HTTPX_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)
_HTTPX2_LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=100)


def _pool_kwargs(limits: httpx.Limits | httpx2.Limits) -> dict[str, Any]:
    return {
        "max_connections": limits.max_connections,
        "max_keepalive_connections": limits.max_keepalive_connections,
        "keepalive_expiry": limits.keepalive_expiry,
    }


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx transport whose every connection (redirects included) passes the policy."""

    def __init__(
        self,
        policy: OutboundPolicy,
        *,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits = _HTTPX_LIMITS,
        resolver: Resolver = system_resolve,
    ) -> None:
        ssl_context = (
            verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify)
        )
        super().__init__(verify=ssl_context, trust_env=False, limits=limits)
        self.policy = policy
        # httpx has no network_backend argument: replace the pool it built with one that
        # connects through the guard (same TLS context and limits).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            network_backend=_GuardedBackend(  # type: ignore[arg-type]
                policy,
                inner=httpcore.AnyIOBackend(),
                error=httpcore.ConnectError,
                resolver=resolver,
            ),
            **_pool_kwargs(limits),
        )


class GuardedHttpx2Transport(httpx2.AsyncHTTPTransport):
    """The same guard for ``httpx2``, the httpx fork the OpenAI SDK is built on."""

    def __init__(
        self,
        policy: OutboundPolicy,
        *,
        verify: ssl.SSLContext | bool = True,
        limits: httpx2.Limits = _HTTPX2_LIMITS,
        resolver: Resolver = system_resolve,
    ) -> None:
        ssl_context = (
            verify if isinstance(verify, ssl.SSLContext) else httpx2.create_ssl_context(verify)
        )
        super().__init__(verify=ssl_context, trust_env=False, limits=limits)
        self.policy = policy
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=ssl_context,
            network_backend=_GuardedBackend(  # type: ignore[arg-type]
                policy,
                inner=httpcore2.AnyIOBackend(),
                error=httpcore2.ConnectError,
                resolver=resolver,
            ),
            **_pool_kwargs(limits),
        )


class GuardedAsyncClient(httpx.AsyncClient):
    """An httpx client whose connections all pass an :class:`OutboundPolicy`.

    ``trust_env`` is off: a proxy from the environment would make the connections on the
    guard's behalf, to whatever address the proxy resolves.
    """

    def __init__(
        self,
        policy: OutboundPolicy,
        *,
        verify: ssl.SSLContext | bool = True,
        resolver: Resolver = system_resolve,
        **kwargs: Any,
    ) -> None:
        self.policy = policy
        super().__init__(
            transport=GuardedTransport(policy, verify=verify, resolver=resolver),
            trust_env=False,
            **kwargs,
        )


def guarded_async_client(
    allowed_networks: Sequence[str] = (),
    *,
    verify: ssl.SSLContext | bool = True,
    resolver: Resolver = system_resolve,
    **kwargs: Any,
) -> GuardedAsyncClient:
    """An httpx client for tenant-supplied URLs (``allowed_networks`` as CIDR strings)."""
    return GuardedAsyncClient(
        OutboundPolicy.from_strings(allowed_networks), verify=verify, resolver=resolver, **kwargs
    )


def guarded_httpx2_transport(
    allowed_networks: Sequence[str] = (),
    *,
    verify: ssl.SSLContext | bool = True,
    resolver: Resolver = system_resolve,
) -> GuardedHttpx2Transport:
    return GuardedHttpx2Transport(
        OutboundPolicy.from_strings(allowed_networks), verify=verify, resolver=resolver
    )
