"""``manage.py plans create|list|assign``: the operator's plans, from the shell."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing import services
from billing.models import Plan
from tenants.models import Organization

LIMITS = (
    ("included_minutes", "Minutes included in a period."),
    ("overage_cents_per_minute", "Price of a minute beyond them, in cents."),
    ("max_concurrent_calls", "Calls in progress at once (default: unlimited)."),
    ("max_minutes_per_period", "Hard cap on minutes in a period (default: unlimited)."),
    ("max_agents", "Agents (default: unlimited)."),
    ("max_numbers", "Phone numbers (default: unlimited)."),
)


class Command(BaseCommand):
    help = "Create, list and assign billing plans."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="Create a plan.")
        create.add_argument("--name", required=True)
        for field, text in LIMITS:
            create.add_argument("--" + field.replace("_", "-"), dest=field, type=int, help=text)
        create.add_argument("--feature", dest="features", action="append", default=[])
        create.add_argument("--stripe-price-id", default="")
        create.add_argument(
            "--default", dest="is_default", action="store_true", help="For orgs with none."
        )
        sub.add_parser("list", help="List plans.")
        assign = sub.add_parser("assign", help="Put an organization on a plan.")
        assign.add_argument("--org", required=True, help="Organization slug.")
        assign.add_argument("--plan", required=True, help="Plan name.")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "create":
            fields = {f: options[f] for f, _ in LIMITS if options[f] is not None}
            if any(v < 0 for v in fields.values()):
                raise CommandError("Limits and prices cannot be negative.")
            try:
                plan = services.plan_create(
                    name=options["name"],
                    features=options["features"],
                    stripe_price_id=options["stripe_price_id"],
                    is_default=options["is_default"],
                    **fields,
                )
            except ValidationError as exc:
                raise CommandError("; ".join(exc.messages)) from exc
            self.stdout.write(f"Created plan {plan.name}.")
        elif action == "list":
            for listed in Plan.objects.all():
                limits = {f: getattr(listed, f) for f, _ in LIMITS}
                default = " (default)" if listed.is_default else ""
                self.stdout.write(f"{listed.name}{default} {json.dumps(limits)}")
        else:
            organization = Organization.objects.filter(slug=options["org"]).first()
            if organization is None:
                raise CommandError(f"No organization with slug {options['org']!r}.")
            chosen = Plan.objects.filter(name=options["plan"]).first()
            if chosen is None:
                raise CommandError(f"No plan named {options['plan']!r}.")
            services.plan_assign(organization=organization, plan=chosen)
            self.stdout.write(f"{organization.slug} is on plan {chosen.name}.")
