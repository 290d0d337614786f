"""The events' JSON bodies. Each is an envelope::

    {"id": "evt_...", "object": "event", "type": "call.ended", "api_version": "2026-12-01",
     "created": 1764670000, "data": {...}}

``data`` reuses the REST API's own serializers (a call in an event reads like the call in
``GET /api/v1/calls/{id}/``); webhooks/serializers.py documents every shape for OpenAPI.
"""

from __future__ import annotations

import hashlib
import statistics
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist

from calls.models import TURN_STAGES, Call, TranscriptEntry, TurnMetric
from calls.serializers import (
    CallDetailSerializer,
    CallOutputSerializer,
    TranscriptEntrySerializer,
)

API_VERSION = "2026-12-01"


def event_public_id(*, organization_id: int, event_type: str, source: str) -> str:
    """The event's id, derived from what happened: the same thing signalled twice (a
    retried finalization, a replayed spool) is the same event, created once."""
    digest = hashlib.sha256(f"{organization_id}:{event_type}:{source}".encode()).hexdigest()
    return "evt_" + digest[:28]


def envelope(
    *, public_id: str, event_type: str, created: datetime, data: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": public_id,
        "object": "event",
        "type": event_type,
        "api_version": API_VERSION,
        "created": int(created.timestamp()),
        "data": data,
    }


def call_data(call: Call) -> dict[str, Any]:
    return dict(CallOutputSerializer(call).data)


def _usage(call: Call) -> dict[str, Any]:
    return {
        "duration_ms": call.duration_ms,
        "stt_seconds": call.stt_seconds,
        "llm_prompt_tokens": call.llm_prompt_tokens,
        "llm_completion_tokens": call.llm_completion_tokens,
        "tts_characters": call.tts_characters,
    }


def _percentile(values: list[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 1)


def metrics_summary(turns: list[TurnMetric]) -> dict[str, Any]:
    """Per assistant turn its derived stages, and p50/p95 of each stage over the call."""
    per_turn = [
        {
            "turn_index": t.turn_index,
            "kind": t.kind,
            "interrupted": t.interrupted,
            **{stage: getattr(t, stage) for stage in TURN_STAGES},
        }
        for t in turns
    ]
    stages = {}
    for stage in TURN_STAGES:
        values = [v for t in turns if (v := getattr(t, stage)) is not None]
        stages[stage] = {"p50": _percentile(values, 50), "p95": _percentile(values, 95)}
    return {
        "turns": len(turns),
        "interrupted": sum(1 for t in turns if t.interrupted),
        "stages": stages,
        "per_turn": per_turn,
    }


def call_started_data(call: Call) -> dict[str, Any]:
    return {"call": call_data(call)}


def call_ended_data(call: Call) -> dict[str, Any]:
    transcript = TranscriptEntry.objects.for_org(call.organization).filter(call=call)
    turns = list(TurnMetric.objects.for_org(call.organization).filter(call=call))
    return {
        "call": call_data(call),
        "usage": _usage(call),
        "transcript": TranscriptEntrySerializer(transcript, many=True).data,
        "metrics": metrics_summary(turns),
    }


def _plain(value: Any) -> Any:
    """An analysis or recording as JSON: a dict as is, a model's public fields otherwise."""
    if value is None or isinstance(value, dict | list | str | int | float | bool):
        return value
    fields = getattr(getattr(value, "_meta", None), "concrete_fields", None)
    if fields is None:
        return str(value)
    skip = {"id", "organization", "call"}
    return {
        f.name: (v.isoformat() if isinstance(v := getattr(value, f.attname), datetime) else v)
        for f in fields
        if f.name not in skip
    }


def _as_in_call_detail(call: Call, name: str) -> Any:
    """``name`` as ``GET /api/v1/calls/{id}/`` shows it, when the call detail has it (the
    analysis and the recording are defined by their own apps), else the call's attribute."""
    field = CallDetailSerializer().fields.get(name)
    if field is None:
        return _plain(getattr(call, name, None))
    try:
        attribute = field.get_attribute(call)
    except (AttributeError, ObjectDoesNotExist):
        return None
    return None if attribute is None else field.to_representation(attribute)


def call_analyzed_data(call: Call, analysis: Any = None) -> dict[str, Any]:
    if analysis is None:
        analysis = _as_in_call_detail(call, "analysis")
    return {"call": call_data(call), "analysis": _plain(analysis)}


# The recording's details stored on the call (calls/recordings.py); its storage name
# stays private: the API route below serves it to whoever holds a key.
_RECORDING_FIELDS = ("content_type", "channels", "duration_ms", "bytes")


def call_recording_ready_data(call: Call, recording: Any = None) -> dict[str, Any]:
    if recording is None:
        recording = _as_in_call_detail(call, "recording") or {
            name: getattr(call, f"recording_{name}")
            for name in _RECORDING_FIELDS
            if hasattr(call, f"recording_{name}")
        }
    details = _plain(recording) if recording is not None else {}
    if not isinstance(details, dict):
        details = {"detail": details}
    url = f"{settings.PUBLIC_BASE_URL.rstrip('/')}/api/v1/calls/{call.pk}/recording/"
    return {"call": call_data(call), "recording": {**details, "url": url}}


def transcript_turn_data(call: Call, entry: TranscriptEntry) -> dict[str, Any]:
    return {
        "call": {"id": call.pk, "agent": call.agent_id, "status": call.status},
        "turn": dict(TranscriptEntrySerializer(entry).data),
    }


def usage_threshold_data(
    *,
    kind: str,
    percent: int,
    used_minutes: float,
    limit_minutes: int,
    plan: str,
    period_start: datetime,
    period_end: datetime,
) -> dict[str, Any]:
    """``billing.usage_threshold``: the organization's minutes this period reached
    ``percent`` of what its plan includes (``kind`` ``included``) or of its cap (``cap``)."""
    return {
        "kind": kind,
        "percent": percent,
        "used_minutes": round(used_minutes, 2),
        "limit_minutes": limit_minutes,
        "plan": plan,
        "period_start": period_start.isoformat(),
        "period_end": period_end.isoformat(),
    }
