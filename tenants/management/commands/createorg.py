from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_email

from tenants.models import Organization
from tenants.services import organization_create_with_owner, user_set_password_link


class Command(BaseCommand):
    help = (
        "Create an organization and its owner user, and print a new API key. The key is "
        "alone on the last line of output, so `... | tail -n1` captures it. Without "
        "--owner-password, a new owner gets a one-time link to set their password."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--owner-email", required=True)
        parser.add_argument(
            "--owner-password",
            default=None,
            help="the new owner's dashboard password (ignored for an existing user)",
        )
        parser.add_argument("--slug", default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        email, password = options["owner_email"], options["owner_password"]
        try:
            validate_email(email)
        except ValidationError as exc:
            raise CommandError(f"Not an email address: {email}") from exc
        if password is not None:
            try:
                validate_password(password)
            except ValidationError as exc:
                raise CommandError("Password refused: " + " ".join(exc.messages)) from exc
        if options["slug"] and Organization.objects.filter(slug=options["slug"]).exists():
            raise CommandError(f"An organization with slug {options['slug']!r} exists.")
        organization, owner, issued = organization_create_with_owner(
            name=options["name"], owner_email=email, slug=options["slug"], owner_password=password
        )
        self.stdout.write(f"Created organization {organization.name!r} (slug {organization.slug}).")
        self.stdout.write(f"Owner: {owner.email}")
        if owner.has_usable_password():
            self.stdout.write(f"Dashboard: {settings.PUBLIC_BASE_URL}/login/")
        else:
            link = user_set_password_link(user=owner, base_url=settings.PUBLIC_BASE_URL)
            self.stdout.write(f"Set the owner's password (link works once): {link}")
        self.stdout.write("API key (shown once):")
        self.stdout.write(issued.raw_key)
