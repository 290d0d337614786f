"""Dashboard forms over the REST API's input serializers.

A page form validates nothing itself. It turns the POSTed fields into the JSON shape the
API takes (nested objects such as ``llm``, lists, booleans, ids), hands that to the API's
own input serializer and service, and maps their errors -- nested like the API's
``error.fields`` -- back onto the fields. So the page and the API accept the same input
and refuse it in the same words.

Field names in the HTML are the API's paths (``llm.temperature``); widgets, bounds and
choices are read from the serializer fields, so a new provider or a changed default
reaches the page without touching it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import QueryDict
from rest_framework import serializers
from rest_framework.fields import empty

from glassbox.api.strict import EXPECTED

T = TypeVar("T")

# Widgets. Picked from the serializer field when a FormField does not name one.
TEXT = "text"
TEXTAREA = "textarea"
NUMBER = "number"
SELECT = "select"
CHECKBOX = "checkbox"
CHECKBOXES = "checkboxes"  # a list of ids
LINES = "lines"  # a list of strings, one per line
JSON = "json"
SECRET = "secret"  # write-only: blank keeps the stored value

# A checkbox also sends a hidden "false" under its name, placed before it: a ticked box
# then arrives as ["false", "true"] (QueryDict.get takes the last) and an unticked one as
# "false", while a field the page did not render arrives not at all (and is left alone).
# Checkbox lists send a hidden "" for the same reason.
SECRET_REMOVE_SUFFIX = ".remove"


@dataclass(slots=True)
class FormField:
    """How one API input field appears on a page. Everything else comes from the
    serializer field at ``path``."""

    path: str
    label: str = ""
    hint: str = ""
    widget: str = ""
    rows: int = 0
    # Replaces the serializer's own choices (e.g. credentials of one provider only).
    choices: Sequence[tuple[str, str]] | None = None
    # Secrets: offer a "remove" box when one is stored.
    removable: bool = False
    # Selects: what the empty choice reads ("None" for optional ones).
    blank_label: str = ""


@dataclass(slots=True)
class BoundField:
    """What a template needs to draw one field."""

    name: str
    id: str
    label: str
    hint: str
    widget: str
    value: str
    checked: bool
    choices: list[tuple[str, str, bool]]
    errors: list[str]
    min: Any = None
    max: Any = None
    step: str = ""
    rows: int = 0
    maxlength: int | None = None
    has_value: bool = False  # secrets: one is stored
    remove_name: str = ""
    allow_blank_choice: bool = False
    blank_label: str = ""

    @property
    def hint_id(self) -> str:
        return f"{self.id}-hint"

    @property
    def error_id(self) -> str:
        return f"{self.id}-error"

    @property
    def describedby(self) -> str:
        ids = [self.hint_id] if self.hint else []
        if self.errors:
            ids.append(self.error_id)
        return " ".join(ids)


@dataclass(slots=True)
class ErrorLink:
    href: str
    message: str


def html_id(path: str) -> str:
    return "id_" + path.replace(".", "-")


def flatten_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """The API's nested ``fields`` errors as ``{"llm.temperature": [messages]}``.

    List items (``{"0": [...]}`` under a list field) stay on the list's path, numbered.
    Errors that name no field (``non_field_errors``) land on their parent's path.
    """
    out: dict[str, list[str]] = {}

    def add(path: str, message: str) -> None:
        out.setdefault(path, []).append(message)

    def walk(node: Any, path: str) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                key = str(key)
                if key.isdigit() and isinstance(value, Mapping):  # an item with fields
                    walk(value, f"{path}.{key}")
                elif key.isdigit():
                    for message in _messages(value):
                        add(path, f"Item {int(key) + 1}: {message}")
                elif key in ("non_field_errors", "__all__"):
                    walk(value, path)
                else:
                    walk(value, f"{path}.{key}" if path else key)
        elif isinstance(node, list | tuple):
            for item in node:
                if isinstance(item, Mapping):
                    walk(item, path)
                else:
                    add(path, str(item))
        else:
            add(path, str(node))

    walk(detail, prefix)
    return out


def _messages(node: Any) -> list[str]:
    if isinstance(node, Mapping):
        return [m for value in node.values() for m in _messages(value)]
    if isinstance(node, list | tuple):
        return [m for item in node for m in _messages(item)]
    return [str(node)]


def django_error_detail(exc: DjangoValidationError) -> dict[str, Any]:
    # As glassbox.api.errors.exception_handler turns a service's error into the API's.
    return exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}


def _lookup(data: Any, path: str) -> Any:
    node = data
    for part in path.split("."):
        if isinstance(node, list | tuple) and part.isdigit():
            if int(part) >= len(node):
                return empty
            node = node[int(part)]
        elif isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            return empty
    return node


def _put(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def serializer_field(serializer: serializers.Serializer, path: str) -> serializers.Field:
    """The field at ``path``; a number steps into a list's item (``fallback.llm.0.model``)."""
    node: Any = serializer
    for part in path.split("."):
        node = node.child if part.isdigit() else node.fields[part]
    return node


def _field_default(fld: serializers.Field) -> Any:
    default = fld.default
    if default is empty:
        return empty
    return default() if callable(default) else default


def _widget(fld: serializers.Field) -> str:
    if isinstance(fld, serializers.ManyRelatedField):
        return CHECKBOXES
    if isinstance(fld, serializers.RelatedField | serializers.ChoiceField):
        return SELECT
    if isinstance(fld, serializers.BooleanField):
        return CHECKBOX
    if isinstance(fld, serializers.IntegerField | serializers.FloatField):
        return NUMBER
    if isinstance(fld, serializers.ListField):
        return LINES
    if isinstance(fld, serializers.JSONField):
        return JSON
    if isinstance(fld, serializers.URLField):
        return TEXT
    if isinstance(fld, serializers.CharField) and fld.write_only:
        return SECRET
    if isinstance(fld, serializers.CharField) and (fld.max_length or 0) > 500:
        return TEXTAREA
    return TEXT


def _display(widget: str, value: Any) -> str:
    if value is empty or value is None:
        return ""
    if widget == LINES:
        return "\n".join(str(v) for v in value)
    if widget == JSON:
        return json.dumps(value, indent=2) if value else ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _reject_constant(name: str) -> None:
    # As the API's JSON parser: NaN/Infinity are not JSON.
    raise ValueError(name)


def _json_number(raw: str, *, integer: bool) -> Any:
    """A number input's text as the JSON number a client would send; text that is no
    (finite) number stays text, for the API's type check to name."""
    text = raw.strip()
    if integer:
        return int(text) if re.fullmatch(r"[+-]?\d{1,18}", text) else raw
    try:
        value = float(text)
    except ValueError:
        return raw
    return value if math.isfinite(value) else raw


class PageForm:
    """One page's form: ``data`` is the POST (bound) or None (showing ``initial``).

    ``instance`` makes it an update, validated like the API's PATCH (partial, merged into
    the stored object by the serializer itself).
    """

    def __init__(
        self,
        *,
        serializer_class: type[serializers.Serializer],
        fields: Iterable[FormField],
        context: Mapping[str, Any],
        instance: Any = None,
        initial: Mapping[str, Any] | None = None,
        data: QueryDict | None = None,
        stored_secrets: Iterable[str] = (),
    ) -> None:
        self.serializer_class = serializer_class
        self.context = dict(context)
        self.instance = instance
        self.initial = initial or {}
        self.data = data
        self.stored_secrets = set(stored_secrets)
        self._schema = serializer_class(context=self.context)
        # Copies: a view may tailor a field (its choices) for one request and organization.
        self.fields = {f.path: replace(f) for f in fields}
        self.errors: dict[str, list[str]] = {}
        self.validated_data: dict[str, Any] | None = None

    # --- POST -> the API's input ----------------------------------------------------------

    def api_data(self) -> dict[str, Any]:
        """The POST in the shape of the API's JSON body. Fields the page did not send are
        left out, as a PATCH would leave them out."""
        assert self.data is not None
        out: dict[str, Any] = {}
        for path, spec in self.fields.items():
            fld = serializer_field(self._schema, path)
            widget = spec.widget or _widget(fld)
            if widget == SECRET and self.data.get(path + SECRET_REMOVE_SUFFIX) == "true":
                _put(out, path, {} if isinstance(fld, serializers.DictField) else "")
                continue
            if path not in self.data:
                continue
            raw = self.data.get(path, "")
            if widget == CHECKBOXES:
                _put(out, path, [v for v in self.data.getlist(path) if v != ""])
            elif widget == LINES:
                _put(out, path, [line.strip() for line in raw.splitlines() if line.strip()])
            elif widget == JSON:
                if not raw.strip():
                    _put(out, path, {})
                    continue
                try:
                    _put(out, path, json.loads(raw, parse_constant=_reject_constant))
                except (ValueError, RecursionError):
                    # The serializer field's own words for text that is not JSON.
                    self.errors.setdefault(path, []).append(str(fld.error_messages["invalid"]))
            elif widget == NUMBER:
                # what a browser sends is text; the API's JSON has numbers
                integer = isinstance(fld, serializers.IntegerField)
                value = _json_number(raw, integer=integer)
                if isinstance(value, str):  # in the API's words for a JSON body like it
                    self.errors.setdefault(path, []).append(
                        EXPECTED["integer" if integer else "number"]
                    )
                    continue
                _put(out, path, value)
            elif widget == SECRET:
                if raw != "":  # blank keeps the stored secret
                    _put(out, path, raw)
            elif widget == SELECT and raw == "" and fld.allow_null:
                _put(out, path, None)
            else:
                _put(out, path, raw)
        return out

    def is_valid(self) -> bool:
        self.errors = {}
        data = self.api_data()
        serializer = self.serializer_class(
            instance=self.instance,
            data=data,
            partial=self.instance is not None,
            context=self.context,
        )
        if not serializer.is_valid():
            self._add_errors(serializer.errors)
        if self.errors:
            return False
        self.validated_data = dict(serializer.validated_data)
        return True

    def save(self, service: Callable[[dict[str, Any]], T]) -> T | None:
        """Validate, then run ``service(validated_data)``; a rule the service enforces
        (uniqueness, ownership) comes back as a field error, as in the API."""
        if not self.is_valid():
            return None
        assert self.validated_data is not None
        try:
            return service(self.validated_data)
        except DjangoValidationError as exc:
            self._add_errors(django_error_detail(exc))
            return None

    def _add_errors(self, detail: Any) -> None:
        for path, messages in flatten_errors(detail).items():
            self.errors.setdefault(self.error_path(path), []).extend(messages)

    def error_path(self, path: str) -> str:
        """Where an error of the API's input at ``path`` shows on this page."""
        return path

    # --- rendering -------------------------------------------------------------------------

    def value(self, path: str) -> Any:
        """The field's current value in the API's terms (the POST wins over initial)."""
        if self.data is not None and path in self.data:
            return self.data.get(path)
        found = _lookup(self.initial, path)
        if found is empty:
            found = _field_default(serializer_field(self._schema, path))
        return None if found is empty else found

    def __getitem__(self, path: str) -> BoundField:
        spec = self.fields[path]
        fld = serializer_field(self._schema, path)
        widget = spec.widget or _widget(fld)
        bound = BoundField(
            name=path,
            id=html_id(path),
            label=spec.label or str(fld.label or path.rsplit(".", 1)[-1].replace("_", " ")),
            hint=spec.hint or str(fld.help_text or ""),
            widget=widget,
            value="",
            checked=False,
            choices=[],
            errors=self._errors_for(path),
            rows=spec.rows,
        )
        posted = self.data is not None and path in self.data
        if widget == CHECKBOXES:
            selected = (
                set(self.data.getlist(path))
                if posted and self.data is not None
                else {str(v) for v in (self.value(path) or [])}
            )
            bound.choices = [(v, label, v in selected) for v, label in self._choices(spec, fld)]
        elif widget == SELECT:
            current = self.value(path)
            current = "" if current in (None, empty) else str(current)
            optional = bool(getattr(fld, "allow_null", False)) or (
                isinstance(fld, serializers.ChoiceField) and fld.allow_blank
            )
            # A required choice not made yet shows as such, not as its first option.
            bound.allow_blank_choice = optional or current == "" or bool(spec.blank_label)
            bound.blank_label = spec.blank_label or ("None" if optional else "Choose one")
            bound.choices = [(v, label, v == current) for v, label in self._choices(spec, fld)]
            bound.value = current
        elif widget == CHECKBOX:
            current = self.value(path)
            bound.checked = current in (True, "true", "on") if posted else bool(current)
        elif widget == SECRET:
            bound.has_value = path in self.stored_secrets
            if spec.removable and bound.has_value:
                bound.remove_name = path + SECRET_REMOVE_SUFFIX
        else:
            bound.value = self.value(path) if posted else _display(widget, self.value(path))
            if widget == NUMBER:
                bound.min = getattr(fld, "min_value", None)
                bound.max = getattr(fld, "max_value", None)
                bound.step = "1" if isinstance(fld, serializers.IntegerField) else "any"
            if widget in (TEXT, TEXTAREA):
                bound.maxlength = getattr(fld, "max_length", None)
        if widget in (TEXTAREA, LINES, JSON) and not bound.rows:
            bound.rows = 8 if widget == JSON else 4
        return bound

    def _choices(self, spec: FormField, fld: serializers.Field) -> list[tuple[str, str]]:
        if spec.choices is not None:
            return [(str(v), str(label)) for v, label in spec.choices]
        if isinstance(fld, serializers.ManyRelatedField):
            fld = fld.child_relation
        if isinstance(fld, serializers.RelatedField):
            queryset = fld.get_queryset()
            assert queryset is not None  # only read-only relations have none; forms show none
            return [(str(obj.pk), str(obj)) for obj in queryset]
        assert isinstance(fld, serializers.ChoiceField)
        return [(str(v), str(label)) for v, label in fld.choices.items()]

    def _errors_for(self, path: str) -> list[str]:
        return self.errors.get(path, [])

    @property
    def error_summary(self) -> list[ErrorLink]:
        """Every error, each linking to its field; errors of no shown field link nowhere."""
        links: list[ErrorLink] = []
        for path, messages in self.errors.items():
            if path in self.fields:
                label = self[path].label
                href = "#" + html_id(path)
                links.extend(ErrorLink(href, f"{label}: {m}") for m in messages)
            else:
                links.extend(ErrorLink("", m) for m in messages)
        return links

    def bound_fields(self, paths: Iterable[str]) -> list[BoundField]:
        return [self[p] for p in paths if p in self.fields]


@dataclass(slots=True)
class Section:
    """A fieldset on a page."""

    title: str
    paths: list[str] = field(default_factory=list)
    key: str = ""
