"""The dashboard's live socket: one per open page, a member of its organization's group.

Authenticated by the dashboard session (the route is wrapped in AuthMiddlewareStack and
an Origin check; the carrier media route next to it is not, and stays a plain ASGI app).
The organization is the session's current one, checked against the user's memberships
when the socket opens, exactly like the page gate (tenants.web) does for a request, and
again (session included) at most once a minute before a message is forwarded: a removed
member, a logout or an organization switch closes the socket.
Server push only: what the browser sends is ignored.

Messages to the browser (JSON text frames):

    {"type": "call", "call": {"id": 12, "live": true, "status": "in-progress", ...}}

``live`` false means the call is over: pages drop it from their in-progress lists. The
fields are calls.live.call_live_payload's; docs/dashboard.md#live-updates has the protocol.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from importlib import import_module
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth import SESSION_KEY

from calls import control
from calls.control import call_live_state
from calls.control import live_group as call_live_group
from calls.live import live_group
from calls.models import Call
from tenants.models import Organization
from tenants.selectors import membership_for_user, membership_list_for_user
from tenants.web import SESSION_ORG_KEY

# Close codes in the application range (4000-4999): the page stops reconnecting on these.
CLOSE_NOT_LOGGED_IN = 4401
CLOSE_NO_ORGANIZATION = 4403


def live_organization_id(*, scope: dict[str, Any]) -> int | None:
    """The organization whose calls this socket may follow, or None."""
    user = scope.get("user")
    if user is None or not user.is_authenticated:
        return None
    return _organization_for(user=user, chosen=scope.get("session", {}).get(SESSION_ORG_KEY))


def live_organization_id_now(*, scope: dict[str, Any]) -> int | None:
    """The same, from the session as it is stored now: a logout or an organization switch
    in another tab counts, as does a membership removed since the socket opened."""
    user = scope.get("user")
    if user is None or not user.is_authenticated:
        return None
    session = import_module(settings.SESSION_ENGINE).SessionStore(
        session_key=scope["session"].session_key
    )
    if str(session.get(SESSION_KEY)) != str(user.pk):
        return None
    return _organization_for(user=user, chosen=session.get(SESSION_ORG_KEY))


def _organization_for(*, user: Any, chosen: object) -> int | None:
    # The page gate's rule (tenants.web.current_membership): the session's choice if the
    # user still belongs to it, else their first organization.
    membership = None
    if chosen is not None:
        membership = membership_for_user(user=user, organization_id=chosen)
    if membership is None:
        membership = membership_list_for_user(user=user).first()
    return None if membership is None else int(membership.organization_id)


class _DashboardSocket(AsyncJsonWebsocketConsumer):
    """What the dashboard's sockets share: the session's organization checked on connect,
    rechecked before forwarding, the group left on disconnect, and nothing accepted from
    the browser. Subclasses join one group in ``connect`` and guard each handler with
    ``_still_member``."""

    # A member removed from the organization (or whose session moved to another one)
    # stops receiving within this many seconds: the membership is checked again before
    # forwarding a message, at most this often.
    RECHECK_S = 60.0
    CLOSE_NOT_FOUND = 4404

    group: str | None = None
    organization_id: int | None = None
    checked_at = 0.0

    async def _organization_or_close(self) -> int | None:
        """The organization this socket may follow; None once the socket is closed
        (4401 when not logged in, 4403 without an organization)."""
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_NOT_LOGGED_IN)
            return None
        organization_id = await database_sync_to_async(live_organization_id)(scope=self.scope)
        if organization_id is None:
            await self.close(code=CLOSE_NO_ORGANIZATION)
            return None
        return organization_id

    async def _call_or_close(self) -> tuple[int, int, dict[str, Any] | None] | None:
        """The organization, the route's call id and the call's live state (None: not
        running anywhere); None once the socket is closed, as by _organization_or_close
        or with 4404 because the call is not the organization's."""
        organization_id = await self._organization_or_close()
        if organization_id is None:
            return None
        call_id = int(self.scope["url_route"]["kwargs"]["call_id"])
        state = await database_sync_to_async(_call_state)(
            organization_id=organization_id, call_id=call_id
        )
        if state is False:
            await self.close(code=self.CLOSE_NOT_FOUND)
            return None
        return organization_id, call_id, state

    async def _join(self, *, organization_id: int, group: str) -> None:
        self.organization_id, self.checked_at = organization_id, time.monotonic()
        self.group = group
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def _still_member(self) -> bool:
        """False once the socket is closed (4403) because the session no longer belongs to
        the organization it opened for; checked at most every ``RECHECK_S``."""
        if time.monotonic() - self.checked_at >= self.RECHECK_S:
            current = await database_sync_to_async(live_organization_id_now)(scope=self.scope)
            if current != self.organization_id:
                await self.close(code=CLOSE_NO_ORGANIZATION)
                return False
            self.checked_at = time.monotonic()
        return True

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Server push only."""


class LiveConsumer(_DashboardSocket):
    async def connect(self) -> None:
        organization_id = await self._organization_or_close()
        if organization_id is None:
            return
        await self._join(
            organization_id=organization_id, group=live_group(organization_id=organization_id)
        )

    async def call_changed(self, event: dict[str, Any]) -> None:
        if await self._still_member():
            await self.send_json({"type": "call", "call": event["call"]})


class CallLiveConsumer(_DashboardSocket):
    """One call's live view (``/ws/calls/<id>/live/``): its state as the process holding
    it mirrors it (calls/control.py), first as stored, then each change.

    Messages to the browser: ``{"type": "state", "state": {...}}`` (phase, transcript,
    history, last_turn; phase ``ended`` when the call is over) and ``{"type": "idle"}``
    when the call is not running anywhere. Same authentication and rechecks as
    :class:`LiveConsumer`; another organization's call closes with 4404."""

    async def connect(self) -> None:
        found = await self._call_or_close()
        if found is None:
            return
        organization_id, call_id, state = found
        await self._join(organization_id=organization_id, group=call_live_group(call_id))
        await self.send_json(
            {"type": "idle"} if state is None else {"type": "state", "state": state}
        )

    async def call_live(self, event: dict[str, Any]) -> None:
        if await self._still_member():
            await self.send_json({"type": "state", "state": event["state"]})


class CallListenConsumer(_DashboardSocket):
    """Listen-in (``/ws/calls/<id>/listen/``): the running call's audio, both sides, for
    whoever may see the call's page (the same authentication and rechecks as
    :class:`CallLiveConsumer`; another organization's call closes with 4404).

    The socket joins the call's listen group and announces itself to the process holding
    the call every ``LISTENER_ANNOUNCE_S`` (calls/control.py); that process copies the
    call's audio only while a listener is announced. Messages to the browser::

        {"type": "audio", "sample_rate": 8000, "caller": "<base64 PCM16>",
         "agent": "<base64 PCM16>", "clear": false}
        {"type": "ended"}                     # then the socket closes (1000)

    ``clear`` true: the agent was cut off (barge-in); drop its queued audio before
    playing this chunk's. What the browser sends is ignored."""

    call_id = 0
    announcer: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        found = await self._call_or_close()
        if found is None:
            return
        organization_id, self.call_id, _ = found
        await self._join(organization_id=organization_id, group=control.listen_group(self.call_id))
        self.announcer = asyncio.get_running_loop().create_task(self._announce())

    async def _announce(self) -> None:
        while True:
            await self._tell_holder(listening=True)
            await asyncio.sleep(control.LISTENER_ANNOUNCE_S)

    async def _tell_holder(self, *, listening: bool) -> None:
        message = {
            "type": control.LISTENER_MESSAGE,
            "channel": self.channel_name,
            "listening": listening,
        }
        try:
            async with asyncio.timeout(2.0):
                await self.channel_layer.group_send(control.control_group(self.call_id), message)
        except Exception:
            pass  # the next announcement tries again

    async def disconnect(self, code: int) -> None:
        if self.announcer is not None:
            self.announcer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.announcer
            await self._tell_holder(listening=False)
        await super().disconnect(code)

    async def call_audio(self, event: dict[str, Any]) -> None:
        if await self._still_member():
            await self.send_json(
                {
                    "type": "audio",
                    "sample_rate": int(event["sample_rate"]),
                    "caller": base64.b64encode(event["caller"]).decode("ascii"),
                    "agent": base64.b64encode(event["agent"]).decode("ascii"),
                    "clear": bool(event["clear"]),
                }
            )

    async def call_listen_end(self, event: dict[str, Any]) -> None:
        await self.send_json({"type": "ended"})
        await self.close(code=1000)


def _call_state(*, organization_id: int, call_id: int) -> dict[str, Any] | bool | None:
    """The call's live state, None if it is not running, False if it is not theirs."""
    organization = Organization.objects.get(pk=organization_id)
    call = Call.objects.for_org(organization).filter(pk=call_id).first()
    if call is None:
        return False
    return call_live_state(call=call)
