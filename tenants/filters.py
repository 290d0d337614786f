import django_filters

from glassbox.api.filters import StrictBooleanFilter
from tenants.models import ApiKey


class ApiKeyFilter(django_filters.FilterSet):
    revoked = StrictBooleanFilter(field_name="revoked_at", lookup_expr="isnull", exclude=True)

    class Meta:
        model = ApiKey
        fields = ("revoked",)
