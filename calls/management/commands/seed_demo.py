"""`make run` calls this: a ready-to-use demo tenant on the local (offline) providers."""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from agents.models import Agent, Credential, CredentialProvider, Tool
from agents.serializers import AgentInputSerializer
from agents.services import agent_create, agent_update, credential_create, tool_create
from calls.models import PhoneNumber
from calls.services import phone_number_create, phone_number_update
from tenants.models import Organization, Role
from tenants.selectors import api_key_list
from tenants.services import api_key_create, api_key_revoke, membership_create

DEMO_SLUG = "demo"
DEMO_EMAIL = "demo@glassbox.test"
DEMO_PASSWORD = "glassbox-demo"  # development only; see handle()
DEMO_KEY_NAME = "Demo key (seed_demo)"
DEMO_AGENT = "Demo receptionist"
DEMO_NUMBER = "+14155550100"
# Where the demo's transfer tool sends a caller who asks for a person (not a real line).
DEMO_TRANSFER_TO = "+14155550199"
# The demo agent's tools, created once per organization (the front desk asks for each by
# its kind: see voice/providers/frontdesk_llm.py).
DEMO_TOOLS: tuple[dict[str, Any], ...] = (
    {"name": "end_call", "kind": "end_call", "description": "Hang up."},
    {
        "name": "transfer_to_person",
        "kind": "transfer_call",
        "description": "Put the caller through to a colleague.",
        "transfer_to": DEMO_TRANSFER_TO,
    },
    {
        "name": "collect_booking_date",
        "kind": "collect_digits",
        "description": "The booking date as four keypad digits, month then day.",
        "max_digits": 4,
        "terminator": "#",
    },
)
# Not a real account: a Twilio number needs a carrier credential. Replace it with yours
# (PATCH /api/v1/credentials/<id>/) before pointing real calls at the platform.
DEMO_TWILIO_SID = "AC" + "0" * 32
DEMO_AGENT_SETTINGS = {
    "name": DEMO_AGENT,
    "system_prompt": "You are a friendly receptionist for Glassbox. Keep answers short.",
    "first_message": (
        "Hello! You've reached the Glassbox front desk. I can tell you our opening hours, "
        "book an appointment, or put you through to a person. How can I help?"
    ),
    # Whisper tiny.en understands eSpeak telephone speech far better than PocketSphinx
    # (docs/benchmarks.md, "Offline STT"); the scripted front desk shows the product.
    "stt": {"provider": "whisper", "language": "en-US"},
    "llm": {"provider": "frontdesk"},
    "tts": {"provider": "espeak", "voice": "en-us"},
    "end_call_phrases": ["goodbye", "bye"],
}


class Command(BaseCommand):
    help = "Create or refresh the demo organization, login, agent, number and API key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--base-url", default=settings.PUBLIC_BASE_URL)

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        base_url = options["base_url"].rstrip("/")
        organization, _ = Organization.objects.get_or_create(
            slug=DEMO_SLUG, defaults={"name": "Demo"}
        )
        # A well-known password is only acceptable on a development machine.
        password = DEMO_PASSWORD if settings.DEBUG else secrets.token_urlsafe(12)
        user_model = get_user_model()
        user, _ = user_model.objects.get_or_create(
            username=DEMO_EMAIL, defaults={"email": DEMO_EMAIL}
        )
        user.email = DEMO_EMAIL
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        membership_create(organization=organization, user=user, role=Role.OWNER)

        twilio = Credential.objects.for_org(organization).filter(name="Demo Twilio").first()
        if twilio is None:
            twilio = credential_create(
                organization=organization,
                name="Demo Twilio",
                provider=CredentialProvider.TWILIO,
                account_sid=DEMO_TWILIO_SID,
                auth_token=secrets.token_hex(16),
            )
        tools = []
        for tool_data in DEMO_TOOLS:
            tool = Tool.objects.for_org(organization).filter(name=tool_data["name"]).first()
            if tool is None:
                tool = tool_create(organization=organization, data=dict(tool_data))
            tools.append(tool)
        # Run the settings through the API's validation so the demo is a valid agent.
        agent = Agent.objects.for_org(organization).filter(name=DEMO_AGENT).first()
        serializer = AgentInputSerializer(
            instance=agent, data=DEMO_AGENT_SETTINGS, context={"organization": organization}
        )
        serializer.is_valid(raise_exception=True)
        data = {**serializer.validated_data, "tools": tools}
        if agent is None:
            agent = agent_create(organization=organization, data=data)
        else:
            agent = agent_update(agent=agent, data=data)

        number = PhoneNumber.objects.for_org(organization).filter(number=DEMO_NUMBER).first()
        number_data = {
            "number": DEMO_NUMBER,
            "name": "Demo line",
            "credential": twilio,
            "agent": agent,
        }
        if number is None:
            number = phone_number_create(organization=organization, data=number_data)
        else:
            phone_number_update(phone_number=number, data=number_data)

        for old in api_key_list(organization=organization).filter(
            name=DEMO_KEY_NAME, revoked_at__isnull=True
        ):
            api_key_revoke(api_key=old)
        issued = api_key_create(organization=organization, name=DEMO_KEY_NAME, created_by=user)

        write = self.stdout.write
        write("Glassbox demo is ready.")
        write(f"  Dashboard: {base_url}/login/")
        write(f"  Admin:    {base_url}/admin/")
        write(f"  API docs: {base_url}/api/docs/")
        write(f"  Login:    {DEMO_EMAIL} / {password}")
        write(f"  Agent:    {agent.name} (id {agent.pk}), number {DEMO_NUMBER}")
        write("  Try:")
        write(f"    curl -H 'Authorization: Bearer {issued.raw_key}' {base_url}/api/v1/agents/")
        write("  API key (previous demo key revoked):")
        write(issued.raw_key)
