"""CPU that recording one turn costs the web process: the call recorder (calls/recorder.py)
writing a reply turn's events (the caller's words, the reply, the turn's timeline) the way
the engine emits them, all at once when the turn ends.

    DATABASE_URL=... python -m bench.recorder_cost --turns 300     # from a source tree

Run from each source tree to compare (``cd /tmp/old && python /path/bench/recorder_cost.py``:
it imports ``calls.recorder`` from the current directory). Needs a migrated database;
creates a tenant and one call in it. Prints JSON: process CPU (all threads) and wall time
per turn, and database connections opened per turn.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import secrets
import sys
import time


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.recorder_cost", description=__doc__)
    p.add_argument("--turns", type=int, default=300)
    args = p.parse_args()
    sys.path.insert(0, os.getcwd())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "glassbox.settings")
    os.environ.setdefault("DEBUG", "0")
    import django

    django.setup()
    from django.db.backends.signals import connection_created

    import tests.factories
    from calls.recorder import CallRecorder
    from tests.conftest import make_tenant
    from tests.factories import make_call

    tests.factories._seq = itertools.count(secrets.randbelow(10**9))  # a fresh tenant each run
    from voice.events import Role, TranscriptEntry, TurnKind, TurnTimeline

    call = make_call(make_tenant().organization)
    opened = 0

    def count(**_: object) -> None:
        nonlocal opened
        opened += 1

    connection_created.connect(count, weak=False)
    recorder = CallRecorder(call)

    async def run() -> tuple[float, float]:
        writer = asyncio.create_task(recorder.run())
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for i in range(args.turns):
            t = i * 5000.0
            said, reply = "What time do you open?", "We open at nine."
            recorder.emit(TranscriptEntry(Role.USER, said, i, t, t + 900))
            recorder.emit(TranscriptEntry(Role.ASSISTANT, reply, i, t + 1500, t + 3000))
            recorder.emit(
                TurnTimeline(
                    i, TurnKind.REPLY, user_speech_end_ms=t + 900, first_audio_sent_ms=t + 1500
                )
            )
            while not recorder._queue.empty():  # noqa: ASYNC110 (the recorder has no event)
                await asyncio.sleep(0.001)
            await asyncio.sleep(0.005)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        writer.cancel()
        return cpu, wall

    cpu, wall = asyncio.run(run())
    engine = django.db.connection.vendor
    print(
        json.dumps(
            {
                "tree": os.getcwd(),
                "database": engine,
                "turns": args.turns,
                "cpu_ms_per_turn": round(cpu / args.turns * 1000, 3),
                "wall_ms_per_turn": round(wall / args.turns * 1000, 3),
                "connections_per_turn": round(opened / args.turns, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
