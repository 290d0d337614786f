"""Seed a bench tenant: one organization, a Twilio credential with a known auth token, an
agent on deepgram/openai/cartesia (platform default keys and base URLs, i.e. the fakes),
a number and an API key. Prints one JSON line for the load driver.

    DJANGO_SETTINGS_MODULE=glassbox.settings python -m bench.seed
    BENCH_RECORDING=AGENT_ID:dual python -m bench.seed   # switch the agent's recording
"""

from __future__ import annotations

import json
import os
import secrets


def seed(*, first_message: str) -> dict[str, str | int]:
    from agents.serializers import AgentInputSerializer
    from agents.services import agent_create, credential_create
    from calls.services import phone_number_create
    from tenants.services import api_key_create, organization_create

    organization = organization_create(name="Bench", slug=f"bench-{secrets.token_hex(3)}")
    account_sid = "AC" + secrets.token_hex(16)
    auth_token = secrets.token_hex(16)
    twilio = credential_create(
        organization=organization,
        name="Bench Twilio",
        provider="twilio",
        account_sid=account_sid,
        auth_token=auth_token,
    )
    serializer = AgentInputSerializer(
        data={
            "name": "Bench agent",
            "system_prompt": "You are a benchmark.",
            "first_message": first_message,
            "stt": {"provider": "deepgram", "language": "en-US"},
            "llm": {"provider": "openai", "model": "gpt-4o-mini"},
            "tts": {"provider": "cartesia", "voice": "bench-voice"},
            # BENCH_PREEMPTIVE=0: replies wait for the end of turn (the providers' latencies
            # in series, as the density targets were first measured)
            **(
                {"turn": {"preemptive": False}} if os.environ.get("BENCH_PREEMPTIVE") == "0" else {}
            ),
        },
        context={"organization": organization},
    )
    serializer.is_valid(raise_exception=True)
    agent = agent_create(organization=organization, data=dict(serializer.validated_data))
    number = "+1415555" + f"{secrets.randbelow(10_000):04d}"
    phone_number_create(
        organization=organization,
        data={"number": number, "name": "Bench line", "credential": twilio, "agent": agent},
    )
    issued = api_key_create(organization=organization, name="bench")
    return {
        "account_sid": account_sid,
        "auth_token": auth_token,
        "number": number,
        "agent_id": agent.pk,
        "api_key": issued.raw_key,
    }


def set_recording(*, agent_id: int, mode: str) -> None:
    """Switch the bench agent's recording mode (bench/loadtest.py --recording)."""
    from agents.models import Agent

    Agent.objects.dangerously_unscoped().filter(pk=agent_id).update(recording=mode)


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "glassbox.settings")
    import django

    django.setup()
    if os.environ.get("BENCH_RECORDING"):  # "AGENT_ID:MODE"
        agent_id, mode = os.environ["BENCH_RECORDING"].split(":")
        set_recording(agent_id=int(agent_id), mode=mode)
        return
    print(
        json.dumps(seed(first_message=os.environ.get("BENCH_FIRST_MESSAGE", "Hi, how can I help?")))
    )


if __name__ == "__main__":
    main()
