"""OpenAPI generation: separate input/output serializers and the shared error responses."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema

from glassbox.api.views import TenantViewSet

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "example": "not_found"},
                "message": {"type": "string", "example": "Not found."},
                "fields": {
                    "type": "object",
                    "additionalProperties": {},
                    "description": "Validation errors by field, mirroring the input's shape.",
                },
            },
        }
    },
}

ERROR_DESCRIPTIONS = {
    "400": "Invalid input or malformed request body.",
    "401": "Missing, malformed, unknown or revoked API key.",
    "403": "Not allowed.",
    "404": "Not found (also for another organization's objects).",
    "409": "Still in use by other objects.",
    "413": "Request body too large.",
    "415": "Unsupported media type (send application/json).",
    "429": "Rate limit exceeded.",
}


class TenantAutoSchema(AutoSchema):
    def _write_view(self) -> TenantViewSet | None:
        """The view, when this operation is a write to one of our tenant viewsets."""
        view = self.view
        if self.method in ("POST", "PATCH", "PUT") and isinstance(view, TenantViewSet):
            return view
        return None

    def get_request_serializer(self) -> Any:
        view = self._write_view()
        if view is not None and view.input_serializer_class is not None:
            return view.input_serializer_class
        return super().get_request_serializer()

    def get_response_serializers(self) -> Any:
        view = self._write_view()
        if view is not None:
            return view.output_serializer_class
        return super().get_response_serializers()


def add_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> Any:
    """Document the one error shape on every API operation (postprocessing hook)."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    ref = {"$ref": "#/components/schemas/Error"}
    for path, operations in result.get("paths", {}).items():
        if not path.startswith("/api/v1/"):
            continue
        for method, operation in operations.items():
            codes = ["400", "401", "403", "404", "429"]
            if method in ("post", "patch", "put"):
                codes += ["413", "415"]
            if method == "delete":
                codes.append("409")
            responses = operation.setdefault("responses", {})
            # A view may declare an error status of its own (extend_schema, e.g. a 409
            # when a call is not running): it gets the one error shape too.
            codes += [c for c in responses if c in ERROR_DESCRIPTIONS and c not in codes]
            for code in codes:
                if code in responses:
                    responses[code].setdefault("content", {"application/json": {"schema": ref}})
                    continue
                responses.setdefault(
                    code,
                    {
                        "description": ERROR_DESCRIPTIONS[code],
                        "content": {"application/json": {"schema": ref}},
                    },
                )
    return result


def _without_required(schema: Any, components: dict[str, Any], seen: set[str]) -> Any:
    """A copy of ``schema`` in which nested objects require nothing (PATCH merges them)."""
    if isinstance(schema, list):
        return [_without_required(item, components, seen) for item in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        name = ref.rsplit("/", 1)[1]
        patched = name if name.startswith("Patched") else f"Patched{name}"
        if patched not in components and patched not in seen and name in components:
            seen.add(patched)
            components[patched] = _without_required(components[name], components, seen)
        return {**schema, "$ref": f"#/components/schemas/{patched}"}
    return {
        key: _without_required(value, components, seen)
        for key, value in schema.items()
        if key != "required"
    }


def patch_merges_nested_objects(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> Any:
    """PATCH merges nested objects (``{"llm": {"temperature": 0.2}}`` keeps the provider),
    so in ``Patched*`` request bodies nested objects have no required fields either.
    drf-spectacular reuses the full nested component there (postprocessing hook)."""
    components = result.get("components", {}).get("schemas", {})
    for name in [n for n in components if n.startswith("Patched")]:
        component = components[name]
        for prop, schema in list(component.get("properties", {}).items()):
            component["properties"][prop] = _without_required(schema, components, set())
    return result


def ids_are_positive(result: dict[str, Any], generator: Any, request: Any, public: bool) -> Any:
    """Path ids are positive 64-bit integers (postprocessing hook): anything else is a 404."""
    from glassbox.api.fields import MAX_ID

    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and parameter.get("name") == "id":
                    parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
    return result
