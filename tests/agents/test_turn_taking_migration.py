"""agents 0004: agents stored before issue 16 get barge-in pause_then_decide and
preemptive replies written out; settings an agent already has are kept."""

from __future__ import annotations

import importlib

from django.apps import apps

from agents.models import Agent
from tests.conftest import Tenant
from tests.factories import make_agent

migration = importlib.import_module("agents.migrations.0007_turn_taking_defaults")


def test_existing_agents_get_the_new_defaults_and_keep_their_settings(tenant_a: Tenant) -> None:
    org = tenant_a.organization
    old = make_agent(org)
    custom = make_agent(org)
    Agent.objects.for_org(org).filter(pk=old.pk).update(
        turn={"min_wait_ms": 300, "max_wait_ms": 2000},
        interruption={"enabled": True, "min_speech_ms": 250},
    )
    Agent.objects.for_org(org).filter(pk=custom.pk).update(
        turn={"min_wait_ms": 200, "max_wait_ms": 1500, "preemptive": False},
        interruption={"mode": "words"},
    )
    migration.forwards(apps, None)

    old.refresh_from_db()
    assert old.turn == {
        "min_wait_ms": 300,
        "max_wait_ms": 2000,
        "preemptive": True,
        "preemptive_after_ms": 40,
    }
    assert old.interruption == {
        "enabled": True,
        "min_speech_ms": 250,
        "mode": "pause_then_decide",
        "resume_wait_ms": 600,
    }
    custom.refresh_from_db()
    assert custom.turn["preemptive"] is False
    assert custom.interruption["mode"] == "words"
