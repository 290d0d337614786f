"""The platform's line cache: chunks survive the trip through Redis, and two processes
(two caches) share a line; without Redis it is the memory cache alone."""

from __future__ import annotations

import os
import secrets

import pytest
from django.test import override_settings

from calls.linecache import SharedLineCache, decode_chunks, encode_chunks, line_cache
from voice.linecache import MemoryLineCache

REDIS_URL = os.environ.get("REDIS_URL", "")


def test_chunks_round_trip_with_their_boundaries() -> None:
    chunks = [b"\x7f" * 160, b"", b"\x00\x01", b"x" * 70_000]
    assert decode_chunks(encode_chunks(chunks)) == chunks
    assert decode_chunks(b"") == []


def test_without_redis_the_process_has_a_memory_cache() -> None:
    line_cache.cache_clear()
    try:
        with override_settings(REDIS_URL=""):
            cache = line_cache()
        assert type(cache) is MemoryLineCache
        assert line_cache() is cache  # one per process
    finally:
        line_cache.cache_clear()


@pytest.mark.skipif(not REDIS_URL, reason="needs REDIS_URL (CI sets it)")
async def test_a_line_made_in_one_process_plays_from_the_cache_in_another() -> None:
    key = f"test-{secrets.token_hex(8)}"
    first = SharedLineCache(url=REDIS_URL, max_bytes=1 << 20, ttl_s=60)
    second = SharedLineCache(url=REDIS_URL, max_bytes=1 << 20, ttl_s=60)
    assert await second.get(key) is None
    await first.put(key, [b"abc", b"", b"def"])
    assert await second.get(key) == [b"abc", b"", b"def"]
    assert second.get_now(key) == [b"abc", b"", b"def"]  # now in its memory too


async def test_an_unreachable_redis_degrades_to_memory() -> None:
    cache = SharedLineCache(url="redis://127.0.0.1:1/0", max_bytes=1 << 20, ttl_s=60)
    assert await cache.get("missing") is None
    await cache.put("k", [b"x"])
    assert await cache.get("k") == [b"x"]
