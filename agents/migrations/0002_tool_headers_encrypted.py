"""Tool headers move from a plain JSON column to an encrypted one (they often carry the
credentials for the tenant's tool server)."""

from django.db import migrations

import glassbox.encryption


def seal(apps, schema_editor):
    Tool = apps.get_model("agents", "Tool")
    for tool in Tool._base_manager.exclude(headers={}).iterator():
        tool.sealed_headers = tool.headers
        tool.save(update_fields=["sealed_headers"])


def unseal(apps, schema_editor):
    Tool = apps.get_model("agents", "Tool")
    for tool in Tool._base_manager.iterator():
        tool.headers = tool.sealed_headers or {}
        tool.save(update_fields=["headers"])


class Migration(migrations.Migration):
    dependencies = [("agents", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="tool",
            name="sealed_headers",
            field=glassbox.encryption.EncryptedJSONField(blank=True, default=dict),
        ),
        migrations.RunPython(seal, unseal),
        migrations.RemoveField(model_name="tool", name="headers"),
        migrations.RenameField(model_name="tool", old_name="sealed_headers", new_name="headers"),
    ]
