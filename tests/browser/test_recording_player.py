"""The call page's recording player, in a real Chromium: it loads and decodes the MP3."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from playwright.sync_api import Page, expect

from calls.models import Call
from tests.calls.test_recordings import _record
from tests.factories import make_call


def _recorded(call: Call) -> None:
    try:
        _record(call, seconds=2.0)
    finally:
        connections.close_all()


def test_the_call_page_plays_its_recording(
    page: Page, login_as: Callable[..., Any], settings: Any, tmp_path: Path
) -> None:
    settings.RECORDING_SPOOL_DIR = tmp_path / "spool"
    settings.STORAGES = {
        **settings.STORAGES,
        "recordings": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media"), "base_url": None},
        },
    }
    viewer = login_as(role="viewer")
    call = make_call(viewer.organization)
    # Playwright's sync API holds an event loop on this thread: record on another.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(_recorded, call).result()

    page.goto(f"/calls/{call.pk}/")

    player = page.locator("audio[data-recording-player]")
    expect(player).to_be_visible()
    expect(page.get_by_text("caller is on the left channel")).to_be_visible()
    expect(page.get_by_role("link", name="Delete the recording")).to_have_count(0)
    # The browser fetched the file through its signed link and decoded it.
    page.wait_for_function("document.querySelector('audio[data-recording-player]').readyState >= 1")
    duration = player.evaluate("audio => audio.duration")
    assert duration == pytest.approx(2.0, abs=0.3)
