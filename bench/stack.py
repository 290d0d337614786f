"""The platform under test, started for real: fake providers, a fresh SQLite database, a
seeded tenant, and the ASGI server (Daphne or Uvicorn) as a child process.

Nothing here leaves 127.0.0.1; every child is ended by its own pid on exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(PYTHON).parent

# The fixed provider latencies of issue #5. Endpointing is Deepgram's own (the agent's
# ``endpointing=300`` on the audio clock: the final arrives after 300 ms of silence).
ENDPOINTING_MS = 300.0
LLM_TTFT_MS = 200.0
TTS_TTFB_MS = 100.0
FIXED_MS = ENDPOINTING_MS + LLM_TTFT_MS + TTS_TTFB_MS

SERVERS = ("daphne", "uvicorn")


@dataclass(frozen=True, slots=True)
class Tenant:
    account_sid: str
    auth_token: str
    number: str
    agent_id: int
    api_key: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[str], timeout_s: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _pin(proc: subprocess.Popen[str], cpus: tuple[int, ...]) -> None:
    if cpus:
        os.sched_setaffinity(proc.pid, cpus)


@contextlib.contextmanager
def fakes(
    env: dict[str, str],
    log: Path,
    cpus: tuple[int, ...] = (),
    *,
    llm_token_delay_ms: float = 0.0,
) -> Iterator[dict[str, str]]:
    """Start ``tests.fakes.run`` with the fixed latencies; yield the env vars it printed.
    ``llm_token_delay_ms``: the fake LLM's pause between tokens after the first."""
    cmd = [
        PYTHON,
        "-m",
        "tests.fakes.run",
        "--deepgram-port=0",
        "--openai-port=0",
        "--cartesia-port=0",
        "--deepgram-final-delay-ms=0",
        f"--openai-ttft-ms={LLM_TTFT_MS}",
        f"--openai-token-delay-ms={llm_token_delay_ms}",
        f"--cartesia-first-byte-ms={TTS_TTFB_MS}",
    ]
    with log.open("a") as err:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err, text=True
        )
    _pin(proc, cpus)
    try:
        urls: dict[str, str] = {}
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline().strip()
            if line == "READY":
                break
            if "=" in line:
                key, value = line.split("=", 1)
                urls[key] = value
            if not line and proc.poll() is not None:
                raise RuntimeError("the fake providers exited before READY")
        else:
            raise RuntimeError("the fake providers did not start within 30 s")
        yield {
            **urls,
            "DEEPGRAM_API_KEY": "test-deepgram-key",
            "OPENAI_API_KEY": "sk-test-openai-key",
            "CARTESIA_API_KEY": "sk_car_test",
        }
    finally:
        _stop(proc)


def base_env(tmp: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="glassbox.settings",
        DATABASE_URL=f"sqlite:///{tmp / 'bench.sqlite3'}",
        DEBUG="1",
        SECRET_KEY="bench-" + "x" * 50,
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        LOG_LEVEL="WARNING",
        API_RATE_LIMIT="",
        PYTHONUNBUFFERED="1",
        MEDIA_ROOT=str(tmp / "media"),
        RECORDING_SPOOL_DIR=str(tmp / "recording-spool"),
    )
    return env


def prepare_db(env: dict[str, str]) -> Tenant:
    run = {"cwd": ROOT, "env": env, "check": True, "text": True, "capture_output": True}
    subprocess.run([PYTHON, "manage.py", "migrate", "--noinput"], **run)  # type: ignore[call-overload]
    out = subprocess.run([PYTHON, "-m", "bench.seed"], **run)  # type: ignore[call-overload]
    return Tenant(**json.loads(out.stdout.strip().splitlines()[-1]))


def set_recording(env: dict[str, str], tenant: Tenant, mode: str) -> None:
    run = {"cwd": ROOT, "env": {**env, "BENCH_RECORDING": f"{tenant.agent_id}:{mode}"}}
    subprocess.run([PYTHON, "-m", "bench.seed"], check=True, **run)  # type: ignore[call-overload]


def server_command(kind: str, port: int) -> list[str]:
    app = "glassbox.asgi:application"
    if kind == "daphne":
        return [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "-v", "0", app]
    if kind == "uvicorn":
        return [
            PYTHON,
            "-m",
            "uvicorn",
            app,
            "--host=127.0.0.1",
            f"--port={port}",
            "--log-level=warning",
            "--no-access-log",
            "--lifespan=off",
        ]
    raise ValueError(f"unknown server {kind!r}: use one of {', '.join(SERVERS)}")


@contextlib.contextmanager
def server(
    kind: str, env: dict[str, str], port: int, log: Path, cpus: tuple[int, ...] = ()
) -> Iterator[subprocess.Popen[str]]:
    with log.open("a") as out:
        proc = subprocess.Popen(
            server_command(kind, port), cwd=ROOT, env=env, stdout=out, stderr=out, text=True
        )
    _pin(proc, cpus)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{kind} exited with {proc.returncode}; see {log}")
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/v1/", timeout=2)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{kind} did not listen within 60 s; see {log}") from None
                time.sleep(0.2)
        yield proc
    finally:
        _stop(proc)


@contextlib.contextmanager
def workdir(keep: bool = False) -> Iterator[Path]:
    if keep:
        yield Path(tempfile.mkdtemp(prefix="glassbox-bench-"))
        return
    with tempfile.TemporaryDirectory(prefix="glassbox-bench-") as tmp:
        yield Path(tmp)
