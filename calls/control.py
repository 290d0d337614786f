"""Live state and control of running calls, across web processes (docs/web-calls.md#live-state).

- **Live state.** The process holding a call mirrors its state (phase, transcript so far,
  the history the LLM sees, the latest turn's metrics) into Redis under
  ``glassbox:call:<id>:live`` with a TTL (``CALL_LIVE_TTL_S``), where ``REDIS_URL`` is set,
  else into this process's memory; and publishes each change to the channel-layer group
  ``call-<id>-live``, which the call page's socket (``CallLiveConsumer``) joins, whichever
  process serves it.
- **Listen-in.** A listener's socket (``CallListenConsumer``) joins ``call-<id>-listen``
  and announces itself on the control group; only while a listener is announced does the
  holder copy the call's audio, both sides, into chunks sent to that group.
- **Control.** ``call_control`` validates an action (voice.control), records it on the
  call's timeline (``CallControlAction``) and sends it to the group ``call-<id>-control``;
  the one member of that group is the process holding the call, which hands it to the
  engine and marks it delivered.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from calls.models import TERMINAL_STATUSES, Call, CallControlAction, Carrier
from voice.control import Transfer, control_from_plain

logger = logging.getLogger(__name__)

LIVE_MESSAGE = "call.live"  # CallLiveConsumer.call_live
CONTROL_MESSAGE = "call.control"  # handled by the holder's control loop (webcall_stream)
# listen-in (docs/web-calls.md#listen-in): a listener announces itself on the control group
# now and then (the holder forgets it after LISTENER_TTL_S), the holder sends audio chunks
# to the listen group while anyone is announced, and "call.listen_end" when the call ends.
LISTENER_MESSAGE = "call.listener"
AUDIO_MESSAGE = "call.audio"  # CallListenConsumer.call_audio
AUDIO_END_MESSAGE = "call.listen_end"  # CallListenConsumer.call_listen_end
LISTENER_ANNOUNCE_S = 5.0
LISTENER_TTL_S = 15.0

# process-local fallback when there is no Redis: call id -> (expires at, state)
_memory: dict[int, tuple[float, dict[str, Any]]] = {}


def live_group(call_id: int) -> str:
    return f"call-{call_id}-live"


def control_group(call_id: int) -> str:
    return f"call-{call_id}-control"


def listen_group(call_id: int) -> str:
    return f"call-{call_id}-listen"


def _key(call_id: int) -> str:
    return f"glassbox:call:{call_id}:live"


class ControlError(Exception):
    """An action that cannot be taken: ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


# -- live state ---------------------------------------------------------------------------


class LiveStateWriter:
    """One call's mirror, used by the process that holds it (async, one Redis client)."""

    def __init__(self, call_id: int) -> None:
        self.call_id = call_id
        self._redis: Any = None
        if settings.REDIS_URL:
            import redis.asyncio

            self._redis = redis.asyncio.Redis.from_url(
                settings.REDIS_URL, socket_timeout=2.0, socket_connect_timeout=2.0
            )

    async def put(self, state: dict[str, Any]) -> None:
        ttl = float(settings.CALL_LIVE_TTL_S)
        if self._redis is None:
            now = time.monotonic()
            for stale in [k for k, (at, _) in _memory.items() if at < now]:
                _memory.pop(stale, None)
            _memory[self.call_id] = (now + ttl, state)
            return
        await self._redis.set(_key(self.call_id), json.dumps(state), ex=max(1, int(ttl)))

    async def publish(self, state: dict[str, Any]) -> None:
        layer = get_channel_layer()
        if layer is not None:
            await layer.group_send(live_group(self.call_id), {"type": LIVE_MESSAGE, "state": state})

    async def clear(self) -> None:
        if self._redis is None:
            _memory.pop(self.call_id, None)
            return
        await self._redis.delete(_key(self.call_id))

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()


def call_live_state(*, call: Call) -> dict[str, Any] | None:
    """The call's live state as its process last mirrored it, or None (not running here or
    anywhere, or the mirror lapsed)."""
    if not settings.REDIS_URL:
        found = _memory.get(call.pk)
        return found[1] if found is not None and found[0] >= time.monotonic() else None
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2.0)
    try:
        raw = client.get(_key(call.pk))
    finally:
        client.close()
    return None if raw is None else dict(json.loads(raw))


# -- control ------------------------------------------------------------------------------


def call_control(
    *, call: Call, action: str, params: dict[str, Any], actor: str
) -> CallControlAction:
    """Validate, record and deliver one action to the process holding ``call``.

    Raises ControlError: 400 for a bad action, 409 for a call that is not running."""
    try:
        typed = control_from_plain(action, params if isinstance(params, dict) else {})
    except ValueError as exc:
        raise ControlError(str(exc)) from exc
    if call.status in TERMINAL_STATUSES or call.stream_connected_at is None:
        raise ControlError("The call is not running.", status=409)
    if isinstance(typed, Transfer) and call.carrier == Carrier.WEB:
        raise ControlError("A web call cannot be transferred.")
    clean = {k: v for k, v in params.items() if k in ("text", "to", "detail")}
    at_ms = (timezone.now() - call.stream_connected_at).total_seconds() * 1000
    record = CallControlAction.objects.for_org(call.organization).create(
        organization=call.organization,
        call=call,
        action=action,
        params=clean,
        actor=actor[:200],
        at_ms=round(at_ms, 1),
    )
    layer = get_channel_layer()
    message = {
        "type": CONTROL_MESSAGE,
        "id": record.pk,
        "action": action,
        "params": clean,
    }
    try:
        async_to_sync(layer.group_send)(control_group(call.pk), message)
    except Exception as exc:
        logger.warning("control: sending %s to call %s failed: %r", action, call.pk, exc)
        record.detail = "could not reach the process holding the call"
        record.save(update_fields=["detail"])
    return record


def call_control_delivered(*, call: Call, action_id: int, ok: bool, detail: str = "") -> None:
    """The holder took (or could not take) one of ``call``'s actions."""
    CallControlAction.objects.for_org(call.organization).filter(pk=action_id, call=call).update(
        delivered=ok, detail=detail[:200]
    )
