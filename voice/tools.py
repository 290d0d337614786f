"""Tool execution for the LLM's tool calls.

* HTTP tools POST ``{"tool", "arguments", "call_id"}`` as JSON to the tenant's URL, signed
  with ``X-Glassbox-Timestamp`` (unix seconds) and ``X-Glassbox-Signature:
  v1=<hex HMAC-SHA256(webhook_secret, f"{timestamp}.{body}")>``. Each request is bounded by
  the tool's ``timeout_s``. The reply must be JSON; it goes to the LLM as the tool result.
  A timeout, a non-2xx status or a body that is not JSON gives the LLM a plain-language
  error instead, so it can tell the caller.
* A tool whose URL is the tenant's (``ToolConfig.tenant_url``) connects only to public
  addresses plus ``CallConfig.allowed_networks``, checked after DNS on every connection
  and redirect (voice/netguard.py). The runner uses the client it is given when that is a
  :class:`~voice.netguard.GuardedAsyncClient` with the call's policy, and otherwise a
  guarded client of its own for the request: an unguarded client never reaches a
  tenant's URL.
* ``end_call`` and ``transfer_call`` only record the request (:class:`ToolOutcome`); the
  conversation finishes speaking, then hangs up or transfers.
* ``collect_digits`` takes DTMF digits from :class:`DigitCollector` until the terminator,
  ``max_digits`` or ``digit_timeout_s`` of silence. The :class:`ToolCallRecord` (what the
  platform stores) always carries a placeholder, and nothing here logs digits.

  - Plain mode: the digits are the tool result for the LLM.
  - Secure mode (``ToolConfig.secure``): the digits never touch the AI. They are POSTed
    to the tool's ``url`` (the tenant's listener), signed like an HTTP tool and through
    the same outbound guard, as ``{"tool", "call_id", "arguments", "digits"}``; the
    listener may answer ``{"valid": true|false}``. The LLM gets only a placeholder: how
    many digits, whether they were delivered (and the listener's verdict), and the last
    two digits when ``reveal_last_digits`` is set. The capture window is emitted as
    :class:`~voice.events.SecureCapture` (start, then end) so a recording can mute it.

:meth:`ToolRunner.run` never raises (except cancellation), so several calls requested at
once can run side by side.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from voice.config import CallConfig, ToolConfig, ToolKind
from voice.events import Event, SecureCapture, ToolCallRecord
from voice.netguard import GuardedAsyncClient, OutboundPolicy, refusal_in
from voice.providers.base import ToolCall
from voice.tls import httpx_tls

log = logging.getLogger(__name__)

MAX_RESULT_CHARS = 4000
TIMESTAMP_HEADER = "X-Glassbox-Timestamp"
SIGNATURE_HEADER = "X-Glassbox-Signature"


def sign(secret: str, timestamp: str, body: str) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256)
    return f"v1={digest.hexdigest()}"


@dataclass(slots=True)
class ToolOutcome:
    call: ToolCall
    result: str  # for the LLM (the only place secure digits go)
    record: ToolCallRecord
    end_call: bool = False
    transfer_to: str = ""


class DigitCollector:
    """DTMF digits for ``collect_digits``; digits pressed while nothing collects are dropped."""

    __slots__ = ("_queue",)

    def __init__(self) -> None:
        self._queue: asyncio.Queue[str] | None = None

    @property
    def active(self) -> bool:
        return self._queue is not None

    def feed(self, digit: str) -> bool:
        """Hand a digit to the collection in progress; False when none is."""
        if self._queue is None:
            return False
        if not self._queue.full():
            self._queue.put_nowait(digit)
        return True

    async def collect(self, *, max_digits: int, terminator: str, timeout_s: float) -> str:
        self._queue = asyncio.Queue(maxsize=max(1, max_digits) + 8)
        digits: list[str] = []
        try:
            while len(digits) < max_digits:
                try:
                    async with asyncio.timeout(timeout_s):
                        digit = await self._queue.get()
                except TimeoutError:
                    break
                if terminator and digit == terminator:
                    break
                if digit.isdigit() or digit in "*#":
                    digits.append(digit)
        finally:
            self._queue = None
        return "".join(digits)


class ToolRunner:
    __slots__ = (
        "_clock",
        "_config",
        "_digits",
        "_emit",
        "_http",
        "_policy",
        "_tools",
        "_wall_clock",
    )

    def __init__(
        self,
        config: CallConfig,
        *,
        http: httpx.AsyncClient,
        digits: DigitCollector,
        clock: Callable[[], float],
        wall_clock: Callable[[], float] = time.time,
        emit: Callable[[Event], None] | None = None,
    ) -> None:
        self._config = config
        self._emit = emit
        self._tools = {t.name: t for t in config.tools}
        self._http = http
        self._digits = digits
        self._clock = clock
        self._wall_clock = wall_clock
        self._policy = OutboundPolicy.from_strings(config.allowed_networks)

    def tool(self, name: str) -> ToolConfig | None:
        return self._tools.get(name)

    async def run(self, call: ToolCall, *, turn_index: int) -> ToolOutcome:
        started = self._clock()
        tool = self._tools.get(call.name)
        outcome: ToolOutcome
        try:
            arguments = json.loads(call.arguments or "{}")
            if not isinstance(arguments, dict):
                raise ValueError("arguments must be a JSON object")
        except ValueError as exc:
            outcome = self._outcome(call, {}, False, f"Error: invalid tool arguments ({exc}).")
        else:
            if tool is None:
                outcome = self._outcome(
                    call, arguments, False, f"Error: no tool named {call.name!r}."
                )
            else:
                outcome = await self._dispatch(tool, call, arguments, turn_index)
        outcome.record.turn_index = turn_index
        outcome.record.duration_ms = round((self._clock() - started) * 1000, 3)
        return outcome

    def _outcome(
        self, call: ToolCall, arguments: dict[str, Any], ok: bool, result: str, **kw: Any
    ) -> ToolOutcome:
        record = ToolCallRecord(0, call.name, arguments, ok, result, 0.0)
        return ToolOutcome(call, result, record, **kw)

    async def _dispatch(
        self, tool: ToolConfig, call: ToolCall, arguments: dict[str, Any], turn_index: int
    ) -> ToolOutcome:
        if tool.kind is ToolKind.END_CALL:
            return self._outcome(
                call,
                arguments,
                True,
                "The call will end after your reply is spoken.",
                end_call=True,
            )
        if tool.kind is ToolKind.TRANSFER_CALL:
            to = str(arguments.get("to") or arguments.get("number") or tool.transfer_to)
            if not to:
                return self._outcome(call, arguments, False, "Error: no number to transfer to.")
            return self._outcome(
                call, arguments, True, f"Transferring the call to {to}.", transfer_to=to
            )
        if tool.kind is ToolKind.COLLECT_DIGITS:
            if tool.secure:
                return await self._collect_secure_digits(tool, call, arguments, turn_index)
            return await self._collect_digits(tool, call, arguments)
        return await self._http_call(tool, call, arguments)

    async def _collect_digits(
        self, tool: ToolConfig, call: ToolCall, arguments: dict[str, Any]
    ) -> ToolOutcome:
        digits = await self._digits.collect(
            max_digits=tool.max_digits, terminator=tool.terminator, timeout_s=tool.digit_timeout_s
        )
        if not digits:
            return self._outcome(
                call, arguments, False, '{"digits": "", "error": "no digits entered"}'
            )
        result = json.dumps({"digits": digits})
        redacted = json.dumps({"digits": f"[redacted: {len(digits)} digits]"})
        record = ToolCallRecord(0, call.name, arguments, True, redacted, 0.0)
        return ToolOutcome(call, result, record)

    async def _collect_secure_digits(
        self, tool: ToolConfig, call: ToolCall, arguments: dict[str, Any], turn_index: int
    ) -> ToolOutcome:
        window = SecureCapture(tool.name, turn_index, round(self._clock() * 1000, 3))
        if self._emit is not None:
            self._emit(window)
        try:
            digits = await self._digits.collect(
                max_digits=tool.max_digits,
                terminator=tool.terminator,
                timeout_s=tool.digit_timeout_s,
            )
        finally:
            if self._emit is not None:
                end_ms = round(self._clock() * 1000, 3)
                self._emit(SecureCapture(tool.name, turn_index, window.start_ms, end_ms))
        if not digits:
            return self._outcome(
                call, arguments, False, '{"digits": "", "error": "no digits entered"}'
            )
        delivered, valid = await self._deliver_digits(tool, arguments, digits)
        placeholder: dict[str, Any] = {
            "digits": f"[secure: {len(digits)} digits entered]",
            "count": len(digits),
            "delivered": delivered,
        }
        if valid is not None:
            placeholder["valid"] = valid
        if tool.reveal_last_digits and len(digits) >= 4:  # never most of a short code
            placeholder["last_two"] = digits[-2:]
        if not delivered:
            placeholder["error"] = "the digits could not be passed on; ask the caller to retry"
        result = json.dumps(placeholder)
        # The LLM and the record see the same placeholder: it is what is safe to say.
        return self._outcome(call, arguments, delivered, result)

    async def _deliver_digits(
        self, tool: ToolConfig, arguments: dict[str, Any], digits: str
    ) -> tuple[bool, bool | None]:
        """POST the digits to the tenant's listener: (delivered, its verdict if it gave one).
        Failures are logged by kind only, never with the body."""
        body = json.dumps(
            {
                "tool": tool.name,
                "call_id": self._config.call_id,
                "arguments": arguments,
                "digits": digits,
            },
            separators=(",", ":"),
        )
        headers = self._signed_headers(tool, body)
        try:
            async with asyncio.timeout(tool.timeout_s):
                response = await self._request(tool, content=body, headers=headers)
        except (TimeoutError, httpx.HTTPError) as exc:
            refusal = refusal_in(exc) if isinstance(exc, httpx.HTTPError) else None
            log.warning(
                "call %s: secure digits of %s not delivered: %s",
                self._config.call_id,
                tool.name,
                refusal or type(exc).__name__,
            )
            return False, None
        if not response.is_success:
            log.warning(
                "call %s: secure digits of %s not delivered: HTTP %d",
                self._config.call_id,
                tool.name,
                response.status_code,
            )
            return False, None
        try:
            verdict = response.json().get("valid")
        except (ValueError, AttributeError):
            verdict = None
        return True, verdict if isinstance(verdict, bool) else None

    def _signed_headers(self, tool: ToolConfig, body: str) -> dict[str, str]:
        timestamp = str(int(self._wall_clock()))
        return {
            **dict(tool.headers),
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._config.webhook_secret, timestamp, body),
        }

    async def _request(
        self, tool: ToolConfig, *, content: str, headers: dict[str, str]
    ) -> httpx.Response:
        http = self._http
        guarded = isinstance(http, GuardedAsyncClient) and http.policy == self._policy
        if not tool.tenant_url or guarded:
            return await http.request(
                tool.method, tool.url, content=content, headers=headers, timeout=tool.timeout_s
            )
        # A cold connection per request: correct, if slower, until the caller hands the
        # runner a guarded client.
        async with GuardedAsyncClient(self._policy, verify=httpx_tls()) as own:
            return await own.request(
                tool.method, tool.url, content=content, headers=headers, timeout=tool.timeout_s
            )

    async def _http_call(
        self, tool: ToolConfig, call: ToolCall, arguments: dict[str, Any]
    ) -> ToolOutcome:
        body = json.dumps(
            {"tool": tool.name, "arguments": arguments, "call_id": self._config.call_id},
            separators=(",", ":"),
        )
        headers = self._signed_headers(tool, body)
        fail = f"Error: the {tool.name} tool"
        try:
            async with asyncio.timeout(tool.timeout_s):
                response = await self._request(tool, content=body, headers=headers)
        except (TimeoutError, httpx.TimeoutException):
            return self._outcome(
                call, arguments, False, f"{fail} did not answer within {tool.timeout_s:g} seconds."
            )
        except httpx.HTTPError as exc:
            refusal = refusal_in(exc)
            if refusal is not None:
                log.warning(
                    "call %s: tool %s refused by the outbound guard: %s",
                    self._config.call_id,
                    tool.name,
                    refusal,
                )
                return self._outcome(
                    call, arguments, False, f"{fail} could not be reached (address not allowed)."
                )
            log.warning(
                "call %s: tool %s request failed: %s",
                self._config.call_id,
                tool.name,
                type(exc).__name__,
            )
            return self._outcome(
                call, arguments, False, f"{fail} could not be reached ({type(exc).__name__})."
            )
        if not response.is_success:
            return self._outcome(
                call, arguments, False, f"{fail} failed with HTTP status {response.status_code}."
            )
        try:
            payload = response.json()
        except ValueError:
            return self._outcome(
                call, arguments, False, f"{fail} returned a response that is not JSON."
            )
        result = json.dumps(payload, separators=(",", ":"))
        if len(result) > MAX_RESULT_CHARS:
            result = result[:MAX_RESULT_CHARS] + "…(truncated)"
        return self._outcome(call, arguments, True, result)
