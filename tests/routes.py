"""The API's routes, discovered from the URL conf (not hand-listed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.urls import URLPattern, URLResolver, get_resolver

CRUD_ACTIONS = {"list", "create", "retrieve", "update", "partial_update", "destroy"}


@dataclass(frozen=True)
class Route:
    name: str
    path: str  # a readable version of the regex, for test ids
    viewset: Any
    actions: dict[str, str]  # http method -> action
    detail: bool

    @property
    def aggregate(self) -> bool:
        """A read-only computed view (``@action(detail=False)``), not a list or an object of
        the model (a detail ``@action``, like a call's recording, is about one object)."""
        return not self.detail and not set(self.actions.values()) & CRUD_ACTIONS

    def __repr__(self) -> str:
        return self.path


def _walk(patterns: list[Any], prefix: str = "") -> list[tuple[str, URLPattern]]:
    found = []
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            found += _walk(pattern.url_patterns, route)
        else:
            found.append((route, pattern))
    return found


def api_routes() -> list[Route]:
    routes = []
    for path, pattern in _walk(get_resolver().url_patterns):
        viewset = getattr(pattern.callback, "cls", None)
        actions = getattr(pattern.callback, "actions", None)
        if not path.startswith("api/v1/") or viewset is None or not actions:
            continue
        clean = path.replace("^", "").replace("$", "").replace("(?P<pk>[0-9]+)", "{pk}")
        routes.append(
            Route(
                name=pattern.name or "",
                path="/" + clean,
                viewset=viewset,
                actions=dict(actions),
                detail="(?P<pk>" in path,
            )
        )
    return routes
