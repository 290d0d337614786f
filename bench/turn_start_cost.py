"""CPU that one turn start costs the web process, by part, measured in-process.

    python -m bench.turn_start_cost --calls 40            # both modes, table on stdout
    python -m bench.turn_start_cost --calls 40 --json out.json --dump-profiles DIR

The real engine and the real Django side, in this process, the way ``calls/media.py``
wires them: ``Conversation`` with the official Deepgram / OpenAI / Cartesia SDKs (the fake
providers run in a child process, ``tests.fakes.run`` with the load bench's latencies, so
their CPU is not ours), ``TwilioOutput`` (its ``send`` writes nowhere: the WebSocket
server's framing is measured by the load bench, not here), the listen tap, ``LiveSink`` ->
``CallRecorder`` on a fresh SQLite database (with its signals: ``turn_stored`` ->
webhooks), ``LiveCall``'s mirror, the shared line cache. No audio flows: the harness
plays the caller by putting the shell's own VAD/STT events (``VoiceStarted``,
``Interim``, ``Quiet``, ``Final``, ``VoiceEnded``) on the call's inbox, so every CPU
microsecond in a window belongs to the turn (or to the call's idle timers, which are
measured in a window of the same length without a turn and subtracted).

Per turn (greeting, then ``--turns`` replies per call, ``--calls`` calls one after
another; the odd calls unprofiled for the totals, the even ones under cProfile with a
CPU-time clock for the split):

* **start**: from the caller's words being final (``Quiet`` + the finalize's ``Final``
  for a preemptive reply, ``Final`` + ``VoiceEnded`` otherwise) to the turn's first
  audio frame handed to the carrier;
* **rest**: from there until the turn is settled and its events are written (the rest of
  the reply's audio, its marks, the transcript and timeline, the recorder's database
  batch on its worker thread, the live mirror).

Process CPU time (all threads), so other jobs on the machine change the wall time of a
run, not its numbers. Under cProfile every function costs more (the profiler's own
time); the split is therefore given as shares of the profiled window, applied to the
unprofiled total.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
import pstats
import secrets
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

USER_TEXT = "What time do you open on Saturday"

# Parts, by whose code runs. A function whose file matches an owner's marker belongs to
# that owner; any other function (the standard library, builtins, pydantic, JSON, the
# websockets and HTTP layers, the ORM) is shared among its callers' owners, in proportion
# to the time it took for each (cProfile's caller table), up to the first owner. So
# pydantic's validation under the Cartesia SDK counts as Cartesia's, a JSON encode in the
# recorder as the recorder's, and ``asyncio.timeout`` in the speaker as the speaker's.
OWNERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "LLM: OpenAI SDK (request build, HTTP, SSE parse, models)",
        ("/openai/", "/httpx2/", "/httpcore2/", "/h11/", "/anyio/", "/sniffio/"),
    ),
    ("LLM: adapter (voice/providers/openai_llm.py)", ("/voice/providers/openai_llm.py",)),
    ("TTS: Cartesia SDK (context, send, receive, validation)", ("/cartesia/",)),
    ("TTS: adapter (voice/providers/cartesia_tts.py)", ("/voice/providers/cartesia_tts.py",)),
    (
        "STT: Deepgram SDK + adapter (finalize, results)",
        ("/deepgram/", "/voice/providers/deepgram_stt.py"),
    ),
    ("carrier frames (voice/carriers: base64, orjson)", ("/voice/carriers/",)),
    (
        "engine: speaker, playback, chunker, listen tap",
        (
            "/voice/speaking.py",
            "/voice/playback.py",
            "/voice/chunker.py",
            "/voice/turn_state.py",
            "/voice/listen.py",
            "/voice/linecache.py",
            "/calls/linecache.py",
        ),
    ),
    (
        "engine: shell + reducer (conversation, machine)",
        (
            "/voice/conversation.py",
            "/voice/machine.py",
            "/voice/turns.py",
            "/voice/events.py",
            "/voice/vad.py",
            "/voice/audio.py",
        ),
    ),
    (
        "recorder: database writes (calls/recorder.py, services)",
        (
            "/calls/recorder.py",
            "/calls/services.py",
            "/calls/models.py",
            "/calls/redaction.py",
            "/tenants/",
        ),
    ),
    ("webhooks on turn_stored (webhooks/)", ("/webhooks/",)),
    (
        "live view: LiveSink, mirror (calls/livecall.py, control.py)",
        ("/calls/livecall.py", "/calls/control.py"),
    ),
    ("logging", ("/logging/",)),
    ("bench harness (not the server's)", ("/bench/",)),
)
# For functions nobody (profiled) called: callbacks the event loop ran.
TOP_LEVEL: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("WebSocket client (websockets: reader, framing, deflate)", ("/websockets/",)),
    (
        "database hop (worker thread: connections around the batch)",
        ("/django/", "/asgiref/", "/channels/"),
    ),
)
LOOP = "event loop, asyncio, stdlib at top level"

Func = tuple[str, int, str]


def _owner(func: Func, rules: tuple[tuple[str, tuple[str, ...]], ...]) -> str | None:
    filename = func[0]
    for part, markers in rules:
        if any(m in filename for m in markers):
            return part
    return None


def split_profile(stats: pstats.Stats) -> dict[str, float]:
    """Seconds of CPU per part (every function's self time, given to its owner)."""
    table: dict[Func, Any] = stats.stats  # type: ignore[attr-defined]
    memo: dict[Func, dict[str, float]] = {}

    def shares(func: Func, seen: frozenset[Func]) -> dict[str, float]:
        if func in memo:
            return memo[func]
        owner = _owner(func, OWNERS)
        if owner is not None:
            result = {owner: 1.0}
        else:
            callers = {c: row[3] for c, row in table[func][4].items() if c not in seen}
            weight = sum(callers.values())
            if not callers or weight <= 0:
                result = {_owner(func, TOP_LEVEL) or LOOP: 1.0}
            else:
                acc: dict[str, float] = defaultdict(float)
                for caller, ct in callers.items():
                    if caller not in table:
                        acc[LOOP] += ct / weight
                        continue
                    for part, share in shares(caller, seen | {func}).items():
                        acc[part] += share * ct / weight
                result = dict(acc)
        memo[func] = result  # (within a recursion cycle, the first path's answer)
        return result

    out: dict[str, float] = defaultdict(float)
    for func, row in table.items():
        for part, share in shares(func, frozenset()).items():
            out[part] += row[2] * share
    return dict(out)


@dataclass
class Window:
    cpu_s: float = 0.0
    wall_s: float = 0.0


@dataclass
class Meter:
    """CPU per window kind, and one profiler per window kind and thread."""

    profiled: bool = False
    windows: dict[str, list[Window]] = field(default_factory=lambda: defaultdict(list))
    profiles: dict[str, cProfile.Profile] = field(default_factory=dict)
    current: str | None = None  # the window kind open now (for the worker thread)

    def profile(self, kind: str) -> cProfile.Profile:
        if kind not in self.profiles:
            self.profiles[kind] = cProfile.Profile(time.thread_time)
        return self.profiles[kind]

    @contextlib.contextmanager
    def window(self, kind: str) -> Iterator[None]:
        prof = self.profile(kind) if self.profiled else None
        self.current = kind
        cpu0, wall0 = time.process_time(), time.perf_counter()
        if prof is not None:
            prof.enable()
        try:
            yield
        finally:
            if prof is not None:
                prof.disable()
            self.windows[kind].append(
                Window(time.process_time() - cpu0, time.perf_counter() - wall0)
            )
            self.current = None


def _setup_django(tmp: Path, fake_env: dict[str, str], debug: bool) -> None:
    os.environ.update(fake_env)
    for var in [v for v in os.environ if v.startswith(("DATABASE_", "REDIS_"))]:
        del os.environ[var]
    os.environ["DATABASE_URL"] = f"sqlite:///{tmp / 'turns.sqlite3'}"
    os.environ["DJANGO_SETTINGS_MODULE"] = "glassbox.settings"
    os.environ["DEBUG"] = "1" if debug else "0"
    os.environ["CALL_SPOOL_DIR"] = str(tmp / "spool")
    if not debug and not os.environ.get("ENCRYPTION_KEYS"):
        from cryptography.fernet import Fernet

        os.environ["ENCRYPTION_KEYS"] = Fernet.generate_key().decode()
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(40))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


async def _one_call(
    meter: Meter, *, number: Any, turns: int, preemptive: bool, idle_windows: bool
) -> None:
    from channels.db import database_sync_to_async

    from calls import services
    from calls.callconfig import call_config_build
    from calls.linecache import line_cache
    from calls.livecall import LiveCall, LiveSink
    from calls.recorder import CallRecorder
    from voice.carriers.twilio import TwilioOutput
    from voice.conversation import Conversation
    from voice.events import Event, TurnTimeline
    from voice.listen import ListenOutput
    from voice.machine import Final, Interim, Quiet, VoiceEnded, VoiceStarted
    from voice.providers.registry import build_llm, build_stt, build_tts

    def create() -> tuple[Any, Any]:
        call = services.call_create_inbound(
            phone_number=number,
            carrier_call_sid="CA" + secrets.token_hex(16),
            from_number="+15005550006",
            to_number=number.number,
        )
        config = call_config_build(call)
        services.call_stream_started(call=call, stream_sid="MZ" + secrets.token_hex(16))
        return call, config

    call, config = await database_sync_to_async(create)()
    config = replace(config, turn=replace(config.turn, preemptive=preemptive))
    loop = asyncio.get_running_loop()
    first_audio = asyncio.Event()
    settled: asyncio.Queue[TurnTimeline] = asyncio.Queue()
    written = asyncio.Event()
    conversation: Conversation

    class Recorder(CallRecorder):
        """Profiles the worker thread's database batch under the open window."""

        def _write_sync(self, events: list[Event], progress: Any) -> None:
            kind = meter.current
            prof = meter.profile(f"{kind}/worker") if meter.profiled and kind else None
            if prof is not None:
                prof.enable()
            try:
                super()._write_sync(events, progress)
            finally:
                if prof is not None:
                    prof.disable()
                loop.call_soon_threadsafe(written.set)

    class Output:
        """What the carrier would hear: the first audio frame ends a start window, a mark
        is echoed at once (playback takes no CPU)."""

        def __init__(self, inner: Any) -> None:
            self._inner = inner

        async def send_audio(self, payload: bytes) -> None:
            await self._inner.send_audio(payload)
            first_audio.set()

        async def send_mark(self, name: str) -> None:
            await self._inner.send_mark(name)
            loop.call_soon(conversation.mark_played, name)

        async def send_clear(self) -> None:
            await self._inner.send_clear()

        async def hangup(self) -> None:
            await self._inner.hangup()

        async def transfer(self, to: str) -> None:
            await self._inner.transfer(to)

    class Sink:
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def emit(self, event: Event) -> None:
            self._inner.emit(event)
            if isinstance(event, TurnTimeline):
                settled.put_nowait(event)

    async def nothing(*_: Any) -> None:
        return None

    sent = 0

    async def send(text: str) -> None:
        nonlocal sent
        sent += len(text)

    recorder = Recorder(call)
    live = LiveCall(call)
    twilio = TwilioOutput(stream_sid="MZ0", send=send, hangup=nothing, transfer=nothing)
    output = Output(ListenOutput(twilio, live.listen_tap(config.carrier_format)))
    conversation = Conversation(
        config,
        stt=build_stt(config.stt),
        llm=build_llm(config.llm),
        tts=build_tts(config.tts),
        output=output,
        sink=Sink(LiveSink(recorder, live)),
        lines=line_cache(),
    )
    inbox = conversation._inbox  # the shell's own VAD/STT events go here

    async def written_out() -> None:
        while True:
            written.clear()
            if recorder._queue.empty():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.3):
                        await written.wait()
                if recorder._queue.empty():
                    return
            await asyncio.sleep(0.01)

    async def drive() -> None:
        await asyncio.wait_for(settled.get(), 15)  # the greeting
        await written_out()
        for _ in range(turns):
            first_audio.clear()
            start_wall = time.perf_counter()
            with meter.window("start"):
                now = conversation._now()
                await inbox.put(VoiceStarted(now - 1200.0))
                await inbox.put(Interim(USER_TEXT))
                if preemptive:
                    await inbox.put(Quiet(True))  # FinalizeStt goes out to Deepgram
                    await inbox.put(Final(USER_TEXT, speech_final=True))
                    await asyncio.sleep(0.4)  # the reply is prepared, held
                    await inbox.put(VoiceEnded(conversation._now() - 100.0))
                else:
                    await inbox.put(Final(USER_TEXT, speech_final=True))
                    await inbox.put(VoiceEnded(conversation._now()))
                await asyncio.wait_for(first_audio.wait(), 15)
            start_s = time.perf_counter() - start_wall
            rest_wall = time.perf_counter()
            with meter.window("rest"):
                await asyncio.wait_for(settled.get(), 15)
                await written_out()
            rest_s = time.perf_counter() - rest_wall
            if idle_windows:
                # the call's own timers (mirror, keep-alives) for as long, with no turn
                with meter.window("idle-start"):
                    await asyncio.sleep(start_s)
                with meter.window("idle-rest"):
                    await asyncio.sleep(rest_s)
        conversation.caller_hung_up()

    async with asyncio.TaskGroup() as tg:
        engine = tg.create_task(conversation.run())
        writer = tg.create_task(recorder.run())
        live.start(conversation)
        try:
            await drive()
        finally:
            await engine
            await live.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await writer
            if not writer.done():
                writer.cancel()
    ended = recorder.ended
    if ended is None or ended.reason != "caller-hangup":
        raise RuntimeError(f"call {call.pk} ended badly: {ended}")


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return None


def measure(args: argparse.Namespace, number: Any, preemptive: bool) -> dict[str, Any]:
    unprofiled, profiled = Meter(), Meter(profiled=True)

    async def run() -> None:
        # one uncounted call first: imports, first connections, the line cache's greeting
        await _one_call(Meter(), number=number, turns=1, preemptive=preemptive, idle_windows=False)
        for i in range(args.calls):
            meter = profiled if i % 2 else unprofiled
            await _one_call(
                meter, number=number, turns=args.turns, preemptive=preemptive, idle_windows=True
            )

    with asyncio.Runner(loop_factory=_loop_factory(args.loop)) as runner:
        runner.run(run())

    def per_turn_us(kind: str) -> dict[str, Any]:
        cpu = [w.cpu_s * 1e6 for w in unprofiled.windows[kind]]
        idle = [w.cpu_s * 1e6 for w in unprofiled.windows[f"idle-{kind}"]]
        return {
            "turns": len(cpu),
            "cpu_us_mean": statistics.fmean(cpu),
            "cpu_us_median": statistics.median(cpu),
            "idle_us_mean": statistics.fmean(idle),
            "net_us_mean": statistics.fmean(cpu) - statistics.fmean(idle),
            "wall_ms_median": statistics.median(w.wall_s * 1e3 for w in unprofiled.windows[kind]),
        }

    out: dict[str, Any] = {"preemptive": preemptive}
    for kind in ("start", "rest"):
        totals = per_turn_us(kind)
        parts: dict[str, float] = defaultdict(float)
        for suffix in ("", "/worker"):
            prof = profiled.profiles.get(kind + suffix)
            if prof is None:
                continue
            stats = pstats.Stats(prof)
            if args.dump_profiles:
                Path(args.dump_profiles).mkdir(parents=True, exist_ok=True)
                mode = "preemptive" if preemptive else "direct"
                name = f"{mode}-{kind}{suffix.replace('/', '-')}.prof"
                stats.dump_stats(Path(args.dump_profiles) / name)
            for part, seconds in split_profile(stats).items():
                parts[part] += seconds
        whole = sum(parts.values()) or 1.0
        totals["parts_us"] = {
            part: totals["cpu_us_mean"] * seconds / whole
            for part, seconds in sorted(parts.items(), key=lambda kv: -kv[1])
        }
        totals["parts_share"] = {part: seconds / whole for part, seconds in parts.items()}
        out[kind] = totals
    return out


def render(results: list[dict[str, Any]]) -> str:
    lines = []
    for res in results:
        mode = "preemptive reply (the default)" if res["preemptive"] else "reply after end of turn"
        for kind in ("start", "rest"):
            t = res[kind]
            title = "turn start -> first audio" if kind == "start" else "first audio -> written"
            lines.append(
                f"\n{mode}, {title}: {t['cpu_us_mean']:.0f} µs CPU per turn (median "
                f"{t['cpu_us_median']:.0f}; the call's idle timers over the same wall time: "
                f"{t['idle_us_mean']:.0f}), {t['turns']} turns, wall median "
                f"{t['wall_ms_median']:.0f} ms"
            )
            lines.append("| part | µs per turn | share |")
            lines.append("|---|---:|---:|")
            for part, us in t["parts_us"].items():
                lines.append(f"| {part} | {us:,.0f} | {t['parts_share'][part] * 100:.1f} % |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(
        prog="python -m bench.turn_start_cost",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--calls", type=int, default=40, help="calls per mode (half profiled)")
    p.add_argument("--turns", type=int, default=3, help="replies per call, after the greeting")
    p.add_argument("--mode", choices=("both", "preemptive", "direct"), default="both")
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    p.add_argument("--debug", action="store_true", help="DEBUG=1 (the bench's default server)")
    p.add_argument("--json", type=Path, help="write the results here too")
    p.add_argument("--dump-profiles", type=Path, help="keep the cProfile stats (pstats files)")
    args = p.parse_args()
    sys.path.insert(0, os.getcwd())
    from bench import stack

    with tempfile.TemporaryDirectory(prefix="turn-cost-") as tmp_name:
        tmp = Path(tmp_name)
        env = {**os.environ, "PYTHONPATH": os.getcwd()}
        with stack.fakes(env, tmp / "fakes.log") as fake_env:
            _setup_django(tmp, fake_env, args.debug)
            from bench.seed import seed
            from calls.models import PhoneNumber

            tenant = seed(first_message="Hi, how can I help?")
            number = PhoneNumber.objects.dangerously_unscoped().get(number=tenant["number"])
            modes = {"both": (True, False), "preemptive": (True,), "direct": (False,)}[args.mode]
            results = [measure(args, number, preemptive) for preemptive in modes]
    doc = {
        "tree": os.getcwd(),
        "calls": args.calls,
        "turns_per_call": args.turns,
        "loop": args.loop,
        "debug": args.debug,
        "results": results,
    }
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1))
    print(render(results))


if __name__ == "__main__":
    main()
