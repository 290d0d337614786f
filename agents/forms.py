"""The dashboard's agent, tool and credential forms: layouts over the API's serializers
(see glassbox/pageforms.py). Nothing here validates; labels, hints and grouping only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.http import QueryDict
from rest_framework import serializers

from agents import selectors
from agents.models import Agent, Credential, Tool
from agents.serializers import (
    MAX_FALLBACKS,
    AgentInputSerializer,
    AgentOutputSerializer,
    CredentialInputSerializer,
    ToolInputSerializer,
    ToolOutputSerializer,
)
from glassbox.pageforms import (
    CHECKBOXES,
    JSON,
    SECRET,
    SECRET_REMOVE_SUFFIX,
    TEXTAREA,
    BoundField,
    FormField,
    PageForm,
    Section,
    serializer_field,
)
from tenants.models import Organization
from voice.providers import registry

STAGES = tuple(str(kind) for kind in registry.Kind)

# Which of a stage's settings each provider reads (voice/providers/*); a provider not
# listed shows them all. The provider registry names each provider, its credential and
# its defaults, but not this; if it learns to, this table goes.
PROVIDER_SETTINGS: dict[str, dict[str, frozenset[str]]] = {
    "stt": {
        "deepgram": frozenset({"model", "language"}),
        "pocketsphinx": frozenset({"language"}),
        "whisper": frozenset({"language"}),
    },
    "llm": {
        "openai": frozenset({"model", "temperature", "max_tokens"}),
        "scripted": frozenset({"model", "max_tokens"}),
        "frontdesk": frozenset({"max_tokens"}),
    },
    "tts": {
        "cartesia": frozenset({"voice", "model", "speed", "language"}),
        "espeak": frozenset({"voice", "speed"}),
    },
}


def provider_spec(stage: str, provider: str) -> registry.ProviderSpec | None:
    try:
        return registry.spec(registry.Kind(stage), provider)
    except registry.UnknownProvider:
        return None


STAGE_TITLES = {"stt": "Speech-to-text", "llm": "Language model", "tts": "Text-to-speech"}

_AGENT_FIELDS = [
    FormField("name", "Name"),
    FormField("system_prompt", "System prompt", rows=10),
    FormField("first_message", "First message", "What the agent says when it answers.", TEXTAREA),
    FormField("first_message_interruptible", "Callers can interrupt the first message"),
    FormField("stt.provider", "Speech-to-text provider"),
    FormField("stt.model", "Model", "Blank: the provider's default model."),
    FormField("stt.language", "Language", "A BCP-47 tag, e.g. en-US."),
    FormField("stt_credential", "Credential", blank_label="The platform's key"),
    FormField("llm.provider", "Language model provider"),
    FormField("llm.model", "Model", "Blank: the provider's default model."),
    FormField("llm.temperature", "Temperature", "From 0 to 2."),
    FormField("llm.max_tokens", "Maximum tokens per reply"),
    FormField("llm_credential", "Credential", blank_label="The platform's key"),
    FormField("tts.provider", "Text-to-speech provider"),
    FormField("tts.voice", "Voice", "The provider's voice id."),
    FormField("tts.model", "Model", "Blank: the provider's default model."),
    FormField("tts.speed", "Speed", "1 is normal speed."),
    FormField("tts.language", "Language"),
    FormField("tts_credential", "Credential", blank_label="The platform's key"),
    FormField(
        "turn.min_wait_ms",
        "Minimum wait (ms)",
        "Silence after the caller's last word before the agent may answer.",
    ),
    FormField(
        "turn.max_wait_ms",
        "Maximum wait (ms)",
        "The longest the agent waits when the caller sounds unfinished.",
    ),
    FormField(
        "turn.preemptive",
        "Prepare replies early",
        "Start the reply while the caller's turn is being confirmed; it plays only once confirmed.",
    ),
    FormField("turn.preemptive_after_ms", "Quiet before preparing a reply (ms)"),
    FormField(
        "turn.end_of_turn",
        "How the end of the caller's turn is decided",
        "Rules: silence, the speech-to-text's end of utterance and words like 'and' or "
        "'um'. Smart turn: the rules plus an audio model that hears unfinished sentences "
        "(waits the maximum); costs server CPU at every pause.",
    ),
    FormField(
        "turn.vad",
        "Voice activity detection",
        "webrtc: the lightest. silero: a neural model, more CPU per call.",
    ),
    FormField("interruption.enabled", "Callers can interrupt the agent"),
    FormField(
        "interruption.mode",
        "When the caller speaks over the agent",
        "Pause then decide: stop at once, play on after 'mhm' or a cough. Immediate: stop "
        "for any speech. Words: stop once real words are transcribed.",
    ),
    FormField("interruption.resume_wait_ms", "Wait before playing on (ms)"),
    FormField(
        "interruption.min_speech_ms",
        "Minimum speech to interrupt (ms)",
    ),
    FormField("interruption.min_words", "Minimum words to interrupt", "0: any speech."),
    FormField("interruption.transcript_wait_ms", "Wait for a transcript (ms)"),
    FormField(
        "interruption.acknowledgements",
        "Acknowledgements",
        "One per line. Short phrases such as 'mhm' that never interrupt the agent.",
    ),
    FormField("idle.prompt", "Idle prompt", "Said when the caller is silent. Blank: none."),
    FormField("idle.timeout_s", "Idle timeout (seconds)"),
    FormField("idle.max_prompts", "Idle prompts before hanging up"),
    FormField("idle.goodbye", "Idle goodbye"),
    FormField(
        "fallback.first_token_timeout_s",
        "Language model timeout (seconds)",
        "A language model silent this long after a request counts as failed.",
    ),
    FormField(
        "fallback.apology", "Apology", "Said when a provider is late or replaced. Blank: none."
    ),
    FormField(
        "fallback.goodbye",
        "Goodbye when nothing works",
        "Said before the call ends because every provider of a stage failed.",
        TEXTAREA,
        rows=2,
    ),
    FormField("max_duration_s", "Maximum call length (seconds)"),
    FormField("max_duration_message", "Message at the time limit", widget=TEXTAREA, rows=2),
    FormField(
        "end_call_phrases",
        "End-call phrases",
        "One per line. The call ends after the agent says one of these.",
    ),
    FormField(
        "tools", "Tools this agent may call", "Functions its language model may call.", CHECKBOXES
    ),
    FormField("voicemail.detect", "Detect answering machines on outbound calls"),
    FormField("voicemail.action", "When a machine answers"),
    FormField(
        "voicemail.message",
        "Voicemail message",
        "Said after the beep when the agent leaves a message; may use {{variables}}.",
        TEXTAREA,
        rows=2,
    ),
    FormField("webhook_url", "Webhook URL", "Call events are POSTed here. Blank: none."),
    FormField(
        "webhook_secret",
        "Webhook secret",
        "Signs webhook requests (HMAC-SHA256). Write-only: it is never shown again.",
        SECRET,
        removable=True,
    ),
    FormField(
        "recording",
        "Record calls",
        "Dual-channel puts the caller on the left and the agent on the right; what the "
        "agent says is recorded as the caller heard it, cut where they interrupted.",
    ),
    FormField("analysis.summary_prompt", "Summary prompt", "Blank: no summary.", rows=3),
    FormField(
        "analysis.structured_data_schema",
        "Structured data schema",
        "A JSON Schema of the data to extract from each call. Blank: none.",
        JSON,
    ),
    FormField("analysis.success_rubric", "Success rubric", "Blank: no verdict.", rows=3),
    FormField("analysis.success_evaluation", "Verdict", "Pass or fail, or a score."),
    FormField("analysis.score_max", "Highest score", "For a score: from 0 to this."),
    FormField("analysis.model", "Analysis model", "Blank: the agent's own model if OpenAI."),
    FormField("analysis.max_attempts", "Attempts at structured data"),
]


def agent_sections() -> list[Section]:
    return [
        Section(
            "Agent",
            ["name", "system_prompt", "first_message", "first_message_interruptible"],
            "basics",
        ),
        *(Section(STAGE_TITLES[s], [], s) for s in STAGES),  # drawn by stage_fields()
        Section(
            "Turn-taking",
            [
                "turn.min_wait_ms",
                "turn.max_wait_ms",
                "turn.preemptive",
                "turn.preemptive_after_ms",
                "turn.end_of_turn",
                "turn.vad",
            ],
            "turn",
        ),
        Section(
            "Interruptions",
            [
                "interruption.enabled",
                "interruption.mode",
                "interruption.min_speech_ms",
                "interruption.min_words",
                "interruption.transcript_wait_ms",
                "interruption.resume_wait_ms",
                "interruption.acknowledgements",
            ],
            "interruption",
        ),
        Section(
            "When the caller is silent",
            ["idle.prompt", "idle.timeout_s", "idle.max_prompts", "idle.goodbye"],
            "idle",
        ),
        Section(
            "Ending the call",
            ["max_duration_s", "max_duration_message", "end_call_phrases"],
            "ending",
        ),
        Section(
            "When a provider fails",
            ["fallback.first_token_timeout_s", "fallback.apology", "fallback.goodbye"],
            "fallback",
        ),
        Section(
            "Answering machines",
            ["voicemail.detect", "voicemail.action", "voicemail.message"],
            "voicemail",
        ),
        Section("Tools", ["tools"], "tools"),
        Section("Webhook", ["webhook_url", "webhook_secret"], "webhook"),
        Section("Recording", ["recording"], "recording"),
        Section(
            "After the call",
            [
                "analysis.summary_prompt",
                "analysis.structured_data_schema",
                "analysis.success_rubric",
                "analysis.success_evaluation",
                "analysis.score_max",
                "analysis.model",
                "analysis.max_attempts",
            ],
            "analysis",
        ),
    ]


class AgentForm(PageForm):
    """The agent form. Each stage's settings depend on its chosen provider: only the
    settings that provider reads are shown, and only credentials it can use offered."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # stage -> the page's place of each fallback entry sent to the API, in order
        self._fallback_places: dict[str, list[int]] = {}

    def stage_provider(self, stage: str) -> str:
        value = self.value(f"{stage}.provider")
        return str(value) if isinstance(value, str) else ""

    def stage_fields(self, stage: str) -> list[str]:
        provider = self.stage_provider(stage)
        settings = PROVIDER_SETTINGS[stage].get(provider)
        stage_serializer = serializer_field(self._schema, stage)
        assert isinstance(stage_serializer, serializers.Serializer)  # stt / llm / tts settings
        paths = [f"{stage}.provider"]
        # items(), not iteration: the DRF stubs wrongly say a BindingDict iterates its fields.
        paths += [
            f"{stage}.{name}"
            for name, _ in stage_serializer.fields.items()
            if name != "provider" and (settings is None or name in settings)
        ]
        if self._takes_credential(stage):
            paths.append(f"{stage}_credential")
        return paths

    def layout(self) -> list[tuple[Section, list[BoundField]]]:
        """The page's fieldsets with their fields, a stage's depending on its provider."""
        return [
            (s, self.bound_fields(self.stage_fields(s.key) if s.key in STAGES else s.paths))
            for s in agent_sections()
        ]

    def fallback_rows(self) -> list[tuple[str, list[tuple[int, list[BoundField]]]]]:
        """Each stage's fallback providers, one row of fields per place in the chain."""
        return [
            (
                STAGE_TITLES[stage],
                [
                    (n + 1, self.bound_fields(_fallback_paths(stage, n)))
                    for n in range(MAX_FALLBACKS)
                ],
            )
            for stage in STAGES
        ]

    def _takes_credential(self, stage: str) -> bool:
        spec = provider_spec(stage, self.stage_provider(stage))
        return spec is None or bool(spec.credential)

    def api_data(self) -> dict[str, Any]:
        self._fallback_places = {}
        data = super().api_data()
        # A provider that takes no credential has no picker on the page: it means none
        # (else a credential left from the previous provider would be refused, unseen).
        for stage in STAGES:
            if not self._takes_credential(stage) and f"{stage}.provider" in (self.data or {}):
                data[f"{stage}_credential"] = None
        for stage in STAGES:
            rows = data.get("fallback", {}).get(stage)
            if rows is not None:
                data["fallback"][stage] = self._fallback_chain(stage, rows)
        return data

    def _fallback_chain(self, stage: str, rows: dict[str, Any]) -> list[dict[str, Any]]:
        # Rows arrive as {"0": {...}, "1": {...}}; the API takes a list. A row without a
        # provider is an empty place. A stored entry keeps the settings this page does not
        # show (its language, temperature, ...) while its provider stays the same.
        stored = list(self.instance.fallback.get(stage, [])) if self.instance is not None else []
        chain = []
        places = self._fallback_places.setdefault(stage, [])
        for key in sorted(rows, key=int):
            row = rows[key]
            if not row.get("provider"):
                continue
            index = int(key)
            before = stored[index] if index < len(stored) else {}
            keep = before if before.get("provider") == row["provider"] else {}
            chain.append({**keep, **row})
            places.append(index)
        return chain

    def error_path(self, path: str) -> str:
        # The API numbers a chain's entries; the page has places, some maybe empty.
        parts = path.split(".")
        if len(parts) > 3 and parts[0] == "fallback" and parts[2].isdigit():
            places = self._fallback_places.get(parts[1], [])
            if int(parts[2]) < len(places):
                parts[2] = str(places[int(parts[2])])
        return ".".join(parts)


FALLBACK_SETTINGS = {"stt": ["model"], "llm": ["model"], "tts": ["voice", "model"]}


def _fallback_paths(stage: str, n: int) -> list[str]:
    row = f"fallback.{stage}.{n}"
    return [
        f"{row}.provider",
        *(f"{row}.{s}" for s in FALLBACK_SETTINGS[stage]),
        f"{row}.credential",
    ]


def _fallback_fields() -> list[FormField]:
    fields = []
    for stage in STAGES:
        for n in range(MAX_FALLBACKS):
            row = f"fallback.{stage}.{n}"
            place = f"{STAGE_TITLES[stage]} fallback {n + 1}"
            fields.append(FormField(f"{row}.provider", place, blank_label="None"))
            fields += [
                FormField(f"{row}.{name}", f"{place}: {name}") for name in FALLBACK_SETTINGS[stage]
            ]
            fields.append(
                FormField(
                    f"{row}.credential", f"{place}: credential", blank_label="The platform's key"
                )
            )
    return fields


def _credential_choices(
    organization: Organization, kind: str | set[str] | None
) -> list[tuple[str, str]]:
    credentials = selectors.credential_list(organization=organization)
    if isinstance(kind, set):
        credentials = credentials.filter(provider__in=kind)
    elif kind is not None:
        credentials = credentials.filter(provider=kind)
    return [(str(c.pk), _credential_label(c)) for c in credentials]


def _credential_label(credential: Credential) -> str:
    hint = f" …{credential.hint}" if credential.hint else ""
    return f"{credential.name} ({credential.provider}{hint})"


def agent_form(
    *,
    organization: Organization,
    agent: Agent | None = None,
    initial: Mapping[str, Any] | None = None,
    data: QueryDict | None = None,
) -> AgentForm:
    if agent is not None and initial is None:
        initial = AgentOutputSerializer(agent).data
    form = AgentForm(
        serializer_class=AgentInputSerializer,
        fields=[*_AGENT_FIELDS, *_fallback_fields()],
        context={"organization": organization},
        instance=agent,
        initial=initial,
        data=data,
        stored_secrets=["webhook_secret"] if agent is not None and agent.webhook_secret else [],
    )
    for stage in STAGES:
        spec = provider_spec(stage, form.stage_provider(stage))
        # Credential pickers offer only the kind the chosen provider takes.
        kind = spec.credential if spec is not None else None
        form.fields[f"{stage}_credential"].choices = _credential_choices(organization, kind)
        # "Blank" means the provider's own default: say which.
        if spec is not None and spec.default_model:
            form.fields[f"{stage}.model"].hint = f"Blank: {spec.default_model}."
        if spec is not None and stage == "tts" and spec.default_voice:
            form.fields["tts.voice"].hint = f"Blank: {spec.default_voice}."
        # A fallback may be any provider of the stage, so any credential they take.
        kinds = {p.credential for p in registry.providers(registry.Kind(stage)) if p.credential}
        choices = _credential_choices(organization, kinds)
        for n in range(MAX_FALLBACKS):
            form.fields[f"fallback.{stage}.{n}.credential"].choices = choices
    return form


# --- tools --------------------------------------------------------------------------------

# Which settings each tool kind reads; the rest are hidden for that kind.
TOOL_KIND_SETTINGS = {
    "http": ["url", "method", "headers", "timeout_s", "filler", "filler_after_s"],
    "end_call": [],
    "transfer_call": ["transfer_to"],
    "collect_digits": [
        "max_digits",
        "terminator",
        "digit_timeout_s",
        "secure",
        "reveal_last_digits",
        "url",
        "headers",
        "timeout_s",
    ],
}

_TOOL_FIELDS = [
    FormField("name", "Name", "The function name the language model sees."),
    FormField("kind", "Kind"),
    FormField("description", "Description", "Tells the language model when to call it.", rows=3),
    FormField(
        "parameters",
        "Parameters",
        'A JSON Schema ("type": "object") of the arguments the model supplies. Blank: none.',
    ),
    FormField("url", "URL"),
    FormField("method", "Method"),
    FormField(
        "headers",
        "Headers",
        "One 'Name: value' per line, sent with every request. Write-only: stored encrypted, "
        "never shown again.",
        SECRET,
        rows=3,
        removable=True,
    ),
    FormField("timeout_s", "Timeout (seconds)"),
    FormField("filler", "Filler", "What the agent says while a slow tool runs."),
    FormField("filler_after_s", "Filler after (seconds)"),
    FormField("transfer_to", "Transfer to", "E.164, e.g. +14155550123."),
    FormField("max_digits", "Maximum digits"),
    FormField("terminator", "Terminator key", "Ends the input early."),
    FormField("digit_timeout_s", "Digit timeout (seconds)"),
    FormField(
        "secure",
        "Secure",
        "The digits go only to the URL (signed), never to the language model, the transcript "
        "or the analysis.",
    ),
    FormField(
        "reveal_last_digits",
        "Tell the last two digits",
        "Secure only: the language model may hear the last two digits (of four or more).",
    ),
]


class ToolForm(PageForm):
    def kind(self) -> str:
        value = self.value("kind")
        return str(value) if isinstance(value, str) else ""

    def kind_fields(self) -> list[str]:
        settings = TOOL_KIND_SETTINGS.get(self.kind())
        if settings is None:  # no kind chosen yet: every kind's settings
            return list(dict.fromkeys(p for paths in TOOL_KIND_SETTINGS.values() for p in paths))
        return settings

    @property
    def bound_kind_fields(self) -> list[BoundField]:
        return self.bound_fields(self.kind_fields())

    @property
    def bound_all_fields(self) -> list[BoundField]:
        return self.bound_fields(["name", "kind", "description", "parameters", *self.kind_fields()])

    def api_data(self) -> dict[str, Any]:
        data = super().api_data()
        assert self.data is not None
        raw = self.data.get("headers", "")
        removed = self.data.get("headers" + SECRET_REMOVE_SUFFIX) == "true"
        # Headers are "Name: value" lines on the page and an object in the API.
        if raw.strip() and not removed:
            headers: dict[str, str] = {}
            for line in raw.splitlines():
                if line.strip():
                    name, _, value = line.partition(":")
                    headers[name.strip()] = value.strip()
            data["headers"] = headers
        return data


def tool_form(
    *,
    organization: Organization,
    tool: Tool | None = None,
    data: QueryDict | None = None,
) -> ToolForm:
    initial = ToolOutputSerializer(tool).data if tool is not None else None
    return ToolForm(
        serializer_class=ToolInputSerializer,
        fields=_TOOL_FIELDS,
        context={"organization": organization},
        instance=tool,
        initial=initial,
        data=data,
        stored_secrets=["headers"] if tool is not None and tool.headers else [],
    )


# --- credentials ---------------------------------------------------------------------------

# Which secret fields each provider takes.
CREDENTIAL_PROVIDER_FIELDS = {"twilio": ["account_sid", "auth_token"]}
CREDENTIAL_DEFAULT_FIELDS = ["api_key"]

_CREDENTIAL_FIELDS = [
    FormField("name", "Name"),
    FormField("provider", "Provider"),
    FormField("api_key", "API key", "Write-only: stored encrypted and never shown again."),
    FormField("account_sid", "Account SID", "'AC' followed by 32 hex digits. Write-only."),
    FormField("auth_token", "Auth token", "Write-only: stored encrypted and never shown again."),
    FormField(
        "base_url",
        "Base URL",
        "Only for an OpenAI-compatible server (Ollama, vLLM, Groq, ...). Blank: OpenAI.",
    ),
]


class CredentialForm(PageForm):
    def provider(self) -> str:
        if self.instance is not None:
            return str(self.instance.provider)
        value = self.value("provider")
        return str(value) if isinstance(value, str) else ""

    def provider_fields(self) -> list[str]:
        provider = self.provider()
        paths = list(CREDENTIAL_PROVIDER_FIELDS.get(provider, CREDENTIAL_DEFAULT_FIELDS))
        custom = {p.credential for p in registry.PROVIDERS if p.custom_base_url}
        if provider in custom or not provider:
            paths.append("base_url")
        return paths

    @property
    def bound_provider_fields(self) -> list[BoundField]:
        return self.bound_fields(self.provider_fields())


def credential_form(
    *,
    organization: Organization,
    credential: Credential | None = None,
    data: QueryDict | None = None,
) -> CredentialForm:
    fields = [f for f in _CREDENTIAL_FIELDS if credential is None or f.path != "provider"]
    if credential is not None:
        fields = [
            f
            if f.path not in ("api_key", "account_sid", "auth_token")
            else FormField(f.path, f.label, f.hint, SECRET)
            for f in fields
        ]
    initial = {"name": credential.name, "base_url": credential.base_url} if credential else None
    secrets = []
    if credential is not None:
        secrets = [p for p in ("api_key", "account_sid", "auth_token") if getattr(credential, p)]
    return CredentialForm(
        serializer_class=CredentialInputSerializer,
        fields=fields,
        context={"organization": organization},
        instance=credential,
        initial=initial,
        data=data,
        stored_secrets=secrets,
    )
