import django_filters

from agents.models import Agent, Credential, CredentialProvider, Tool, ToolKind


class AgentFilter(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="icontains", max_length=200)

    class Meta:
        model = Agent
        fields = ("name",)


class ToolFilter(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="icontains", max_length=64)
    kind = django_filters.ChoiceFilter(choices=ToolKind.choices)

    class Meta:
        model = Tool
        fields = ("name", "kind")


class CredentialFilter(django_filters.FilterSet):
    provider = django_filters.ChoiceFilter(choices=CredentialProvider.choices)

    class Meta:
        model = Credential
        fields = ("provider",)
