from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import transaction

from glassbox.encryption import encrypted_fields


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret with the newest key in ENCRYPTION_KEYS. Run after "
        "prepending a new key; afterwards the old keys can be removed."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        total = 0
        for model in apps.get_models():
            fields = encrypted_fields(model)
            if not fields:
                continue
            # maintenance: all tenants (the default manager is a model's `objects`)
            manager = getattr(model._default_manager, "dangerously_unscoped", None)
            queryset = manager() if manager else model._base_manager.all()
            count = 0
            with transaction.atomic():
                for row in queryset.select_for_update().only("pk", *fields).iterator():
                    # Loading decrypts with any key; update() encrypts with the newest.
                    values = {name: getattr(row, name) for name in fields}
                    model._base_manager.filter(pk=row.pk).update(**values)
                    count += 1
            total += count
            self.stdout.write(f"{model._meta.label}: re-encrypted {count} row(s)")
        self.stdout.write(self.style.SUCCESS(f"Done: {total} row(s)."))
