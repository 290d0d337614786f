"""Post-call analysis: a summary, structured data and a success verdict, per the agent's
``analysis`` settings (voice.config.AnalysisConfig), stored on the call.

Runs in a Celery task once the call is finalized (calls/tasks.py). Three steps:

1. ``analysis_inputs`` (sync, database): the settings from the call's agent snapshot, the
   transcript as text (redacted again if the organization redacts; secure digits were
   never in it), and where the model is: the agent's OpenAI-compatible LLM and its
   credential, else the platform's ``OPENAI_API_KEY`` with ``ANALYSIS_MODEL``.
2. ``analysis_run`` (async, no database): the requests, through the official ``openai``
   SDK. Structured data uses structured outputs (``response_format`` ``json_schema``)
   and is validated against the tenant's schema with ``jsonschema``; output that does
   not validate is asked for again, with the validation error, up to ``max_attempts``
   times, then recorded as failed with the reason. The verdict is structured output
   too: ``{"success": bool, "reason"}`` or ``{"score": 0..score_max, "reason"}``. A
   tenant's base URL is reached only through the outbound guard.
3. ``call_analysis_store`` (sync, database): the result, the status, the reason of any
   part that failed, and the tokens used.

Provider errors worth retrying (connection, timeout, 429, 5xx) raise
:class:`AnalysisRetryable`; the task retries with backoff and, when it gives up, stores
the failure. Other errors (401, 404, 400) fail the part at once with the provider's reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import openai
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from jsonschema import ValidationError as SchemaValidationError
from jsonschema.validators import validator_for

from agents.models import Credential, CredentialProvider
from calls.models import AnalysisStatus, Call, TranscriptEntry
from calls.redaction import redact
from voice.config import AnalysisConfig, SuccessEvaluation, from_plain
from voice.netguard import guarded_httpx2_transport, refusal_in
from voice.providers.openai_llm import token_limit_field
from voice.tls import httpx2_tls

MAX_TRANSCRIPT_CHARS = 60_000
REQUEST_TIMEOUT_S = 60.0
STRUCTURED_NAME = "structured_data"


class AnalysisRetryable(Exception):
    """The provider failed in a way worth retrying later (connection, timeout, 429, 5xx)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    model: str
    api_key: str
    base_url: str
    tenant_url: bool  # a tenant's base URL: through the outbound guard


@dataclass(frozen=True, slots=True)
class AnalysisInputs:
    config: AnalysisConfig
    transcript: str
    endpoint: Endpoint | None  # None: no model available (a clear failure, not a crash)


@dataclass(slots=True)
class AnalysisResult:
    summary: str | None = None
    structured_data: Any = None
    success: bool | int | None = None
    success_reason: str = ""
    errors: dict[str, str] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "structured_data": self.structured_data,
            "success": self.success,
            "success_reason": self.success_reason,
        }


def analysis_config(call: Call) -> AnalysisConfig:
    raw = dict(call.agent_snapshot.get("analysis") or {})
    if "success_evaluation" in raw:
        raw["success_evaluation"] = SuccessEvaluation(raw["success_evaluation"])
    return from_plain(AnalysisConfig, raw)


def analysis_wanted(config: AnalysisConfig) -> bool:
    return bool(
        config.summary_prompt.strip()
        or config.structured_data_schema
        or config.success_rubric.strip()
    )


def _transcript_text(call: Call) -> str:
    entries = TranscriptEntry.objects.for_org(call.organization).filter(call=call)
    lines = []
    for entry in entries:
        who = "Caller" if entry.role == "user" else "Agent"
        cut = " [interrupted]" if entry.interrupted else ""
        lines.append(f"{who}: {entry.text}{cut}")
    for tool in call.tool_invocations.all():  # secure tools carry placeholders only
        lines.append(f"[tool {tool.name} (turn {tool.turn_index}): {tool.result[:500]}]")
    text = "\n".join(lines)
    if call.organization.redact_transcripts:
        text = redact(text)
    return text[-MAX_TRANSCRIPT_CHARS:]


def _endpoint(call: Call, config: AnalysisConfig) -> Endpoint | None:
    snap = call.agent_snapshot
    llm = snap.get("llm") or {}
    api_key, base_url, tenant_url = settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL, False
    model = config.model or settings.ANALYSIS_MODEL
    if llm.get("provider") == "openai":
        model = config.model or llm.get("model") or settings.ANALYSIS_MODEL
        credential_id = snap.get("llm_credential_id")
        credential = (
            Credential.objects.for_org(call.organization)
            .filter(pk=credential_id, provider=CredentialProvider.OPENAI)
            .first()
            if credential_id is not None
            else None
        )
        if credential is not None:
            api_key = credential.api_key or api_key
            if credential.base_url:
                base_url, tenant_url = credential.base_url, True
    if not api_key and not tenant_url:
        return None
    return Endpoint(model=model, api_key=api_key, base_url=base_url, tenant_url=tenant_url)


def analysis_inputs(*, call: Call) -> AnalysisInputs:
    config = analysis_config(call)
    return AnalysisInputs(config, _transcript_text(call), _endpoint(call, config))


# -- the requests (async, no database) ---------------------------------------------------


def _client(endpoint: Endpoint) -> openai.AsyncOpenAI:
    transport = (
        guarded_httpx2_transport(settings.OUTBOUND_ALLOWED_NETWORKS, verify=httpx2_tls())
        if endpoint.tenant_url
        else None
    )
    return openai.AsyncOpenAI(
        base_url=endpoint.base_url,
        api_key=endpoint.api_key or "none",
        max_retries=1,  # then the task's own retries, with a longer backoff
        timeout=REQUEST_TIMEOUT_S,
        http_client=openai.DefaultAsyncHttpxClient(
            verify=httpx2_tls(), transport=transport, trust_env=transport is None
        ),
    )


class _PartFailed(Exception):
    """One part failed for good, with a reason worth showing the tenant."""


async def _complete(
    client: openai.AsyncOpenAI,
    endpoint: Endpoint,
    result: AnalysisResult,
    messages: list[dict[str, Any]],
    response_format: dict[str, Any] | None = None,
) -> str:
    request: dict[str, Any] = {
        "model": endpoint.model,
        "messages": messages,
        "temperature": 0,
        token_limit_field(endpoint.base_url): 1024,
    }
    if response_format is not None:
        request["response_format"] = response_format
    try:
        completion = await client.chat.completions.create(**request)
    except (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError) as exc:
        refusal = refusal_in(exc)
        if refusal is not None:
            raise _PartFailed(f"base URL refused: {refusal}") from exc
        raise AnalysisRetryable(f"{type(exc).__name__}: {exc}") from exc
    except openai.APIStatusError as exc:
        raise _PartFailed(f"the model's server answered HTTP {exc.status_code}") from exc
    except openai.APIError as exc:
        raise _PartFailed(f"request failed: {type(exc).__name__}") from exc
    if completion.usage is not None:
        result.prompt_tokens += completion.usage.prompt_tokens
        result.completion_tokens += completion.usage.completion_tokens
    if not completion.choices:
        raise _PartFailed("the model returned no answer")
    message = completion.choices[0].message
    if getattr(message, "refusal", None):
        raise _PartFailed(f"the model refused: {message.refusal}")
    return message.content or ""


def _json_format(name: str, schema: dict[str, Any], *, strict: bool) -> dict[str, Any]:
    return {
        "type": "json_schema",
        "json_schema": {"name": name, "schema": schema, "strict": strict},
    }


def _validated(text: str, schema: dict[str, Any]) -> Any:
    """The parsed output, or _PartFailed-worthy ValueError naming what is wrong."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg})") from exc
    validator = validator_for(schema, default=validator_for({}))(schema)
    error = next(iter(sorted(validator.iter_errors(data), key=lambda e: list(e.path))), None)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path)
        raise ValueError(f"{error.message}" + (f" at '{where}'" if where else ""))
    return data


async def _structured(
    client: openai.AsyncOpenAI,
    endpoint: Endpoint,
    result: AnalysisResult,
    *,
    system: str,
    transcript: str,
    schema: dict[str, Any],
    name: str,
    strict: bool,
    attempts: int,
) -> Any:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": system},
        {"role": "user", "content": f"Call transcript:\n{transcript}"},
    ]
    reason = ""
    for _ in range(max(1, attempts)):
        text = await _complete(
            client, endpoint, result, messages, _json_format(name, schema, strict=strict)
        )
        try:
            return _validated(text, schema)
        except (ValueError, SchemaValidationError) as exc:
            reason = str(exc)
        messages += [
            {"role": "assistant", "content": text},
            {
                "role": "user",
                "content": f"That does not satisfy the JSON Schema: {reason}. "
                "Answer again with JSON that does.",
            },
        ]
    raise _PartFailed(f"invalid output after {max(1, attempts)} attempts: {reason}")


def _verdict_schema(config: AnalysisConfig) -> dict[str, Any]:
    if config.success_evaluation is SuccessEvaluation.SCORE:
        verdict: dict[str, Any] = {"type": "integer", "minimum": 0, "maximum": config.score_max}
        key = "score"
    else:
        verdict, key = {"type": "boolean"}, "success"
    return {
        "type": "object",
        "properties": {key: verdict, "reason": {"type": "string"}},
        "required": [key, "reason"],
        "additionalProperties": False,
    }


async def analysis_run(inputs: AnalysisInputs) -> AnalysisResult:
    """Every configured part; a part that fails for good is named in ``errors``.
    Raises AnalysisRetryable when the provider should be tried again later."""
    config, result = inputs.config, AnalysisResult()
    endpoint = inputs.endpoint
    if endpoint is None:
        result.errors["model"] = (
            "No OpenAI-compatible model for analysis: give the agent an openai LLM, "
            "or set OPENAI_API_KEY on the platform."
        )
        return result
    transcript = inputs.transcript or "(nothing was said)"
    client = _client(endpoint)
    try:
        if config.summary_prompt.strip():
            try:
                result.summary = (
                    await _complete(
                        client,
                        endpoint,
                        result,
                        [
                            {"role": "system", "content": config.summary_prompt},
                            {"role": "user", "content": f"Call transcript:\n{transcript}"},
                        ],
                    )
                ).strip()
            except _PartFailed as exc:
                result.errors["summary"] = str(exc)
        if config.structured_data_schema:
            try:
                result.structured_data = await _structured(
                    client,
                    endpoint,
                    result,
                    system="Extract data from this phone call's transcript as JSON that "
                    "satisfies the given JSON Schema. Use null where the call does not say.",
                    transcript=transcript,
                    schema=config.structured_data_schema,
                    name=STRUCTURED_NAME,
                    # a tenant's schema need not meet strict mode's rules: validated here
                    strict=False,
                    attempts=config.max_attempts,
                )
            except _PartFailed as exc:
                result.errors["structured_data"] = str(exc)
        if config.success_rubric.strip():
            score = config.success_evaluation is SuccessEvaluation.SCORE
            scale = f"a score from 0 to {config.score_max}" if score else "true or false"
            try:
                verdict = await _structured(
                    client,
                    endpoint,
                    result,
                    system=f"Judge this phone call against the rubric below, as {scale}, "
                    f"with a one-sentence reason.\n\nRubric:\n{config.success_rubric}",
                    transcript=transcript,
                    schema=_verdict_schema(config),
                    name="success_evaluation",
                    strict=True,
                    attempts=config.max_attempts,
                )
                result.success = verdict["score" if score else "success"]
                result.success_reason = str(verdict.get("reason", ""))
            except _PartFailed as exc:
                result.errors["success"] = str(exc)
    finally:
        await client.close()
    return result


# -- storing ---------------------------------------------------------------------------


def call_analysis_store(*, call: Call, result: AnalysisResult) -> Call:
    with transaction.atomic():
        call = Call.objects.for_org(call.organization).select_for_update().get(pk=call.pk)
        call.analysis = result.as_json()
        call.analysis_status = AnalysisStatus.FAILED if result.errors else AnalysisStatus.COMPLETED
        call.analysis_error = "; ".join(f"{part}: {why}" for part, why in result.errors.items())
        call.analysis_prompt_tokens += result.prompt_tokens
        call.analysis_completion_tokens += result.completion_tokens
        call.analyzed_at = timezone.now()
        call.save(
            update_fields=[
                "analysis",
                "analysis_status",
                "analysis_error",
                "analysis_prompt_tokens",
                "analysis_completion_tokens",
                "analyzed_at",
            ]
        )
    return call


def call_analysis_fail(*, call: Call, reason: str) -> Call:
    """Failed for good (the provider kept failing): the reason, nothing else."""
    return call_analysis_store(call=call, result=AnalysisResult(errors={"provider": reason}))


def call_analysis_pending(*, call: Call) -> bool:
    """Mark the call as awaiting analysis if its agent asks for one; False if not."""
    if call.end_reason == "refused" or not analysis_wanted(analysis_config(call)):
        return False
    Call.objects.for_org(call.organization).filter(pk=call.pk).update(
        analysis_status=AnalysisStatus.PENDING
    )
    call.analysis_status = AnalysisStatus.PENDING
    return True
