"""Base class for tenant-scoped API resources.

Rows always come from ``model.objects.for_org(<the credential's organization>)``; the
request body and URL never name the organization. Subclasses cannot override
``get_queryset`` (checked when the class is defined): they refine the already scoped
queryset in ``safely_get_queryset`` and fetch single objects via ``access_object``, which
is expected to call an ``access_<entity>(organization, id)`` selector so "missing" and
"another tenant's" are the same 404.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from django.db import models
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.exceptions import NotAuthenticated
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from glassbox.api.strict import type_errors
from tenants.models import ApiKey, Organization
from tenants.permissions import ApiKeyScopePermission

if TYPE_CHECKING:
    from tenants.scoping import TenantModel


class TenantViewSet(viewsets.GenericViewSet):
    model: ClassVar[type[TenantModel]]
    input_serializer_class: ClassVar[type[serializers.Serializer] | None] = None
    output_serializer_class: ClassVar[type[serializers.Serializer]]
    # Integer ids only: anything else is a plain 404 from the URL resolver.
    lookup_value_regex = r"[0-9]+"
    # Every tenant resource honours the key's scope (read-only keys can't write).
    permission_classes = [IsAuthenticated, ApiKeyScopePermission]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for forbidden in ("get_queryset", "get_object"):
            if forbidden in cls.__dict__:
                raise TypeError(
                    f"{cls.__name__} overrides {forbidden}(), which would bypass tenant "
                    f"scoping. Override safely_get_queryset(queryset) to refine the scoped "
                    f"queryset, or access_object(organization, pk) to fetch one object."
                )

    @property
    def organization(self) -> Organization:
        auth = getattr(self.request, "auth", None)
        if not isinstance(auth, ApiKey):
            raise NotAuthenticated()
        return auth.organization

    def get_queryset(self) -> models.QuerySet[Any]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no tenant
            return self.model.objects.none()
        scoped = self.model.objects.for_org(self.organization)
        return self.safely_get_queryset(scoped)

    def safely_get_queryset(self, queryset: models.QuerySet[Any]) -> models.QuerySet[Any]:
        return queryset

    def get_object(self) -> Any:
        obj = self.access_object(self.organization, int(self.kwargs[self.lookup_field]))
        self.check_object_permissions(self.request, obj)
        return obj

    def access_object(self, organization: Organization, pk: int) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement access_object().")

    def get_serializer_class(self) -> type[serializers.Serializer]:
        if self.action in ("create", "partial_update") and self.input_serializer_class:
            return self.input_serializer_class
        return self.output_serializer_class

    def get_serializer_context(self) -> dict[str, Any]:
        context = super().get_serializer_context()
        if not getattr(self, "swagger_fake_view", False) and isinstance(
            getattr(self.request, "auth", None), ApiKey
        ):
            context["organization"] = self.organization
        return context

    def output(self, obj: Any, status_code: int = status.HTTP_200_OK) -> Response:
        return Response(
            self.output_serializer_class(obj, context=self.get_serializer_context()).data,
            status=status_code,
        )

    def validated_input(
        self, request: Request, *, partial: bool = False, instance: Any = None
    ) -> Any:
        assert self.input_serializer_class is not None
        serializer = self.input_serializer_class(
            instance=instance,
            data=request.data,
            partial=partial,
            context=self.get_serializer_context(),
        )
        errors = type_errors(serializer.fields, request.data)
        if errors:
            raise serializers.ValidationError(errors)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data


class ListRetrieveMixin(mixins.ListModelMixin, mixins.RetrieveModelMixin):
    pass


class TenantCRUDViewSet(ListRetrieveMixin, TenantViewSet):
    """List/retrieve/create/partial-update/delete, with writes delegated to services."""

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        obj = self.perform_create_service(self.validated_input(request))
        return self.output(obj, status.HTTP_201_CREATED)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        instance = self.get_object()
        data = self.validated_input(request, partial=True, instance=instance)
        return self.output(self.perform_update_service(instance, data))

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        self.perform_delete_service(self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    def perform_create_service(self, data: dict[str, Any]) -> Any:
        raise NotImplementedError

    def perform_update_service(self, instance: Any, data: dict[str, Any]) -> Any:
        raise NotImplementedError

    def perform_delete_service(self, instance: Any) -> None:
        raise NotImplementedError
