from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenants.models import ApiKeyScope, Organization
from tenants.selectors import api_key_list
from tenants.services import api_key_create, api_key_revoke


class Command(BaseCommand):
    help = "Create, list and revoke an organization's API keys."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="Issue a key; it is printed alone on the last line.")
        create.add_argument("--org", required=True, help="organization slug")
        create.add_argument("--name", default="")
        create.add_argument(
            "--scope",
            choices=[scope.value for scope in ApiKeyScope],
            default=ApiKeyScope.FULL.value,
            help="read_only keys may only use GET, HEAD and OPTIONS",
        )
        listing = sub.add_parser("list")
        listing.add_argument("--org", required=True)
        revoke = sub.add_parser("revoke")
        revoke.add_argument("--org", required=True)
        revoke.add_argument("prefix", help="the key's prefix (see `list`)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            organization = Organization.objects.get(slug=options["org"])
        except Organization.DoesNotExist as exc:
            raise CommandError(f"No organization with slug {options['org']!r}.") from exc
        action = options["action"]
        if action == "create":
            issued = api_key_create(
                organization=organization, name=options["name"], scope=options["scope"]
            )
            self.stdout.write(f"Created {issued.api_key.masked}. Shown once:")
            self.stdout.write(issued.raw_key)
        elif action == "list":
            for key in api_key_list(organization=organization):
                state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
                used = f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never"
                self.stdout.write(
                    f"{key.prefix}  {key.masked}  {key.scope}  {state}  last used {used}  "
                    f"{key.name}"
                )
        else:
            found = api_key_list(organization=organization).filter(prefix=options["prefix"]).first()
            if found is None:
                raise CommandError(
                    f"No key with prefix {options['prefix']!r} in {organization.slug}."
                )
            api_key_revoke(api_key=found)
            self.stdout.write(f"Revoked {found.masked}.")
