"""Run the fake provider servers as a standalone process (for bench/ and manual runs).

    python -m tests.fakes.run --deepgram-port 0 --openai-port 0 --cartesia-port 0

prints one ``NAME=URL`` line per server (the env vars the platform reads), then
``READY``, and serves until interrupted. A port of 0 picks a free one; leave a flag out
to skip that server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from tests.fakes._base import FakeServer
from tests.fakes.cartesia import FakeCartesia
from tests.fakes.deepgram import FakeDeepgram
from tests.fakes.openai import FakeOpenAI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tests.fakes.run", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--deepgram-port", type=int)
    p.add_argument("--deepgram-key", default="test-deepgram-key")
    p.add_argument("--deepgram-script", type=Path, help="utterances, one per line")
    p.add_argument("--deepgram-final-delay-ms", type=float, default=0.0)
    p.add_argument("--openai-port", type=int)
    p.add_argument("--openai-key", default="sk-test-openai-key")
    p.add_argument("--openai-ttft-ms", type=float, default=0.0)
    p.add_argument("--openai-token-delay-ms", type=float, default=0.0)
    p.add_argument("--cartesia-port", type=int)
    p.add_argument("--cartesia-key", default="sk_car_test")
    p.add_argument("--cartesia-first-byte-ms", type=float, default=0.0)
    p.add_argument("--cartesia-chunk-interval-ms", type=float, default=0.0)
    return p


def build(args: argparse.Namespace) -> list[tuple[str, FakeServer]]:
    servers: list[tuple[str, FakeServer]] = []
    if args.deepgram_port is not None:
        dg = FakeDeepgram(api_key=args.deepgram_key, host=args.host, port=args.deepgram_port)
        if args.deepgram_script is not None:
            lines = args.deepgram_script.read_text().splitlines()
            dg.script = [line.strip() for line in lines if line.strip()]
        dg.final_delay_s = args.deepgram_final_delay_ms / 1000
        servers.append(("DEEPGRAM_BASE_URL", dg))
    if args.openai_port is not None:
        oa = FakeOpenAI(api_key=args.openai_key, host=args.host, port=args.openai_port)
        oa.ttft_s = args.openai_ttft_ms / 1000
        oa.token_delay_s = args.openai_token_delay_ms / 1000
        servers.append(("OPENAI_BASE_URL", oa))
    if args.cartesia_port is not None:
        ca = FakeCartesia(api_key=args.cartesia_key, host=args.host, port=args.cartesia_port)
        ca.first_byte_delay_s = args.cartesia_first_byte_ms / 1000
        ca.chunk_interval_s = args.cartesia_chunk_interval_ms / 1000
        servers.append(("CARTESIA_BASE_URL", ca))
    return servers


async def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    servers = build(args)
    if not servers:
        _parser().error("give at least one of --deepgram-port, --openai-port, --cartesia-port")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with contextlib.AsyncExitStack() as stack:
        for env, server in servers:
            url = await stack.enter_async_context(server)
            print(f"{env}={url}", flush=True)
        print("READY", flush=True)
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
