"""One JSON error shape for every 4xx (and the rare 5xx) under /api/:

    {"error": {"code": "not_found", "message": "Not found.", "fields": {...}}}

``fields`` is present only for validation errors and mirrors the input's structure.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import ProtectedError, RestrictedError
from django.http import Http404, HttpRequest, JsonResponse
from django.views import csrf, defaults
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from glassbox.api.exceptions import Conflict, PayloadTooLarge


def error_body(code: str, message: str, fields: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if fields is not None:
        error["fields"] = fields
    return {"error": error}


def _flatten_message(detail: Any) -> str:
    if isinstance(detail, list):
        return " ".join(_flatten_message(d) for d in detail)
    if isinstance(detail, dict):
        return " ".join(_flatten_message(d) for d in detail.values())
    return str(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    elif isinstance(exc, ProtectedError | RestrictedError):
        exc = Conflict("This object is still in use by other objects; detach them first.")
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoValidationError):
        # Services raise Django's ValidationError for rules that need the database.
        messages = (
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
        exc = exceptions.ValidationError(messages)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    assert isinstance(exc, exceptions.APIException)
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail
        if isinstance(detail, dict):
            body = error_body("invalid", "Invalid input.", detail)
        else:
            body = error_body("invalid", _flatten_message(detail) or "Invalid input.")
    else:
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else exc.default_code
        body = error_body(str(code), _flatten_message(exc.detail))
    response.data = body
    return response


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def handler404(request: HttpRequest, exception: Exception | None = None) -> Any:
    if _wants_json(request):
        return JsonResponse(error_body("not_found", "Not found."), status=404)
    return defaults.page_not_found(request, exception)


@csrf_exempt  # a 404 for any method; CSRF would otherwise answer unsafe methods first
def api_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    return JsonResponse(error_body("not_found", "Not found."), status=404)


def csrf_failure(request: HttpRequest, reason: str = "") -> Any:
    if _wants_json(request):
        return JsonResponse(error_body("csrf_failed", "CSRF verification failed."), status=403)
    return csrf.csrf_failure(request, reason)


def handler500(request: HttpRequest) -> Any:
    if _wants_json(request):
        return JsonResponse(error_body("server_error", "Internal server error."), status=500)
    return defaults.server_error(request)


def handler400(request: HttpRequest, exception: Exception) -> Any:
    if _wants_json(request):
        return JsonResponse(error_body("bad_request", "Bad request."), status=400)
    return defaults.bad_request(request, exception)


def handler403(request: HttpRequest, exception: Exception) -> Any:
    if _wants_json(request):
        return JsonResponse(error_body("permission_denied", "Permission denied."), status=403)
    return defaults.permission_denied(request, exception)
