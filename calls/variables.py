"""Per-call variables: ``{{name}}`` in an agent's prompt, first message, voicemail line and
tool parameters, filled in before the call's configuration reaches the engine.

Syntax: ``{{name}}`` or ``{{name|fallback text}}`` (the fallback is used when the call has
no value for ``name``). Names are 1-64 letters, digits and ``_``, starting with a letter.

Rules, in the order they matter:

- A template that names a variable the call has no value for, and gives no fallback, is
  refused where the call is started (``variables_missing``; the API answers 400 naming
  them). Calls nobody started with values (an inbound call without a lookup webhook)
  render such a placeholder as the empty string: the LLM never sees raw braces.
- Values cannot change the structure of the prompt: each is flattened to one line
  (control characters and line breaks become spaces), braces and angle brackets are
  dropped, and the length is capped. Rendering is a single pass, so a value that looks
  like a placeholder is never expanded.
- Built-ins are always there: ``from_number``, ``to_number``, ``direction``. A value the
  caller supplies for one of them wins.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
# {{ name }} or {{ name | fallback }}; the fallback may not itself contain braces.
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z][A-Za-z0-9_]{0,63})\s*(?:\|([^{}]*))?\}\}")
# What is left of a placeholder that is not one (bad name, stray braces): removed.
_STRAY = re.compile(r"\{\{|\}\}")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f{}<>\u2028\u2029]")
_SPACES = re.compile(r"\s+")

MAX_VARIABLES = 64
MAX_VALUE_CHARS = 500
BUILTINS = ("from_number", "to_number", "direction")


def variable_escape(value: Any) -> str:
    """One line of plain text: no line breaks, braces or angle brackets, capped."""
    text = value if isinstance(value, str) else str(value)
    text = _UNSAFE.sub(" ", text)
    return _SPACES.sub(" ", text).strip()[:MAX_VALUE_CHARS]


def template_names(text: str) -> dict[str, bool]:
    """The variables ``text`` names, each mapped to whether it has a fallback."""
    found: dict[str, bool] = {}
    for match in _PLACEHOLDER.finditer(text):
        name, fallback = match.group(1), match.group(2)
        found[name] = found.get(name, False) or fallback is not None
    return found


def variable_render(text: str, values: Mapping[str, str]) -> str:
    def fill(match: re.Match[str]) -> str:
        name, fallback = match.group(1), match.group(2)
        if name in values:
            return values[name]
        return variable_escape(fallback) if fallback is not None else ""

    return _STRAY.sub("", _PLACEHOLDER.sub(fill, text))


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _render_json(value: Any, values: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return variable_render(value, values)
    if isinstance(value, dict):
        return {k: _render_json(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_json(v, values) for v in value]
    return value


def _snapshot_texts(snapshot: Mapping[str, Any]) -> Iterable[str]:
    yield snapshot.get("system_prompt") or ""
    yield snapshot.get("first_message") or ""
    yield (snapshot.get("voicemail") or {}).get("message") or ""
    for tool in snapshot.get("tools") or ():
        yield tool.get("description") or ""
        yield from _strings(tool.get("parameters") or {})


def snapshot_variables(snapshot: Mapping[str, Any]) -> dict[str, bool]:
    """Every variable an agent snapshot names, mapped to whether it always has a fallback."""
    found: dict[str, bool] = {}
    for text in _snapshot_texts(snapshot):
        for name, has_fallback in template_names(text).items():
            found[name] = found.get(name, True) and has_fallback
    return found


def variables_missing(snapshot: Mapping[str, Any], variables: Mapping[str, Any]) -> list[str]:
    """Names the snapshot needs (no fallback) that neither ``variables`` nor the built-ins
    give, sorted."""
    known = set(variables) | set(BUILTINS)
    return sorted(
        name
        for name, has_fallback in snapshot_variables(snapshot).items()
        if not has_fallback and name not in known
    )


def variables_clean(variables: Mapping[str, Any]) -> dict[str, str]:
    """Validate names and escape values; raises ValueError naming what is wrong."""
    if len(variables) > MAX_VARIABLES:
        raise ValueError(f"At most {MAX_VARIABLES} variables.")
    bad = sorted(str(name) for name in variables if not NAME.fullmatch(str(name)))
    if bad:
        raise ValueError(
            "Invalid variable names (letters, digits and '_', starting with a letter): "
            + ", ".join(bad[:10])
        )
    cleaned: dict[str, str] = {}
    for name, value in variables.items():
        if isinstance(value, dict | list) or value is None:
            raise ValueError(f"Variable {name}: use a string, number or boolean.")
        cleaned[name] = variable_escape(value)
    return cleaned


def snapshot_render(
    snapshot: Mapping[str, Any], variables: Mapping[str, Any], builtins: Mapping[str, str]
) -> dict[str, Any]:
    """A copy of ``snapshot`` with every variable filled in (escaped)."""
    values = {k: variable_escape(v) for k, v in builtins.items()}
    values.update({k: variable_escape(v) for k, v in variables.items()})
    out = dict(snapshot)
    for key in ("system_prompt", "first_message"):
        out[key] = variable_render(out.get(key) or "", values)
    if out.get("voicemail"):
        voicemail = dict(out["voicemail"])
        voicemail["message"] = variable_render(voicemail.get("message") or "", values)
        out["voicemail"] = voicemail
    tools = []
    for tool in out.get("tools") or ():
        tool = dict(tool)
        tool["description"] = variable_render(tool.get("description") or "", values)
        tool["parameters"] = _render_json(tool.get("parameters") or {}, values)
        tools.append(tool)
    out["tools"] = tools
    return out
