"""The embeddable widget (static/calls/widget.js) on a tenant's own page, in Chromium.

The tenant's page is served by a second tiny HTTP server on 127.0.0.1 (another origin
than the platform's): it holds the one-line snippet copied from the agent's widget page
on the dashboard. Pressed, the button starts a web call with the fake microphone (the
browser fixture of tests/browser/test_web_call.py); the call appears in the organization's
calls. The same page from an origin the key does not list is refused, and no call starts.
The AudioWorklet loads cross-origin from the platform's static files, which WhiteNoise
serves with ``Access-Control-Allow-Origin: *`` (checked here too).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from calls.models import Call, Direction
from tests.browser.test_web_call import browser, deepgram  # noqa: F401 (fixtures)
from tests.factories import make_agent
from tests.fakes.deepgram import FakeDeepgram


class _TenantSite:
    """One HTML page at ``/``, whatever ``html`` is when it is asked for."""

    def __init__(self) -> None:
        self.html = ""
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = f"<!doctype html><title>Shop</title><h1>Shop</h1>{site.html}".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def tenant_site() -> Iterator[_TenantSite]:
    site = _TenantSite()
    site.thread.start()
    try:
        yield site
    finally:
        site.server.shutdown()
        site.server.server_close()
        site.thread.join(timeout=10)


def test_the_widget_on_a_tenants_page_starts_a_web_call(
    page: Page,
    login_as: Any,
    deepgram: FakeDeepgram,  # noqa: F811
    tenant_site: _TenantSite,
    dashboard_url: str,
    settings: Any,
) -> None:
    settings.PUBLIC_BASE_URL = dashboard_url  # what the snippet and the ticket point at
    member = login_as(role="admin")
    agent = make_agent(
        member.organization,
        first_message="Hello from the shop.",
        stt={"provider": "deepgram", "model": "nova-3", "language": "en-US"},
        idle={"prompt": "Still there?", "timeout_s": 60.0, "max_prompts": 1, "goodbye": "Bye."},
    )
    shop = f"http://127.0.0.1:{tenant_site.port}"
    page.goto(f"/agents/{agent.pk}/widget/")
    page.get_by_label("Allowed origins").fill(shop)
    page.get_by_role("button", name="Create a widget key").click()
    snippet = page.locator("[data-snippet]").first.inner_text()
    assert snippet.startswith(f'<script src="{dashboard_url}/static/calls/widget.js"')
    tenant_site.html = snippet

    # the worklet is fetched in CORS mode from the shop's page
    worklet = page.request.get(
        f"{dashboard_url}/static/calls/webcall-worklet.js", headers={"Origin": shop}
    )
    assert worklet.ok and worklet.headers["access-control-allow-origin"] == "*"

    visitor = page.context.new_page()
    visitor.context.grant_permissions(["microphone"], origin=shop)
    visitor.goto(shop)
    widget = visitor.locator(".glassbox-widget")
    widget.get_by_role("button", name="Talk to us").click()
    expect(widget).to_have_attribute("data-state", "connected", timeout=20_000)
    expect(widget.get_by_role("status")).to_contain_text("Hello from the shop.", timeout=20_000)
    calls = Call.objects.for_org(member.organization).filter(direction=Direction.WEB)
    assert [c.from_number for c in calls] == ["widget"]  # web_call_create's source
    widget.get_by_role("button", name="Hang up").click()
    expect(widget).to_have_attribute("data-state", "ended")

    # the same snippet from an origin the key does not list: refused, no call
    elsewhere = f"http://localhost:{tenant_site.port}"
    stranger = page.context.new_page()
    stranger.context.grant_permissions(["microphone"], origin=elsewhere)
    stranger.goto(elsewhere)
    other = stranger.locator(".glassbox-widget")
    other.get_by_role("button", name="Talk to us").click()
    expect(other.get_by_role("status")).to_contain_text("could not start")
    assert other.get_attribute("data-state") is None
    assert calls.count() == 1
