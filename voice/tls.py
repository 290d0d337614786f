"""One TLS client context per process, shared by every call's HTTP clients.

Building a verifying context loads the CA bundle: ~30 ms of CPU for ``httpx`` and ~40 ms
for the OpenAI SDK's ``httpx2``, on the event loop, every time an SDK client is created
with its defaults. A call makes four such clients (tools, Deepgram, Cartesia, OpenAI), so
each call start blocked every other call on the loop for over 100 ms, and the OpenAI one
landed inside the first reply's voice-to-voice time (see docs/benchmarks.md). The
contexts are built the way the libraries build their defaults (same CA sources and
environment variables) and are never modified afterwards, so sharing them is safe.
"""

from __future__ import annotations

import functools
import ssl

import httpx
import httpx2


@functools.cache
def httpx_tls() -> ssl.SSLContext:
    """``verify=`` for ``httpx`` clients (tools, Deepgram, Cartesia)."""
    return httpx.create_ssl_context()


@functools.cache
def httpx2_tls() -> ssl.SSLContext:
    """``verify=`` for ``httpx2`` clients (the OpenAI SDK)."""
    return httpx2.create_ssl_context()
