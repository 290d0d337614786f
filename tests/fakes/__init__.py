"""Fake provider servers on 127.0.0.1 that speak the real wire protocols.

Point the official SDKs (through our providers) at them by base URL. Each fake is an
async context manager returning its URL, records what it received, and takes latency and
failure settings as plain attributes. ``python -m tests.fakes.run`` serves them from a
separate process.
"""

from tests.fakes._base import FakeServer, stray_tasks
from tests.fakes.cartesia import FakeCartesia
from tests.fakes.deepgram import FakeDeepgram
from tests.fakes.openai import FakeOpenAI, FakeReply, FakeToolCall

__all__ = [
    "FakeCartesia",
    "FakeDeepgram",
    "FakeOpenAI",
    "FakeReply",
    "FakeServer",
    "FakeToolCall",
    "stray_tasks",
]
