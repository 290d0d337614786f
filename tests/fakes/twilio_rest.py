"""A fake Twilio REST API (the Calls resource) on 127.0.0.1, speaking the real wire format.

Form-encoded POSTs with Basic auth (account SID + auth token), JSON call resources, and
Twilio's error shape (``{"code", "message", "more_info", "status"}``). Point the official
SDK at it with ``client.api.base_url = url`` (``TWILIO_API_BASE_URL``)::

    fake = FakeTwilioRest(account_sid="AC...", auth_token="...")
    async with fake as url:
        ...
    assert fake.requests[-1].value("Status") == "completed"

Updating a call that already ended answers 400 / 21220 whatever the update (real Twilio
does so for a redirect; for a repeated hang-up it is unverified).

Standalone: ``python -m tests.fakes.twilio_rest --port 8766 --account-sid AC.. --auth-token ..``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from aiohttp import web

from tests.fakes._base import FakeServer

API = "/2010-04-01"
FINAL_STATUSES = frozenset({"completed", "canceled", "failed", "busy", "no-answer"})


@dataclass(slots=True)
class RecordedRequest:
    method: str
    path: str
    form: dict[str, list[str]]
    headers: dict[str, str]
    authorized: bool

    def value(self, name: str) -> str | None:
        values = self.form.get(name)
        return values[0] if values else None


@dataclass(slots=True)
class FakeCall:
    sid: str
    account_sid: str
    to: str
    from_: str
    status: str = "in-progress"
    direction: str = "inbound"
    twiml: str = ""
    url: str = ""
    status_callback: str = ""
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated: datetime = field(default_factory=lambda: datetime.now(UTC))
    ended: datetime | None = None
    history: list[dict[str, str]] = field(default_factory=list)

    def resource(self) -> dict[str, Any]:
        uri = f"{API}/Accounts/{self.account_sid}/Calls/{self.sid}"
        duration = None
        if self.ended is not None:
            duration = str(int((self.ended - self.created).total_seconds()))
        return {
            "account_sid": self.account_sid,
            "annotation": None,
            "answered_by": None,
            "api_version": "2010-04-01",
            "caller_name": None,
            "date_created": format_datetime(self.created),
            "date_updated": format_datetime(self.updated),
            "direction": self.direction,
            "duration": duration,
            "end_time": format_datetime(self.ended) if self.ended else None,
            "forwarded_from": None,
            "from": self.from_,
            "from_formatted": self.from_,
            "group_sid": None,
            "parent_call_sid": None,
            "phone_number_sid": "PN" + "0" * 32,
            "price": None,
            "price_unit": "USD",
            "queue_time": "0",
            "sid": self.sid,
            "start_time": format_datetime(self.created),
            "status": self.status,
            "subresource_uris": {
                "notifications": f"{uri}/Notifications.json",
                "recordings": f"{uri}/Recordings.json",
                "payments": f"{uri}/Payments.json",
                "events": f"{uri}/Events.json",
                "siprec": f"{uri}/Siprec.json",
                "streams": f"{uri}/Streams.json",
                "transcriptions": f"{uri}/Transcriptions.json",
                "user_defined_message_subscriptions": f"{uri}/UserDefinedMessageSubscriptions.json",
                "user_defined_messages": f"{uri}/UserDefinedMessages.json",
            },
            "to": self.to,
            "to_formatted": self.to,
            "trunk_sid": None,
            "uri": f"{uri}.json",
        }


def _error(status: int, code: int, message: str) -> web.Response:
    return web.json_response(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status=status,
    )


class FakeTwilioRest(FakeServer):
    """One account's Calls API. Unknown call SIDs are auto-created as in-progress inbound
    calls unless ``strict_calls`` is set, in which case they are 404s (as in production)."""

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        strict_calls: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.strict_calls = strict_calls
        self.calls: dict[str, FakeCall] = {}
        self.requests: list[RecordedRequest] = []
        # Seconds to stall every response (to exercise client timeouts).
        self.delay_s = 0.0
        self._stream_ends: dict[str, asyncio.Event] = {}
        self._runner: web.AppRunner | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(API + "/Accounts/{account}/Calls.json", self._create)
        app.router.add_post(API + "/Accounts/{account}/Calls/{call}.json", self._update)
        app.router.add_get(API + "/Accounts/{account}/Calls/{call}.json", self._fetch)
        return app

    async def _start(self, host: str, port: int) -> int:
        self._runner = web.AppRunner(self.app(), handle_signals=False, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        address: tuple[str, int] = self._runner.addresses[0]
        return address[1]

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- state helpers -----------------------------------------------------------------

    def add_call(
        self, sid: str, *, to: str = "+15550000001", from_: str = "+15550000002"
    ) -> FakeCall:
        call = FakeCall(sid=sid, account_sid=self.account_sid, to=to, from_=from_)
        self.calls[sid] = call
        return call

    def progress(self, call_sid: str, status: str, **extra: str) -> tuple[str, dict[str, str]]:
        """Move a created call on as the network would (``ringing``, ``in-progress``,
        ``completed``, ``busy``, ``no-answer``, ``failed``, ...) and return the status
        callback real Twilio would POST for it: the call's ``StatusCallback`` URL and the
        form (sign it with the account's auth token to send it)."""
        call = self.calls[call_sid]
        now = datetime.now(UTC)
        call.status, call.updated = status, now
        if status in FINAL_STATUSES:
            call.ended = now
            self.stream_end(call_sid).set()
        form = {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "CallSid": call_sid,
            "CallStatus": status,
            "Direction": call.direction,
            "From": call.from_,
            "To": call.to,
            **extra,
        }
        return call.status_callback, form

    def stream_end(self, call_sid: str) -> asyncio.Event:
        """Set when a REST update ends or redirects the call, i.e. when real Twilio would
        stop the call's media stream. Hand it to ``place_call(end_stream=...)``."""
        return self._stream_ends.setdefault(call_sid, asyncio.Event())

    # -- handlers ----------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return secrets.compare_digest(user, self.account_sid) and secrets.compare_digest(
            password, self.auth_token
        )

    async def _begin(self, request: web.Request) -> tuple[RecordedRequest, web.Response | None]:
        form: dict[str, list[str]] = {}
        if request.method == "POST":
            data = await request.post()
            for key in data:
                form[key] = [str(v) for v in data.getall(key)]
        ok = self._authorized(request)
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            form=form,
            headers=dict(request.headers),
            authorized=ok,
        )
        self.requests.append(record)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if not ok:
            return record, _error(401, 20003, "Authenticate")
        if request.match_info["account"] != self.account_sid:
            return record, _error(
                404, 20404, f"The requested resource {request.path} was not found"
            )
        return record, None

    def _call(self, request: web.Request) -> FakeCall | None:
        sid = request.match_info["call"]
        call = self.calls.get(sid)
        if call is None and not self.strict_calls:
            call = self.add_call(sid)
        return call

    async def _fetch(self, request: web.Request) -> web.Response:
        _, failure = await self._begin(request)
        if failure is not None:
            return failure
        call = self._call(request)
        if call is None:
            return _error(404, 20404, f"The requested resource {request.path} was not found")
        return web.json_response(call.resource())

    async def _update(self, request: web.Request) -> web.Response:
        record, failure = await self._begin(request)
        if failure is not None:
            return failure
        call = self._call(request)
        if call is None:
            return _error(404, 20404, f"The requested resource {request.path} was not found")
        status, twiml, url = record.value("Status"), record.value("Twiml"), record.value("Url")
        if status is not None and status not in ("completed", "canceled"):
            return _error(400, 20001, f"Invalid Status: {status}")
        if twiml is not None and url is not None:
            return _error(400, 21205, "Url and Twiml are mutually exclusive")
        if call.status in FINAL_STATUSES:
            return _error(400, 21220, "Call is not in-progress. Cannot redirect.")
        now = datetime.now(UTC)
        call.updated = now
        call.history.append({k: v[0] for k, v in record.form.items()})
        if status is not None:
            call.status = status
            call.ended = now
        if twiml is not None:
            call.twiml = twiml
        if url is not None:
            call.url = url
        if status is not None or twiml is not None or url is not None:
            self.stream_end(call.sid).set()
        return web.json_response(call.resource())

    async def _create(self, request: web.Request) -> web.Response:
        record, failure = await self._begin(request)
        if failure is not None:
            return failure
        to, from_ = record.value("To"), record.value("From")
        if not to:
            return _error(400, 21201, "No 'To' number is specified")
        if not from_:
            return _error(400, 21213, "No 'From' number is specified")
        if not record.value("Twiml") and not record.value("Url"):
            return _error(400, 21205, "Url parameter is required.")
        sid = "CA" + secrets.token_hex(16)
        call = FakeCall(
            sid=sid,
            account_sid=self.account_sid,
            to=to,
            from_=from_,
            status="queued",
            direction="outbound-api",
            twiml=record.value("Twiml") or "",
            url=record.value("Url") or "",
            status_callback=record.value("StatusCallback") or "",
        )
        self.calls[sid] = call
        return web.json_response(call.resource(), status=201)


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeTwilioRest(
        account_sid=args.account_sid,
        auth_token=args.auth_token,
        strict_calls=args.strict,
        port=args.port,
    )
    url = await fake.start()
    print(f"TWILIO_API_BASE_URL={url}", flush=True)
    print("READY", flush=True)
    await fake.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--account-sid", default="AC" + "0" * 32)
    parser.add_argument("--auth-token", default="test-auth-token")
    parser.add_argument("--strict", action="store_true", help="404 for unknown call SIDs")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(parser.parse_args()))


if __name__ == "__main__":
    main()
