"""Twilio REST calls the engine needs mid-call: hang up, transfer (and create, for tests
and outbound calls), through the official ``twilio`` SDK's async client.

The SDK is pointed elsewhere (a fake in tests, a regional gateway) by ``base_url``: the
``Api`` domain keeps it in a plain attribute and joins every path onto it
(``twilio.base.domain.Domain.absolute_url``). ``Client`` is built with ``environment={}``
so stray ``TWILIO_EDGE`` / ``TWILIO_REGION`` variables cannot rewrite that host
(``ClientBase.get_hostname``).

The SDK's async HTTP client ignores its own ``timeout`` (it passes ``timeout=None`` per
request, which aiohttp reads as "no timeout"), so every call here is bounded by
``asyncio.timeout`` instead.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client
from twilio.twiml.voice_response import VoiceResponse

PRODUCTION_BASE_URL = "https://api.twilio.com"

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_SIP = re.compile(r"sips?:[^\s<>&\"']{1,250}")
_CALL_SID = re.compile(r"CA[0-9a-fA-F]{32}")

T = TypeVar("T")


class TwilioRestError(Exception):
    """A REST request failed: Twilio said no (``status``/``code`` set), or it timed out or
    could not connect (both ``None``)."""

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


@dataclass(frozen=True, slots=True)
class CallState:
    sid: str
    status: str


def transfer_twiml(to: str, *, caller_id: str | None = None) -> str:
    """``<Response><Dial>+1...</Dial></Response>`` for a phone number or a SIP URI."""
    response = VoiceResponse()
    kwargs = {"caller_id": caller_id} if caller_id else {}
    if _E164.fullmatch(to):
        response.dial(to, **kwargs)
    elif _SIP.fullmatch(to):
        response.dial(**kwargs).sip(to)
    else:
        raise ValueError(f"transfer target must be an E.164 number or a SIP URI, not {to!r}")
    return str(response.to_xml(xml_declaration=False))


def _check_base_url(base_url: str) -> str:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise ValueError(f"base_url must be an http(s) origin like {PRODUCTION_BASE_URL}")
    return f"{parts.scheme}://{parts.netloc}"


class TwilioRestClient:
    """One account's Calls API. Open it on the event loop that uses it; close it (or use
    ``async with``) to release the connection pool."""

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        base_url: str = PRODUCTION_BASE_URL,
        timeout_s: float = 10.0,
    ) -> None:
        if not account_sid or not auth_token:
            raise ValueError("account_sid and auth_token are required")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self._account_sid = account_sid
        self._auth_token = auth_token
        self._base_url = _check_base_url(base_url)
        self._timeout_s = timeout_s
        self._http: Any = None
        self._client: Any = None

    @property
    def base_url(self) -> str:
        return self._base_url

    def _sdk(self) -> Any:
        # Built lazily: AsyncTwilioHttpClient opens an aiohttp session, which must happen
        # inside a running event loop.
        if self._client is None:
            self._http = AsyncTwilioHttpClient()
            client = Client(
                self._account_sid,
                self._auth_token,
                account_sid=self._account_sid,
                http_client=self._http,
                environment={},
            )
            client.api.base_url = self._base_url
            self._client = client
        return self._client

    async def _run(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        try:
            async with asyncio.timeout(self._timeout_s):
                return await call()
        except TimeoutError:
            raise TwilioRestError(f"{what}: no answer within {self._timeout_s:g} s") from None
        except TwilioRestException as exc:
            raise TwilioRestError(
                f"{what}: HTTP {exc.status}: {exc.msg}", status=int(exc.status), code=exc.code
            ) from exc
        except TwilioException as exc:
            raise TwilioRestError(f"{what}: {exc}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise TwilioRestError(f"{what}: {type(exc).__name__}: {exc}") from exc

    @staticmethod
    def _state(instance: Any) -> CallState:
        return CallState(sid=str(instance.sid), status=str(instance.status))

    @staticmethod
    def _check_sid(call_sid: str) -> None:
        if not _CALL_SID.fullmatch(call_sid):
            raise ValueError(f"not a call SID: {call_sid!r}")

    async def hangup(self, call_sid: str) -> CallState:
        """End an in-progress call (``Status=completed``)."""
        self._check_sid(call_sid)
        context = self._sdk().calls(call_sid)
        instance = await self._run(
            f"hang up {call_sid}", lambda: context.update_async(status="completed")
        )
        return self._state(instance)

    async def transfer(self, call_sid: str, to: str, *, caller_id: str | None = None) -> CallState:
        """Replace the call's TwiML with a ``<Dial>`` to ``to``; Twilio drops our stream."""
        self._check_sid(call_sid)
        twiml = transfer_twiml(to, caller_id=caller_id)
        context = self._sdk().calls(call_sid)
        instance = await self._run(
            f"transfer {call_sid}", lambda: context.update_async(twiml=twiml)
        )
        return self._state(instance)

    async def play(self, call_sid: str, twiml: str) -> CallState:
        """Replace the call's TwiML (e.g. ``<Say>`` then ``<Hangup/>``); Twilio drops our
        stream."""
        self._check_sid(call_sid)
        context = self._sdk().calls(call_sid)
        instance = await self._run(f"update {call_sid}", lambda: context.update_async(twiml=twiml))
        return self._state(instance)

    async def create_call(
        self,
        *,
        to: str,
        from_: str,
        twiml: str | None = None,
        url: str | None = None,
        status_callback: str | None = None,
        status_callback_events: Sequence[str] = (),
        machine_detection: str | None = None,
        async_amd_status_callback: str | None = None,
    ) -> CallState:
        """Place an outbound call running ``twiml`` or fetching TwiML from ``url``.

        ``machine_detection`` (``Enable`` / ``DetectMessageEnd``) with
        ``async_amd_status_callback``: asynchronous answering-machine detection, whose
        verdict is POSTed to that URL while the call goes on."""
        if (twiml is None) == (url is None):
            raise ValueError("give exactly one of twiml and url")
        kwargs: dict[str, Any] = {"to": to, "from_": from_}
        if twiml is not None:
            kwargs["twiml"] = twiml
        if url is not None:
            kwargs["url"] = url
        if status_callback is not None:
            kwargs["status_callback"] = status_callback
        if status_callback_events:
            kwargs["status_callback_event"] = list(status_callback_events)
        if machine_detection is not None:
            kwargs["machine_detection"] = machine_detection
            if async_amd_status_callback is not None:
                kwargs["async_amd"] = "true"
                kwargs["async_amd_status_callback"] = async_amd_status_callback
                kwargs["async_amd_status_callback_method"] = "POST"
        calls = self._sdk().calls
        instance = await self._run(f"call {to}", lambda: calls.create_async(**kwargs))
        return self._state(instance)

    async def aclose(self) -> None:
        http, self._http, self._client = self._http, None, None
        if http is not None:
            await http.close()

    async def __aenter__(self) -> TwilioRestClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
