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
    def _is_write(self) -> bool:
        return self.method in ("POST", "PATCH", "PUT") and isinstance(self.view, TenantViewSet)

    def get_request_serializer(self) -> Any:
        view = self.view
        if self._is_write() and view.input_serializer_class is not None:
            return view.input_serializer_class
        return super().get_request_serializer()

    def get_response_serializers(self) -> Any:
        if self._is_write():
            return self.view.output_serializer_class
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
            for code in codes:
                responses.setdefault(
                    code,
                    {
                        "description": ERROR_DESCRIPTIONS[code],
                        "content": {"application/json": {"schema": ref}},
                    },
                )
    return result
