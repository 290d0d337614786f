"""A fake Stripe API on 127.0.0.1, speaking the wire format the official SDK uses.

Form-encoded POST bodies with bracketed nesting (``payload[value]=3``,
``line_items[0][price]=price_x``), ``Authorization: Bearer sk_...``, JSON objects with an
``"object"`` field, Stripe's error shape (``{"error": {"type", "code", "message",
"param"}}``) and idempotency keys: a POST repeated with the same ``Idempotency-Key``
answers the first response again (header ``Idempotent-Replayed: true``), one with the
same key and different parameters is a 400 ``idempotency_error``. Point the SDK at it with
``StripeClient(key, base_addresses={"api": url})`` (``STRIPE_API_BASE``)::

    fake = FakeStripe(api_key="sk_test_x")
    async with fake as url:
        ...
    assert [e["identifier"] for e in fake.meter_events] == ["call-1"]

Resources: customers, Checkout sessions, billing portal sessions, and Billing Meter events
(a second event with an identifier the meter already has is refused with a 400
``resource_already_exists`` -- Stripe's documented uniqueness of ``identifier``; the exact
error code it answers with is unverified). ``fail_next`` holds HTTP statuses to answer
the next requests with (500 -> ``api_error``, 429 -> ``rate_limit``), for retries.

Webhook events are built by :meth:`FakeStripe.event` and signed by :func:`sign` as Stripe
signs them: ``Stripe-Signature: t=<unix>,v1=hex(HMAC-SHA256(secret, "<t>.<body>"))``.

Standalone: ``python -m tests.fakes.stripe --port 12111 --api-key sk_test_x``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import itertools
import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from tests.fakes._base import FakeServer

_INDEX = re.compile(r"\[([^\]]*)\]")


def decode_form(body: str) -> dict[str, Any]:
    """Stripe's form encoding back into nested objects (``a[b][0][c]=v``)."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        head = key.split("[", 1)[0]
        path = [head, *_INDEX.findall(key[len(head) :])]
        node: Any = root
        for part, nxt in itertools.pairwise(path):
            child_is_list = nxt.isdigit() or nxt == ""
            if isinstance(node, list):
                index = int(part) if part else len(node)
                while len(node) <= index:
                    node.append([] if child_is_list else {})
                node = node[index]
            else:
                node = node.setdefault(part, [] if child_is_list else {})
        last = path[-1]
        if isinstance(node, list):
            index = int(last) if last else len(node)
            while len(node) <= index:
                node.append(None)
            node[index] = value
        else:
            node[last] = value
    return root


def _error(status: int, type_: str, message: str, code: str = "", param: str = "") -> web.Response:
    error: dict[str, Any] = {"type": type_, "message": message}
    if code:
        error["code"] = code
    if param:
        error["param"] = param
    return web.json_response({"error": error}, status=status)


def sign(body: str, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header Stripe would send with ``body``."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


@dataclass(slots=True)
class RecordedRequest:
    method: str
    path: str
    params: dict[str, Any]
    idempotency_key: str
    replayed: bool = False


class FakeStripe(FakeServer):
    def __init__(
        self,
        *,
        api_key: str = "sk_test_fake",
        meter_event_name: str = "glassbox_call_minutes",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        self.api_key = api_key
        self.meter_event_name = meter_event_name
        self.customers: dict[str, dict[str, Any]] = {}
        self.checkout_sessions: list[dict[str, Any]] = []
        self.portal_sessions: list[dict[str, Any]] = []
        self.meter_events: list[dict[str, Any]] = []
        self.requests: list[RecordedRequest] = []
        self.fail_next: list[int] = []
        self._idempotent: dict[str, tuple[str, dict[str, Any], int, Any]] = {}
        self._runner: web.AppRunner | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/customers", self._route(self._customer_create))
        app.router.add_post("/v1/checkout/sessions", self._route(self._checkout_create))
        app.router.add_post("/v1/billing_portal/sessions", self._route(self._portal_create))
        app.router.add_post("/v1/billing/meter_events", self._route(self._meter_event_create))
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

    # -- webhooks ----------------------------------------------------------------------

    def event(self, type_: str, obj: dict[str, Any], *, event_id: str = "") -> str:
        """A webhook event body, as Stripe posts it."""
        return json.dumps(
            {
                "id": event_id or "evt_" + secrets.token_hex(12),
                "object": "event",
                "api_version": "2025-09-30.clover",
                "created": int(time.time()),
                "data": {"object": obj},
                "livemode": False,
                "pending_webhooks": 1,
                "request": {"id": None, "idempotency_key": None},
                "type": type_,
            }
        )

    # -- plumbing ----------------------------------------------------------------------

    def _route(self, handler: Any) -> Any:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            body = await request.text()
            params = decode_form(body)
            key = request.headers.get("Idempotency-Key", "")
            record = RecordedRequest(request.method, request.path, params, key)
            self.requests.append(record)
            if request.headers.get("Authorization", "") != f"Bearer {self.api_key}":
                return _error(401, "invalid_request_error", "Invalid API Key provided: " + "sk_***")
            if key in self._idempotent:
                path, first_params, status, payload = self._idempotent[key]
                if (path, first_params) != (request.path, params):
                    return _error(
                        400,
                        "idempotency_error",
                        "Keys for idempotent requests can only be used with the same "
                        "parameters they were first used with.",
                    )
                record.replayed = True
                return web.json_response(
                    payload, status=status, headers={"Idempotent-Replayed": "true"}
                )
            if self.fail_next:
                status = self.fail_next.pop(0)
                if status == 429:
                    return _error(429, "invalid_request_error", "Too many requests.", "rate_limit")
                return _error(status, "api_error", "Something went wrong on Stripe's end.")
            response: web.Response = await handler(params)
            if key and response.status < 500:
                payload = json.loads(response.text or "null")
                self._idempotent[key] = (request.path, params, response.status, payload)
            return response

        return wrapped

    # -- resources ---------------------------------------------------------------------

    async def _customer_create(self, params: dict[str, Any]) -> web.Response:
        customer = {
            "id": "cus_" + secrets.token_hex(7),
            "object": "customer",
            "created": int(time.time()),
            "email": params.get("email"),
            "livemode": False,
            "metadata": params.get("metadata") or {},
            "name": params.get("name"),
        }
        self.customers[customer["id"]] = customer
        return web.json_response(customer)

    def _unknown_customer(self, params: dict[str, Any], param: str) -> web.Response | None:
        customer = params.get(param) if "[" not in param else None
        if param == "payload[stripe_customer_id]":
            customer = (params.get("payload") or {}).get("stripe_customer_id")
        if customer not in self.customers:
            return _error(
                400,
                "invalid_request_error",
                f"No such customer: '{customer}'",
                "resource_missing",
                param,
            )
        return None

    async def _checkout_create(self, params: dict[str, Any]) -> web.Response:
        for required in ("mode", "success_url"):
            if not params.get(required):
                return _error(
                    400,
                    "invalid_request_error",
                    f"Missing required param: {required}.",
                    "parameter_missing",
                    required,
                )
        if params.get("customer"):
            missing = self._unknown_customer(params, "customer")
            if missing is not None:
                return missing
        items = params.get("line_items") or []
        if params["mode"] == "subscription" and not items:
            return _error(
                400,
                "invalid_request_error",
                "You must provide at least one recurring price in `subscription` mode.",
                "parameter_missing",
                "line_items",
            )
        session_id = "cs_test_" + secrets.token_hex(12)
        session = {
            "id": session_id,
            "object": "checkout.session",
            "client_reference_id": params.get("client_reference_id"),
            "customer": params.get("customer"),
            "livemode": False,
            "mode": params["mode"],
            "status": "open",
            "success_url": params["success_url"],
            "cancel_url": params.get("cancel_url"),
            "url": f"https://checkout.stripe.com/c/pay/{session_id}",
            "line_items_requested": items,
            "metadata": params.get("metadata") or {},
        }
        self.checkout_sessions.append(session)
        return web.json_response(session)

    async def _portal_create(self, params: dict[str, Any]) -> web.Response:
        missing = self._unknown_customer(params, "customer")
        if missing is not None:
            return missing
        session_id = "bps_" + secrets.token_hex(12)
        session = {
            "id": session_id,
            "object": "billing_portal.session",
            "customer": params["customer"],
            "livemode": False,
            "return_url": params.get("return_url"),
            "url": f"https://billing.stripe.com/p/session/test_{session_id}",
        }
        self.portal_sessions.append(session)
        return web.json_response(session)

    async def _meter_event_create(self, params: dict[str, Any]) -> web.Response:
        if params.get("event_name") != self.meter_event_name:
            return _error(
                400,
                "invalid_request_error",
                f"No active meter found for event_name {params.get('event_name')!r}.",
                "resource_missing",
                "event_name",
            )
        missing = self._unknown_customer(params, "payload[stripe_customer_id]")
        if missing is not None:
            return missing
        value = (params.get("payload") or {}).get("value", "")
        if not re.fullmatch(r"[0-9]+", str(value)):
            return _error(
                400,
                "invalid_request_error",
                "Meter event value must be a whole number.",
                "parameter_invalid_integer",
                "payload[value]",
            )
        identifier = params.get("identifier") or "mev_" + secrets.token_hex(8)
        if any(e["identifier"] == identifier for e in self.meter_events):
            return _error(
                400,
                "invalid_request_error",
                f"An event with identifier {identifier} already exists.",
                "resource_already_exists",
                "identifier",
            )
        event = {
            "object": "billing.meter_event",
            "created": int(time.time()),
            "event_name": params["event_name"],
            "identifier": identifier,
            "livemode": False,
            "payload": params["payload"],
            "timestamp": int(params.get("timestamp") or time.time()),
        }
        self.meter_events.append(event)
        return web.json_response(event)


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeStripe(api_key=args.api_key, port=args.port)
    await fake.start()
    print(f"STRIPE_API_BASE={fake.url}", flush=True)
    await fake.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.stripe")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default="sk_test_fake")
    asyncio.run(_serve(parser.parse_args()))


if __name__ == "__main__":
    main()
