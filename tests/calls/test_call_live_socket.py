"""One call's live view socket (/ws/calls/<id>/live/, calls/consumers.py CallLiveConsumer):
refused when logged out (4401) or for another organization's call (4404); a viewer gets
the call's state as stored, then each change, until their membership is gone (4403).

Runs the real routing through channels' WebsocketCommunicator on the in-memory layer."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from calls.consumers import CLOSE_NO_ORGANIZATION, CLOSE_NOT_LOGGED_IN, CallLiveConsumer
from calls.control import live_group
from glassbox.routing import websocket_urlpatterns
from tenants.models import Membership, Organization, Role
from tests.calls.test_listen import ORIGIN, _cookie
from tests.conftest import make_tenant
from tests.factories import make_call

pytestmark = pytest.mark.django_db(transaction=True)


def _socket(call_id: int, cookie: str | None) -> Any:
    headers = [ORIGIN] + ([(b"cookie", cookie.encode())] if cookie else [])
    path = f"/ws/calls/{call_id}/live/"
    return WebsocketCommunicator(URLRouter(websocket_urlpatterns), path, headers)


def _two_tenants() -> tuple[Organization, int, str, str]:
    ours = make_tenant("Watched")
    theirs = make_tenant("Elsewhere")
    call = make_call(ours.organization)
    return (
        ours.organization,
        call.pk,
        _cookie(ours.organization),
        _cookie(theirs.organization, Role.OWNER),
    )


def _remove_memberships(organization: Organization) -> None:
    Membership.objects.for_org(organization).delete()


async def test_a_logged_out_user_and_another_organization_are_refused() -> None:
    _, call_id, _, theirs = await sync_to_async(_two_tenants)()
    assert await _socket(call_id, None).connect() == (False, CLOSE_NOT_LOGGED_IN)
    assert await _socket(call_id, theirs).connect() == (False, CallLiveConsumer.CLOSE_NOT_FOUND)


async def test_a_viewer_follows_the_call_until_their_membership_goes(monkeypatch: Any) -> None:
    organization, call_id, ours, _ = await sync_to_async(_two_tenants)()
    socket = _socket(call_id, ours)
    assert (await socket.connect())[0]
    # The call is not running anywhere: nothing mirrors its state.
    assert await socket.receive_json_from(timeout=5) == {"type": "idle"}

    layer = get_channel_layer()
    await layer.group_send(live_group(call_id), {"type": "call.live", "state": {"phase": "x"}})
    assert await socket.receive_json_from(timeout=5) == {"type": "state", "state": {"phase": "x"}}

    monkeypatch.setattr(CallLiveConsumer, "RECHECK_S", 0.0)
    await sync_to_async(_remove_memberships)(organization)
    await layer.group_send(live_group(call_id), {"type": "call.live", "state": {"phase": "y"}})
    closed = await socket.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": CLOSE_NO_ORGANIZATION}
