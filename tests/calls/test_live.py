"""The live socket (/ws/live/): session auth, per-organization groups, what services publish.

Runs the real routing (AllowedHostsOriginValidator + AuthMiddlewareStack + LiveConsumer)
through channels' WebsocketCommunicator. With REDIS_URL set, one more test puts the page's
socket and the publishing service on two separate channels-redis layers, as two web
processes would be.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from calls import services
from calls.consumers import CLOSE_NO_ORGANIZATION, CLOSE_NOT_LOGGED_IN, LiveConsumer
from calls.live import live_group
from calls.models import Call, CallStatus
from glassbox.routing import websocket_urlpatterns
from tenants.models import Organization, Role
from tenants.services import membership_create
from tests.factories import make_call, make_organization, make_phone_number, make_user
from voice.events import CallEnded, EndReason

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = (b"origin", b"http://testserver")


@dataclass
class Member:
    organization: Organization
    cookie: bytes


def _member(role: Role = Role.VIEWER, organization: Organization | None = None) -> Member:
    organization = organization or make_organization()
    user = make_user()
    membership_create(organization=organization, user=user, role=role)
    client = Client()
    client.force_login(user)
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    return Member(organization, f"{settings.SESSION_COOKIE_NAME}={session}".encode())


def _socket(cookie: bytes | None, app: Any = None, origin: tuple[bytes, bytes] = ORIGIN) -> Any:
    headers = [origin] + ([(b"cookie", cookie)] if cookie else [])
    return WebsocketCommunicator(app or URLRouter(websocket_urlpatterns), "/ws/live/", headers)


@pytest.fixture
async def member() -> Member:
    return await database_sync_to_async(_member)()


@pytest.fixture
async def connected(member: Member) -> AsyncIterator[Any]:
    socket = _socket(member.cookie)
    ok, _ = await socket.connect()
    assert ok
    yield socket
    await socket.disconnect()


async def _receive_call(socket: Any) -> dict[str, Any]:
    message = await socket.receive_json_from(timeout=5)
    assert message["type"] == "call"
    return message["call"]  # type: ignore[no-any-return]


async def test_a_call_appears_changes_and_leaves(
    member: Member, connected: Any, celery_in_process: None
) -> None:
    number = await database_sync_to_async(make_phone_number)(member.organization)
    call: Call = await database_sync_to_async(services.call_create_inbound)(
        phone_number=number,
        carrier_call_sid="CA" + "7" * 32,
        from_number="+15550002222",
        to_number=number.number,
    )

    created = await _receive_call(connected)
    assert created["id"] == call.pk and created["live"] is True
    assert created["status"] == CallStatus.RINGING and created["from_number"] == "+15550002222"
    assert created["url"] == f"/calls/{call.pk}/"
    assert created["agent_name"] == number.agent.name

    await database_sync_to_async(services.call_status_update)(
        call=call, status=CallStatus.IN_PROGRESS, duration_s=None
    )
    assert (await _receive_call(connected))["status"] == CallStatus.IN_PROGRESS

    await database_sync_to_async(services.call_end)(
        call=call, ended=CallEnded(reason=EndReason.CALLER_HANGUP)
    )
    ended = await _receive_call(connected)
    assert ended["live"] is False and ended["end_reason"] == "caller-hangup"
    # Finalization (run in-process here) publishes the duration once more.
    finalized = await _receive_call(connected)
    assert finalized["live"] is False and finalized["duration_ms"] is not None
    assert await connected.receive_nothing(timeout=0.2)


async def test_other_organizations_calls_are_not_sent(connected: Any) -> None:
    other = await database_sync_to_async(make_organization)()
    await database_sync_to_async(make_call)(other)
    assert await connected.receive_nothing(timeout=0.3)


async def test_the_browser_cannot_send_anything_that_matters(connected: Any) -> None:
    await connected.send_json_to({"type": "call.changed", "call": {"id": 1}})
    assert await connected.receive_nothing(timeout=0.2)


async def test_anonymous_sockets_are_refused() -> None:
    ok, code = await _socket(None).connect()
    assert (ok, code) == (False, CLOSE_NOT_LOGGED_IN)


async def test_a_user_without_an_organization_is_refused() -> None:
    def lonely() -> bytes:
        client = Client()
        client.force_login(make_user())
        return f"sessionid={client.cookies['sessionid'].value}".encode()

    ok, code = await _socket(await database_sync_to_async(lonely)()).connect()
    assert (ok, code) == (False, CLOSE_NO_ORGANIZATION)


async def test_another_sites_page_is_refused(member: Member) -> None:
    ok, _ = await _socket(member.cookie, origin=(b"origin", b"https://evil.example")).connect()
    assert ok is False


async def test_the_socket_follows_the_sessions_organization(member: Member) -> None:
    """A member of two organizations follows the one the dashboard has selected."""

    def second() -> Organization:
        from django.contrib.sessions.backends.db import SessionStore

        from tenants.models import Membership
        from tenants.web import SESSION_ORG_KEY

        user = Membership.objects.for_org(member.organization).get().user
        other = make_organization()
        membership_create(organization=other, user=user, role=Role.MEMBER)
        key = member.cookie.decode().split("=", 1)[1]
        store = SessionStore(session_key=key)
        store[SESSION_ORG_KEY] = other.pk
        store.save()
        return other

    other = await database_sync_to_async(second)()
    socket = _socket(member.cookie)
    assert (await socket.connect())[0]
    await database_sync_to_async(make_call)(member.organization)
    assert await socket.receive_nothing(timeout=0.3)
    call = await database_sync_to_async(make_call)(other)
    assert (await _receive_call(socket))["id"] == call.pk
    await socket.disconnect()


def _remove_membership(member: Member) -> None:
    from tenants.models import Membership

    Membership.objects.for_org(member.organization).delete()


def _log_out(member: Member) -> None:
    from django.contrib.sessions.backends.db import SessionStore

    SessionStore(session_key=member.cookie.decode().split("=", 1)[1]).delete()


@pytest.mark.parametrize("revoke", [_remove_membership, _log_out], ids=["removed", "logged-out"])
async def test_a_member_who_lost_access_stops_receiving(
    member: Member, connected: Any, revoke: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr(LiveConsumer, "RECHECK_S", 0.0)
    await database_sync_to_async(revoke)(member)

    await database_sync_to_async(make_call)(member.organization)

    closed = await connected.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": CLOSE_NO_ORGANIZATION}


async def test_membership_is_rechecked_at_most_every_interval(
    member: Member, connected: Any
) -> None:
    # Within the interval a message is forwarded without a database round trip.
    await database_sync_to_async(_remove_membership)(member)
    call = await database_sync_to_async(make_call)(member.organization)
    assert (await _receive_call(connected))["id"] == call.pk


async def test_leaving_the_page_leaves_the_group(member: Member) -> None:
    socket = _socket(member.cookie)
    assert (await socket.connect())[0]
    await socket.disconnect()
    layer = get_channel_layer()
    # Nobody is listening: publishing must neither fail nor queue for a dead socket.
    await layer.group_send(
        live_group(organization_id=member.organization.pk), {"type": "call.changed", "call": {}}
    )


@pytest.mark.skipif(not settings.REDIS_URL, reason="needs Redis (REDIS_URL)")
async def test_across_two_web_processes(member: Member, settings: Any) -> None:
    """The page's socket on one channels-redis layer, the publishing service on another."""
    layer = dict(settings.CHANNEL_LAYERS["default"])
    settings.CHANNEL_LAYERS = {"default": layer, "process_b": dict(layer)}

    class ProcessB(LiveConsumer):
        channel_layer_alias = "process_b"

    app = AllowedHostsOriginValidator(AuthMiddlewareStack(ProcessB.as_asgi()))
    socket = _socket(member.cookie, app=app)
    assert (await socket.connect())[0]
    assert get_channel_layer("process_b") is not get_channel_layer()

    call = await database_sync_to_async(make_call)(member.organization)

    assert (await _receive_call(socket))["id"] == call.pk
    await socket.disconnect()


@pytest.mark.skipif(not settings.REDIS_URL, reason="needs Redis (REDIS_URL)")
def test_an_idle_socket_outlives_the_layers_blocking_read() -> None:
    """channels-redis waits on a channel with BZPOPMIN for brpop_timeout seconds; with
    redis-py's default 5 s socket timeout that wait itself timed out and killed every
    consumer idle for 5 s (tests/calls/test_live_e2e.py caught it)."""
    from channels_redis.utils import create_pool

    layer = get_channel_layer()
    host = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]
    socket_timeout = create_pool(host).connection_kwargs["socket_timeout"]
    assert socket_timeout > layer.brpop_timeout
