"""Template helpers for the dashboard layout and forms."""

from __future__ import annotations

from django import template
from django.forms import BoundField
from django.http import HttpRequest
from django.utils.html import format_html

register = template.Library()


@register.simple_tag(takes_context=True)
def nav_link(context: template.Context, href: str, label: str) -> str:
    """A nav link marked ``aria-current="page"`` on its own section (``/`` only exactly)."""
    request: HttpRequest | None = context.get("request")
    path = request.path if request is not None else ""
    current = path == href if href == "/" else path.startswith(href)
    if current:
        return format_html('<a href="{}" aria-current="page">{}</a>', href, label)
    return format_html('<a href="{}">{}</a>', href, label)


@register.simple_tag
def field_widget(field: BoundField) -> str:
    """The field's widget, pointing ``aria-describedby`` at its hint and error."""
    described = []
    if field.help_text:
        described.append(f"{field.auto_id}_helptext")
    if field.errors:
        described.append(f"{field.auto_id}_error")
    attrs: dict[str, str | bool] = {}
    if described:
        attrs["aria-describedby"] = " ".join(described)
    if field.errors:
        attrs["aria-invalid"] = "true"
    return str(field.as_widget(attrs=attrs))
