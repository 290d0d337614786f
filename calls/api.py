from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, Throttled
from rest_framework.request import Request
from rest_framework.response import Response

from calls import analytics, outbound, recordings, retention, selectors, services
from calls.analytics import Window
from calls.control import ControlError, call_control, call_live_state
from calls.filters import CallFilter, PhoneNumberFilter
from calls.models import Call, DialingPolicy, PhoneNumber
from calls.serializers import (
    AgentsAnalyticsSerializer,
    AnalyticsQuerySerializer,
    CallControlActionSerializer,
    CallControlInputSerializer,
    CallCreateSerializer,
    CallDetailSerializer,
    CallOutputSerializer,
    CallsAnalyticsSerializer,
    DialingPolicySerializer,
    LatencyAnalyticsSerializer,
    PhoneNumberInputSerializer,
    PhoneNumberOutputSerializer,
    RecordingSerializer,
)
from glassbox.api.exceptions import Conflict, ServiceUnavailable
from glassbox.api.views import ListRetrieveMixin, TenantCRUDViewSet, TenantViewSet
from tenants.models import Organization
from tenants.services import Actor


class PhoneNumberViewSet(TenantCRUDViewSet):
    """Phone numbers on a carrier account, each answered by one agent."""

    model = PhoneNumber
    input_serializer_class = PhoneNumberInputSerializer
    output_serializer_class = PhoneNumberOutputSerializer
    filterset_class = PhoneNumberFilter

    def access_object(self, organization: Organization, pk: int) -> PhoneNumber:
        return selectors.access_phone_number(organization=organization, phone_number_id=pk)

    def perform_create_service(self, data: dict[str, Any]) -> PhoneNumber:
        return services.phone_number_create(organization=self.organization, data=data)

    def perform_update_service(self, instance: PhoneNumber, data: dict[str, Any]) -> PhoneNumber:
        return services.phone_number_update(phone_number=instance, data=data)

    def perform_delete_service(self, instance: PhoneNumber) -> None:
        services.phone_number_delete(phone_number=instance)


class CallViewSet(ListRetrieveMixin, TenantViewSet):
    """Calls, newest first. The detail view carries the transcript, the per-turn latency
    timeline (``metrics``), tool calls and the post-call ``analysis``. Inbound calls are
    created by carriers; POST places an outbound call; DELETE removes a call and all it
    recorded."""

    model = Call
    input_serializer_class = CallCreateSerializer
    output_serializer_class = CallOutputSerializer
    filterset_class = CallFilter

    def get_serializer_class(self) -> type[serializers.Serializer]:
        if self.action == "retrieve":
            return CallDetailSerializer
        if self.action == "create":
            return CallCreateSerializer
        return CallOutputSerializer

    @extend_schema(
        request=CallCreateSerializer,
        responses={201: CallOutputSerializer, 200: CallOutputSerializer},
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                description="Repeat a request safely: the same key (per organization) "
                "returns the call the first request placed, with 200, and dials nobody.",
            )
        ],
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Place an outbound call through the number's Twilio account.

        ``to`` must be E.164, allowed by the dialing policy, and not premium-rate. Every
        variable the agent's prompt, first message, voicemail line and tool parameters
        use without a fallback must be given (400 naming the missing ones). Admission
        (plan, concurrency) refusing is a 429; Twilio refusing is a call with status
        ``failed`` and end reason ``dial-failed``."""
        key = request.headers.get("Idempotency-Key", "")
        if len(key) > 255:
            raise serializers.ValidationError({"Idempotency-Key": "At most 255 characters."})
        data = self.validated_input(request)
        try:
            call, created = outbound.call_create_outbound(
                organization=self.organization,
                agent=data["agent"],
                phone_number=data["from_number"],
                to=data["to"],
                variables=data["variables"],
                metadata=data["metadata"],
                max_duration_s=data["max_duration_s"],
                idempotency_key=key,
            )
        except outbound.OutboundRefused as exc:
            raise Throttled(detail=exc.message) from exc
        except outbound.OutboundError as exc:
            raise serializers.ValidationError({exc.field: [exc.message]}) from exc
        return self.output(call, status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    def safely_get_queryset(self, queryset: QuerySet[Call]) -> QuerySet[Call]:
        return queryset.select_related("agent", "phone_number")

    def access_object(self, organization: Organization, pk: int) -> Call:
        return selectors.access_call(organization=organization, call_id=pk)

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        call = self.get_object()
        return Response(CallDetailSerializer(call, context=self.get_serializer_context()).data)

    @extend_schema(
        responses={204: None},
        description="Delete the call with its transcript, metrics, tool calls, analysis and "
        "recording (a data-deletion request); recorded in the audit log. What the call used "
        "stays in billing. Needs a full-access key.",
    )
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            retention.call_delete(call=self.get_object(), actor=Actor.of_request(request.auth))
        except retention.CallDeleteFailed as exc:
            raise ServiceUnavailable(str(exc)) from exc
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        request=CallControlInputSerializer,
        responses={
            202: CallControlActionSerializer,
            409: OpenApiResponse(description="The call is not running."),
        },
        summary="Control a running call",
    )
    @action(detail=True, methods=["post"])
    def control(self, request: Request, pk: str | None = None) -> Response:
        """Act on a running call: ``say`` (``text``: the agent speaks it), ``inject``
        (``text``: a system message for the next reply), ``mute_agent``,
        ``unmute_agent``, ``transfer`` (``to``; phone calls only), ``end``. Delivered to
        the process holding the call; recorded on the call (``control_actions``), with
        ``delivered`` set once the call took it. 409 if the call is not running."""
        call = self.get_object()
        data = CallControlInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        params = {k: v for k, v in data.validated_data.items() if k != "action"}
        api_key = request.auth
        actor = f"api-key:{getattr(api_key, 'prefix', '')}"
        try:
            record = call_control(
                call=call, action=data.validated_data["action"], params=params, actor=actor
            )
        except ControlError as exc:
            if exc.status == 409:
                raise Conflict(exc.message) from exc
            raise serializers.ValidationError({"detail": [exc.message]}) from exc
        return Response(CallControlActionSerializer(record).data, status=202)

    @extend_schema(summary="A running call's live state", responses={200: dict})
    @action(detail=True, methods=["get"])
    def live(self, request: Request, pk: str | None = None) -> Response:
        """Phase, transcript so far, the history the LLM sees and the latest turn's
        metrics, as the process holding the call last mirrored them; ``{"live": false}``
        when the call is not running."""
        call = self.get_object()
        state = call_live_state(call=call)
        return Response({"live": False} if state is None else {"live": True, **state})

    @extend_schema(methods=["GET"], responses=RecordingSerializer)
    @extend_schema(methods=["DELETE"], responses={204: OpenApiResponse(description="Deleted.")})
    @action(detail=True, methods=["get", "delete"], url_path="recording")
    def recording(self, request: Request, pk: str | None = None) -> Response:
        """The call's recording: a link valid for ``RECORDING_URL_TTL_S`` (``url`` is null
        when the call has none). DELETE removes it from storage (a full-access key)."""
        call = self.get_object()
        if request.method == "DELETE":
            if not recordings.call_recording_delete(call=call):
                raise NotFound("This call has no recording.")
            return Response(status=status.HTTP_204_NO_CONTENT)
        link = recordings.recording_link(call=call, request=request)
        data = {
            "status": "ready" if link is not None else "none",
            "url": link.url if link is not None else None,
            "expires_at": link.expires_at if link is not None else None,
            "content_type": call.recording_content_type or None,
            "channels": call.recording_channels,
            "duration_ms": call.recording_duration_ms,
            "size_bytes": call.recording_bytes,
        }
        return Response(RecordingSerializer(data).data)


class DialingPolicyViewSet(TenantViewSet):
    """Where your outbound calls may go: allowed and denied countries, premium numbers."""

    model = DialingPolicy
    input_serializer_class = DialingPolicySerializer
    output_serializer_class = DialingPolicySerializer
    pagination_class = None
    filter_backends: list[Any] = []

    def current(self, request: Request) -> Response:
        return self.output(outbound.dialing_policy_get(organization=self.organization))

    @extend_schema(request=DialingPolicySerializer, responses=DialingPolicySerializer)
    def update_policy(self, request: Request) -> Response:
        data = self.validated_input(request, partial=True)
        policy = outbound.dialing_policy_update(organization=self.organization, data=data)
        return self.output(policy)


class AnalyticsViewSet(TenantViewSet):
    """Aggregates over the organization's calls and turns, computed by the database.

    A call (and all of its turns) counts in the period it started in. ``agent`` must be
    an agent of your organization (another tenant's id is a 400, like a missing one).
    """

    # The rows these aggregates read; used for scoping checks, never listed.
    model = Call
    output_serializer_class = LatencyAnalyticsSerializer
    pagination_class = None
    filter_backends: list[Any] = []

    def _query(self) -> tuple[Window, int | None]:
        # A plain dict: an empty parameter (``?period=``) is then invalid, not "unset".
        serializer = AnalyticsQuerySerializer(
            data=self.request.query_params.dict(), context=self.get_serializer_context()
        )
        serializer.is_valid(raise_exception=True)
        agent = serializer.validated_data["agent"]
        window = analytics.analytics_window(period=serializer.validated_data["period"])
        return window, (agent.pk if agent is not None else None)

    @staticmethod
    def _window_fields(window: Window, agent_id: int | None) -> dict[str, Any]:
        return {
            "period": window.period,
            "start": window.start,
            "end": window.end,
            "agent": agent_id,
        }

    @extend_schema(parameters=[AnalyticsQuerySerializer], responses=LatencyAnalyticsSerializer)
    @action(detail=False, methods=["get"])
    def latency(self, request: Request) -> Response:
        """p50/p95 of every latency stage and of voice-to-voice, overall and per day."""
        window, agent_id = self._query()
        org = self.organization
        summary = analytics.latency_summary(organization=org, window=window, agent_id=agent_id)
        data = {
            **self._window_fields(window, agent_id),
            "turns": summary.turns,
            "stages": summary.stages,
            "by_day": analytics.latency_by_day(organization=org, window=window, agent_id=agent_id),
        }
        return Response(LatencyAnalyticsSerializer(data).data)

    @extend_schema(parameters=[AnalyticsQuerySerializer], responses=CallsAnalyticsSerializer)
    @action(detail=False, methods=["get"])
    def calls(self, request: Request) -> Response:
        """Calls, minutes, outcomes, end reasons and interruptions, overall and per day."""
        window, agent_id = self._query()
        org = self.organization
        totals = analytics.call_totals(organization=org, window=window, agent_id=agent_id)
        data = {
            **self._window_fields(window, agent_id),
            **{name: getattr(totals, name) for name in CALL_TOTALS_FIELDS},
            "by_day": analytics.calls_by_day(organization=org, window=window, agent_id=agent_id),
        }
        return Response(CallsAnalyticsSerializer(data).data)

    @extend_schema(parameters=[AnalyticsQuerySerializer], responses=AgentsAnalyticsSerializer)
    @action(detail=False, methods=["get"])
    def agents(self, request: Request) -> Response:
        """Voice-to-voice p50/p95 per agent, busiest first (``agent`` is ignored here)."""
        window, _ = self._query()
        rows = analytics.latency_by_agent(organization=self.organization, window=window)
        data = {**self._window_fields(window, None), "results": rows}
        return Response(AgentsAnalyticsSerializer(data).data)


CALL_TOTALS_FIELDS = (
    "calls",
    "minutes",
    "completed",
    "failed",
    "turns",
    "interruptions",
    "interruptions_per_call",
    "end_reasons",
)
