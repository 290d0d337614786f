"""Copy each turn's call start and agent onto the turn, and index them for analytics."""

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def backfill(apps, schema_editor):
    # Historical models use plain managers: this sees every tenant's rows, as it must.
    Call = apps.get_model("calls", "Call")
    TurnMetric = apps.get_model("calls", "TurnMetric")
    call = Call.objects.filter(pk=OuterRef("call_id"))
    TurnMetric.objects.update(
        call_started_at=Subquery(call.values("started_at")[:1]),
        agent_id=Subquery(call.values("agent_id")[:1]),
    )


class Migration(migrations.Migration):

    dependencies = [
        ("agents", "0002_tool_headers_encrypted"),
        ("calls", "0002_call_toolinvocation_transcriptentry_turnmetric_and_more"),
        ("tenants", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="turnmetric",
            name="agent",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="agents.agent",
            ),
        ),
        migrations.AddField(
            model_name="turnmetric",
            name="call_started_at",
            field=models.DateTimeField(null=True),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop, elidable=True),
    ]
