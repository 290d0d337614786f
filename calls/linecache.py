"""The process's line cache for the engine (voice.linecache): audio of fixed lines,
in memory, and shared between web processes through Redis where ``REDIS_URL`` is set.

Redis failures never fail a call: the line is then synthesized as if it were new.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import struct

import redis.asyncio as redis
from django.conf import settings

from voice.linecache import MemoryLineCache

logger = logging.getLogger(__name__)

_LENGTH = struct.Struct(">I")


def encode_chunks(chunks: list[bytes]) -> bytes:
    return b"".join(_LENGTH.pack(len(c)) + c for c in chunks)


def decode_chunks(blob: bytes) -> list[bytes]:
    chunks, at = [], 0
    while at < len(blob):
        (size,) = _LENGTH.unpack_from(blob, at)
        at += _LENGTH.size
        chunks.append(blob[at : at + size])
        at += size
    return chunks


class SharedLineCache(MemoryLineCache):
    """Memory first; Redis behind it, so a line synthesized in one process plays from the
    cache in every other."""

    __slots__ = ("_client", "_loop", "_ttl_s", "_url")

    def __init__(self, *, url: str, max_bytes: int, ttl_s: int) -> None:
        super().__init__(max_bytes)
        self._url, self._ttl_s = url, ttl_s
        self._client: redis.Redis | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _redis(self) -> redis.Redis:
        # A client belongs to one event loop (a server has one; tests have many).
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = redis.from_url(self._url, socket_timeout=0.5)
            self._loop = loop
        return self._client

    async def get(self, key: str) -> list[bytes] | None:
        chunks = self.get_now(key)
        if chunks is not None:
            return chunks
        try:
            blob = await self._redis().get(f"{settings.LINE_CACHE_PREFIX}{key}")
        except (redis.RedisError, OSError) as exc:
            logger.warning("line cache: Redis get failed: %s", exc)
            return None
        # The client does not decode responses, so a value is bytes; anything else is a miss.
        if not blob or not isinstance(blob, bytes):
            return None
        chunks = decode_chunks(blob)
        self.put_now(key, chunks)
        return chunks

    async def put(self, key: str, chunks: list[bytes]) -> None:
        self.put_now(key, chunks)
        try:
            await self._redis().set(
                f"{settings.LINE_CACHE_PREFIX}{key}", encode_chunks(chunks), ex=self._ttl_s
            )
        except (redis.RedisError, OSError) as exc:
            logger.warning("line cache: Redis set failed: %s", exc)


@functools.cache
def line_cache() -> MemoryLineCache:
    """One per process: the lines every call of this process shares."""
    if settings.REDIS_URL:
        return SharedLineCache(
            url=settings.REDIS_URL,
            max_bytes=settings.LINE_CACHE_MAX_BYTES,
            ttl_s=settings.LINE_CACHE_TTL_S,
        )
    return MemoryLineCache(settings.LINE_CACHE_MAX_BYTES)
