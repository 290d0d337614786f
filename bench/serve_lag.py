"""Run ``glassbox.serve`` exactly as ``make run`` does, plus a probe of the event loop's
lag: a task that asks to wake every 10 ms and records how late it woke, as JSON lines
``[monotonic_s, lag_ms]`` in ``$BENCH_LAG_FILE`` (flushed every second: Uvicorn ends the
process by re-raising SIGTERM, so nothing runs after it). Tells a
server whose loop is busy (its own CPU, or the GIL held by its threads) from a load
generator that is slow.

Started by the bench from the source tree under test (``cwd``), so it must only import
``glassbox.serve``'s ``config_from_env`` and Uvicorn, which every version has.

``BENCH_TRACEMALLOC=DIR`` (memory hunts; slows the server several times over): once the
server is up, trace allocations (``BENCH_TRACEMALLOC_FRAMES`` deep, default 12) and dump
a snapshot to ``DIR/snap-NNN.pickle`` on every SIGUSR1 (the load bench's memory run
sends one after each wave, when no call is in flight); compare two with
``python -m bench.memory_diff DIR/snap-002.pickle DIR/snap-010.pickle`` (what was
allocated before tracing started is not in them; what it keeps alive is).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import os
import sys
import time
from typing import TextIO

PERIOD_S = 0.010


async def _probe(out: TextIO) -> None:
    while True:
        lines = []
        for _ in range(100):
            asked = time.perf_counter()
            await asyncio.sleep(PERIOD_S)
            lag = (time.perf_counter() - asked - PERIOD_S) * 1000
            lines.append(json.dumps([round(time.monotonic(), 3), round(lag, 2)]))
        out.write("\n".join(lines) + "\n")
        out.flush()


async def _snapshots(directory: str) -> None:
    import signal
    import tracemalloc

    os.makedirs(directory, exist_ok=True)
    await asyncio.sleep(2.0)  # tracing Django's imports would delay the first listen too long
    tracemalloc.start(int(os.environ.get("BENCH_TRACEMALLOC_FRAMES", "12")))
    asked = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, asked.set)
    for n in itertools.count():
        await asked.wait()
        asked.clear()
        gc.collect()  # what survives a collection, not garbage waiting for one
        snapshot = tracemalloc.take_snapshot()
        path = os.path.join(directory, f"snap-{n:03d}.pickle")
        await asyncio.to_thread(snapshot.dump, path)


def main() -> None:
    for name in os.environ.get("BENCH_BLOCK", "").split(","):
        if name:
            sys.modules[name] = None  # type: ignore[assignment]
    sys.path.insert(0, os.getcwd())
    import uvicorn

    from glassbox.serve import config_from_env

    config = config_from_env()
    server = uvicorn.Server(config)
    path = os.environ.get("BENCH_LAG_FILE", "")
    out = open(path, "w") if path else None  # noqa: SIM115 (open for the process's life)

    snapshots = os.environ.get("BENCH_TRACEMALLOC", "")

    async def serve() -> None:
        probe = asyncio.create_task(_probe(out)) if out else None
        dumps = asyncio.create_task(_snapshots(snapshots)) if snapshots else None
        try:
            await server.serve()
        finally:
            for task in (probe, dumps):
                if task is not None:
                    task.cancel()

    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(serve())


if __name__ == "__main__":
    main()
