"""Analytics index over turns; separate from 0003 because PostgreSQL refuses to ALTER a
table with pending foreign-key trigger events from 0003's backfill in one transaction."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("calls", "0003_turnmetric_call_started_at_agent"),
    ]

    operations = [
        migrations.AlterField(
            model_name="turnmetric",
            name="call_started_at",
            field=models.DateTimeField(),
        ),
        migrations.AddIndex(
            model_name="turnmetric",
            index=models.Index(
                fields=["organization", "call_started_at"],
                include=(
                    "voice_to_voice_ms",
                    "platform_overhead_ms",
                    "endpointing_ms",
                    "stt_lag_ms",
                    "llm_ttft_ms",
                    "tts_ttfb_ms",
                    "interrupted",
                    "agent",
                ),
                name="turn_org_started_cover",
            ),
        ),
    ]
