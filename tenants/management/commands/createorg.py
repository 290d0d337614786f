from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_email

from tenants.models import Organization
from tenants.services import organization_create_with_owner


class Command(BaseCommand):
    help = (
        "Create an organization and its owner user, and print a new API key. The key is "
        "alone on the last line of output, so `... | tail -n1` captures it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--owner-email", required=True)
        parser.add_argument("--slug", default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            validate_email(options["owner_email"])
        except ValidationError as exc:
            raise CommandError(f"Not an email address: {options['owner_email']}") from exc
        if options["slug"] and Organization.objects.filter(slug=options["slug"]).exists():
            raise CommandError(f"An organization with slug {options['slug']!r} exists.")
        organization, owner, issued = organization_create_with_owner(
            name=options["name"], owner_email=options["owner_email"], slug=options["slug"]
        )
        self.stdout.write(f"Created organization {organization.name!r} (slug {organization.slug}).")
        self.stdout.write(f"Owner: {owner.email}")
        self.stdout.write("API key (shown once):")
        self.stdout.write(issued.raw_key)
