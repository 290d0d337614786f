import django_filters

from glassbox.api.filters import StrictBooleanFilter
from tenants.models import ApiKey, AuditAction, AuditLogEntry


class ApiKeyFilter(django_filters.FilterSet):
    revoked = StrictBooleanFilter(field_name="revoked_at", lookup_expr="isnull", exclude=True)

    class Meta:
        model = ApiKey
        fields = ("revoked",)


class AuditLogFilter(django_filters.FilterSet):
    action = django_filters.ChoiceFilter(choices=AuditAction.choices)
    target_type = django_filters.CharFilter()

    class Meta:
        model = AuditLogEntry
        fields = ("action", "target_type")
