"""Formatting for the calls pages."""

from __future__ import annotations

import json
from typing import Any

from django import template

register = template.Library()


@register.filter
def duration_s(milliseconds: float | int | None) -> str:
    """A call's length as m:ss (h:mm:ss past an hour)."""
    if milliseconds is None:
        return "—"
    seconds = round(float(milliseconds) / 1000)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@register.filter
def offset(milliseconds: float | int | None) -> str:
    """A moment in the call, m:ss.s from its start."""
    if milliseconds is None:
        return "—"
    tenths = round(float(milliseconds) / 100)
    minutes, rest = divmod(tenths, 600)
    return f"{minutes}:{rest // 10:02d}.{rest % 10}"


@register.filter
def ms(value: float | int | None) -> str:
    return "—" if value is None else f"{float(value):,.0f} ms"


@register.filter
def attr(obj: Any, name: str) -> Any:
    """``obj.<name>`` or ``obj[name]``: for tables whose columns are a list of names."""
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


@register.filter
def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


@register.simple_tag(takes_context=True)
def recording_link(context: dict[str, Any], call: Any) -> Any:
    """A short-lived link to the call's recording for the page's player, or None."""
    from calls.recordings import recording_link as link

    return link(call=call, request=context["request"])
