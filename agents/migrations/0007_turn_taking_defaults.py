"""Issue 16: every existing agent gets the new turn-taking settings written out, with the
defaults new agents get — barge-in ``pause_then_decide`` and preemptive replies on — so
what the API and the dashboard show is what the engine does. (The engine reads missing
keys as these defaults anyway: voice.config.from_plain.)"""

from django.db import migrations

TURN = {"preemptive": True, "preemptive_after_ms": 40}
INTERRUPTION = {"mode": "pause_then_decide", "resume_wait_ms": 600}


def forwards(apps, schema_editor):
    Agent = apps.get_model("agents", "Agent")
    for agent in Agent._base_manager.all().only("pk", "turn", "interruption").iterator():
        turn = {**TURN, **(agent.turn or {})}
        interruption = {**INTERRUPTION, **(agent.interruption or {})}
        if turn != agent.turn or interruption != agent.interruption:
            Agent._base_manager.filter(pk=agent.pk).update(turn=turn, interruption=interruption)


class Migration(migrations.Migration):
    dependencies = [
        ("agents", "0006_agent_recording"),
    ]

    operations = [
        migrations.RunPython(forwards, migrations.RunPython.noop),
    ]
