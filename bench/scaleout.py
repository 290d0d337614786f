"""Check the README's multi-process recipe on one machine: two web processes
(``python -m glassbox.serve``, one per core) behind nginx, PostgreSQL and channels-redis
between them, the fake providers, and simulated Twilio callers dialing the balancer.

    DATABASE_URL=postgres://... REDIS_URL=redis://.../N python -m bench.scaleout --calls 20

Checks, and prints as JSON: every call got its greeting and replies (no missed turns);
both processes served calls (each process's access log names the media sockets it
accepted); each call's socket stayed on one process (a WebSocket cannot move); and a
listener on the organization's live group (channels-redis) heard the state changes of the
calls of *both* processes. Needs nginx (Debian: ``apt-get install nginx-light``). Nothing
leaves 127.0.0.1; every child is ended by its pid.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import stack
from bench.callers import Plan, run_callers

NGINX_CONF = """\
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; "" close; }}
    upstream glassbox {{
        # Any process can answer any request: the stream token is in the database. A
        # call's media WebSocket stays on the process that accepted it for its lifetime.
        least_conn;
{servers}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://glassbox;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_read_timeout 3600s;
        }}
    }}
}}
"""


@contextlib.contextmanager
def nginx(tmp: Path, port: int, upstreams: list[int]) -> Iterator[None]:
    servers = "\n".join(f"        server 127.0.0.1:{p};" for p in upstreams)
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, servers=servers))
    proc = subprocess.Popen(
        ["nginx", "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "nginx.out").open("w"),
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                import socket

                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            time.sleep(0.1)
        yield
    finally:
        proc.terminate()
        proc.wait(10)


async def listen_live(organization_id: int, seconds: float, out: dict[int, set[str]]) -> None:
    """Join the organization's live group on the channel layer (channels-redis), as a
    dashboard socket on either process would, and record every call's statuses."""
    from channels.layers import get_channel_layer

    from calls.live import live_group

    layer = get_channel_layer()
    assert layer is not None
    channel = await layer.new_channel()
    await layer.group_add(live_group(organization_id=organization_id), channel)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            try:
                async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                    message = await layer.receive(channel)
            except TimeoutError:
                break
            call = message.get("call") or {}
            out.setdefault(call.get("id"), set()).add(call.get("status"))
    finally:
        await layer.group_discard(live_group(organization_id=organization_id), channel)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m bench.scaleout", description=__doc__)
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--turns", type=int, default=2)
    args = p.parse_args(argv)
    database, redis = os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")
    if not database.startswith("postgres") or not redis:
        raise SystemExit("set DATABASE_URL (PostgreSQL) and REDIS_URL: the recipe shares both")
    with stack.workdir(keep=True) as tmp:
        env = stack.base_env(tmp, 0)
        lb_port, ports = stack.free_port(), [stack.free_port(), stack.free_port()]
        env.update(
            DATABASE_URL=database,
            REDIS_URL=redis,
            CELERY_TASK_ALWAYS_EAGER="1",  # no worker in this check
            PUBLIC_BASE_URL=f"http://127.0.0.1:{lb_port}",
            ACCESS_LOG="1",
            LOG_LEVEL="INFO",
        )
        tenant = stack.prepare_db(env)
        os.environ.update({k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")})
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "glassbox.settings")
        os.environ.setdefault("DEBUG", "1")
        import django

        django.setup()
        from calls.models import Call

        organization_id = (
            Call._meta.apps.get_model("calls", "PhoneNumber")
            .objects.dangerously_unscoped()
            .get(number=tenant.number)
            .organization_id
        )
        live: dict[int, set[str]] = {}
        with (
            stack.fakes(env, tmp / "fakes.log") as urls,
            contextlib.ExitStack() as servers,
        ):
            env.update(urls)
            procs = [
                servers.enter_context(
                    stack.server("serve", {**env, "PORT": str(port)}, port, tmp / f"web-{i}.log")
                )
                for i, port in enumerate(ports)
            ]
            with nginx(tmp, lb_port, ports):
                plan = Plan(
                    base_url=env["PUBLIC_BASE_URL"],
                    account_sid=tenant.account_sid,
                    auth_token=tenant.auth_token,
                    to_number=tenant.number,
                    turns=args.turns,
                    barge_in=False,
                    ramp_s=2.0,
                )
                listener = _thread(
                    lambda: asyncio.run(listen_live(organization_id, 20 + 8 * args.turns, live))
                )
                time.sleep(1.0)
                callers = run_callers(plan, args.calls, lead_s=1.5)
                listener.join(60)
            pids = [proc.pid for proc in procs]
        sockets = {
            i: len(re.findall(r"/ws/twilio/\S+.*\[accepted\]", (tmp / f"web-{i}.log").read_text()))
            for i in range(2)
        }
        sids = {c["call_sid"] for c in callers}
        calls = {
            c.carrier_call_sid: c
            for c in Call.objects.dangerously_unscoped().filter(carrier_call_sid__in=sids)
        }
        turns = [t for c in callers for t in c["turns"]]
        result = {
            "calls": args.calls,
            "web_pids": pids,
            "media_sockets_accepted_per_process": sockets,
            "calls_connected": sum(1 for c in callers if c["connected"]),
            "calls_with_errors": sum(1 for c in callers if c["errors"]),
            "turns": len(turns),
            "missed_turns": sum(1 for t in turns if t["voice_to_voice_ms"] is None)
            + sum(args.turns - len(c["turns"]) for c in callers),
            "calls_completed": sum(1 for c in calls.values() if c.status == "completed"),
            "live_calls_heard": len([k for k in live if k in {c.pk for c in calls.values()}]),
            "live_statuses_heard": sorted({s for v in live.values() for s in v if s}),
            "tmp": str(tmp),
        }
    print(json.dumps(result, indent=2))
    return result


def _thread(target: Any) -> Any:
    import threading

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
