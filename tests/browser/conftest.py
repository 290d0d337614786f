"""Browser tests: Debian's Chromium driven by Playwright (sync API), against a real server.

The server is Uvicorn serving the project's real ASGI application (HTTP *and* WebSockets,
static files through WhiteNoise) in a thread of the test process. We don't use
pytest-django's ``live_server``: it is a WSGI server, so it could not serve the live
pages' WebSockets. A thread rather than a subprocess keeps the test database, the
``mailoutbox`` and the in-memory channel layer shared with the test, so a test can read
the email a page sent and publish to a group a page listens on.

Tests that use ``page`` get ``transactional_db``: rows a test creates are committed, so
the server thread sees them (and the database is flushed afterwards).

Chromium is never downloaded: Playwright launches ``/usr/bin/chromium`` (override with
``CHROMIUM_PATH``). ``.ci/run`` installs it with apt-get. With ``CI`` set, a missing
browser fails the run; locally, browser tests are skipped without it.

Fixtures: ``browser`` (session), ``dashboard_url`` (the server's origin), ``page`` (a fresh
browser context per test, ``base_url`` set, so ``page.goto("/members/")`` works),
``login_as`` (create a member with a role and log the page in), ``mailoutbox``
(pytest-django).
"""

from __future__ import annotations

import gc
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from channels.routing import ProtocolTypeRouter
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.handlers.asgi import ASGIHandler
from django.test import Client
from django.test.utils import override_settings
from playwright.sync_api import Browser, Page, sync_playwright

from tenants.models import Membership, Organization, Role
from tenants.services import membership_create
from tenants.web import SESSION_ORG_KEY
from tests.factories import make_organization

CHROMIUM_PATH = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
PASSWORD = "correct-horse-battery-9"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    if Path(CHROMIUM_PATH).is_file() and os.access(CHROMIUM_PATH, os.X_OK):
        return CHROMIUM_PATH
    message = (
        f"Chromium not found at {CHROMIUM_PATH}: apt-get install -y chromium "
        "(or set CHROMIUM_PATH)."
    )
    if _in_ci():
        pytest.fail(message + " Browser tests must run in CI.", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser(
    chromium_executable: str, django_db_setup: Any, _dashboard_server: str
) -> Iterator[Browser]:
    """Chromium for one test module.

    Playwright's sync API leaves its event loop marked as running on this thread between
    calls (playwright/sync_api/_context_manager.py). Django's async-safety check takes
    that for "ORM called from async code", so while the browser is up the check is off
    (it would be a false alarm for these sync tests). Module scope, not session: the mark
    goes away with Playwright at the end of the module, before any asyncio test runs.
    Don't put async tests in browser-test modules.
    """
    env = pytest.MonkeyPatch()
    env.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    manager = sync_playwright().start()
    try:
        # launch() gives Chromium a fresh temporary --user-data-dir of its own (and
        # refuses one passed in args), so no profile on the machine is ever used.
        launched = manager.chromium.launch(
            executable_path=chromium_executable,
            headless=True,
            args=CHROMIUM_ARGS,
            timeout=60_000,
        )
        yield launched
        launched.close()
    finally:
        manager.stop()
        env.undo()


class _ServerThread(threading.Thread):
    def __init__(self, app: Any) -> None:
        super().__init__(name="dashboard-uvicorn", daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(
            app, lifespan="off", ws="websockets-sansio", log_level="warning", access_log=False
        )
        self.server = uvicorn.Server(config)

    def run(self) -> None:
        self.server.run(sockets=[self.sock])

    def stop(self) -> None:
        self.server.should_exit = True
        self.join(timeout=15)
        self.sock.close()
        # Django renders error pages (403/404 raised in a view) in the event loop's
        # default executor, whose threads' database connections no request_finished
        # closes. The threads are gone now; collect their connections so the test
        # database can be dropped.
        gc.collect()


@pytest.fixture(scope="session")
def _dashboard_server(chromium_executable: str) -> Iterator[str]:
    from glassbox.asgi import application

    # The project's own routing for everything but HTTP (WebSockets), and a Django handler
    # built here, so its middleware sees the test settings: static files straight from
    # the finders (no collectstatic), as in development.
    with override_settings(WHITENOISE_USE_FINDERS=True, WHITENOISE_AUTOREFRESH=True):
        app = ProtocolTypeRouter({**application.application_mapping, "http": ASGIHandler()})
        thread = _ServerThread(app)
        thread.start()
        deadline = time.monotonic() + 30
        while not thread.server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("The dashboard test server did not start.")
            time.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{thread.port}"
        finally:
            thread.stop()


@pytest.fixture
def dashboard_url(_dashboard_server: str, transactional_db: Any, settings: Any) -> str:
    # The server host, for links in emails (password reset uses the request's host).
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "127.0.0.1"]
    return _dashboard_server


@pytest.fixture
def page(browser: Browser, dashboard_url: str) -> Iterator[Page]:
    context = browser.new_context(base_url=dashboard_url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    tab = context.new_page()
    try:
        yield tab
    finally:
        context.close()


@dataclass
class DashboardUser:
    user: Any
    email: str
    password: str
    organization: Organization
    membership: Membership


def make_dashboard_user(
    *,
    role: Role | str = Role.OWNER,
    organization: Organization | None = None,
    email: str | None = None,
    password: str = PASSWORD,
) -> DashboardUser:
    organization = organization or make_organization()
    email = email or f"{Role(role)}-{organization.slug}@example.test"
    user_model = get_user_model()
    user = user_model.objects.filter(email__iexact=email).first()
    if user is None:
        user = user_model.objects.create_user(username=email, email=email, password=password)
    membership = membership_create(organization=organization, user=user, role=Role(role))
    return DashboardUser(user, email, password, organization, membership)


@pytest.fixture
def login_as(page: Page, dashboard_url: str) -> Callable[..., DashboardUser]:
    """``login_as(role="viewer", organization=org, via_form=False) -> DashboardUser``.

    By default the page gets a session cookie made by Django's test client (fast, and no
    login attempts for a lockout policy to count); ``via_form=True`` types into the login
    page like a person.
    """

    def login(
        role: Role | str = Role.OWNER,
        organization: Organization | None = None,
        email: str | None = None,
        via_form: bool = False,
    ) -> DashboardUser:
        member = make_dashboard_user(role=role, organization=organization, email=email)
        if via_form:
            page.goto("/login/")
            page.get_by_label("Email").fill(member.email)
            page.get_by_label("Password").fill(member.password)
            page.get_by_role("button", name="Log in").click()
            page.wait_for_load_state()
        else:
            client = Client()
            client.force_login(member.user)
            session = client.session
            session[SESSION_ORG_KEY] = member.organization.pk
            session.save()
            page.context.add_cookies(
                [
                    {
                        "name": settings.SESSION_COOKIE_NAME,
                        "value": session.session_key or "",
                        "url": dashboard_url,
                    }
                ]
            )
        return member

    return login
